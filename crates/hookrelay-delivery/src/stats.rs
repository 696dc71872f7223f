//! What each hook's worker has been doing, for the status API and the Prometheus metrics.
//!
//! Counters live in memory and count from the process start (Prometheus handles resets);
//! backlog figures (retry set, dead letters, lag) come from the store, which is durable.
//! Per-hook series are rendered from this registry at each scrape ([`render_hook_metrics`]), so
//! a deleted hook's series go with it; the other series (histograms, ingest) go through the
//! `metrics` recorder, named in `hookrelay_core::telemetry`. Labels are bounded (hook id, hook
//! type, app id: never an API key, never an event id).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use hookrelay_core::{HookId, Timestamp};
use hookrelay_store::DeadLetterReason;

use crate::outcome::CallError;

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
    /// Failed attempts that went to the retry set.
    pub retried: AtomicU64,
    /// Rounds in which the destination took nothing.
    pub destination_down: AtomicU64,
    /// Dead letters by reason, in [`DeadLetterReason::ALL`] order.
    pub dead_lettered_by_reason: [AtomicU64; DeadLetterReason::ALL.len()],
    /// The hook's circuit breaker is open: it sends one probe at a time.
    pub circuit_open: AtomicBool,
    /// The rate in force (limit, or lower while throttled), in thousandths of an event per
    /// second; 0 = unlimited.
    pub rate_milli: AtomicU64,
    /// Deliveries and failed attempts per minute over the last hour (the console's chart).
    pub per_minute: PerMinute,
    /// Milliseconds since the epoch; 0 = never.
    pub last_success_ms: AtomicI64,
    pub last_error: Mutex<Option<LastError>>,
}

impl HookStats {
    /// The rate in force, events per second; `None` = unlimited.
    pub fn rate(&self) -> Option<f64> {
        match self.rate_milli.load(Ordering::Relaxed) {
            0 => None,
            milli => Some(milli as f64 / 1000.0),
        }
    }

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

/// Counts per minute over the last hour, in a ring of 60 slots.
#[derive(Debug)]
pub struct PerMinute {
    /// (minute since the epoch, delivered, failed) by `minute % 60`.
    slots: Mutex<[(i64, u64, u64); 60]>,
}

impl Default for PerMinute {
    fn default() -> Self {
        Self {
            slots: Mutex::new([(-1, 0, 0); 60]),
        }
    }
}

/// One minute of a hook's activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinuteCounts {
    /// The minute's start.
    pub at: Timestamp,
    pub delivered: u64,
    pub failed: u64,
}

impl PerMinute {
    fn add(&self, now: Timestamp, delivered: u64, failed: u64) {
        let minute = now.millis().div_euclid(60_000);
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut slots[minute.rem_euclid(60) as usize];
        if slot.0 != minute {
            *slot = (minute, 0, 0);
        }
        slot.1 += delivered;
        slot.2 += failed;
    }

    /// The 60 minutes up to `now`, oldest first (minutes without activity count 0).
    pub fn last_hour(&self, now: Timestamp) -> Vec<MinuteCounts> {
        let current = now.millis().div_euclid(60_000);
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        (current - 59..=current)
            .map(|minute| {
                let slot = slots[minute.rem_euclid(60) as usize];
                let (delivered, failed) = if slot.0 == minute {
                    (slot.1, slot.2)
                } else {
                    (0, 0)
                };
                MinuteCounts {
                    at: Timestamp::from_millis(minute * 60_000),
                    delivered,
                    failed,
                }
            })
            .collect()
    }
}

/// What a worker records into: its hook's stats, and the latency histogram of its hook type.
#[derive(Clone)]
pub struct HookRecorder {
    pub stats: Arc<HookStats>,
    latency: hookrelay_core::telemetry::Histogram,
}

