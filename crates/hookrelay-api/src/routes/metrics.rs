//! `GET /metrics`: Prometheus text format (`metrics.enabled = false` turns it off; with
//! `metrics.bearer_token` set, only requests carrying `Authorization: Bearer <token>` get it).
//! Histograms and ingest counters come from the `metrics` recorder; per-hook series are rendered
//! from the hooks that exist now (`hookrelay_delivery::stats`), so a deleted hook's series are
//! gone from the next scrape, and their backlog gauges are counted up to a bound, so a scrape
//! costs the same whatever the backlog.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hookrelay_delivery::stats::{HookSeries, render_hook_metrics};
use subtle::ConstantTimeEq;

use crate::error::{ApiError, Code};
use crate::state::AppState;

/// Backlog gauges count up to this many events or entries per hook.
const GAUGE_COUNT_UP_TO: u64 = 10_000;

pub async fn render(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(handle) = &state.metrics else {
        return (StatusCode::NOT_FOUND, "metrics are disabled").into_response();
    };
    if let Some(token) = &state.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(token.expose().as_bytes())) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                Code::AuthenticationError,
                "metrics need Authorization: Bearer <metrics.bearer_token>",
            )
            .into_response();
        }
    }
    let mut out = handle.render();
    if let Ok(records) = state.store.all_hooks().await {
        let wire_ids: Vec<_> = records.iter().map(|r| r.hook.id.wire(r.app)).collect();
        let mut series = Vec::with_capacity(records.len());
        for (r, wire) in records.iter().zip(&wire_ids) {
            let backlog = state
                .store
                .backlog(r.app, &r.hook.id, GAUGE_COUNT_UP_TO)
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
            series.push(HookSeries {
                hook_id: wire.as_str(),
                hook_type: r.hook.target.hook_type().as_str(),
                app_id: r.app.into(),
                stats: state.delivery.stats(&r.hook.id),
                lag_events: backlog.events_behind,
                retry_backlog: backlog.retries,
            });
        }
        render_hook_metrics(&series, &mut out);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
