//! `POST /v1/events`: durable ingest.
//!
//! The body is one event object, or `{"events": [...]}` with 1 to 1000 of them. Every event is
//! checked before any is stored: a request is taken whole or not at all. The 201 answer is sent
//! only once the events are committed and fsync'd (the store's group commit).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hookrelay_core::event::{ReceivedAt, prepare_event};
use hookrelay_core::limits::MAX_EVENTS_PER_REQUEST;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::auth::AppAuth;
use crate::context::duration;
use crate::error::{ApiError, ApiResult};
use crate::extract::JsonBody;
use crate::state::AppState;

/// The 201 answer: each event's id in request order, marked when it was already in the log.
/// Serialised straight from these types, not through a `Value` per event.
#[derive(Serialize)]
pub struct Ingested {
    duration: String,
    events: Vec<Accepted>,
}

#[derive(Serialize)]
pub struct Accepted {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    duplicate: bool,
    id: String,
}

/// The top level of a request: a batch when it has `events` and no `type`.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    events: Option<Vec<&'a RawValue>>,
    #[serde(rename = "type", default)]
    event_type: Option<IgnoredAny>,
}

pub async fn ingest(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    body: JsonBody,
) -> ApiResult<(StatusCode, Json<Ingested>)> {
    let text = std::str::from_utf8(&body.0)
        .map_err(|_| ApiError::input("the request body is not UTF-8"))?;
    let envelope: Envelope<'_> = serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            ApiError::input(format!(
                "the request body must be an event object or {{\"events\": [...]}}: {e}"
            ))
        } else {
            ApiError::input(format!("the request body is not valid JSON: {e}"))
        }
    })?;
    let single;
    let raw_events: &[&RawValue] = match (&envelope.events, &envelope.event_type) {
        (Some(events), None) => events,
        _ => {
            single = [serde_json::from_str::<&RawValue>(text).map_err(|e| {
                ApiError::input(format!("the request body is not valid JSON: {e}"))
            })?];
            &single
        }
    };
    if raw_events.is_empty() || raw_events.len() > MAX_EVENTS_PER_REQUEST {
        return Err(ApiError::field(
            "events",
            &format!(
                "must hold 1 to {MAX_EVENTS_PER_REQUEST} events, not {}",
                raw_events.len()
            ),
        ));
    }
    let received = ReceivedAt::now();
    let mut prepared = Vec::with_capacity(raw_events.len());
    for (i, raw) in raw_events.iter().enumerate() {
        let event = prepare_event(raw, &received, state.limits.max_event_bytes)
            .map_err(|reason| ApiError::field(&format!("events[{i}]"), &reason))?;
        prepared.push(event);
    }
    let bytes: usize = prepared.iter().map(|e| e.payload.len()).sum();
    let count = prepared.len();
    let appended = state.store.append(app.id, prepared).await?;
    hookrelay_core::telemetry::record_ingest(app.id, count, bytes, crate::context::elapsed_secs());
    let events = appended
        .into_iter()
        .map(|a| Accepted {
            duplicate: a.seq.is_none(),
            id: a.id,
        })
        .collect();
    Ok((
        StatusCode::CREATED,
        Json(Ingested {
            duration: duration(),
            events,
        }),
    ))
}
