//! `GET /metrics`: Prometheus text format (no authentication; `metrics.enabled = false` turns it
//! off). Counters and histograms are recorded where things happen (`hookrelay_delivery::stats`,
//! the store's commit, ingest); the lag gauges are refreshed from the store at each scrape.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

pub async fn render(State(state): State<AppState>) -> Response {
    let Some(handle) = &state.metrics else {
        return (StatusCode::NOT_FOUND, "metrics are disabled").into_response();
    };
    if let Ok(records) = state.store.all_hooks().await {
        for r in records {
            if let Ok(Some(backlog)) = state.store.backlog(r.app, &r.hook.id).await {
                metrics::gauge!(
                    "hookrelay_hook_lag_events",
                    "hook_id" => r.hook.id.to_string(),
                    "hook_type" => r.hook.target.hook_type().as_str(),
                )
                .set(backlog.events_behind as f64);
                metrics::gauge!("hookrelay_hook_retry_backlog", "hook_id" => r.hook.id.to_string())
                    .set(backlog.retries as f64);
            }
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}
