//! The app's own lifecycle, beyond Stream's API:
//!
//! * `POST /v1/app/secret` `{"api_secret": "<new>", "keep_previous_seconds": 0}`: replaces the
//!   API secret. The caller picks the new secret (the CLI generates one), so no secret ever
//!   travels in an answer. Deliveries are signed with the new secret at once. The old secret
//!   stops authenticating at once (on the other nodes within a few seconds), or, with
//!   `keep_previous_seconds`, keeps authenticating API calls and inlet requests until that
//!   window ends, so clients can move to the new one without an outage.
//! * `DELETE /v1/app`: deletes the app with its hooks, their backlogs, dead letters and events.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use hookrelay_core::hook::input::Fields;
use hookrelay_core::{Secret, Timestamp};
use serde_json::{Value, json};

use crate::auth::AppAuth;
use crate::context::duration;
use crate::error::{ApiError, ApiResult};
use crate::extract::JsonBody;
use crate::state::AppState;

/// Bounds of an API secret: long enough to resist guessing, printable so it fits a header.
const MIN_SECRET_CHARS: usize = 16;
const MAX_SECRET_CHARS: usize = 256;
/// The longest rotation window: 30 days.
const MAX_KEEP_PREVIOUS_SECONDS: u64 = 30 * 24 * 3600;

fn check_secret(secret: &str) -> Result<(), ApiError> {
    let printable = secret.bytes().all(|b| b.is_ascii_graphic());
    if !(MIN_SECRET_CHARS..=MAX_SECRET_CHARS).contains(&secret.len()) || !printable {
        return Err(ApiError::field(
            "api_secret",
            &format!(
                "must be {MIN_SECRET_CHARS} to {MAX_SECRET_CHARS} printable ASCII characters without spaces"
            ),
        ));
    }
    Ok(())
}

pub async fn set_secret(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    body: JsonBody,
) -> ApiResult<Json<Value>> {
    let request = body.object().await?;
    let secret = Fields(&request)
        .required_str("api_secret")
        .map_err(|e| ApiError::field(&e.field, &e.reason))?;
    check_secret(secret)?;
    let keep_previous = match request.get("keep_previous_seconds") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .filter(|s| *s <= MAX_KEEP_PREVIOUS_SECONDS)
            .ok_or_else(|| {
                ApiError::field(
                    "keep_previous_seconds",
                    &format!("must be a whole number of seconds, 0 to {MAX_KEEP_PREVIOUS_SECONDS}"),
                )
            })?,
    };
    let until = (keep_previous > 0)
        .then(|| Timestamp::now().saturating_add_millis(keep_previous as i64 * 1000));
    state
        .store
        .set_api_secret(app.id, &Secret::new(secret), until)
        .await?;
    if let Some(fresh) = state.store.app_by_id(app.id).await? {
        state.apps.put(Arc::new(fresh));
    }
    tracing::info!(app_id = %app.id, keep_previous, "API secret rotated");
    let previous_valid_until = until.map(Timestamp::to_rfc3339);
    Ok(Json(
        json!({"previous_secret_valid_until": previous_valid_until, "duration": duration()}),
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
) -> ApiResult<Json<Value>> {
    state.store.delete_app(app.id).await?;
    state.apps.remove(&app.api_key);
    tracing::info!(app_id = %app.id, "app deleted");
    Ok(Json(json!({"deleted": true, "duration": duration()})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_printable_and_unspaced() {
        assert!(check_secret(&"a".repeat(16)).is_ok());
        assert!(check_secret(&"Z9-_".repeat(64)).is_ok());
        for bad in [
            "short",
            &"a".repeat(257),
            "has a space in the middle",
            "tab\there-and-more-text",
        ] {
            assert!(check_secret(bad).is_err(), "{bad}");
        }
    }
}
