//! `GET /v1/hooks/{hook_id}/dead_letters`: events a hook gave up on, newest first, with why.

use axum::Json;
use axum::extract::{Path, Query, State};
use hookrelay_core::HookId;
use hookrelay_core::hook::input::wire_hook_id;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::AppAuth;
use crate::context::duration;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

#[derive(Deserialize)]
pub struct Page {
    limit: Option<usize>,
    /// Continue after this dead-letter id (the `next` of the previous page).
    before: Option<i64>,
}

pub async fn list(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    Path(hook_id): Path<String>,
    Query(page): Query<Page>,
) -> ApiResult<Json<Value>> {
    let wire = wire_hook_id(&hook_id).map_err(|e| ApiError::not_found(e.0))?;
    let hook_id = HookId::scoped(app.id, &wire);
    let owned = state
        .store
        .hooks(app.id)
        .await?
        .iter()
        .any(|h| h.id == hook_id);
    if !owned {
        return Err(ApiError::not_found(format!("hook {wire} does not exist")));
    }
    let limit = page.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let letters = state
        .store
        .dead_letters(&hook_id, page.before, limit)
        .await?;
    let next = (letters.len() == limit)
        .then(|| letters.last().map(|d| d.id))
        .flatten();
    let items: Vec<Value> = letters
        .iter()
        .map(|d| {
            json!({
                "id": d.id,
                "event_id": d.event_id,
                "event_type": d.event_type,
                "reason": d.reason.as_str(),
                "attempts": d.attempts,
                "last_error": d.last_error,
                "created_at": d.created_at.to_rfc3339(),
            })
        })
        .collect();
    Ok(Json(
        json!({"dead_letters": items, "next": next, "duration": duration()}),
    ))
}
