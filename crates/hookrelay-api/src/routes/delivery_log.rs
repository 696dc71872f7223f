//! The delivery log, read two ways:
//!
//! * `GET /v1/hooks/{hook_id}/attempts?outcome=&limit=&before=`: the hook's attempts, newest
//!   first, paged like dead letters. A batch delivered in one call is one attempt listing its
//!   events.
//! * `GET /v1/events/{event_id}`: the event as stored and, for each hook of the app, whether
//!   its filter takes the event, where the event stands (`pending`, `delivered`, `retrying`,
//!   `dead_letter`, `dropped`, `filtered_out`, or `skipped` when the hook's cursor passed it
//!   without an attempt: the hook was created, re-enabled or rewound past it) and its attempts,
//!   oldest first.

use axum::Json;
use axum::extract::{Path, Query, State};
use hookrelay_core::EventHook;
use hookrelay_core::{HookId, Timestamp};
use hookrelay_store::{Attempt, AttemptOutcome, DeadLetterReason, HookTrace, Seq};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::auth::AppAuth;
use crate::context::duration;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct AttemptsPage {
    outcome: Option<String>,
    limit: Option<usize>,
    /// Continue after this attempt id (the `next` of the previous page).
    before: Option<i64>,
}

fn attempt_json(a: &Attempt) -> Value {
    let r = &a.record;
    json!({
        "id": a.id,
        "at": r.at.to_rfc3339(),
        "outcome": r.outcome.as_str(),
        "duration_ms": (r.duration_us as f64 / 100.0).round() / 10.0,
        "events": r.events.iter().map(|e| json!({"event_id": e.id, "attempt": e.attempt})).collect::<Vec<_>>(),
        "code": r.code,
        "http_status": r.http_status,
        "response": r.response,
    })
}

pub async fn attempts(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    Path(hook_id): Path<String>,
    Query(page): Query<AttemptsPage>,
) -> ApiResult<Json<Value>> {
    let hook_id = super::owned_hook(&state, app.id, &hook_id).await?;
    let outcome = match page.outcome.as_deref().filter(|o| !o.is_empty()) {
        None => None,
        Some(o) => Some(AttemptOutcome::parse(o).ok_or_else(|| {
            let names: Vec<&str> = AttemptOutcome::ALL.iter().map(|o| o.as_str()).collect();
            ApiError::field("outcome", &format!("must be one of {}", names.join(", ")))
        })?),
    };
    let limit = super::page_limit(page.limit);
    let found = state
        .store
        .attempts(&hook_id, outcome, page.before, limit)
        .await?;
    let next = (found.len() == limit)
        .then(|| found.last().map(|a| a.id))
        .flatten();
    let items: Vec<Value> = found.iter().map(attempt_json).collect();
    Ok(Json(
        json!({"attempts": items, "next": next, "duration": duration()}),
    ))
}

/// Where an event stands at one hook, from what the store knows.
fn delivery_state(hook: &EventHook, matched: bool, trace: &HookTrace, seq: Seq) -> &'static str {
    if !matched {
        return "filtered_out";
    }
    if let Some(reason) = trace.dead_letter {
        return if reason == DeadLetterReason::TooLarge {
            "dropped"
        } else {
            "dead_letter"
        };
    }
    if trace.retry.is_some() {
        return "retrying";
    }
    let last = trace.attempts.last().map(|a| a.record.outcome);
    if last == Some(AttemptOutcome::Delivered) {
        return "delivered";
    }
    if seq > trace.cursor || !hook.enabled {
        return "pending";
    }
    if last.is_some() {
        "delivered"
    } else {
        "skipped"
    }
}

