//! This node's newest appends, in memory, so that its delivery rounds close behind the head read
//! them here instead of from the database, which can then spend its time on inserts.
//!
//! Other nodes append too, so memory is trusted only where it is known to be complete:
//! * From the start of an unbroken run of this node's commits. `log_head` hands out numbers in
//!   order, so when a commit's first number follows the last one of this node's commit before,
//!   no other node numbered an event in between; otherwise memory starts again at that commit.
//! * Up to the newest event this node knows of. Once another node's newer append is known (its
//!   notification raised the head past this node's last number), reads go to the database. A
//!   notification not heard yet only delays a read: when it comes it wakes the workers, whose
//!   next round then reads the database. Notifications sent while the listener reconnects are
//!   lost, so it reads `log_head` again each time it does.

use std::sync::Mutex;

use crate::recent_events::RecentEvents;
use crate::{AppId, Seq, StoredEvent};

pub struct OwnAppends {
    /// The last number of this node's latest commit, while its run is unbroken; `None` when
    /// nothing held is trusted.
    numbered_through: Mutex<Option<Seq>>,
    events: RecentEvents,
}

/// Where memory claims nothing: no sequence number comes after it.
const NOTHING_KNOWN: Seq = Seq(i64::MAX);

impl OwnAppends {
    pub fn new(budget: usize) -> Self {
        Self {
            numbered_through: Mutex::new(None),
            events: RecentEvents::new(NOTHING_KNOWN, budget),
        }
    }

    fn through(&self) -> std::sync::MutexGuard<'_, Option<Seq>> {
        self.numbered_through
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// A commit of this node numbered the events after `after` up to `through`, and stored
    /// these events of each app (duplicates took a number and stored nothing).
    pub fn committed(
        &self,
        after: Seq,
        through: Seq,
        stored: impl IntoIterator<Item = (AppId, Vec<StoredEvent>)>,
    ) {
        let mut numbered_through = self.through();
        if *numbered_through != Some(after) {
            self.events.restart(after);
        }
        for (app, events) in stored {
            self.events.push(app, events);
        }
        *numbered_through = Some(through);
    }

    /// Up to `limit` events of `app` after `after`, when memory holds all of them and `head`,
    /// the newest sequence number this node knows of, is its own last; `None` otherwise.
    pub fn read_after(
        &self,
        app: AppId,
        after: Seq,
        limit: usize,
        head: Seq,
    ) -> Option<Vec<StoredEvent>> {
        let numbered_through = self.through();
        if *numbered_through != Some(head) {
            return None;
        }
        self.events.read_after(app, after, limit)
    }

    /// Events were deleted (garbage collection, an app deleted): nothing held is trusted until
    /// this node's next commit.
    pub fn forget(&self) {
        let mut numbered_through = self.through();
        *numbered_through = None;
        self.events.restart(NOTHING_KNOWN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recent_events::tests::seqs;

    fn event(seq: i64) -> StoredEvent {
        crate::recent_events::tests::event(seq, 1000)
    }

    #[test]
    fn memory_answers_only_within_an_unbroken_run_up_to_the_known_head() {
        let (a, b) = (AppId(1), AppId(2));
        let own = OwnAppends::new(1 << 20);
        assert_eq!(
            seqs(own.read_after(a, Seq(0), 10, Seq(0))),
            None,
            "nothing appended here yet"
        );

        own.committed(Seq(10), Seq(12), [(a, vec![event(11), event(12)])]);
        assert_eq!(
            seqs(own.read_after(a, Seq(10), 10, Seq(12))),
            Some(vec![11, 12])
        );
        assert_eq!(
            seqs(own.read_after(b, Seq(10), 10, Seq(12))),
            Some(vec![]),
            "b had none in the run"
        );
        assert_eq!(
            seqs(own.read_after(a, Seq(9), 10, Seq(12))),
            None,
            "before the run"
        );
        assert_eq!(
            seqs(own.read_after(a, Seq(10), 10, Seq(13))),
            None,
            "another node appended 13"
        );

        // Numbers 13 and 14 went to another node: the run starts again after them.
        own.committed(Seq(14), Seq(15), [(b, vec![event(15)])]);
        assert_eq!(
            seqs(own.read_after(a, Seq(12), 10, Seq(15))),
            None,
            "13 and 14 are unknown here"
        );
        assert_eq!(seqs(own.read_after(a, Seq(14), 10, Seq(15))), Some(vec![]));
        assert_eq!(
            seqs(own.read_after(b, Seq(14), 10, Seq(15))),
            Some(vec![15])
        );

        // The next commit follows on: the run holds.
        own.committed(Seq(15), Seq(16), [(a, vec![event(16)])]);
        assert_eq!(
            seqs(own.read_after(a, Seq(14), 10, Seq(16))),
            Some(vec![16])
        );

        own.forget();
        assert_eq!(
            seqs(own.read_after(a, Seq(14), 10, Seq(16))),
            None,
            "forgotten"
        );
    }
}
