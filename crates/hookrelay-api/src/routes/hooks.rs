//! The operations API for hooks: status, pause and resume, replay.
//!
//! * `GET /v1/hooks`, `GET /v1/hooks/{id}`: state, lag, backlog, counters, last success and error.
//! * `POST /v1/hooks/{id}/pause` / `resume`: stop and restart delivery, keeping the backlog
//!   (unlike `enabled: false`, which stops delivery and, when re-enabled, starts from the head).
//! * `POST /v1/hooks/{id}/replay` `{"since": "<RFC 3339>"}`: deliver again every retained event
//!   of the hook's filter created since then.
//! * `POST /v1/hooks/{id}/dead_letters/replay` (`{"event_ids": [...]}` or all): back into delivery;
//!   the answer lists the asked ids that matched no dead letter (`not_found`).
//! * `POST /v1/hooks/{id}/test`: send one `health.check` event and report what the destination said.
//! * `GET /v1/hooks/{id}/signing_secret`: the hook's Standard Webhooks secret(s), in clear.

use axum::Json;
use axum::extract::{Path, State};
use hookrelay_core::hook::input::Fields;
use hookrelay_core::{EventHook, Timestamp};
use hookrelay_store::{App, AppHook};
use serde_json::{Value, json};

use crate::auth::AppAuth;
use crate::context::duration;
use crate::error::{ApiError, ApiResult};
use crate::extract::JsonBody;
use crate::state::AppState;

/// Counts in a hook's status stop here (the status says "at least").
const STATUS_COUNT_UP_TO: u64 = 1_000_000;

/// The app's hook with this (wire) id.
async fn record(state: &AppState, app: &App, id: String) -> ApiResult<AppHook> {
    super::owned_hook(state, app.id, &id).await
}

/// One hook's status.
pub async fn status_of(state: &AppState, app: &App, owned: &AppHook) -> ApiResult<Value> {
    let record = owned.record();
    let hook: &EventHook = &record.hook;
    let backlog = state
        .store
        .backlog(app.id, &hook.id, STATUS_COUNT_UP_TO)
        .await?
        .unwrap_or_default();
    let (state_now, live) = state.delivery.status(hook, record.paused, backlog.retries);
    let now = Timestamp::now();
    let oldest_age = backlog
        .oldest_pending
        .map(|t| ((now.millis() - t.millis()).max(0) as f64) / 1000.0);
    let last_error = live
        .last_error
        .as_ref()
        .map(|e| json!({"at": e.at.to_rfc3339(), "code": e.code, "message": e.message}));
    Ok(json!({
        "id": hook.id.wire(app.id).as_str(),
        "hook_type": hook.target.hook_type().as_str(),
        "enabled": hook.enabled,
        "paused": record.paused,
        "state": state_now.as_str(),
        // The node holding the hook's delivery lease (PostgreSQL store); null on one node.
        "node": backlog.owner,
        "lag": {"events": backlog.events_behind, "oldest_pending_age_seconds": oldest_age},
        "in_flight": live.in_flight,
        "retry_backlog": backlog.retries,
        "dead_letters": backlog.dead_letters,
        "delivered": live.delivered,
        "failed": live.failed,
        "dead_lettered": live.dead_lettered,
        "dropped": live.dropped,
        "last_success_at": live.last_success.map(|t| t.to_rfc3339()),
        "last_error": last_error,
        // The hook's `rate_limit`, and the rate in force (lower while the destination throttles).
        "rate_limit": hook.rate_limit,
        "current_rate": live.current_rate,
        // Deliveries and failed attempts per minute over the last hour, oldest first (counted
        // by this process since it started).
        "per_minute": live.per_minute.iter()
            .map(|m| json!({"at": m.at.to_rfc3339(), "delivered": m.delivered, "failed": m.failed}))
            .collect::<Vec<_>>(),
    }))
}

pub async fn list(State(state): State<AppState>, AppAuth(app): AppAuth) -> ApiResult<Json<Value>> {
    let mut hooks = Vec::new();
    for hook in state.store.app_hooks(app.id).await? {
        hooks.push(status_of(&state, &app, &hook).await?);
    }
    Ok(Json(json!({"hooks": hooks, "duration": duration()})))
}

