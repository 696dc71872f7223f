//! `GET /v1/hooks/{hook_id}/dead_letters`: events a hook gave up on, newest first, with why.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::AppAuth;
use crate::context::duration;
use crate::error::ApiResult;
use crate::state::AppState;

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
    let hook_id = super::owned_hook(&state, app.id, &hook_id).await?;
    let limit = super::page_limit(page.limit);
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