impl HookRecorder {
    pub fn sending(&self, n: usize) {
        self.stats.in_flight.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn sent(&self, n: usize) {
        self.stats.in_flight.fetch_sub(n as u64, Ordering::Relaxed);
    }

    /// Events acknowledged by the destination, each this long after it was accepted: a round's
    /// deliveries, counted at once (one clock read and one lock for the round, not per event).
    pub fn delivered(&self, latencies_secs: &[f64]) {
        if latencies_secs.is_empty() {
            return;
        }
        let now = Timestamp::now();
        let n = latencies_secs.len() as u64;
        self.stats.delivered.fetch_add(n, Ordering::Relaxed);
        self.stats.per_minute.add(now, n, 0);
        self.stats
            .last_success_ms
            .store(now.millis(), Ordering::Relaxed);
        for &latency in latencies_secs {
            self.latency.record(latency);
        }
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
        self.stats.per_minute.add(Timestamp::now(), 0, 1);
        self.set_last_error(error);
        if will_retry {
            self.stats.retried.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A round in which every call failed (nothing recorded per event).
    pub fn destination_down(&self, error: &CallError) {
        self.stats.backing_off.store(true, Ordering::Relaxed);
        self.set_last_error(error);
        self.stats.destination_down.fetch_add(1, Ordering::Relaxed);
    }

    /// The hook's pace: the rate in force and whether its circuit is open.
    pub fn pace(&self, rate: Option<f64>, circuit_open: bool) {
        let milli = rate.map_or(0, |r| ((r * 1000.0) as u64).max(1));
        self.stats.rate_milli.store(milli, Ordering::Relaxed);
        self.stats
            .circuit_open
            .store(circuit_open, Ordering::Relaxed);
    }

    pub fn destination_up(&self) {
        self.stats.backing_off.store(false, Ordering::Relaxed);
    }

    pub fn dead_lettered(&self, reason: DeadLetterReason) {
        self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
        if reason == DeadLetterReason::TooLarge {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(i) = DeadLetterReason::ALL.iter().position(|r| *r == reason) {
            self.stats.dead_lettered_by_reason[i].fetch_add(1, Ordering::Relaxed);
        }
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

    pub fn recorder(&self, hook: &HookId, hook_type: &'static str) -> HookRecorder {
        let stats = self
            .hooks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(hook.clone())
            .or_default()
            .clone();
        HookRecorder {
            stats,
            latency: hookrelay_core::telemetry::delivery_latency(hook_type),
        }
    }

    pub fn forget(&self, hook: &HookId) {
        self.hooks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(hook);
    }
}

/// One hook as a scrape shows it: its labels, its counters (if this process ran it) and its
/// backlog from the store.
pub struct HookSeries<'a> {
    pub hook_id: &'a str,
    pub hook_type: &'static str,
    pub app_id: i64,
    pub stats: Option<Arc<HookStats>>,
    /// Events behind and retry entries, each counted up to a bound.
    pub lag_events: u64,
    pub retry_backlog: u64,
}

/// One per-hook series: its value(s) for a hook, with an optional `reason` label each.
type SeriesValue = fn(&HookSeries<'_>) -> Vec<(Option<&'static str>, u64)>;

/// A counter of the hook's live stats (0 for a hook this process has not run).
fn counter(f: fn(&HookStats) -> &AtomicU64) -> impl Fn(&HookSeries<'_>) -> u64 {
    move |h| {
        h.stats
            .as_deref()
            .map_or(0, |s| f(s).load(Ordering::Relaxed))
    }
}

/// Every per-hook series: name, type, help, value.
const HOOK_FAMILIES: [(&str, &str, &str, SeriesValue); 10] = [
    (
        "hookrelay_delivered_total",
        "counter",
        "Events the destination acknowledged.",
        |h| vec![(None, counter(|s| &s.delivered)(h))],
    ),
    (
        "hookrelay_failed_total",
        "counter",
        "Failed delivery attempts.",
        |h| vec![(None, counter(|s| &s.failed)(h))],
    ),
    (
        "hookrelay_retried_total",
        "counter",
        "Failed attempts scheduled for a retry.",
        |h| vec![(None, counter(|s| &s.retried)(h))],
    ),
    (
        "hookrelay_dropped_total",
        "counter",
        "Events dead-lettered as too large.",
        |h| vec![(None, counter(|s| &s.dropped)(h))],
    ),
    (
        "hookrelay_destination_down_total",
        "counter",
        "Rounds in which the destination took nothing.",
        |h| vec![(None, counter(|s| &s.destination_down)(h))],
    ),
    (
        "hookrelay_dead_lettered_total",
        "counter",
        "Dead letters, by reason.",
        |h| {
            DeadLetterReason::ALL
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let n = h
                        .stats
                        .as_deref()
                        .map_or(0, |s| s.dead_lettered_by_reason[i].load(Ordering::Relaxed));
                    (Some(r.as_str()), n)
                })
                .collect()
        },
    ),
    (
        "hookrelay_hook_lag_events",
        "gauge",
        "Events of the app after the hook's cursor (counted up to 10,000).",
        |h| vec![(None, h.lag_events)],
    ),
    (
        "hookrelay_hook_circuit_open",
        "gauge",
        "1 while the hook's circuit breaker is open (one probe at a time).",
        |h| {
            let open = h
                .stats
                .as_deref()
                .is_some_and(|s| s.circuit_open.load(Ordering::Relaxed));
            vec![(None, u64::from(open))]
        },
    ),
    (
        "hookrelay_hook_rate_limit_events_per_second",
        "gauge",
        "The rate in force for the hook (its rate_limit, lower while throttled); 0 = unlimited.",
        |h| {
            vec![(
                None,
                h.stats
                    .as_deref()
                    .and_then(HookStats::rate)
                    .map_or(0, |r| r.round() as u64),
            )]
        },
    ),
    (
        "hookrelay_hook_retry_backlog",
        "gauge",
        "Entries in the hook's retry set (counted up to 10,000).",
        |h| vec![(None, h.retry_backlog)],
    ),
];

/// Renders the per-hook series in Prometheus' text format, one family at a time.
pub fn render_hook_metrics(hooks: &[HookSeries<'_>], out: &mut String) {
    use std::fmt::Write as _;
    for (name, kind, help, value) in HOOK_FAMILIES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for hook in hooks {
            for (reason, n) in value(hook) {
                let _ = write!(
                    out,
                    "{name}{{hook_id=\"{}\",hook_type=\"{}\",app_id=\"{}\"",
                    escape_label(hook.hook_id),
                    hook.hook_type,
                    hook.app_id
                );
                if let Some(reason) = reason {
                    let _ = write!(out, ",reason=\"{reason}\"");
                }
                let _ = writeln!(out, "}} {n}");
            }
        }
    }
}

/// A label value as Prometheus' text format needs it.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_minute_counts_cover_the_last_hour_and_forget_older_minutes() {
        let series = PerMinute::default();
        let t = |minute: i64| Timestamp::from_millis(minute * 60_000 + 5_000);
        series.add(t(1000), 3, 1);
        series.add(t(1000), 2, 0);
        series.add(t(1059), 1, 0);
        let hour = series.last_hour(t(1059));
        assert_eq!(hour.len(), 60);
        assert_eq!((hour[0].delivered, hour[0].failed), (5, 1));
        assert_eq!(hour[0].at, Timestamp::from_millis(1000 * 60_000));
        assert_eq!(hour[59].delivered, 1);
        // An hour later, minute 1000's slot is reused by minute 1060, and 1000 is gone.
        series.add(t(1060), 7, 0);
        let next = series.last_hour(t(1060));
        assert_eq!(next[59].delivered, 7);
        assert!(
            next.iter()
                .all(|m| m.at != Timestamp::from_millis(1000 * 60_000))
        );
        assert_eq!(next.iter().map(|m| m.delivered).sum::<u64>(), 8);
    }
}

