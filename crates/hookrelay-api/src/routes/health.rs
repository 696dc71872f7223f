//! `GET /healthz` (the process answers) and `GET /readyz` (the store takes writes and the
//! dispatcher runs), for load balancers and orchestrators. No authentication.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::state::AppState;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let store = state.store.check_writable().await;
    let dispatcher = state.delivery.is_running();
    let ready = store.is_ok() && dispatcher;
    if let Err(e) = &store {
        tracing::warn!(error = %e, "readiness: the store does not take writes");
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if ready { "ok" } else { "unavailable" },
            "store": if store.is_ok() { "ok" } else { "error" },
            "dispatcher": if dispatcher { "running" } else { "stopped" },
        })),
    )
}
