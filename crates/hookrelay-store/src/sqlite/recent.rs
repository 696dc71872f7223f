//! What delivery rounds can be told without asking SQLite.
//!
//! * [`RecentEvents`]: the newest committed events of each app, in memory (a budget of bytes,
//!   oldest dropped first), so a worker close behind the head reads them here instead of from
//!   the database, and the hooks of an app share one copy of each payload.
//! * [`RoundViews`]: per hook, what its last full read from the database showed (no retry due
//!   before a time) and under which store generation; any write other than appends and delivery
//!   progress (a rewind, a replay, a hook or app change, garbage collection) starts a new
//!   generation, so the next round reads the database again.
//!
//! Together they let a round at light traffic skip the read connection, its file locks and the
//! hop to a blocking thread: the cost that dominated an event's CPU at 200 events/s.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hookrelay_core::{HookId, Timestamp};

use crate::{AppId, Cursor, Epoch, Seq, StoredEvent};

/// Bytes of events kept in memory across all apps.
pub const RECENT_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// What an event held here costs in memory: its payload and strings, and the fixed part.
fn held_bytes(event: &StoredEvent) -> usize {
    const FIXED: usize = std::mem::size_of::<StoredEvent>() + 16;
    FIXED
        + event.payload.len()
        + event.id.len()
        + event.event_type.len()
        + event.cid.as_ref().map_or(0, String::len)
}

/// The newest events of each app, as committed.
pub struct RecentEvents {
    inner: Mutex<Tails>,
    budget: usize,
}

struct Tails {
    apps: HashMap<AppId, Tail>,
    /// Every event held, oldest first, to drop the oldest across apps (an entry whose event
    /// was forgotten is skipped).
    order: VecDeque<(AppId, Seq)>,
    bytes: usize,
    /// The newest sequence number when the store opened: an app with no tail yet has had no
    /// event since.
    opened_at: Seq,
}

struct Tail {
    /// Every event of the app after this sequence number is in `events`.
    complete_after: Seq,
    events: VecDeque<StoredEvent>,
}

