//! When to try again: exponential backoff with full jitter, capped, within a retry window.
//! Pure: the caller passes `now` and the random source is the only other input.

use std::time::Duration;

use hookrelay_core::Timestamp;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Upper bound of the first delay.
    pub base: Duration,
    /// No delay is longer than this.
    pub cap: Duration,
    /// After this long since the first failure, an entry becomes a dead letter.
    pub window: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(600),
            window: Duration::from_secs(24 * 3600),
        }
    }
}

/// What to do with an entry that failed (again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    RetryAt(Timestamp),
    GiveUp,
}

impl RetryPolicy {
    /// The backoff ceiling after `failures` consecutive failures (1 = the first).
    pub fn ceiling(&self, failures: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failures.saturating_sub(1).min(31))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// A delay drawn uniformly from `[0, ceiling]` ("full jitter": retries of many entries and
    /// hooks spread out instead of arriving together).
    pub fn delay(&self, failures: u32) -> Duration {
        let ceiling = self.ceiling(failures).as_millis() as u64;
        Duration::from_millis(rand::random_range(0..=ceiling))
    }

    /// Decides the next attempt of an entry that first failed at `first_failed` and has now failed
    /// `failures` times.
    pub fn next(&self, first_failed: Timestamp, failures: u32, now: Timestamp) -> Next {
        let window_ms = self.window.as_millis() as i64;
        if now.millis() - first_failed.millis() >= window_ms {
            return Next::GiveUp;
        }
        Next::RetryAt(now.saturating_add_millis(self.delay(failures).as_millis() as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        let secs: Vec<u64> = [1, 2, 3, 10, 11, 50]
            .iter()
            .map(|n| p.ceiling(*n).as_secs())
            .collect();
        assert_eq!(secs, vec![1, 2, 4, 512, 600, 600]);
    }

    #[test]
    fn delays_stay_within_the_ceiling() {
        let p = RetryPolicy::default();
        for n in 1..20 {
            assert!(p.delay(n) <= p.ceiling(n));
        }
    }

    #[test]
    fn gives_up_after_the_window() {
        let p = RetryPolicy {
            window: Duration::from_secs(60),
            ..RetryPolicy::default()
        };
        let t0 = Timestamp::from_millis(1_000_000);
        assert!(matches!(
            p.next(t0, 3, t0.saturating_add_millis(59_999)),
            Next::RetryAt(_)
        ));
        assert_eq!(
            p.next(t0, 3, t0.saturating_add_millis(60_000)),
            Next::GiveUp
        );
    }
}
