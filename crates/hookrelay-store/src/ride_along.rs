//! Progress that can wait (`Progress::can_wait`, a caught-up hook's) is not sent to a backend's
//! writer: it waits beside the writer's channel and rides with the next commit, whatever wakes
//! the writer. At light traffic that is the next request's appends, so each request costs one
//! commit instead of two. If nothing comes within [`PROGRESS_WAIT`], the writer is woken for it.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::{Result, StoreError};

/// How long progress waits for a commit to ride with before the writer is woken for it alone.
/// Above the gap between requests at light traffic (10 ms at 100 requests/s), well below anything
/// a retry schedule or a reader would notice.
pub(crate) const PROGRESS_WAIT: Duration = Duration::from_millis(25);

/// Operations waiting to be committed with whatever wakes the writer next, oldest first.
pub(crate) struct RideAlong<Op>(Mutex<Vec<Op>>);

impl<Op> Default for RideAlong<Op> {
    fn default() -> Self {
        Self(Mutex::new(Vec::new()))
    }
}

impl<Op> RideAlong<Op> {
    /// What waits, for the commit the writer is about to make. It goes before the operation that
    /// woke the writer: it was recorded earlier.
    pub(crate) fn take(&self) -> Vec<Op> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Leaves the operation beside the writer's channel and waits for its answer; after `wait`,
    /// sends the writer `flush` so that it commits what is waiting.
    pub(crate) async fn ride<T>(
        &self,
        writer: &mpsc::Sender<Op>,
        wait: Duration,
        op: impl FnOnce(oneshot::Sender<Result<T>>) -> Op,
        flush: impl FnOnce() -> Op,
    ) -> Result<T> {
        let (reply, mut answer) = oneshot::channel();
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(op(reply));
        let answer = match tokio::time::timeout(wait, &mut answer).await {
            Ok(answer) => answer,
            Err(_) => {
                writer.send(flush()).await.map_err(|_| StoreError::Closed)?;
                answer.await
            }
        };
        answer.map_err(|_| StoreError::Closed)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    enum Op {
        Record(oneshot::Sender<Result<u32>>),
        Flush,
    }

    #[tokio::test]
    async fn an_operation_waits_for_the_next_commit_to_take_it() {
        let (writer, mut woken) = mpsc::channel(4);
        let waiting = Arc::new(RideAlong::default());
        let riding = tokio::spawn({
            let waiting = waiting.clone();
            async move {
                let hour = Duration::from_secs(3600);
                waiting.ride(&writer, hour, Op::Record, || Op::Flush).await
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!riding.is_finished() && woken.try_recv().is_err());
        // The writer's next commit, whatever woke it, takes what waits and answers it.
        let mut taken = waiting.take();
        assert_eq!(taken.len(), 1);
        let Op::Record(reply) = taken.remove(0) else {
            unreachable!("only a record waits")
        };
        reply.send(Ok(7)).ok();
        assert_eq!(riding.await.unwrap().unwrap(), 7);
        assert!(waiting.take().is_empty());
    }

    #[tokio::test]
    async fn the_writer_is_woken_when_no_commit_comes_in_time() {
        let (writer, mut woken) = mpsc::channel(4);
        let waiting = Arc::new(RideAlong::default());
        let riding = tokio::spawn({
            let waiting = waiting.clone();
            async move {
                let wait = Duration::from_millis(10);
                waiting.ride(&writer, wait, Op::Record, || Op::Flush).await
            }
        });
        let flush = tokio::time::timeout(Duration::from_secs(10), woken.recv()).await;
        assert!(matches!(flush, Ok(Some(Op::Flush))));
        let Some(Op::Record(reply)) = waiting.take().pop() else {
            unreachable!("the record still waits for the commit the flush asks for")
        };
        reply.send(Ok(1)).ok();
        assert_eq!(riding.await.unwrap().unwrap(), 1);
    }
}
