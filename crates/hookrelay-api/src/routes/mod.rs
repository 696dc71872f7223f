//! One module per area of the API.

pub mod app_lifecycle;
pub mod app_settings;
pub mod check;
pub mod dead_letters;
pub mod delivery_log;
pub mod events;
pub mod health;
pub mod hook_events;
pub mod hooks;
pub mod inlet;
pub mod metrics;

use hookrelay_core::HookId;
use hookrelay_core::hook::input::wire_hook_id;
use hookrelay_store::{AppHook, AppId};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Page sizes of the lists (dead letters, attempts): 100 unless asked, at most 1000.
pub fn page_limit(asked: Option<usize>) -> usize {
    asked.unwrap_or(100).clamp(1, 1000)
}

/// The app's hook with this wire id, as the store's operations take it; 404 when the app has
/// none, so no handler can reach another app's hook.
pub async fn owned_hook(state: &AppState, app: AppId, wire: &str) -> ApiResult<AppHook> {
    let wire = wire_hook_id(wire).map_err(|e| ApiError::not_found(e.0))?;
    state
        .store
        .app_hook(app, &HookId::scoped(app, &wire))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("hook {wire} does not exist")))
}
