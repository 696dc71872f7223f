//! What delivery rounds can be told without asking SQLite.
//!
//! * `RecentEvents` (`crate::recent_events`): the newest committed events of each app.
//! * [`RoundViews`]: per hook, what its last full read from the database showed (no retry due
//!   before a time) and under which store generation; any write other than appends and delivery
//!   progress (a rewind, a replay, a hook or app change, garbage collection) starts a new
//!   generation, so the next round reads the database again.
//!
//! Together they let a round at light traffic skip the read connection, its file locks and the
//! hop to a blocking thread: the cost that dominated an event's CPU at 200 events/s.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hookrelay_core::{HookId, Timestamp};

use crate::{Cursor, Epoch};

/// What each hook's last full read showed, valid while the store's generation is unchanged.
#[derive(Default)]
pub struct RoundViews {
    generation: AtomicU64,
    views: Mutex<HashMap<HookId, RoundView>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RoundView {
    generation: u64,
    epoch: Epoch,
    /// No retry entry of the hook comes due before this (`None`: it has none).
    next_retry: Option<Timestamp>,
}

impl RoundViews {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<HookId, RoundView>> {
        self.views.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The generation to note before a full read (see [`RoundViews::saw`]).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// A write that may change cursors or retries behind the workers' backs: every view is
    /// stale. Called before such a write and again after it, so a read in between cannot
    /// leave a view of the state before it.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Records a full read of `hook` begun at `generation`: from `cursor`, with these due
    /// retries taken and the next one due at `next_retry`.
    pub fn saw(
        &self,
        hook: &HookId,
        generation: u64,
        cursor: Cursor,
        took_due: bool,
        next_retry: Option<Timestamp>,
        now: Timestamp,
    ) {
        // Retries taken may be left unsent (a probe, FIFO hold-back): still due.
        let next_retry = if took_due { Some(now) } else { next_retry };
        self.lock().insert(
            hook.clone(),
            RoundView {
                generation,
                epoch: cursor.epoch,
                next_retry,
            },
        );
    }

    /// Whether a round of `hook` from `cursor` at `now` has no retry due and nothing changed
    /// since its last full read; then the next retry's time.
    pub fn nothing_due(
        &self,
        hook: &HookId,
        cursor: Cursor,
        now: Timestamp,
    ) -> Option<Option<Timestamp>> {
        let view = *self.lock().get(hook)?;
        let current = view.generation == self.generation() && view.epoch == cursor.epoch;
        (current && view.next_retry.is_none_or(|at| at > now)).then_some(view.next_retry)
    }

    /// Delivery progress of `hook` was recorded, scheduling retries from `earliest_retry` on:
    /// the view's next retry is no later than that.
    pub fn recorded(&self, hook: &HookId, earliest_retry: Option<Timestamp>) {
        let Some(earliest) = earliest_retry else {
            return;
        };
        if let Some(view) = self.lock().get_mut(hook) {
            view.next_retry = Some(view.next_retry.map_or(earliest, |at| at.min(earliest)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Seq;

    #[test]
    fn a_view_holds_until_a_retry_comes_due_or_the_store_changes() {
        let hook = HookId::try_from("1-h".to_owned()).unwrap();
        let views = RoundViews::default();
        let at = Timestamp::from_millis;
        let cursor = Cursor {
            seq: Seq(5),
            epoch: Epoch(0),
        };
        assert_eq!(views.nothing_due(&hook, cursor, at(0)), None, "never read");
        let generation = views.generation();
        views.saw(&hook, generation, cursor, false, Some(at(5_000)), at(0));
        assert_eq!(
            views.nothing_due(&hook, cursor, at(1_000)),
            Some(Some(at(5_000)))
        );
        assert_eq!(views.nothing_due(&hook, cursor, at(5_000)), None, "due");
        let rewound = Cursor {
            seq: Seq(1),
            epoch: Epoch(1),
        };
        assert_eq!(
            views.nothing_due(&hook, rewound, at(1_000)),
            None,
            "another epoch"
        );
        views.recorded(&hook, None);
        assert_eq!(
            views.nothing_due(&hook, cursor, at(1_000)),
            Some(Some(at(5_000)))
        );
        views.recorded(&hook, Some(at(2_000)));
        assert_eq!(
            views.nothing_due(&hook, cursor, at(1_000)),
            Some(Some(at(2_000)))
        );
        assert_eq!(
            views.nothing_due(&hook, cursor, at(2_500)),
            None,
            "the scheduled retry is due"
        );
        views.invalidate();
        assert_eq!(
            views.nothing_due(&hook, cursor, at(1_000)),
            None,
            "a write behind its back"
        );
        views.saw(&hook, views.generation(), cursor, true, None, at(1_000));
        assert_eq!(
            views.nothing_due(&hook, cursor, at(1_001)),
            None,
            "taken retries may be left"
        );
    }
}
