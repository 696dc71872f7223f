//! How fast one hook sends: its rate limit, the rate it lowers itself to when the destination
//! throttles (429, AWS throttling), and its circuit breaker. Pure state machines over a clock the
//! caller passes in, so they are tested without waiting.
//!
//! * **Rate limit** (`rate_limit` on the hook): a token bucket refilled at the limit. Each round
//!   takes at most a tenth of a second's events, so a limited hook sends small, even rounds
//!   rather than a burst per second; the bucket holds up to a second's worth, so a round delayed
//!   by a busy machine is made up for. Events
//!   over the limit wait in the log: nothing is dropped. On PostgreSQL one node owns a hook at a
//!   time, so a bucket in that node's memory limits the hook across the cluster.
//! * **Throttling** (AIMD): an answer that says "too many requests" halves the rate in force
//!   (the limit, or the rate the hook was sending at), and a `Retry-After` pauses the hook until
//!   then. Each second without throttling adds back a tenth of the rate the hook was cut from,
//!   until it is back at its limit (or unlimited again).
//! * **Circuit breaker**: after `threshold` calls in a row failed without an answer about any
//!   entry (no connection, timeouts, 5xx, 429), the circuit opens: the hook sends one probe call
//!   at a time, between back-offs, and closes at the first call the destination answers.

use std::time::{Duration, Instant};

/// The lowest rate throttling can push a hook to, in events per second.
const MIN_RATE: f64 = 1.0;
/// A round may send this share of a second's events at most, and the bucket starts with it.
const ROUND_SECONDS: f64 = 0.1;
/// The bucket holds at most a second's events: a round delayed by a busy machine catches up
/// within the second, so the limit is kept on average without being exceeded over any second
/// of steady sending.
const BUCKET_SECONDS: f64 = 1.0;
/// Each second without throttling gives back this share of the rate the hook was cut from.
const RECOVERY_PER_SECOND: f64 = 0.1;

/// What the rate limiter allows now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Budget {
    Unlimited,
    /// Send at most this many entries now.
    Entries(usize),
    /// Send nothing before this much time has passed.
    Wait(Duration),
}

#[derive(Debug)]
pub(crate) struct RateLimiter {
    /// The hook's `rate_limit`, events per second.
    limit: Option<f64>,
    /// The lower rate throttling set, and the rate it recovers towards.
    throttled: Option<Throttled>,
    tokens: f64,
    refilled_at: Instant,
    /// The last round found nothing to send: the time since is not made up for.
    drained: bool,
    /// No sending before this (a `Retry-After`).
    paused_until: Option<Instant>,
    /// Entries sent in the current one-second window, to know the rate an unlimited hook was
    /// sending at when it is first throttled.
    window: (Instant, usize),
    last_window_rate: f64,
}

#[derive(Debug, Clone, Copy)]
struct Throttled {
    rate: f64,
    /// The rate before throttling: recovering past it ends the throttled state.
    ceiling: f64,
    adjusted_at: Instant,
}

impl RateLimiter {
    pub fn new(limit: Option<u32>, now: Instant) -> Self {
        let limit = limit.filter(|l| *l > 0).map(f64::from);
        Self {
            limit,
            throttled: None,
            tokens: limit.map_or(0.0, round_size),
            refilled_at: now,
            drained: false,
            paused_until: None,
            window: (now, 0),
            last_window_rate: 0.0,
        }
    }

    /// The rate in force, events per second; `None` = unlimited.
    pub fn rate(&self) -> Option<f64> {
        match (self.limit, self.throttled) {
            (Some(l), Some(t)) => Some(l.min(t.rate)),
            (l, t) => l.or(t.map(|t| t.rate)),
        }
    }

