//! The newest committed events of each app, in memory (a budget of bytes, oldest dropped
//! first), so a worker close behind the head reads them here instead of from the database, and
//! the hooks of an app share one copy of each payload.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use hookrelay_core::Timestamp;
use hookrelay_core::event::PreparedEvent;

use crate::{AppId, Appended, Seq, StoredEvent};

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

    /// Drops every event held and starts again at `at`: from now on, an app with no event here
    /// had none after `at`. For a store where others append too, whose own appends are complete
    /// only from the start of an unbroken run of its commits.
    pub fn restart(&self, at: Seq) {
        let mut tails = self.lock();
        tails.apps.clear();
        tails.order.clear();
        tails.bytes = 0;
        tails.opened_at = at;
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

/// Appended events as the log now holds them (duplicates of events already in it are not new).
pub(crate) fn stored_events(
    events: Vec<PreparedEvent>,
    appended: &[Appended],
    now: Timestamp,
) -> impl Iterator<Item = StoredEvent> {
    // As the table holds it: milliseconds, so an event reads the same from memory or disk.
    let created_at = Timestamp::from_millis(now.millis());
    events
        .into_iter()
        .zip(appended.iter().map(|a| a.seq))
        .filter_map(move |(e, seq)| {
            Some(StoredEvent {
                seq: seq?,
                id: e.id,
                event_type: e.event_type,
                cid: e.cid,
                created_at,
                payload: e.payload.into(),
            })
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An event that takes `bytes` of the budget (ids of one digit).
    pub(crate) fn event(seq: i64, bytes: usize) -> StoredEvent {
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

    pub(crate) fn seqs(events: Option<Vec<StoredEvent>>) -> Option<Vec<i64>> {
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
}
