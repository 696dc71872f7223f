//! Reading a hook's next window of events while the current one is being sent.
//!
//! A hook behind the log (a backlog, or ingest outrunning delivery) reads a full window each
//! round. Read after the round is recorded, the store's read leaves the destination idle for a
//! few milliseconds per round; read while the round sends, it costs no wall time. The next
//! round uses the window only if it starts where the read began, so a rewind, a FIFO stop or a
//! failure that holds the cursor back simply reads again.

use std::sync::Arc;

use hookrelay_store::{AppId, Seq, Store, StoredEvent};
use tokio_util::task::AbortOnDropHandle;

/// Whether a round should read the next window while it sends: it read a full window (more
/// is likely waiting), nothing limits its rate (a paced round would let the window sit in
/// memory), and the destination is not being probed after failures.
pub(crate) fn worth_reading_ahead(read: usize, window: usize, paced: bool, probing: bool) -> bool {
    read == window && !paced && !probing
}

/// The next window of events, being read or read.
pub(crate) struct ReadAhead {
    after: Seq,
    window: usize,
    read: AbortOnDropHandle<hookrelay_store::Result<Vec<StoredEvent>>>,
}

impl ReadAhead {
    /// Starts reading up to `window` events of `app` after `after`.
    pub fn start(store: Arc<dyn Store>, app: AppId, after: Seq, window: usize) -> Self {
        let read = AbortOnDropHandle::new(tokio::spawn(async move {
            store.read_events(app, after, window).await
        }));
        Self {
            after,
            window,
            read,
        }
    }

    /// The events read, when the round starts at `cursor` and the read filled its window.
    /// `None` otherwise, or if the read failed: the round reads for itself. A short window is
    /// not used, since events appended after the read would be missed until the next wake-up.
    pub async fn events_after(self, cursor: Seq) -> Option<Vec<StoredEvent>> {
        if cursor != self.after {
            return None;
        }
        let window = self.window;
        match self.read.await {
            Ok(Ok(events)) if events.len() == window => Some(events),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookrelay_core::Secret;
    use hookrelay_core::event::PreparedEvent;
    use hookrelay_store::{SecretBox, SqliteStore};

    #[test]
    fn only_a_full_unpaced_unprobed_round_reads_ahead() {
        assert!(worth_reading_ahead(1000, 1000, false, false));
        assert!(!worth_reading_ahead(999, 1000, false, false));
        assert!(!worth_reading_ahead(1000, 1000, true, false));
        assert!(!worth_reading_ahead(1000, 1000, false, true));
    }

    /// A store holding `n` events of one app, and their sequence numbers.
    async fn store_with_events(
        dir: &std::path::Path,
        n: usize,
    ) -> (Arc<dyn Store>, AppId, Vec<Seq>) {
        let store = SqliteStore::open(dir.join("hookrelay.db"), SecretBox::new(&[7; 32])).unwrap();
        let app = store
            .create_app("app", "key", &Secret::new("secret"))
            .await
            .unwrap();
        let events = (0..n)
            .map(|i| PreparedEvent {
                id: format!("e{i}"),
                event_type: "message.new".into(),
                cid: None,
                payload: format!(r#"{{"id":"e{i}"}}"#).into_bytes(),
            })
            .collect();
        let appended = store.append(app.id, events).await.unwrap();
        let seqs = appended.iter().map(|a| a.seq.unwrap()).collect();
        (Arc::new(store), app.id, seqs)
    }

    fn seqs(events: &[StoredEvent]) -> Vec<Seq> {
        events.iter().map(|e| e.seq).collect()
    }

    #[tokio::test]
    async fn a_round_starting_where_the_read_began_gets_the_full_window() {
        let dir = tempfile::tempdir().unwrap();
        let (store, app, appended) = store_with_events(dir.path(), 5).await;
        let ahead = ReadAhead::start(store, app, appended[0], 3);
        let events = ahead.events_after(appended[0]).await.unwrap();
        assert_eq!(seqs(&events), appended[1..4]);
    }

    #[tokio::test]
    async fn a_round_starting_elsewhere_or_a_short_window_reads_again() {
        let dir = tempfile::tempdir().unwrap();
        let (store, app, appended) = store_with_events(dir.path(), 5).await;
        // The cursor did not move as far (a FIFO stop, a rewind): the window is not it.
        let ahead = ReadAhead::start(store.clone(), app, appended[2], 2);
        assert!(ahead.events_after(appended[1]).await.is_none());
        // Only two events were there to read: more may have come since.
        let ahead = ReadAhead::start(store, app, appended[2], 3);
        assert!(ahead.events_after(appended[2]).await.is_none());
    }
}
