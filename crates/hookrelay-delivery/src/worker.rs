//! One hook's delivery loop.
//!
//! Each round: take the retry entries that are due and the next events after the cursor, keep the
//! events the hook's filter matches, dead-letter those too large for SQS/SNS, pack the rest into
//! batches, send several batches at once, and record everything that happened (cursor, new and
//! finished retry entries, dead letters) in one store transaction.
//!
//! * The cursor moves only after the round's results are durable, so a crash repeats the round
//!   (at-least-once) rather than skipping it. It never passes an event that was not handled: when
//!   a round sends only part of what it read, the cursor stops before the first unsent event.
//! * A failed entry goes to the retry set, so it never holds back the events behind it.
//! * If *every* call of a round fails (queue gone, keys wrong, receiver down), the hook backs off
//!   as a whole, and until a call succeeds again each round sends a single batch (a probe) instead
//!   of hammering the destination. For SQS and SNS nothing is recorded in such a round: the events
//!   wait in the log. Webhooks do record the failed attempts, because receivers see the attempt
//!   number (`X-Webhook-Attempt`).
//! * FIFO destinations keep order per group: batches go one at a time, and the first failure
//!   stops the round; the cursor stops before the failed event and the round is repeated after a
//!   backoff. Events after it that did get through are sent again, which FIFO deduplication (by
//!   event id, within 5 minutes) absorbs.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use hookrelay_core::{EventFilter, EventHook, Secret, Timestamp};
use hookrelay_store::{
    AppId, Cursor, DeadLetterReason, DeadLetterRecord, Lease, Progress, RetryRecord, Seq, Store,
    StoreError, StoredEvent,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::aws::CallError;
use crate::batch::{aws_message_size, pack};
use crate::destinations::{Destination, EntryOutcome, Outgoing};
use crate::dispatcher::DeliverySettings;
use crate::retry::Next;
use crate::stats::HookRecorder;

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
    pub recorder: HookRecorder,
}

enum Round {
    /// Nothing to do.
    Idle,
    /// Work was done and recorded; go again.
    Progressed,
    /// The destination failed every call: back off.
    DestinationDown(CallError),
    /// This node does not hold the hook's lease (any more): send nothing, wait to be stopped.
    NotOwner,
}

/// A batch and what happened to it.
type Sent = (Vec<Item>, Result<Vec<EntryOutcome>, CallError>);

/// An event on its way, and its history if it is a retry.
struct Item {
    event: StoredEvent,
    size: usize,
    /// (failed attempts so far, first failure) of a retry entry.
    prior: Option<(u32, Timestamp)>,
}