impl RecentEvents {
    pub fn new(opened_at: Seq, budget: usize) -> Self {
        Self {
            inner: Mutex::new(Tails {
                apps: HashMap::new(),
                order: VecDeque::new(),
                bytes: 0,
                opened_at,
            }),
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tails> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds events just committed, in sequence order. Called by the writer thread only, after
    /// the commit and before anyone is told of the new head.
    pub fn push(&self, app: AppId, committed: impl IntoIterator<Item = StoredEvent>) {
        let mut tails = self.lock();
        let opened_at = tails.opened_at;
        for event in committed {
            tails.order.push_back((app, event.seq));
            tails.bytes += held_bytes(&event);
            tails
                .apps
                .entry(app)
                .or_insert_with(|| Tail {
                    complete_after: opened_at,
                    events: VecDeque::new(),
                })
                .events
                .push_back(event);
        }
        while tails.bytes > self.budget {
            let Some((oldest_app, seq)) = tails.order.pop_front() else {
                break;
            };
            let Some(tail) = tails.apps.get_mut(&oldest_app) else {
                continue;
            };
            if tail.events.front().is_some_and(|e| e.seq == seq) {
                let dropped = tail.events.pop_front().expect("checked");
                tail.complete_after = dropped.seq;
                tails.bytes -= held_bytes(&dropped);
            }
        }
    }

    /// Up to `limit` events of `app` after `after`, oldest first, when memory holds all of
    /// them; `None` when some may be only in the database.
    pub fn read_after(&self, app: AppId, after: Seq, limit: usize) -> Option<Vec<StoredEvent>> {
        let tails = self.lock();
        let Some(tail) = tails.apps.get(&app) else {
            return (after >= tails.opened_at).then(Vec::new);
        };
        if after < tail.complete_after {
            return None;
        }
        let first = tail.events.partition_point(|e| e.seq <= after);
        Some(tail.events.range(first..).take(limit).cloned().collect())
    }

    /// Drops every event held: garbage collection deleted events, which must not be read here.
    pub fn forget_all(&self) {
        let mut tails = self.lock();
        for tail in tails.apps.values_mut() {
            tail.forget();
        }
        tails.order.clear();
        tails.bytes = 0;
    }

    /// Drops the events of an app that was deleted with its events.
    pub fn forget_app(&self, app: AppId) {
        let mut tails = self.lock();
        if let Some(tail) = tails.apps.get_mut(&app) {
            let freed = tail.forget();
            tails.bytes -= freed;
        }
    }
}

impl Tail {
    /// Empties the tail (reads before its newest event go to the database); the bytes freed.
    fn forget(&mut self) -> usize {
        if let Some(last) = self.events.back() {
            self.complete_after = last.seq;
        }
        let freed = self.events.iter().map(held_bytes).sum();
        self.events.clear();
        freed
    }
}

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

    /// An event that takes `bytes` of the budget (ids of one digit).
    fn event(seq: i64, bytes: usize) -> StoredEvent {
        let mut event = StoredEvent {
            seq: Seq(seq),
            id: format!("e{seq}"),
            event_type: "t".into(),
            cid: None,
            created_at: Timestamp::from_millis(0),
            payload: Default::default(),
        };
        event.payload = vec![b'x'; bytes - held_bytes(&event)].into();
        event
    }

    fn seqs(events: Option<Vec<StoredEvent>>) -> Option<Vec<i64>> {
        events.map(|list| list.into_iter().map(|e| e.seq.0).collect())
    }

    #[test]
    fn events_after_a_cursor_come_from_memory_while_all_are_held() {
        let (a, b) = (AppId(1), AppId(2));
        let recent = RecentEvents::new(Seq(10), 10_000);
        assert_eq!(
            seqs(recent.read_after(a, Seq(10), 5)),
            Some(vec![]),
            "none since the store opened"
        );
        assert_eq!(
            seqs(recent.read_after(a, Seq(9), 5)),
            None,
            "older ones are only in the database"
        );
        recent.push(a, [event(11, 1000), event(13, 1000)]);
        recent.push(b, [event(12, 1000)]);
        assert_eq!(seqs(recent.read_after(a, Seq(10), 5)), Some(vec![11, 13]));
        assert_eq!(seqs(recent.read_after(a, Seq(11), 5)), Some(vec![13]));
        assert_eq!(seqs(recent.read_after(a, Seq(10), 1)), Some(vec![11]));
        assert_eq!(seqs(recent.read_after(b, Seq(10), 5)), Some(vec![12]));
    }

    #[test]
    fn the_oldest_events_of_any_app_go_first_and_are_then_read_from_the_database() {
        let (a, b) = (AppId(1), AppId(2));
        let recent = RecentEvents::new(Seq(0), 2500);
        recent.push(a, [event(1, 1000)]);
        recent.push(b, [event(2, 1000)]);
        recent.push(a, [event(3, 1000)]);
        assert_eq!(
            seqs(recent.read_after(a, Seq(0), 5)),
            None,
            "event 1 was dropped"
        );
        assert_eq!(seqs(recent.read_after(a, Seq(1), 5)), Some(vec![3]));
        assert_eq!(seqs(recent.read_after(b, Seq(0), 5)), Some(vec![2]));
        recent.forget_app(b);
        assert_eq!(
            seqs(recent.read_after(b, Seq(0), 5)),
            None,
            "a deleted app's events are gone"
        );
        recent.push(b, [event(4, 1000), event(5, 1000)]);
        // 3000 bytes: the oldest held (3; 2 was forgotten already) makes room.
        assert_eq!(seqs(recent.read_after(a, Seq(1), 5)), None);
        assert_eq!(seqs(recent.read_after(a, Seq(3), 5)), Some(vec![]));
        assert_eq!(seqs(recent.read_after(b, Seq(2), 5)), Some(vec![4, 5]));
        recent.push(a, [event(6, 500)]);
        assert_eq!(
            seqs(recent.read_after(b, Seq(2), 5)),
            Some(vec![4, 5]),
            "2500 bytes fit"
        );
        recent.forget_all();
        assert_eq!(seqs(recent.read_after(a, Seq(3), 5)), None);
        assert_eq!(seqs(recent.read_after(b, Seq(1), 5)), None);
        assert_eq!(seqs(recent.read_after(b, Seq(5), 5)), Some(vec![]));
        assert_eq!(seqs(recent.read_after(a, Seq(6), 5)), Some(vec![]));
    }

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