pub async fn event(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    Path(event_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let hooks = state.store.hooks(app.id).await?;
    let ids: Vec<HookId> = hooks.iter().map(|h| h.id.clone()).collect();
    let Some(trace) = state.store.event_trace(app.id, &event_id, &ids).await? else {
        return Err(ApiError::not_found(format!(
            "event {event_id} is not in the log (never sent to this app, or older than the retention)"
        )));
    };
    let event = &trace.event;
    let mut out = Vec::with_capacity(trace.hooks.len());
    for t in &trace.hooks {
        let Some(hook) = hooks.iter().find(|h| h.id == t.hook) else {
            continue;
        };
        let matched = hook
            .event_filter()
            .matches_event(&event.event_type, &event.payload);
        let state_name = delivery_state(hook, matched, t, event.seq);
        out.push(json!({
            "hook_id": hook.id.wire(app.id).as_str(),
            "hook_type": hook.target.hook_type().as_str(),
            "matched": matched,
            "state": state_name,
            "retry": t.retry.as_ref().map(|(attempts, next, error)| json!({
                "attempts": attempts, "next_attempt_at": next.to_rfc3339(), "last_error": error,
            })),
            "attempts": t.attempts.iter().map(attempt_json).collect::<Vec<_>>(),
        }));
    }
    // The stored bytes are JSON: they are sent as they are, not re-encoded.
    let payload = std::str::from_utf8(&event.payload)
        .ok()
        .and_then(|s| RawValue::from_string(s.to_owned()).ok());
    Ok(Json(json!({
        "event": {
            "id": event.id,
            "type": event.event_type,
            "created_at": event.created_at.to_rfc3339(),
            "payload": payload,
        },
        "hooks": out,
        "now": Timestamp::now().to_rfc3339(),
        "duration": duration(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookrelay_store::{AttemptEvent, AttemptRecord};

    fn hook() -> EventHook {
        serde_json::from_value(json!({
            "id": "h", "enabled": true, "event_types": [], "product": "all",
            "target": {"hook_type": "webhook", "url": "https://example.com/"},
            "should_send_custom_events": null, "sns_event_based_message_group_id_enabled": null,
            "created_at": 0, "updated_at": 0,
        }))
        .unwrap()
    }

    fn trace(cursor: i64, outcomes: &[AttemptOutcome]) -> HookTrace {
        let cursor = Seq(cursor);
        HookTrace {
            hook: HookId::try_from("h".to_owned()).unwrap(),
            cursor,
            retry: None,
            dead_letter: None,
            attempts: outcomes
                .iter()
                .enumerate()
                .map(|(i, o)| Attempt {
                    id: i as i64,
                    record: AttemptRecord {
                        events: vec![AttemptEvent {
                            seq: Seq(5),
                            id: "e".into(),
                            attempt: 1,
                        }],
                        at: Timestamp::from_millis(0),
                        duration_us: 0,
                        outcome: *o,
                        code: None,
                        http_status: None,
                        response: None,
                    },
                })
                .collect(),
        }
    }

    #[test]
    fn each_state_is_decided_from_the_store() {
        let h = hook();
        use AttemptOutcome::*;
        assert_eq!(
            delivery_state(&h, false, &trace(9, &[]), Seq(5)),
            "filtered_out"
        );
        assert_eq!(delivery_state(&h, true, &trace(4, &[]), Seq(5)), "pending");
        assert_eq!(delivery_state(&h, true, &trace(9, &[]), Seq(5)), "skipped");
        assert_eq!(
            delivery_state(&h, true, &trace(9, &[Retrying, Delivered]), Seq(5)),
            "delivered"
        );
        let mut retrying = trace(9, &[Retrying]);
        retrying.retry = Some((1, Timestamp::from_millis(0), "HTTP 500".into()));
        assert_eq!(delivery_state(&h, true, &retrying, Seq(5)), "retrying");
        let mut dead = trace(9, &[Refused, DeadLettered]);
        dead.dead_letter = Some(DeadLetterReason::Rejected);
        assert_eq!(delivery_state(&h, true, &dead, Seq(5)), "dead_letter");
        dead.dead_letter = Some(DeadLetterReason::TooLarge);
        assert_eq!(delivery_state(&h, true, &dead, Seq(5)), "dropped");
        // Waiting in the log while the destination is down.
        assert_eq!(
            delivery_state(&h, true, &trace(4, &[DestinationDown]), Seq(5)),
            "pending"
        );
    }
}
