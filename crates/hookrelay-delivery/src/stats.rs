//! What each hook's worker has been doing, for the status API and the Prometheus metrics.
//!
//! Counters live in memory and count from the process start (Prometheus handles resets);
//! backlog figures (retry set, dead letters, lag) come from the store, which is durable.
//! Every metric name and label set is here, so call sites cannot invent new ones; labels are
//! bounded (hook id, hook type, app key), never event ids.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use hookrelay_core::{HookId, Timestamp};

use crate::aws::CallError;

/// A hook's last failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    pub at: Timestamp,
    pub code: String,
    pub message: String,
}

/// Live figures of one hook.
#[derive(Debug, Default)]
pub struct HookStats {
    pub delivered: AtomicU64,
    /// Failed attempts (each retry that fails counts again).
    pub failed: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Dead letters for being too large (never sent).
    pub dropped: AtomicU64,
    /// Events being sent right now.
    pub in_flight: AtomicU64,
    /// The destination failed every call of the last round and the hook is backing off.
    pub backing_off: AtomicBool,
    /// Milliseconds since the epoch; 0 = never.
    pub last_success_ms: AtomicI64,
    pub last_error: Mutex<Option<LastError>>,
}

impl HookStats {
    pub fn last_success(&self) -> Option<Timestamp> {
        match self.last_success_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Timestamp::from_millis(ms)),
        }
    }

    pub fn last_error(&self) -> Option<LastError> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Labels every per-hook metric carries.
#[derive(Debug, Clone)]
pub struct HookLabels {
    pub hook_id: String,
    pub hook_type: &'static str,
    pub app_key: String,
}

impl HookLabels {
    fn pairs(&self) -> [(&'static str, String); 3] {
        [
            ("hook_id", self.hook_id.clone()),
            ("hook_type", self.hook_type.to_owned()),
            ("app_key", self.app_key.clone()),
        ]
    }
}

/// The stats of one running hook, with its metric labels: what a worker records into.
#[derive(Debug, Clone)]
pub struct HookRecorder {
    pub stats: Arc<HookStats>,
    labels: HookLabels,
}

impl HookRecorder {
    pub fn sending(&self, n: usize) {
        self.stats.in_flight.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn sent(&self, n: usize) {
        self.stats.in_flight.fetch_sub(n as u64, Ordering::Relaxed);
    }

    /// One event acknowledged by the destination, `latency` after it was accepted.
    pub fn delivered(&self, latency_secs: f64) {
        self.stats.delivered.fetch_add(1, Ordering::Relaxed);
        self.stats
            .last_success_ms
            .store(Timestamp::now().millis(), Ordering::Relaxed);
        metrics::counter!("hookrelay_delivered_total", &self.labels.pairs()).increment(1);
        metrics::histogram!("hookrelay_delivery_latency_seconds", "hook_type" => self.labels.hook_type)
            .record(latency_secs);
    }

    fn set_last_error(&self, error: &CallError) {
        *self
            .stats
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(LastError {
            at: Timestamp::now(),
            code: error.code.clone(),
            message: error.message.clone(),
        });
    }

    /// One failed attempt; `will_retry` says whether it went to the retry set.
    pub fn failed(&self, error: &CallError, will_retry: bool) {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        self.set_last_error(error);
        metrics::counter!("hookrelay_failed_total", &self.labels.pairs()).increment(1);
        if will_retry {
            metrics::counter!("hookrelay_retried_total", &self.labels.pairs()).increment(1);
        }
    }

    /// A round in which every call failed (nothing recorded per event).
    pub fn destination_down(&self, error: &CallError) {
        self.stats.backing_off.store(true, Ordering::Relaxed);
        self.set_last_error(error);
        metrics::counter!("hookrelay_destination_down_total", &self.labels.pairs()).increment(1);
    }

    pub fn destination_up(&self) {
        self.stats.backing_off.store(false, Ordering::Relaxed);
    }

    pub fn dead_lettered(&self, reason: &'static str) {
        self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
        if reason == "too_large" {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("hookrelay_dropped_total", &self.labels.pairs()).increment(1);
        }
        let mut labels = self.labels.pairs().to_vec();
        labels.push(("reason", reason.to_owned()));
        metrics::counter!("hookrelay_dead_lettered_total", &labels).increment(1);
    }

    /// Events of the app after the hook's cursor.
    pub fn lag(&self, events: u64) {
        metrics::gauge!("hookrelay_hook_lag_events", &self.labels.pairs()).set(events as f64);
    }
}

/// Stats of every hook this process has run, by hook id (kept across worker restarts).
#[derive(Debug, Default)]
pub struct StatsRegistry {
    hooks: RwLock<HashMap<HookId, Arc<HookStats>>>,
}

impl StatsRegistry {
    pub fn get(&self, hook: &HookId) -> Option<Arc<HookStats>> {
        self.hooks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(hook)
            .cloned()
    }

    pub fn recorder(&self, hook: &HookId, labels: HookLabels) -> HookRecorder {
        let stats = self
            .hooks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(hook.clone())
            .or_default()
            .clone();
        HookRecorder { stats, labels }
    }

    pub fn forget(&self, hook: &HookId) {
        self.hooks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(hook);
    }
}

/// Ingest metrics, recorded by the API.
pub fn record_ingest(app_key: &str, events: usize, bytes: usize, seconds: f64) {
    metrics::counter!("hookrelay_ingested_events_total", "app_key" => app_key.to_owned())
        .increment(events as u64);
    metrics::counter!("hookrelay_ingested_bytes_total", "app_key" => app_key.to_owned())
        .increment(bytes as u64);
    metrics::histogram!("hookrelay_ingest_request_seconds").record(seconds);
}