pub async fn get(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let record = record(&state, &app, id).await?;
    let status = status_of(&state, &app, &record).await?;
    Ok(Json(json!({"hook": status, "duration": duration()})))
}

async fn set_paused(
    state: AppState,
    app: &App,
    id: String,
    paused: bool,
) -> ApiResult<Json<Value>> {
    let hook = record(&state, app, id).await?;
    state.store.set_paused(&hook, paused).await?;
    let hook = super::owned_hook(&state, app.id, hook.id().wire(app.id).as_str()).await?;
    let status = status_of(&state, app, &hook).await?;
    Ok(Json(json!({"hook": status, "duration": duration()})))
}

pub async fn pause(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    set_paused(state, &app, id, true).await
}

pub async fn resume(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    set_paused(state, &app, id, false).await
}

pub async fn replay_since(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    Path(id): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<Value>> {
    let record = record(&state, &app, id).await?;
    let request = body.object().await?;
    let since = Fields(&request)
        .required_str("since")
        .map_err(|e| ApiError::field(&e.field, &e.reason))?;
    let since = Timestamp::parse_rfc3339(since).ok_or_else(|| {
        ApiError::field(
            "since",
            "must be an RFC 3339 time, like 2026-01-02T03:04:05Z",
        )
    })?;
    let behind = state
        .store
        .rewind(&record, since)
        .await?
        .unwrap_or_default();
    Ok(Json(
        json!({"events_after_cursor": behind, "duration": duration()}),
    ))
}

pub async fn replay_dead_letters(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    Path(id): Path<String>,
    body: JsonBody,
) -> ApiResult<Json<Value>> {
    let record = record(&state, &app, id).await?;
    let request = body.object().await?;
    let ids = match request.get("event_ids") {
        None | Some(Value::Null) => None,
        Some(_) => Some(
            Fields(&request)
                .str_list("event_ids")
                .map_err(|e| ApiError::field(&e.field, &e.reason))?,
        ),
    };
    let replayed = state
        .store
        .replay_dead_letters(&record, ids.clone())
        .await?;
    // Ids asked for that were not dead letters of this hook (mistyped, or replayed already).
    let not_found: Vec<&String> = ids
        .iter()
        .flatten()
        .filter(|id| !replayed.contains(id))
        .collect();
    Ok(Json(json!({
        "replayed": replayed.len(),
        "not_found": not_found,
        "duration": duration(),
    })))
}

/// `POST /v1/hooks/{id}/test`: one signed `health.check` event through the hook's real delivery
/// path; the answer says what the destination did. The hook's cursor, retries and counters are
/// not touched, and a paused or disabled hook can be tested too.
pub async fn test(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let record = record(&state, &app, id).await?;
    let report = state.delivery.test_hook(&app, &record.record().hook).await;
    let latency_ms = (report.latency.as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
    let body = match report.error {
        None => json!({
            "status": "ok",
            "event_id": report.event_id,
            "latency_ms": latency_ms,
            "duration": duration(),
        }),
        Some(e) => json!({
            "status": "error",
            "event_id": report.event_id,
            "latency_ms": latency_ms,
            "error": {"code": e.code, "message": e.message, "http_status": e.http_status},
            "duration": duration(),
        }),
    };
    Ok(Json(body))
}

/// `GET /v1/hooks/{id}/signing_secret`: the hook's Standard Webhooks secrets in clear, for the
/// hook's owner to configure its verifier (every other answer masks them). 404 when the hook has
/// none (it signs with the app's API secret).
pub async fn signing_secret(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let record = record(&state, &app, id).await?;
    let hook = &record.record().hook;
    let signing = &hook.signing;
    let Some(current) = &signing.current else {
        return Err(ApiError::not_found(
            "this hook has no webhook_secret: set webhook_signature to standard to get one",
        ));
    };
    let now = Timestamp::now();
    let previous = signing
        .previous
        .as_ref()
        .filter(|(_, until)| *until > now)
        .map(|(s, until)| json!({"webhook_secret": s.expose(), "valid_until": until.to_rfc3339()}));
    Ok(Json(json!({
        "webhook_signature": hook.signature.as_str(),
        "webhook_secret": current.expose(),
        "previous": previous,
        "duration": duration(),
    })))
}