/// What a hook is doing, as the status API and the console show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookState {
    Healthy,
    /// Entries wait in the retry set.
    Retrying,
    /// The destination failed every call of the last round.
    BackingOff,
    /// The circuit breaker is open: one probe at a time.
    Open,
    Paused,
    Disabled,
}

impl HookState {
    /// Decided once, in this order: what the operator set, then what delivery is doing.
    pub fn of(enabled: bool, paused: bool, stats: Option<&HookStats>, retries: u64) -> Self {
        let flag =
            |f: fn(&HookStats) -> &AtomicBool| stats.is_some_and(|s| f(s).load(Ordering::Relaxed));
        if !enabled {
            Self::Disabled
        } else if paused {
            Self::Paused
        } else if flag(|s| &s.circuit_open) {
            Self::Open
        } else if flag(|s| &s.backing_off) {
            Self::BackingOff
        } else if retries > 0 {
            Self::Retrying
        } else {
            Self::Healthy
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Retrying => "retrying",
            Self::BackingOff => "backing_off",
            Self::Open => "open",
            Self::Paused => "paused",
            Self::Disabled => "disabled",
        }
    }
}

/// A hook's live figures at one moment, for the status API: counters since this process
/// started, and the pace in force.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HookSnapshot {
    pub in_flight: u64,
    pub delivered: u64,
    pub failed: u64,
    pub dead_lettered: u64,
    pub dropped: u64,
    pub last_success: Option<Timestamp>,
    pub last_error: Option<LastError>,
    pub current_rate: Option<f64>,
    pub per_minute: Vec<MinuteCounts>,
}

impl HookSnapshot {
    pub fn of(stats: &HookStats, now: Timestamp) -> Self {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Self {
            in_flight: load(&stats.in_flight),
            delivered: load(&stats.delivered),
            failed: load(&stats.failed),
            dead_lettered: load(&stats.dead_lettered),
            dropped: load(&stats.dropped),
            last_success: stats.last_success(),
            last_error: stats.last_error(),
            current_rate: stats.rate(),
            per_minute: stats.per_minute.last_hour(now),
        }
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;

    #[test]
    fn the_state_puts_what_the_operator_set_first() {
        let stats = HookStats::default();
        assert_eq!(HookState::of(true, false, None, 0), HookState::Healthy);
        assert_eq!(
            HookState::of(true, false, Some(&stats), 3),
            HookState::Retrying
        );
        stats.backing_off.store(true, Ordering::Relaxed);
        assert_eq!(
            HookState::of(true, false, Some(&stats), 3),
            HookState::BackingOff
        );
        stats.circuit_open.store(true, Ordering::Relaxed);
        assert_eq!(HookState::of(true, false, Some(&stats), 3), HookState::Open);
        assert_eq!(
            HookState::of(true, true, Some(&stats), 3),
            HookState::Paused
        );
        assert_eq!(
            HookState::of(false, true, Some(&stats), 3),
            HookState::Disabled
        );
    }
}