    pub fn budget(&mut self, now: Instant) -> Budget {
        if let Some(until) = self.paused_until {
            if now < until {
                return Budget::Wait(until - now);
            }
            self.paused_until = None;
        }
        let Some(rate) = self.rate() else {
            return Budget::Unlimited;
        };
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(bucket_size(rate));
        if std::mem::take(&mut self.drained) {
            self.tokens = self.tokens.min(round_size(rate));
        }
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            Budget::Entries(self.tokens.min(round_size(rate).max(1.0)) as usize)
        } else {
            Budget::Wait(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }

    /// A round found nothing to send: only a delay while events waited is made up for, so a hook
    /// that was idle starts again at its steady pace, not with a burst.
    pub fn drained(&mut self) {
        self.drained = true;
    }

    /// `n` entries were sent.
    pub fn spend(&mut self, n: usize, now: Instant) {
        if self.rate().is_some() {
            self.tokens -= n as f64;
        }
        let (start, count) = self.window;
        let age = now.saturating_duration_since(start).as_secs_f64();
        if age >= 1.0 {
            self.last_window_rate = count as f64 / age;
            self.window = (now, n);
        } else {
            self.window.1 += n;
        }
    }

    /// The destination throttled the hook: halve the rate, and honour its `Retry-After`.
    pub fn throttle(&mut self, now: Instant, retry_after: Option<Duration>) {
        let (sending, ceiling) = match (self.rate(), self.throttled) {
            (Some(rate), Some(t)) => (rate, t.ceiling),
            (Some(rate), None) => (rate, rate),
            (None, _) => {
                let (start, count) = self.window;
                // A window younger than a second counts as a second: a burst of a few
                // milliseconds is not a rate.
                let age = now.saturating_duration_since(start).as_secs_f64().max(1.0);
                let recent = self.last_window_rate.max(count as f64 / age);
                (recent, recent)
            }
        };
        let rate = (sending / 2.0).max(MIN_RATE);
        self.throttled = Some(Throttled {
            rate,
            ceiling: ceiling.max(MIN_RATE),
            adjusted_at: now,
        });
        self.tokens = self.tokens.min(round_size(rate));
        if let Some(wait) = retry_after.filter(|d| !d.is_zero()) {
            self.paused_until = Some(now + wait);
        }
    }

    /// A round the destination took without throttling: recover part of the rate.
    pub fn recover(&mut self, now: Instant) {
        let Some(mut t) = self.throttled else {
            return;
        };
        let elapsed = now.saturating_duration_since(t.adjusted_at).as_secs_f64();
        t.rate += t.ceiling * RECOVERY_PER_SECOND * elapsed;
        t.adjusted_at = now;
        let limit = self.limit.unwrap_or(f64::INFINITY);
        self.throttled = (t.rate < t.ceiling.min(limit)).then_some(t);
    }
}

/// The most one round sends at `rate`: a tenth of a second's events, at least one.
fn round_size(rate: f64) -> f64 {
    (rate * ROUND_SECONDS).max(1.0)
}

fn bucket_size(rate: f64) -> f64 {
    (rate * BUCKET_SECONDS).max(1.0)
}

#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    failed_calls: u32,
}

impl Breaker {
    pub fn new(threshold: u32) -> Self {
        Self {
            threshold: threshold.max(1),
            failed_calls: 0,
        }
    }

    /// A round's calls: how many were made, and how many got an answer about an entry.
    pub fn record(&mut self, calls: usize, answered: usize) {
        if answered > 0 {
            self.failed_calls = 0;
        } else {
            self.failed_calls = self.failed_calls.saturating_add(calls as u32);
        }
    }