impl Item {
    fn attempt(&self) -> u32 {
        self.prior.map_or(1, |(failed, _)| failed + 1)
    }
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
            let mut listen = true;
            let wait = match self.round(&mut cursor, failures > 0).await {
                Ok(Round::Progressed) => {
                    failures = 0;
                    self.recorder.destination_up();
                    continue;
                }
                Ok(Round::Idle) => {
                    failures = 0;
                    self.recorder.destination_up();
                    self.idle_wait().await
                }
                Ok(Round::DestinationDown(error)) => {
                    failures += 1;
                    self.recorder.destination_down(&error);
                    let delay = self.settings.hook_backoff.delay(failures).max(
                        error
                            .retry_after
                            .unwrap_or_default()
                            .min(self.settings.retry.cap),
                    );
                    tracing::warn!(hook_id = %hook_id, %error, failures, backoff_ms = delay.as_millis() as u64,
                        "destination failed every call; backing off");
                    delay
                }
                Ok(Round::NotOwner) | Err(StoreError::NotOwner(_)) => {
                    // The lease lapsed or moved (this node was paused, or cut off from the
                    // database): the dispatcher stops this worker, or the lease comes back.
                    tracing::warn!(hook_id = %hook_id, "hook lease not held; not sending");
                    listen = false;
                    Duration::from_secs(1)
                }
                Err(StoreError::Stale(_)) => {
                    // Rewound (replay since) while this round ran: start again from the new cursor.
                    match self.store.cursor(&hook_id).await {
                        Ok(Some(c)) => cursor = c,
                        _ => return,
                    }
                    continue;
                }
                Err(error) => {
                    tracing::error!(hook_id = %hook_id, %error, "store error in delivery round");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = appended.changed(), if failures == 0 && listen => {}
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

    async fn round(&self, cursor: &mut Cursor, probing: bool) -> hookrelay_store::Result<Round> {
        if !self.store.lease(&self.hook.id).is_held() {
            return Ok(Round::NotOwner);
        }
        // A rewind (replay since) changes the stored cursor under a new epoch: adopt it.
        match self.store.cursor(&self.hook.id).await? {
            Some(stored) if stored.epoch != cursor.epoch => *cursor = stored,
            Some(_) => {}
            None => return Ok(Round::Idle), // deleted: the dispatcher stops this worker
        }
        let now = Timestamp::now();
        let due = self
            .store
            .due_retries(&self.hook.id, now, RETRIES_PER_ROUND)
            .await?;
        let events = self
            .store
            .read_events(self.app, cursor.seq, self.settings.read_batch)
            .await?;
        if due.is_empty() && events.is_empty() {
            return Ok(Round::Idle);
        }
        let last_read = events.last().map(|e| e.seq);
        let limits = self.destination.limits();
        let mut progress = Progress::new(self.hook.id.clone(), cursor.epoch);
        let mut items: Vec<Item> = due
            .into_iter()
            .map(|d| Self::item(d.event, Some((d.attempts, d.first_failed_at))))
            .collect();
        for event in events {
            if !self.filter.matches(&event.event_type) {
                continue;
            }
            let item = Self::item(event, None);
            if limits.size_limited && item.size > limits.max_bytes {
                // The seeds' rule: over 256 KB is not sent. It is recorded, never silent.
                tracing::warn!(hook_id = %self.hook.id, event_id = %item.event.id, bytes = item.size, "event too large for SQS/SNS");
                self.recorder
                    .dead_lettered(DeadLetterReason::TooLarge.as_str());
                progress.dead_letters.push(DeadLetterRecord {
                    last_error: format!(
                        "the message is {} bytes with its attributes; SQS and SNS take at most {}",
                        item.size, limits.max_bytes
                    ),
                    event: item.event,
                    reason: DeadLetterReason::TooLarge,
                    attempts: 0,
                });
            } else {
                items.push(item);
            }
        }
        let fifo = self.destination.is_fifo();
        let mut batches = pack(items, |i| i.size, limits.max_entries, limits.max_bytes);
        // Events this round reads but does not send; the cursor must stop before them.
        let mut unsent_from: Option<Seq> = None;
        let mut hold_back = |batch: &[Item]| {
            for item in batch.iter().filter(|i| i.prior.is_none()) {
                unsent_from = Some(unsent_from.map_or(item.event.seq, |s| s.min(item.event.seq)));
            }
        };
        if probing && batches.len() > 1 {
            for batch in batches.drain(1..) {
                hold_back(&batch);
            }
        }
        let in_flight = if fifo || probing {
            1
        } else {
            self.settings.in_flight_for(&self.destination)
        };
        let sent_count = batches.len();
        let Some((results, unsent)) = self.send_all(batches, in_flight, fifo, cursor.epoch).await
        else {
            return Ok(Round::DestinationDown(CallError::transient(
                "internal",
                "a send task died",
            )));
        };
        for batch in &unsent {
            hold_back(batch);
        }

        let mut reached = false;
        let mut last_error = None;
        let mut failed_items = Vec::new();
        for (batch, result) in results {
            let outcomes: Vec<EntryOutcome> = match result {
                Ok(outcomes) => {
                    reached = true;
                    outcomes
                }
                Err(error) => vec![EntryOutcome::Failed(error); batch.len()],
            };
            for (item, outcome) in batch.into_iter().zip(outcomes) {
                match outcome {
                    EntryOutcome::Delivered => {
                        let latency = (now.millis() - item.event.created_at.millis()).max(0);
                        self.recorder.delivered(latency as f64 / 1000.0);
                        if item.prior.is_some() {
                            progress.retries_done.push(item.event.seq);
                        }
                    }
                    EntryOutcome::Failed(error) => {
                        last_error = Some(error.clone());
                        if fifo && !error.permanent && item.prior.is_none() {
                            // FIFO: resend from here next round, to keep the group's order.
                            hold_back(std::slice::from_ref(&item));
                        } else {
                            failed_items.push((item, error));
                        }
                    }
                }
            }
        }
        let all_failed = sent_count > 0 && !reached;
        if all_failed && !self.destination.counts_attempts() {
            // Every call failed: record nothing; the events wait in the log.
            return Ok(Round::DestinationDown(last_error.unwrap_or_default()));
        }
        for (item, error) in failed_items {
            self.failed(&mut progress, item, error, now);
        }
        let new_cursor = match unsent_from {
            Some(seq) => Some(seq - 1),
            None => last_read,
        };
        progress.cursor = new_cursor.filter(|c| *c > cursor.seq);
        self.store.record_progress(progress).await?;
        if let Some(c) = new_cursor {
            cursor.seq = c.max(cursor.seq);
        }
        let stopped_early = fifo && unsent_from.is_some();
        match last_error {
            Some(error) if all_failed || stopped_early => Ok(Round::DestinationDown(error)),
            _ => Ok(Round::Progressed),
        }
    }

    /// Sends the batches, at most `in_flight` at a time. Returns each sent batch with its result,
    /// in order, and the batches left unsent (FIFO sending stops at the first batch that is not
    /// wholly delivered). `None` if a send task died: the round must then record nothing, or its
    /// events would be skipped.
    async fn send_all(
        &self,
        batches: Vec<Vec<Item>>,
        in_flight: usize,
        fifo: bool,
        epoch: i64,
    ) -> Option<(Vec<Sent>, Vec<Vec<Item>>)> {
        let mut pending: VecDeque<(usize, Vec<Item>)> = batches.into_iter().enumerate().collect();
        let mut next_index = pending.len();
        let mut tasks = JoinSet::new();
        let mut done: Vec<Option<Sent>> = Vec::new();
        let mut stopped = false;
        loop {
            while tasks.len() < in_flight && !stopped {
                // Checked before every send: a node whose lease lapsed sends nothing more.
                let lease = self.store.lease(&self.hook.id);
                if !lease.is_held() {
                    stopped = true;
                    break;
                }
                let Some((index, batch)) = pending.pop_front() else {
                    break;
                };
                let dest = self.destination.clone();
                let secret = self.app_secret.clone();
                let hook_id = self.hook.id.clone();
                self.recorder.sending(batch.len());
                tasks.spawn(async move {
                    let outgoing: Vec<Outgoing> = batch
                        .iter()
                        .map(|i| Outgoing {
                            event: i.event.clone(),
                            attempt: i.attempt(),
                        })
                        .collect();
                    let started = Timestamp::now();
                    let result = within_lease(lease, dest.send(&outgoing, &secret)).await;
                    if result
                        .as_ref()
                        .is_ok_and(|o| o.contains(&EntryOutcome::Delivered))
                    {
                        // One line per batch (debug level): the multi-node tests read these to
                        // prove that no two nodes ever deliver the same hook at once.
                        tracing::debug!(target: "hookrelay::deliveries", hook_id = %hook_id, epoch,
                            started_ms = started.millis(), finished_ms = Timestamp::now().millis(),
                            events = outgoing.len(), "batch delivered");
                    }
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
            self.recorder.sent(batch.len());
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
        let unsent = pending.into_iter().map(|(_, batch)| batch).collect();
        Some((done.into_iter().flatten().collect(), unsent))
    }

    /// Schedules a retry for a failed entry, or dead-letters it.
    fn failed(&self, progress: &mut Progress, item: Item, error: CallError, now: Timestamp) {
        let (attempts, first_failed_at) = match item.prior {
            Some((attempts, first)) => (attempts + 1, first),
            None => (1, now),
        };
        let give_up = if error.permanent || error.max_attempts.is_some_and(|max| attempts >= max) {
            Some(DeadLetterReason::Rejected)
        } else {
            match self.settings.retry.next(first_failed_at, attempts, now) {
                Next::GiveUp => Some(DeadLetterReason::RetriesExhausted),
                Next::RetryAt(at) => {
                    // A destination's Retry-After wins over our own schedule, within the cap.
                    let at = match error.retry_after {
                        Some(after) => {
                            let after = after.min(self.settings.retry.cap).as_millis() as i64;
                            at.max(now.saturating_add_millis(after))
                        }
                        None => at,
                    };
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
        self.recorder.failed(&error, give_up.is_none());
        if let Some(reason) = give_up {
            self.recorder.dead_lettered(reason.as_str());
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

/// Runs a send while the lease lasts. The deadline is checked before the send is polled, not
/// only by a timer: after a pause (SIGSTOP, a stalled VM) the expired lease wins over a send
/// that would otherwise go out first. A send cut short counts as failed (the round is fenced
/// anyway), and one that finishes after the deadline is not trusted either.
async fn within_lease<F>(lease: Lease, send: F) -> Result<Vec<EntryOutcome>, CallError>
where
    F: Future<Output = Result<Vec<EntryOutcome>, CallError>>,
{
    let Lease::Until(deadline) = lease else {
        return send.await;
    };
    let lost = || {
        Err(CallError::transient(
            "lease_lost",
            "the hook lease lapsed during the send",
        ))
    };
    let mut send = std::pin::pin!(send);
    let mut timer = std::pin::pin!(tokio::time::sleep_until(deadline.into()));
    std::future::poll_fn(|cx| {
        if std::time::Instant::now() >= deadline || timer.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(lost());
        }
        send.as_mut().poll(cx).map(|result| {
            if std::time::Instant::now() >= deadline {
                lost()
            } else {
                result
            }
        })
    })
    .await
}
