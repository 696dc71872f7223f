//! `POST /v1/inlets/stream`: Stream's own webhook, made durable.
//!
//! A Stream app's webhook URL can point here. Stream retries a webhook for only a few seconds and
//! keeps no dead letters; once an event is in hookrelay's log it gets every hook's retries,
//! dead letters, replay and status. The request is taken exactly as Stream sends it:
//!
//! * the body is the event JSON, stored byte for byte;
//! * `X-Api-Key` names the app (an `api_key` query parameter works too);
//! * `X-Signature` is the hex HMAC-SHA256 of the body keyed with the app's API secret (or the
//!   replaced secret, during a rotation window), compared in constant time; 401 otherwise;
//! * `X-Webhook-Id` becomes the event's id when the event has none, so Stream's retries of one
//!   delivery are stored once (`"duplicate": true`).
//!
//! The 200 answer is sent only once the event is committed and fsync'd, typically in a few
//! milliseconds, far inside Stream's webhook timeout.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use hookrelay_core::event::{ReceivedAt, is_valid_event_id, prepare_event_with_id};
use hookrelay_core::sign::signature_hex;
use hookrelay_core::{Secret, Timestamp};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::context::duration;
use crate::error::{ApiError, ApiResult, Code};
use crate::extract::JsonBody;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct InletQuery {
    api_key: Option<String>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn unauthorized(code: Code, detail: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, detail)
}

/// Whether `signature` (hex) is the body's HMAC under one of the secrets, in constant time.
fn signed_by<'a>(signature: &str, body: &[u8], secrets: impl Iterator<Item = &'a Secret>) -> bool {
    let given = signature.to_ascii_lowercase();
    secrets.fold(false, |ok, secret| {
        let expected = signature_hex(secret.expose().as_bytes(), body);
        ok | bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
    })
}

pub async fn stream(
    State(state): State<AppState>,
    Query(query): Query<InletQuery>,
    headers: HeaderMap,
    body: JsonBody,
) -> ApiResult<Json<Value>> {
    let api_key = header(&headers, "x-api-key")
        .map(str::to_owned)
        .or(query.api_key.filter(|k| !k.is_empty()))
        .ok_or_else(|| unauthorized(Code::AccessKeyError, "X-Api-Key header not provided"))?;
    let app = state
        .apps
        .by_key(&*state.store, &api_key)
        .await?
        .ok_or_else(|| unauthorized(Code::AccessKeyError, "api_key not valid"))?;
    let signature = header(&headers, "x-signature").ok_or_else(|| {
        unauthorized(Code::AuthenticationError, "X-Signature header not provided")
    })?;
    let secrets = std::iter::once(&app.api_secret).chain(app.previous_secret_at(Timestamp::now()));
    if !signed_by(signature, &body.0, secrets) {
        return Err(unauthorized(
            Code::TokenSignatureInvalid,
            "X-Signature is not the HMAC-SHA256 of the body with this app's API secret",
        ));
    }
    let webhook_id = header(&headers, "x-webhook-id");
    if let Some(id) = webhook_id
        && !is_valid_event_id(id)
    {
        return Err(ApiError::field(
            "X-Webhook-Id",
            "must be 1 to 128 printable ASCII characters without spaces",
        ));
    }
    let raw: &RawValue = serde_json::from_slice(&body.0)
        .map_err(|e| ApiError::input(format!("the request body is not valid JSON: {e}")))?;
    let event = prepare_event_with_id(
        raw,
        &ReceivedAt::now(),
        state.limits.max_event_bytes,
        webhook_id,
    )
    .map_err(|reason| ApiError::field("event", &reason))?;
    let bytes = event.payload.len();
    let appended = state.store.append(app.id, vec![event]).await?;
    hookrelay_core::telemetry::record_ingest(app.id, 1, bytes, crate::context::elapsed_secs());
    let first = appended.into_iter().next();
    let (id, duplicate) = first.map_or((String::new(), false), |a| (a.id, a.seq.is_none()));
    Ok(Json(
        json!({"id": id, "duplicate": duplicate, "duration": duration()}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_checked_against_every_valid_secret() {
        let (old, new) = (Secret::new("old-secret"), Secret::new("new-secret"));
        let body = br#"{"type":"message.new"}"#;
        let by_old = signature_hex(b"old-secret", body);
        assert!(signed_by(&by_old, body, [&new, &old].into_iter()));
        assert!(!signed_by(&by_old, body, [&new].into_iter()));
        assert!(!signed_by(&by_old, b"{}", [&new, &old].into_iter()));
        assert!(!signed_by("not hex", body, [&new].into_iter()));
        assert!(!signed_by("", body, [&new].into_iter()));
    }
}