    pub fn is_open(&self) -> bool {
        self.failed_calls >= self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn an_unlimited_hook_is_never_held() {
        let now = Instant::now();
        let mut r = RateLimiter::new(None, now);
        assert_eq!(r.budget(now), Budget::Unlimited);
        r.spend(1000, now);
        assert_eq!(r.budget(now + ms(1)), Budget::Unlimited);
        assert_eq!(
            RateLimiter::new(Some(0), now).budget(now),
            Budget::Unlimited
        );
    }

    #[test]
    fn a_limited_hook_sends_its_rate_in_small_even_rounds() {
        let start = Instant::now();
        let mut r = RateLimiter::new(Some(100), start);
        // Drain as fast as allowed for 10 simulated seconds, looking every millisecond.
        let mut sent = 0;
        let mut now = start;
        while now < start + Duration::from_secs(10) {
            match r.budget(now) {
                Budget::Entries(n) => {
                    assert!(n <= 10, "never more than a tenth of a second's worth");
                    r.spend(n, now);
                    sent += n;
                }
                Budget::Wait(d) => assert!(d <= ms(10)),
                Budget::Unlimited => unreachable!(),
            }
            now += ms(1);
        }
        assert!((1000..=1010).contains(&sent), "{sent}");
    }

    #[test]
    fn a_round_delayed_by_a_busy_machine_is_made_up_for_within_the_second() {
        let start = Instant::now();
        let mut r = RateLimiter::new(Some(100), start);
        assert_eq!(r.budget(start), Budget::Entries(10), "no burst at start");
        r.spend(10, start);
        // Stalled for 400 ms: the next rounds catch up, 10 at a time.
        let later = start + ms(400);
        let mut sent = 0;
        while let Budget::Entries(n) = r.budget(later) {
            assert_eq!(n, 10);
            r.spend(n, later);
            sent += n;
        }
        assert_eq!(sent, 40);
        // A second of stall is the most that is made up for.
        let stalled = later + Duration::from_secs(5);
        let mut caught_up = 0;
        while let Budget::Entries(n) = r.budget(stalled) {
            r.spend(n, stalled);
            caught_up += n;
        }
        assert_eq!(caught_up, 100);
        // Time with nothing to send is not: after idling, one round's worth, then the pace.
        r.drained();
        let idle = stalled + Duration::from_secs(5);
        assert_eq!(r.budget(idle), Budget::Entries(10));
        r.spend(10, idle);
        assert!(matches!(r.budget(idle), Budget::Wait(_)));
    }

    #[test]
    fn throttling_halves_the_rate_honours_retry_after_and_recovers() {
        let start = Instant::now();
        let mut r = RateLimiter::new(Some(100), start);
        r.throttle(start, Some(Duration::from_secs(2)));
        assert_eq!(r.rate(), Some(50.0));
        assert_eq!(r.budget(start + ms(500)), Budget::Wait(ms(1500)));
        r.throttle(start, None);
        assert_eq!(r.rate(), Some(25.0), "a second 429 halves again");
        r.recover(start + Duration::from_secs(5));
        assert_eq!(r.rate(), Some(75.0), "a tenth of 100 per second");
        r.recover(start + Duration::from_secs(10));
        assert_eq!(r.rate(), Some(100.0), "back at the limit, never above");
        assert!(r.throttled.is_none());
    }

    #[test]
    fn an_unlimited_hook_throttled_is_cut_from_the_rate_it_was_sending_at() {
        let start = Instant::now();
        let mut r = RateLimiter::new(None, start);
        r.spend(400, start);
        r.spend(400, start + ms(1000));
        r.throttle(start + ms(1100), None);
        assert_eq!(r.rate(), Some(200.0), "it sent 400 a second: halved");
        r.recover(start + Duration::from_secs(30));
        assert_eq!(r.rate(), None, "unlimited again once recovered");
        assert_eq!(r.budget(start + Duration::from_secs(30)), Budget::Unlimited);
    }

    #[test]
    fn the_breaker_opens_after_a_run_of_failed_calls_and_closes_on_an_answer() {
        let mut b = Breaker::new(5);
        b.record(3, 0);
        assert!(!b.is_open());
        b.record(1, 1);
        b.record(4, 0);
        assert!(!b.is_open(), "an answered call ends the run");
        b.record(1, 0);
        assert!(b.is_open());
        b.record(1, 0);
        assert!(b.is_open());
        b.record(1, 1);
        assert!(!b.is_open());
    }
}
