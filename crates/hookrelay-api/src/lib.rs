//! The HTTP API of hookrelay.
//!
//! # Layout
//! * [`router`]: every route, on both Stream path families (`/app` and `/api/v2/app`, …).
//! * `routes/`: one module per area: `app_settings` (GET/PATCH app), `app_lifecycle` (rotate the
//!   API secret, delete the app), `check` (check_sqs,
//!   check_sns), `hook_events`, `events` (ingest), `inlet` (Stream's webhook as a source),
//!   `dead_letters`, `delivery_log` (attempts, event lookup), `hooks` (status, pause,
//!   replay, test), `health` (healthz, readyz), `metrics` (Prometheus).
//! * `auth`: [`auth::AppAuth`], the extractor that authenticates a request as Stream's SDKs send it.
//! * `extract`: [`extract::JsonBody`], a body extractor whose refusals are Stream-format errors.
//! * `error`: [`error::ApiError`], Stream's error envelope; `context`: request timing and operation.
//! * `app_json`: how an app and its hooks look on the wire (legacy vs v2 timestamps, masking).
//! * `state`: [`AppState`], shared by every handler.
//! * `server`: the accept loop around the router: connection cap, timeouts, graceful drain.
//! * `console`: the web console (`/console`, assets embedded) and its sessions.
//! * `openapi`: `GET /openapi.json`, the OpenAPI 3.1 description of every route.

// `app_json::default_app` is one large `json!` literal.
#![recursion_limit = "256"]

pub mod app_json;
pub mod auth;
pub mod console;
pub mod context;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod routes;
pub mod server;
pub mod state;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};

use crate::error::{ApiError, Code};
pub use crate::state::{ApiLimits, AppState};

/// Every route of the API.
pub fn router(state: AppState) -> Router {
    use routes::*;
    Router::new()
        .route(
            "/app",
            get(app_settings::get_legacy).patch(app_settings::update),
        )
        .route(
            "/api/v2/app",
            get(app_settings::get_v2).patch(app_settings::update),
        )
        .route("/check_sqs", post(check::sqs))
        .route("/api/v2/check_sqs", post(check::sqs))
        .route("/check_sns", post(check::sns))
        .route("/api/v2/check_sns", post(check::sns))
        .route("/hook/events", get(hook_events::list))
        .route("/v1/events", post(events::ingest))
        .route("/v1/events/{event_id}", get(delivery_log::event))
        .route("/v1/inlets/stream", post(inlet::stream))
        .route("/v1/app", axum::routing::delete(app_lifecycle::delete))
        .route("/v1/app/secret", post(app_lifecycle::set_secret))
        .route("/v1/hooks", get(hooks::list))
        .route("/v1/hooks/{hook_id}", get(hooks::get))
        .route("/v1/hooks/{hook_id}/pause", post(hooks::pause))
        .route("/v1/hooks/{hook_id}/resume", post(hooks::resume))
        .route("/v1/hooks/{hook_id}/replay", post(hooks::replay_since))
        .route("/v1/hooks/{hook_id}/test", post(hooks::test))
        .route(
            "/v1/hooks/{hook_id}/signing_secret",
            get(hooks::signing_secret),
        )
        .route("/v1/hooks/{hook_id}/dead_letters", get(dead_letters::list))
        .route("/v1/hooks/{hook_id}/attempts", get(delivery_log::attempts))
        .route(
            "/v1/hooks/{hook_id}/dead_letters/replay",
            post(hooks::replay_dead_letters),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render))
        .route("/openapi.json", get(openapi::serve))
        .route("/console", get(console::page))
        .route("/console/{asset}", get(console::assets))
        .route(
            "/console/session",
            get(console::whoami)
                .post(console::sign_in)
                .delete(console::sign_out),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(context::middleware))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("Not Found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        Code::NotFound,
        "Method Not Allowed",
    )
}
