//! One hook's delivery loop.
//!
//! Each round: take the retry entries that are due and the next events after the cursor, keep the
//! events the hook's filter matches, dead-letter those too large to send, pack the rest into
//! batches, send several batches at once, and record everything that happened (cursor, new and
//! finished retry entries, dead letters) in one store transaction.
//!
//! The cursor moves only after the round's results are durable, so a crash repeats the round
//! (at-least-once) rather than skipping it. A failed entry goes to the retry set, so it never holds
//! back the events behind it. If *every* call of a round fails (the queue is gone, the keys are
//! wrong, the network is down), nothing is recorded: the events stay in the log and the hook as a
//! whole backs off, one probe round at a time, until the destination answers again.
//!
//! FIFO destinations are different: order matters more than throughput, so batches go one at a
//! time and the first failure stops the round; the cursor stops just before the failed event and
//! the round is repeated after a backoff. Events after it that did get through are sent again,
//! which FIFO deduplication (by event id, within 5 minutes) absorbs.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use hookrelay_core::{EventFilter, EventHook, Secret, Timestamp};
use hookrelay_store::{
    AppId, DeadLetterReason, DeadLetterRecord, Progress, RetryRecord, Seq, Store, StoredEvent,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::aws::CallError;
use crate::batch::{aws_message_size, fits_aws, pack_for_aws};
use crate::destinations::{Destination, EntryOutcome};
use crate::dispatcher::DeliverySettings;
use crate::retry::Next;

/// Retry entries taken per round.
const RETRIES_PER_ROUND: usize = 200;
/// Longest idle wait before the worker looks again on its own.
const IDLE_RECHECK: Duration = Duration::from_secs(60);

pub(crate) struct Worker {
    pub app: AppId,
    pub app_secret: Secret,
    pub hook: EventHook,
    pub filter: EventFilter,
    pub destination: Destination,
    pub store: Arc<dyn Store>,
    pub settings: Arc<DeliverySettings>,
    pub cancel: CancellationToken,
}

enum Round {
    /// Nothing to do.
    Idle,
    /// Work was done and recorded; go again.
    Progressed,
    /// The destination failed every call: back off.
    DestinationDown(CallError),
}

/// A batch and what happened to it.
type Sent = (Vec<Item>, Result<Vec<EntryOutcome>, CallError>);

/// An event on its way, and its history if it is a retry.
struct Item {
    event: StoredEvent,
    size: usize,
    prior: Option<(u32, Timestamp)>,
}

impl Worker {
    pub async fn run(self) {
        let hook_id = self.hook.id.clone();
        let Ok(Some(mut cursor)) = self.store.cursor(&hook_id).await else {
            return; // the hook was deleted before its worker started
        };
        let mut appended = self.store.subscribe_appends();
        let mut failures = 0u32;
        while !self.cancel.is_cancelled() {
            appended.borrow_and_update();
            let wait = match self.round(&mut cursor).await {
                Ok(Round::Progressed) => {
                    failures = 0;
                    continue;
                }
                Ok(Round::Idle) => {
                    failures = 0;
                    self.idle_wait().await
                }
                Ok(Round::DestinationDown(error)) => {
                    failures += 1;
                    let delay = self.settings.hook_backoff.delay(failures);
                    tracing::warn!(hook_id = %hook_id, %error, failures, backoff_ms = delay.as_millis() as u64,
                        "destination failed every call; backing off");
                    delay
                }
                Err(error) => {
                    tracing::error!(hook_id = %hook_id, %error, "store error in delivery round");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = appended.changed(), if wait > Duration::ZERO && failures == 0 => {}
                _ = tokio::time::sleep(wait) => {}
                _ = self.cancel.cancelled() => {}
            }
        }
    }

    /// How long to sleep when idle: until the next retry is due, or until events arrive.
    async fn idle_wait(&self) -> Duration {
        match self.store.next_retry_at(&self.hook.id).await {
            Ok(Some(at)) => {
                let ms = (at.millis() - Timestamp::now().millis()).max(0) as u64;
                Duration::from_millis(ms).min(IDLE_RECHECK)
            }
            _ => IDLE_RECHECK,
        }
    }

    fn item(event: StoredEvent, prior: Option<(u32, Timestamp)>) -> Item {
        let size = aws_message_size(event.payload.len(), &event.event_type, &event.id);
        Item { event, size, prior }
    }

    async fn round(&self, cursor: &mut Seq) -> hookrelay_store::Result<Round> {
        let now = Timestamp::now();
        let due = self
            .store
            .due_retries(&self.hook.id, now, RETRIES_PER_ROUND)
            .await?;
        let events = self
            .store
            .read_events(self.app, *cursor, self.settings.read_batch)
            .await?;
        if due.is_empty() && events.is_empty() {
            return Ok(Round::Idle);
        }
        let last_read = events.last().map(|e| e.seq);
        let mut progress = Progress::new(self.hook.id.clone());
        let mut items: Vec<Item> = due
            .into_iter()
            .map(|d| Self::item(d.event, Some((d.attempts, d.first_failed_at))))
            .collect();
        for event in events {
            if !self.filter.matches(&event.event_type) {
                continue;
            }
            let item = Self::item(event, None);
            if fits_aws(item.size) {
                items.push(item);
            } else {
                // The seeds' rule: over 256 KB is not sent. It is recorded, never silent.
                tracing::warn!(hook_id = %self.hook.id, event_id = %item.event.id, bytes = item.size, "event too large for SQS/SNS");
                progress.dead_letters.push(DeadLetterRecord {
                    last_error: format!(
                        "the message is {} bytes with its attributes; SQS and SNS take at most {}",
                        item.size,
                        hookrelay_core::limits::AWS_MAX_MESSAGE_BYTES
                    ),
                    event: item.event,
                    reason: DeadLetterReason::TooLarge,
                    attempts: 0,
                });
            }
        }
        let fifo = self.destination.is_fifo();
        let batches = pack_for_aws(items, |i| i.size);
        let in_flight = if fifo {
            1
        } else {
            self.settings.batches_in_flight.max(1)
        };
        let Some(results) = self.send_all(batches, in_flight, fifo).await else {
            return Ok(Round::DestinationDown(CallError {
                code: "internal".into(),
                message: "a send task died".into(),
                http_status: None,
                permanent: false,
            }));
        };

        let any_batches = !results.is_empty();
        let mut reached = false;
        let mut last_error = None;
        let mut fifo_stop: Option<Seq> = None;
        for (batch, result) in results {
            let outcomes: Vec<EntryOutcome> = match result {
                Ok(outcomes) => {
                    reached = true;
                    outcomes
                }
                Err(error) => {
                    last_error = Some(error.clone());
                    vec![EntryOutcome::Failed(error); batch.len()]
                }
            };
            for (item, outcome) in batch.into_iter().zip(outcomes) {
                match outcome {
                    EntryOutcome::Delivered => {
                        if item.prior.is_some() {
                            progress.retries_done.push(item.event.seq);
                        }
                    }
                    EntryOutcome::Failed(error)
                        if fifo && !error.permanent && item.prior.is_none() =>
                    {
                        let seq = item.event.seq;
                        fifo_stop = Some(fifo_stop.map_or(seq, |s| s.min(seq)));
                        last_error = Some(error);
                    }
                    EntryOutcome::Failed(error) => self.failed(&mut progress, item, error, now),
                }
            }
        }
        if any_batches && !reached {
            // Every call failed: record nothing; the events wait in the log.
            let error = last_error.unwrap_or_else(|| CallError {
                code: "unknown".into(),
                message: String::new(),
                http_status: None,
                permanent: false,
            });
            return Ok(Round::DestinationDown(error));
        }
        progress.cursor = match fifo_stop {
            Some(seq) => Some(seq - 1),
            None => last_read,
        };
        self.store.record_progress(progress).await?;
        if let Some(c) = progress_cursor(*cursor, fifo_stop, last_read) {
            *cursor = c;
        }
        match (fifo_stop, last_error) {
            (Some(_), Some(error)) => Ok(Round::DestinationDown(error)),
            _ => Ok(Round::Progressed),
        }
    }

    /// Sends every batch, at most `in_flight` at a time, and returns each with its result, in
    /// order. FIFO sending stops at the first batch that is not wholly delivered. `None` if a send
    /// task died: the round must then record nothing, or its events would be skipped.
    async fn send_all(
        &self,
        batches: Vec<Vec<Item>>,
        in_flight: usize,
        fifo: bool,
    ) -> Option<Vec<Sent>> {
        let mut pending: VecDeque<(usize, Vec<Item>)> = batches.into_iter().enumerate().collect();
        let mut next_index = pending.len();
        let mut tasks = JoinSet::new();
        let mut done: Vec<Option<Sent>> = Vec::new();
        let mut stopped = false;
        loop {
            while tasks.len() < in_flight && !stopped {
                let Some((index, batch)) = pending.pop_front() else {
                    break;
                };
                let dest = self.destination.clone();
                let secret = self.app_secret.clone();
                tasks.spawn(async move {
                    let events: Vec<StoredEvent> = batch.iter().map(|i| i.event.clone()).collect();
                    let result = dest.send(&events, &secret).await;
                    (index, batch, result)
                });
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            let Ok((index, batch, result)) = joined else {
                tracing::error!(hook_id = %self.hook.id, "a send task died; the round is repeated");
                return None;
            };
            // The service refused the batch for the content of some entry: send each entry
            // alone, so only the guilty one fails and the others are delivered.
            if let Err(e) = &result
                && e.permanent
                && batch.len() > 1
            {
                for item in batch {
                    pending.push_back((next_index, vec![item]));
                    next_index += 1;
                }
                continue;
            }
            if fifo && !matches!(&result, Ok(o) if o.iter().all(|x| *x == EntryOutcome::Delivered))
            {
                stopped = true;
            }
            if done.len() <= index {
                done.resize_with(index + 1, || None);
            }
            done[index] = Some((batch, result));
        }
        Some(done.into_iter().flatten().collect())
    }

    /// Schedules a retry for a failed entry, or dead-letters it.
    fn failed(&self, progress: &mut Progress, item: Item, error: CallError, now: Timestamp) {
        let (attempts, first_failed_at) = match item.prior {
            Some((attempts, first)) => (attempts + 1, first),
            None => (1, now),
        };
        let give_up = if error.permanent {
            Some(DeadLetterReason::Rejected)
        } else {
            match self.settings.retry.next(first_failed_at, attempts, now) {
                Next::GiveUp => Some(DeadLetterReason::RetriesExhausted),
                Next::RetryAt(at) => {
                    progress.retries.push(RetryRecord {
                        seq: item.event.seq,
                        attempts,
                        first_failed_at,
                        next_attempt_at: at,
                        last_error: error.to_string(),
                    });
                    None
                }
            }
        };
        if let Some(reason) = give_up {
            tracing::warn!(hook_id = %self.hook.id, event_id = %item.event.id, reason = reason.as_str(), %error, "dead letter");
            progress.dead_letters.push(DeadLetterRecord {
                event: item.event,
                reason,
                attempts,
                last_error: error.to_string(),
            });
        }
    }
}

/// The worker's in-memory cursor after a recorded round.
fn progress_cursor(current: Seq, fifo_stop: Option<Seq>, last_read: Option<Seq>) -> Option<Seq> {
    match (fifo_stop, last_read) {
        (Some(stop), _) => Some((stop - 1).max(current)),
        (None, Some(last)) => Some(last.max(current)),
        (None, None) => None,
    }
}
