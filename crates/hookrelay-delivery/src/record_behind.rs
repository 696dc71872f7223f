//! A round's record, finishing while the next round sends.
//!
//! Recording a round waits for the store's writer, behind other commits and their fsync: 1 ms
//! on an idle store, 3–11 ms under heavy ingest. A hook far behind the log sent nothing
//! meanwhile. A round that leaves more to do (and found the destination up, took and
//! scheduled no retry, is neither paced, probing nor FIFO) lets its record finish behind the
//! next round. That round reads from the cursor the record will store, sends, and waits for
//! the record before it writes anything itself, a checkpoint or its own record, so writes stay
//! in round order. If the record fails, the next round sends nothing more and its outcome is
//! dropped: its events are sent again once the held record is in, as after any unrecorded
//! round.

use std::sync::Arc;

use hookrelay_store::{Cursor, Store, StoreError};
use tokio::task::JoinHandle;

use crate::round::Settlement;

/// What a settled round was like, for [`may_record_behind`].
pub(crate) struct Settled {
    /// It read all there was and passed it: the worker waits next, nothing would overlap.
    pub caught_up: bool,
    /// It sent due retries: the next round would find them due again until the record is in.
    pub took_retries: bool,
    /// It scheduled retries: the next round, reading before the record is in, would not know
    /// when to wake for them.
    pub scheduled_retries: bool,
    /// The destination failed it as a whole: the hook backs off.
    pub backing_off: bool,
    pub paced: bool,
    pub probing: bool,
    pub fifo: bool,
    /// It has nothing to record.
    pub nothing_to_record: bool,
}

/// Whether the next round may start before this round's record is in.
pub(crate) fn may_record_behind(round: &Settled) -> bool {
    !(round.caught_up
        || round.took_retries
        || round.scheduled_retries
        || round.backing_off
        || round.paced
        || round.probing
        || round.fifo
        || round.nothing_to_record)
}

/// A round's record being written.
pub(crate) struct PendingRecord {
    settlement: Settlement,
    /// The cursor the round started from: where the hook is if the record fails.
    started_at: Cursor,
    write: Write,
}

/// The store write: still going, or its result.
enum Write {
    Going(JoinHandle<hookrelay_store::Result<()>>),
    Done(hookrelay_store::Result<()>),
}

impl PendingRecord {
    pub fn start(store: Arc<dyn Store>, settlement: Settlement, started_at: Cursor) -> Self {
        let progress = settlement.progress.clone();
        let write = tokio::spawn(async move { store.record_progress(progress).await });
        Self {
            settlement,
            started_at,
            write: Write::Going(write),
        }
    }

    /// Waits until the record is written or has failed; true if it was written.
    pub async fn wait(&mut self) -> bool {
        if let Write::Going(write) = &mut self.write {
            let result = write.await.unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    "the progress write ended unfinished".into(),
                ))
            });
            self.write = Write::Done(result);
        }
        matches!(self.write, Write::Done(Ok(())))
    }

    /// The round's settlement, the cursor it started from, and whether its record was written.
    pub async fn finish(mut self) -> (Settlement, Cursor, hookrelay_store::Result<()>) {
        self.wait().await;
        let Write::Done(written) = self.write else {
            unreachable!("waited")
        };
        (self.settlement, self.started_at, written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookrelay_core::event::PreparedEvent;
    use hookrelay_core::hook::input::{HookRequest, HookRules, parse_hook_request};
    use hookrelay_core::{HookId, Secret, Timestamp};
    use hookrelay_store::{Epoch, Progress, SecretBox, Seq, SqliteStore};

    fn far_behind() -> Settled {
        Settled {
            caught_up: false,
            took_retries: false,
            scheduled_retries: false,
            backing_off: false,
            paced: false,
            probing: false,
            fifo: false,
            nothing_to_record: false,
        }
    }

    #[test]
    fn only_a_plain_round_that_leaves_more_to_do_records_behind_the_next() {
        assert!(may_record_behind(&far_behind()));
        let each_exception: [fn(&mut Settled); 8] = [
            |s| s.caught_up = true,
            |s| s.took_retries = true,
            |s| s.scheduled_retries = true,
            |s| s.backing_off = true,
            |s| s.paced = true,
            |s| s.probing = true,
            |s| s.fifo = true,
            |s| s.nothing_to_record = true,
        ];
        for set in each_exception {
            let mut round = far_behind();
            set(&mut round);
            assert!(!may_record_behind(&round));
        }
    }

    /// A store with one webhook hook and three events; the hook and the last event's number.
    async fn store_with_a_hook(dir: &std::path::Path) -> (Arc<dyn Store>, HookId, Seq) {
        let store = SqliteStore::open(dir.join("hookrelay.db"), SecretBox::new(&[7; 32])).unwrap();
        let app = store
            .create_app("a", "k", &Secret::new("s"))
            .await
            .unwrap()
            .id;
        let v = serde_json::json!({
            "id": "h", "enabled": true, "hook_type": "webhook", "webhook_url": "https://example.com/hook",
        });
        let Ok(HookRequest::Upsert(hook)) =
            parse_hook_request(&v, false, |_| None, &HookRules::default(), Timestamp::now())
        else {
            unreachable!("an upsert")
        };
        let id = hook.id.clone();
        store.replace_hooks(app, vec![*hook]).await.unwrap();
        let events = (0..3)
            .map(|i| PreparedEvent {
                id: format!("e{i}"),
                event_type: "t".into(),
                cid: None,
                payload: b"{}".to_vec(),
            })
            .collect();
        let appended = store.append(app, events).await.unwrap();
        let last = appended.last().unwrap().seq.unwrap();
        (Arc::new(store), id, last)
    }

    fn moving_the_cursor_to(hook: &HookId, epoch: Epoch, seq: Seq) -> Settlement {
        let mut progress = Progress::new(hook.clone(), epoch);
        progress.cursor = Some(seq);
        Settlement {
            progress,
            notes: Vec::new(),
            back_off: None,
        }
    }

    #[tokio::test]
    async fn a_record_left_behind_is_written_and_hands_back_its_round() {
        let dir = tempfile::tempdir().unwrap();
        let (store, hook, last) = store_with_a_hook(dir.path()).await;
        let started_at = store.cursor(&hook).await.unwrap().unwrap();
        let settlement = moving_the_cursor_to(&hook, started_at.epoch, last);
        let mut pending = PendingRecord::start(store.clone(), settlement, started_at);
        assert!(pending.wait().await);
        let (settlement, from, written) = pending.finish().await;
        assert!(written.is_ok());
        assert_eq!((settlement.progress.cursor, from), (Some(last), started_at));
        assert_eq!(store.cursor(&hook).await.unwrap().unwrap().seq, last);
    }

    #[tokio::test]
    async fn a_record_refused_hands_back_its_round_and_where_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let (store, hook, last) = store_with_a_hook(dir.path()).await;
        let started_at = store.cursor(&hook).await.unwrap().unwrap();
        // Recorded under an epoch the hook has left (as after a rewind): refused.
        let stale = Epoch(started_at.epoch.0 + 1);
        let settlement = moving_the_cursor_to(&hook, stale, last);
        let mut pending = PendingRecord::start(store.clone(), settlement, started_at);
        assert!(!pending.wait().await);
        let (settlement, from, written) = pending.finish().await;
        assert!(written.is_err());
        assert_eq!((settlement.progress.cursor, from), (Some(last), started_at));
        assert_eq!(store.cursor(&hook).await.unwrap().unwrap(), started_at);
    }
}
