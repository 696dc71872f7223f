//! Every Prometheus series hookrelay emits through the `metrics` facade, by name, in one place:
//! the crates call these functions rather than naming series themselves, so each series has one
//! name and one label set. Labels are bounded (app id, hook type): never an API key or an event
//! id. The per-hook series (delivered, failed, lag, …) are rendered at each scrape from the
//! delivery crate's registry (`hookrelay_delivery::stats`), so a deleted hook's series go with it.

pub use metrics::Histogram;

/// Events and bytes accepted by ingest (the API, the Stream inlet), and the request's duration.
pub fn record_ingest(app_id: impl Into<i64>, events: usize, bytes: usize, seconds: f64) {
    let app_id = app_id.into();
    metrics::counter!("hookrelay_ingested_events_total", "app_id" => app_id.to_string())
        .increment(events as u64);
    metrics::counter!("hookrelay_ingested_bytes_total", "app_id" => app_id.to_string())
        .increment(bytes as u64);
    metrics::histogram!("hookrelay_ingest_request_seconds").record(seconds);
}

/// One group commit of the store: how long it took and how many events it held.
pub fn record_store_commit(seconds: f64, events: usize) {
    metrics::histogram!("hookrelay_store_commit_seconds").record(seconds);
    metrics::histogram!("hookrelay_store_commit_events").record(events as f64);
}

/// A connection refused because the server was at its connection limit.
pub fn record_connection_refused() {
    metrics::counter!("hookrelay_http_connections_refused_total").increment(1);
}

/// Where events acknowledged by a destination of `hook_type` record how long after they were
/// accepted that was. A worker keeps the handle: looking it up costs a hash of its name and label
/// on every event.
pub fn delivery_latency(hook_type: &'static str) -> metrics::Histogram {
    metrics::histogram!("hookrelay_delivery_latency_seconds", "hook_type" => hook_type)
}

/// How many hooks this node holds a lease on (several nodes on PostgreSQL): across the nodes
/// they add up to the number of hooks.
pub fn record_leases_held(hooks: usize) {
    metrics::gauge!("hookrelay_hook_leases_held").set(hooks as f64);
}

/// A lease round (renewal) that did not reach the database; a node whose rounds keep failing
/// stops sending once its leases run out.
pub fn record_lease_round_failed() {
    metrics::counter!("hookrelay_lease_rounds_failed_total").increment(1);
}
