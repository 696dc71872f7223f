//! One hook's delivery loop.
//!
//! Each round reads the retry entries that are due and the next events after the cursor, then
//! runs three steps: `round::plan` (what to send), the send (here: several batches at once, each
//! under the hook's lease), and `round::settle` (what the outcomes mean), and records the result
//! in one store transaction. A round that leaves more to do lets that record finish while the
//! next round sends (`record_behind`). The rules (the cursor never passes an unhandled event;
//! refusals never count as the destination being down; FIFO order; too-large events
//! dead-lettered once) live in `round`, which is tested without a network.
//!
//! Between rounds: a round that settled as "destination down" makes the hook back off as a whole
//! (doubling up to `hook_backoff_cap`, or the destination's `Retry-After`). How much each round
//! may send is `pace`'s decision: the hook's rate limit (lowered while the destination
//! throttles), and its circuit breaker, which makes every round a probe of one batch once the
//! destination has failed enough calls in a row.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookrelay_core::{EventFilter, EventHook, Timestamp};
use hookrelay_store::{
    AppId, Cursor, Epoch, Lease, RoundInput, RoundLimits, Seq, Store, StoreError,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::checkpoint::Checkpoints;
use crate::destinations::{Destination, Outgoing};
use crate::outcome::CallError;
use crate::outcome::Outcome;
use crate::pace::{Breaker, Budget, RateLimiter};
use crate::record_behind::{PendingRecord, Settled, may_record_behind};
use crate::round::{Call, Item, Note, Sent, SettleRules, Settlement, Shape, plan, settle};
use crate::settings::DeliverySettings;
use crate::signing::Signer;
use crate::stats::HookRecorder;

/// Retry entries taken per round.
const RETRIES_PER_ROUND: usize = 200;
/// Longest wait before a round the store could not serve is tried again.
const STORE_RETRY_CAP: Duration = Duration::from_secs(1);
/// Longest idle wait before the worker looks again on its own.
const IDLE_RECHECK: Duration = Duration::from_secs(60);
/// How far into a round checkpoints begin. A round over sooner (light traffic, a fast
/// destination) settles before a checkpoint could spare much, and each one is a store write.
const CHECKPOINTS_FROM: Duration = Duration::from_millis(25);

pub(crate) struct Worker {
    pub app: AppId,
    pub signer: Signer,
    pub hook: EventHook,
    pub filter: EventFilter,
    pub destination: Destination,
    pub store: Arc<dyn Store>,
    pub settings: Arc<DeliverySettings>,
    /// Stop: send nothing new, finish the sends in flight, record, end.
    pub cancel: CancellationToken,
    /// Stop at once: also drop the sends in flight (sent again later). For changes that must
    /// take effect now whatever the destination is doing (pause, edit, delete).
    pub abandon: CancellationToken,
    pub recorder: HookRecorder,
}

enum Round {
    /// Nothing (left) to do: wait for new events or the next retry (when it has one).
    Idle { next_retry: Option<Timestamp> },
    /// Work was done and recorded; go again.
    Progressed,
    /// The destination failed every call: back off.
    DestinationDown(CallError),
    /// This node does not hold the hook's lease (any more): send nothing, wait to be stopped.
    NotOwner,
    /// The rate limit (or a `Retry-After`) lets nothing go before this much time has passed.
    Paced(Duration),
}

/// A hook's pace between rounds (see `pace`).
struct Pace {
    limiter: RateLimiter,
    breaker: Breaker,
}

impl Worker {
    pub async fn run(self) {
        let hook_id = self.hook.id.clone();
        let Some(mut cursor) = self.read_cursor().await else {
            return; // the hook was deleted, or the worker told to stop
        };
        let mut appended = self.store.subscribe_appends();
        let mut pace = Pace {
            limiter: RateLimiter::new(self.hook.rate_limit, Instant::now()),
            breaker: Breaker::new(self.settings.breaker_failures),
        };
        self.recorder.pace(pace.limiter.rate(), false);
        let mut failures = 0u32;
        // A round whose outcome the store could not take (disk full, database away): it is
        // recorded before anything else is sent, so nothing delivered is sent again.
        let mut unrecorded: Option<Settlement> = None;
        // The last round's record, still being written while the next round sends.
        let mut behind: Option<PendingRecord> = None;
        let mut store_failures = 0u32;
        while !self.cancel.is_cancelled() {
            appended.borrow_and_update();
            let mut listen = true;
            let result = match unrecorded.take() {
                Some(held) => self.record(held, &mut cursor, &mut unrecorded).await,
                None => {
                    let span = tracing::debug_span!("delivery_round", hook_id = %hook_id);
                    self.round(&mut cursor, &mut pace, &mut unrecorded, &mut behind)
                        .instrument(span)
                        .await
                }
            };
            if result.is_ok() {
                store_failures = 0;
            }
            let wait = match result {
                Ok(Round::Progressed) => {
                    failures = 0;
                    self.recorder.destination_up();
                    continue;
                }
                Ok(Round::Idle { next_retry }) => {
                    failures = 0;
                    self.recorder.destination_up();
                    idle_wait(next_retry, Timestamp::now())
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
                Ok(Round::Paced(wait)) => {
                    listen = false;
                    wait
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
                    match self.read_cursor().await {
                        Some(c) => cursor = c,
                        None => return,
                    }
                    continue;
                }
                Err(error) => {
                    store_failures += 1;
                    // The store is ours, not the destination: try again soon, so delivery
                    // resumes within a second or two of it answering again.
                    let delay = self
                        .settings
                        .hook_backoff
                        .delay(store_failures)
                        .min(STORE_RETRY_CAP);
                    if unrecorded.is_some() {
                        tracing::warn!(hook_id = %hook_id, %error, backoff_ms = delay.as_millis() as u64,
                            "cannot record delivery progress; holding it, sending nothing until it is recorded");
                    } else {
                        tracing::error!(hook_id = %hook_id, %error, "store error in delivery round");
                    }
                    listen = false;
                    delay
                }
            };
            tokio::select! {
                _ = appended.changed(), if failures == 0 && listen => {}
                _ = tokio::time::sleep(wait) => {}
                _ = self.cancel.cancelled() => {}
            }
        }
        if let Some(pending) = behind.take() {
            let _ = self
                .finish_behind(pending, &mut cursor, &mut unrecorded)
                .await;
        }
        self.record_before_stopping(unrecorded, &mut cursor).await;
    }

    /// Told to stop while holding a settlement the store has not taken: its events reached the
    /// destination, and the hook's next owner (or this node after a restart) would send them
    /// again. A planned stop keeps the lease until this worker ends, so a few more tries (within
    /// 1.5 s) are worth it; a worker told to stop at once gives up.
    async fn record_before_stopping(
        &self,
        mut unrecorded: Option<Settlement>,
        cursor: &mut Cursor,
    ) {
        const TRIES: u32 = 5;
        for tries in 1..=TRIES {
            if self.abandon.is_cancelled() {
                break;
            }
            let Some(held) = unrecorded.take() else {
                return;
            };
            if self.record(held, cursor, &mut unrecorded).await.is_ok() || unrecorded.is_none() {
                return;
            }
            // Short pauses: the hook's next owner waits for this worker to end.
            let delay = Duration::from_millis(100) * tries;
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.abandon.cancelled() => {}
            }
        }
        if unrecorded.is_some() {
            tracing::warn!(hook_id = %self.hook.id, "stopping with delivery progress the store did not take; those events will be sent again");
        }
    }

    /// The hook's cursor as stored. A store that cannot answer now (the database away) is asked
    /// again until it does: a worker that gave up here would leave its hook undelivered. `None`
    /// once the hook is gone or the worker is told to stop.
    async fn read_cursor(&self) -> Option<Cursor> {
        let mut failures = 0;
        loop {
            match self.store.cursor(&self.hook.id).await {
                Ok(cursor) => return cursor,
                Err(error) => {
                    failures += 1;
                    tracing::warn!(hook_id = %self.hook.id, %error, "cannot read the hook's cursor; retrying");
                    let delay = self
                        .settings
                        .hook_backoff
                        .delay(failures)
                        .min(STORE_RETRY_CAP);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.cancel.cancelled() => return None,
                    }
                }
            }
        }
    }

    /// One round, with the record of the round before it (`behind`) finished first or along
    /// the way; leaves its own record in `behind` when the next round may start before it is in.
    async fn round(
        &self,
        cursor: &mut Cursor,
        pace: &mut Pace,
        unrecorded: &mut Option<Settlement>,
        behind: &mut Option<PendingRecord>,
    ) -> hookrelay_store::Result<Round> {
        let mut prior = behind.take();
        let result = self
            .round_after(cursor, pace, unrecorded, &mut prior, behind)
            .await;
        // A round that ended before writing anything leaves the record before it to finish here.
        match prior {
            Some(prior) => {
                self.finish_behind(prior, cursor, unrecorded).await?;
                result
            }
            None => result,
        }
    }

    /// The round itself. It takes `prior` (and finishes it) before it writes anything; a round
    /// that ends sooner leaves it to `round`.
    async fn round_after(
        &self,
        cursor: &mut Cursor,
        pace: &mut Pace,
        unrecorded: &mut Option<Settlement>,
        prior: &mut Option<PendingRecord>,
        behind: &mut Option<PendingRecord>,
    ) -> hookrelay_store::Result<Round> {
        if !self.store.lease(&self.hook.id).is_held() {
            return Ok(Round::NotOwner);
        }
        let budget = match pace.limiter.budget(Instant::now()) {
            Budget::Wait(wait) => return Ok(Round::Paced(wait)),
            Budget::Entries(n) => Some(n),
            Budget::Unlimited => None,
        };
        let probing = pace.breaker.is_open();
        let now = Timestamp::now();
        let reading = RoundLimits {
            retries: RETRIES_PER_ROUND,
            events: self.settings.read_batch,
        };
        // A rewind (replay since) changes the stored cursor under a new epoch: it is adopted.
        let Some(input) = self
            .store
            .round_input(&self.hook.id, self.app, *cursor, now, reading)
            .await?
        else {
            // Deleted: the dispatcher stops this worker.
            return Ok(Round::Idle { next_retry: None });
        };
        let RoundInput {
            cursor: start,
            due,
            events,
            next_retry_at,
        } = input;
        *cursor = start;
        if due.is_empty() && events.is_empty() {
            pace.limiter.drained();
            return Ok(Round::Idle {
                next_retry: next_retry_at,
            });
        }
        // A round that read all there was and delivers all of it leaves nothing for the next
        // one: the worker can wait at once instead of reading the store again to find nothing.
        let read_everything = budget.is_none()
            && due.len() < RETRIES_PER_ROUND
            && events.len() < self.settings.read_batch;
        let last_read = events.last().map(|e| e.seq);
        let took_retries = !due.is_empty();
        let shape = Shape { probing, budget };
        let limits = self.destination.limits(&self.signer);
        let mut plan = plan(due, events, &self.filter, limits, shape);
        let fifo = self.destination.is_fifo();
        let in_flight = if fifo || probing {
            1
        } else {
            self.settings.in_flight_for(&self.destination)
        };
        let checkpoints = Checkpoints::new(&self.hook.id, cursor.epoch, cursor.seq, &plan);
        let batches = std::mem::take(&mut plan.batches);
        pace.limiter
            .spend(batches.iter().map(Vec::len).sum(), Instant::now());
        let sending = Sending {
            in_flight,
            fifo,
            epoch: cursor.epoch,
            checkpoints,
        };
        let Some(sent) = self.send_all(batches, sending, prior.as_mut()).await else {
            return Ok(Round::DestinationDown(CallError::new(
                "internal",
                "a send task died",
            )));
        };
        self.adjust_pace(pace, &sent);
        let rules = SettleRules {
            fifo,
            counts_attempts: self.destination.counts_attempts(),
            retry: &self.settings.retry,
        };
        let mut settlement = settle(
            &self.hook.id,
            cursor.epoch,
            cursor.seq,
            plan,
            sent,
            rules,
            now,
        );
        // The cursor as recording moves it.
        let cursor_after = settlement
            .progress
            .cursor
            .map_or(cursor.seq, |c| c.max(cursor.seq));
        let caught_up = left_nothing(read_everything, last_read, cursor_after);
        // Nothing to do until new events come: the store may commit this with their appends.
        settlement.progress.can_wait = caught_up && !took_retries && settlement.back_off.is_none();
        let scheduled = settlement
            .progress
            .retries
            .iter()
            .map(|r| r.next_attempt_at);
        let next_retry = next_retry_after_round(took_retries, next_retry_at, scheduled, now);
        // Writes go in round order: the record before this round's first.
        if let Some(prior) = prior.take() {
            self.finish_behind(prior, cursor, unrecorded).await?;
        }
        let settled = Settled {
            caught_up,
            took_retries,
            scheduled_retries: !settlement.progress.retries.is_empty(),
            backing_off: settlement.back_off.is_some(),
            paced: budget.is_some(),
            probing: probing || pace.breaker.is_open(),
            fifo,
            nothing_to_record: settlement.progress.is_empty(),
        };
        if may_record_behind(&settled) {
            // The next round starts from where this record will leave the cursor.
            let started_at = *cursor;
            cursor.seq = cursor_after;
            *behind = Some(PendingRecord::start(
                self.store.clone(),
                settlement,
                started_at,
            ));
            return Ok(Round::Progressed);
        }
        Ok(match self.record(settlement, cursor, unrecorded).await? {
            Round::Progressed if caught_up => Round::Idle { next_retry },
            round => round,
        })
    }

    /// Tells the pace what the destination did with this round's calls.
    fn adjust_pace(&self, pace: &mut Pace, sent: &Sent) {
        let now = Instant::now();
        let answered = sent.results.iter().filter(|c| c.answered()).count();
        pace.breaker.record(sent.results.len(), answered);
        let throttle = sent
            .results
            .iter()
            .flat_map(|c| &c.outcomes)
            .find(|o| o.is_throttle());
        match throttle {
            Some(o) => {
                let retry_after = o.error().and_then(|e| e.retry_after);
                pace.limiter.throttle(now, retry_after);
                tracing::info!(hook_id = %self.hook.id, rate = pace.limiter.rate(), "destination throttled the hook; lowering its rate");
            }
            None if answered > 0 => pace.limiter.recover(now),
            None => {}
        }
        self.recorder
            .pace(pace.limiter.rate(), pace.breaker.is_open());
    }

    /// Records a round's progress. If the store cannot take it, the settlement is kept in
    /// `unrecorded` to be recorded again before any new send; a rewind or a lost lease since
    /// the round began (Stale, NotOwner) discards it, as the round no longer counts.
    async fn record(
        &self,
        settlement: Settlement,
        cursor: &mut Cursor,
        unrecorded: &mut Option<Settlement>,
    ) -> hookrelay_store::Result<Round> {
        if !settlement.progress.is_empty()
            && let Err(e) = self
                .store
                .record_progress(settlement.progress.clone())
                .await
        {
            hold_unless_void(&e, settlement, unrecorded);
            return Err(e);
        }
        self.note_recorded(settlement.notes);
        if let Some(c) = settlement.progress.cursor {
            cursor.seq = c.max(cursor.seq);
        }
        Ok(match settlement.back_off {
            Some(error) => Round::DestinationDown(error),
            None => Round::Progressed,
        })
    }

    /// Waits for a record left behind. Written: its notes count now. Failed: the hook is back
    /// where that round started, the record is held as any unrecorded round's (see `record`),
    /// and the error ends the round that was running meanwhile, whose outcome counts for nothing.
    async fn finish_behind(
        &self,
        pending: PendingRecord,
        cursor: &mut Cursor,
        unrecorded: &mut Option<Settlement>,
    ) -> hookrelay_store::Result<()> {
        let (settlement, started_at, written) = pending.finish().await;
        match written {
            Ok(()) => {
                self.note_recorded(settlement.notes);
                Ok(())
            }
            Err(e) => {
                *cursor = started_at;
                hold_unless_void(&e, settlement, unrecorded);
                Err(e)
            }
        }
    }

    /// A round's notes, told only once its record is written, so nothing is counted twice.
    fn note_recorded(&self, notes: Vec<Note>) {
        let mut delivered = Vec::new();
        for note in notes {
            match note {
                Note::Delivered { latency_secs } => delivered.push(latency_secs),
                Note::Failed { error, will_retry } => self.recorder.failed(&error, will_retry),
                Note::DeadLettered {
                    reason,
                    event_id,
                    error,
                } => {
                    self.recorder.dead_lettered(reason);
                    tracing::warn!(hook_id = %self.hook.id, %event_id, reason = reason.as_str(), %error, "dead letter");
                }
            }
        }
        self.recorder.delivered(&delivered);
    }

    /// Sends the batches, at most `in_flight` at a time. Returns each sent batch with its
    /// outcomes, in order, and the batches left unsent (FIFO sending stops at the first batch
    /// that is not wholly delivered; any sending stops when the lease lapses). `None` if a send
    /// task died: the round must then record nothing, or its events would be skipped.
    ///
    /// While batches are still in flight, the new events delivered so far are checkpointed
    /// (one store write at a time, see `checkpoint`), so a crash re-sends only what was in
    /// flight, not the whole round.
    ///
    /// `prior`, the previous round's record still being written, is waited for before the
    /// first checkpoint; if it failed, nothing more is sent.
    async fn send_all(
        &self,
        batches: Vec<Vec<Item>>,
        mut sending: Sending,
        mut prior: Option<&mut PendingRecord>,
    ) -> Option<Sent> {
        let mut pending: VecDeque<(usize, Vec<Item>)> = batches.into_iter().enumerate().collect();
        let mut next_index = pending.len();
        let mut tasks = JoinSet::new();
        let mut done: Vec<Option<Call>> = Vec::new();
        // Batches in flight: (entries, first new event) by index, for a round cut short.
        let mut launched: HashMap<usize, (usize, Option<Seq>)> = HashMap::new();
        let mut stopped = false;
        let mut checkpoint: Option<CheckpointWrite> = None;
        let mut checkpoints_from = std::pin::pin!(tokio::time::sleep(CHECKPOINTS_FROM));
        let mut may_checkpoint = false;
        let mut checkpoint_clock_rang = false;
        loop {
            while tasks.len() < sending.in_flight && !stopped {
                // Checked before every send: a node whose lease lapsed, or a worker told to
                // stop (the hook was paused, changed or deleted), sends nothing more.
                let lease = self.store.lease(&self.hook.id);
                if !lease.is_held() || self.cancel.is_cancelled() {
                    stopped = true;
                    break;
                }
                let Some((index, batch)) = pending.pop_front() else {
                    break;
                };
                let first_new = batch
                    .iter()
                    .filter(|i| i.prior.is_none())
                    .map(|i| i.event.seq)
                    .min();
                launched.insert(index, (batch.len(), first_new));
                self.recorder.sending(batch.len());
                let send = SendCall {
                    destination: self.destination.clone(),
                    signer: self.signer.clone(),
                    hook_id: self.hook.id.clone(),
                    lease,
                    store: self.store.clone(),
                    epoch: sending.epoch,
                    // The call runs in a task of its own: its span goes under the round's.
                    round_span: tracing::Span::current(),
                };
                tasks.spawn(async move { (index, send.run(batch).await) });
            }
            let more_to_come = !tasks.is_empty() || (!pending.is_empty() && !stopped);
            if checkpoint.is_none()
                && more_to_come
                && may_checkpoint
                && let Some(progress) = sending.checkpoints.take()
            {
                let store = self.store.clone();
                checkpoint = Some(Box::pin(
                    async move { store.record_progress(progress).await },
                ));
            }
            let woke = tokio::select! {
                joined = tasks.join_next() => Woke::Joined(joined),
                recorded = async { checkpoint.as_mut().expect("checked").await }, if checkpoint.is_some() => {
                    Woke::Checkpointed(recorded)
                }
                () = &mut checkpoints_from, if !checkpoint_clock_rang => Woke::CheckpointsBegin,
                // Told to stop at once: requests still in flight are dropped (their events are
                // sent again later); what was acknowledged is recorded.
                _ = self.abandon.cancelled() => Woke::Abandoned,
            };
            let joined = match woke {
                Woke::Joined(joined) => joined,
                Woke::Checkpointed(result) => {
                    checkpoint = None;
                    if let Err(e) = result {
                        // The round's settlement records the same progress, and more.
                        tracing::debug!(hook_id = %self.hook.id, error = %e, "checkpoint not recorded");
                    }
                    continue;
                }
                Woke::CheckpointsBegin => {
                    checkpoint_clock_rang = true;
                    let prior_written = match prior.as_deref_mut() {
                        Some(prior) => prior.wait().await,
                        None => true,
                    };
                    if prior_written {
                        may_checkpoint = true;
                    } else {
                        stopped = true;
                    }
                    continue;
                }
                Woke::Abandoned => {
                    tasks.abort_all();
                    break;
                }
            };
            let Some(joined) = joined else {
                break;
            };
            let Ok((index, call)) = joined else {
                tracing::error!(hook_id = %self.hook.id, "a send task died; the round is repeated");
                return None;
            };
            let Some(call) = call else {
                // The lease lapsed during the call: like a call dropped in flight, it stays in
                // `launched`, so its events are held for the hook's owner to send again.
                stopped = true;
                continue;
            };
            launched.remove(&index);
            self.recorder.sent(call.items.len());
            // The service refused the whole batch for the content of some entry: send each
            // entry alone, so only the guilty one is refused and the others are delivered.
            if call.items.len() > 1 && refused_as_a_whole(&call.outcomes) {
                for item in call.items {
                    pending.push_back((next_index, vec![item]));
                    next_index += 1;
                }
                continue;
            }
            if sending.fifo && !call.outcomes.iter().all(|o| *o == Outcome::Delivered) {
                stopped = true;
            }
            sending.checkpoints.answered(&call);
            if done.len() <= index {
                done.resize_with(index + 1, || None);
            }
            done[index] = Some(call);
        }
        // The settlement is recorded after the last checkpoint, never before it.
        if let Some(write) = checkpoint {
            let _ = write.await;
        }
        for (entries, _) in launched.values() {
            self.recorder.sent(*entries);
        }
        Some(Sent {
            results: done.into_iter().flatten().collect(),
            unsent: pending.into_iter().map(|(_, batch)| batch).collect(),
            abandoned_from: launched.values().filter_map(|(_, first)| *first).min(),
        })
    }
}

/// Keeps a settlement the store could not take, to record it before anything else is sent; a
/// rewind or a lost lease since its round began (Stale, NotOwner) voids it instead.
fn hold_unless_void(
    error: &StoreError,
    settlement: Settlement,
    unrecorded: &mut Option<Settlement>,
) {
    if !matches!(error, StoreError::Stale(_) | StoreError::NotOwner(_)) {
        *unrecorded = Some(settlement);
    }
}

/// How a round sends its batches.
struct Sending {
    in_flight: usize,
    fifo: bool,
    epoch: Epoch,
    checkpoints: Checkpoints,
}

/// A checkpoint's store write, running while the round's calls do.
type CheckpointWrite = std::pin::Pin<Box<dyn Future<Output = hookrelay_store::Result<()>> + Send>>;

/// What woke the sending loop.
enum Woke {
    /// A send task ended: its call, `None` if the lease lapsed before its answer.
    Joined(Option<Result<(usize, Option<Call>), tokio::task::JoinError>>),
    Checkpointed(hookrelay_store::Result<()>),
    /// The round has run long enough for checkpoints to be worth their writes.
    CheckpointsBegin,
    Abandoned,
}

/// One call to the destination, run in a task of its own.
struct SendCall {
    destination: Destination,
    signer: Signer,
    hook_id: hookrelay_core::HookId,
    lease: Lease,
    /// Asked for the lease again when the one the send began under runs out.
    store: Arc<dyn Store>,
    epoch: Epoch,
    round_span: tracing::Span,
}

impl SendCall {
    /// Sends the batch within the lease, timed, in a span of its own (with the ids of its
    /// events, so one event can be followed through the log: `HOOKRELAY_LOG=hookrelay=debug`).
    /// `None` when the lease lapsed before the answer came: the call's outcome is unknown.
    async fn run(self, batch: Vec<Item>) -> Option<Call> {
        let outgoing: Vec<Outgoing> = batch
            .iter()
            .map(|i| Outgoing {
                event: &i.event,
                attempt: i.attempt(),
            })
            .collect();
        let started = Timestamp::now();
        let clock = Instant::now();
        let span = tracing::debug_span!(parent: &self.round_span, "attempt", hook_id = %self.hook_id,
            event_ids = %EventIds(&outgoing), attempt = outgoing.first().map_or(1, |o| o.attempt));
        let send = self.destination.send(&outgoing, &self.signer);
        let renewed = || self.store.lease(&self.hook_id);
        let outcomes = within_lease(self.lease, renewed, send)
            .instrument(span.clone())
            .await;
        let duration_us = clock.elapsed().as_micros() as u64;
        let Some(outcomes) = outcomes else {
            span.in_scope(|| {
                tracing::warn!(
                    duration_us,
                    "the hook lease lapsed during a send; its events will be sent again"
                );
            });
            return None;
        };
        span.in_scope(|| {
            if outcomes.contains(&Outcome::Delivered) {
                // One line per batch (debug level): the multi-node tests read these to prove
                // that no two nodes ever deliver the same hook at once.
                tracing::debug!(target: "hookrelay::deliveries", hook_id = %self.hook_id,
                    epoch = self.epoch.0, started_ms = started.millis(),
                    finished_ms = Timestamp::now().millis(), events = outgoing.len(), "batch delivered");
            }
            tracing::debug!(outcomes = ?outcomes, duration_us, "attempt done");
        });
        Some(Call {
            items: batch,
            outcomes,
            at: started,
            duration_us,
        })
    }
}

/// Whether a recorded round left nothing for the next one: it read all there was (no limit or
/// budget cut it short) and the cursor has passed the last event it read.
fn left_nothing(read_everything: bool, last_read: Option<Seq>, cursor: Seq) -> bool {
    read_everything && last_read.is_none_or(|last| cursor >= last)
}

/// When a hook's next retry is due after a round: the earliest of those the round did not
/// take (`not_taken`, read with its input) and those it scheduled. A round that took due
/// retries may have left some unsent (a probe, a lease lapsing, FIFO hold-back), still due:
/// then at once, and the next round reads what is left.
fn next_retry_after_round(
    took_retries: bool,
    not_taken: Option<Timestamp>,
    scheduled: impl Iterator<Item = Timestamp>,
    now: Timestamp,
) -> Option<Timestamp> {
    if took_retries {
        return Some(now);
    }
    not_taken.into_iter().chain(scheduled).min()
}

/// How long an idle worker sleeps unless events arrive: until its next retry is due (at once
/// if that is past), and never longer than `IDLE_RECHECK`.
fn idle_wait(next_retry: Option<Timestamp>, now: Timestamp) -> Duration {
    next_retry.map_or(IDLE_RECHECK, |at| {
        let ms = (at.millis() - now.millis()).max(0) as u64;
        Duration::from_millis(ms).min(IDLE_RECHECK)
    })
}

/// Every entry refused with the same error: the call as a whole was refused (SQS answers a
/// batch holding one invalid message this way).
fn refused_as_a_whole(outcomes: &[Outcome]) -> bool {
    match outcomes.first() {
        Some(first @ Outcome::Refuse { .. }) => outcomes.iter().all(|o| o == first),
        _ => false,
    }
}

/// Runs a send while the lease lasts. The deadline is checked before the send is polled, not
/// only by a timer: after a pause (SIGSTOP, a stalled VM) the expired lease wins over a send
/// that would otherwise go out first. When the deadline the send began under passes, `renewed`
/// gives the lease as it stands: renewals meanwhile extend it, so a receiver slower than one
/// renewal period is waited for, not cut off (and its events sent again) while this node still
/// holds the hook. `None` when the lease lapsed before the answer came, whether the send was cut
/// short or answered too late to be trusted: its outcome is unknown, which is not the
/// destination failing (the lapse may be this node's own, a renewal that came late), so it
/// counts as no attempt and its events are sent again.
async fn within_lease<F>(lease: Lease, renewed: impl Fn() -> Lease, send: F) -> Option<Vec<Outcome>>
where
    F: Future<Output = Vec<Outcome>>,
{
    let Lease::Until(mut deadline) = lease else {
        return Some(send.await);
    };
    // The deadline a renewal moved it to, if it did; `None` once the lease is lost.
    let extended = |deadline: std::time::Instant| match renewed() {
        Lease::Until(later) if later > deadline && std::time::Instant::now() < later => Some(later),
        Lease::Unbounded => Some(std::time::Instant::now() + Duration::from_secs(24 * 3600)),
        _ => None,
    };
    let mut send = std::pin::pin!(send);
    let mut timer = std::pin::pin!(tokio::time::sleep_until(deadline.into()));
    std::future::poll_fn(|cx| {
        // Each pass moves the deadline later or ends the send, so this loop ends.
        while std::time::Instant::now() >= deadline || timer.as_mut().poll(cx).is_ready() {
            let Some(later) = extended(deadline) else {
                return std::task::Poll::Ready(None);
            };
            deadline = later;
            timer.as_mut().reset(later.into());
        }
        send.as_mut().poll(cx).map(|result| {
            (std::time::Instant::now() < deadline || extended(deadline).is_some()).then_some(result)
        })
    })
    .await
}

/// The event ids of a call, for its span: the first few, and how many more.
struct EventIds<'a>(&'a [Outgoing<'a>]);

impl std::fmt::Display for EventIds<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 10;
        for (i, o) in self.0.iter().take(SHOWN).enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&o.event.id)?;
        }
        if self.0.len() > SHOWN {
            write!(f, ",+{}", self.0.len() - SHOWN)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: &str) -> Outcome {
        Outcome::Refuse {
            error: CallError::new(code, "m"),
            attempts: 1,
        }
    }

    #[test]
    fn a_round_leaves_nothing_only_when_it_read_all_and_passed_it() {
        assert!(left_nothing(true, Some(Seq(5)), Seq(5)));
        assert!(left_nothing(true, None, Seq(0)), "retries only");
        assert!(
            !left_nothing(true, Some(Seq(5)), Seq(3)),
            "an event held back"
        );
        assert!(!left_nothing(false, Some(Seq(5)), Seq(5)), "more may wait");
    }

    #[test]
    fn after_a_round_the_next_retry_is_the_earliest_known_or_at_once() {
        let at = Timestamp::from_millis;
        let now = at(1_000);
        let next = |took: bool, not_taken: Option<i64>, scheduled: &[i64]| {
            next_retry_after_round(
                took,
                not_taken.map(at),
                scheduled.iter().map(|&m| at(m)),
                now,
            )
            .map(|t| t.millis())
        };
        assert_eq!(next(false, None, &[]), None, "no retries at all");
        assert_eq!(next(false, Some(9_000), &[]), Some(9_000));
        assert_eq!(next(false, Some(9_000), &[5_000, 7_000]), Some(5_000));
        assert_eq!(
            next(false, None, &[7_000]),
            Some(7_000),
            "scheduled this round"
        );
        assert_eq!(
            next(true, Some(9_000), &[5_000]),
            Some(1_000),
            "took due retries: some may be left unsent"
        );
    }

    #[test]
    fn an_idle_worker_sleeps_until_its_next_retry() {
        let now = Timestamp::from_millis(1_000_000);
        let wait = |at: Option<i64>| idle_wait(at.map(Timestamp::from_millis), now);
        assert_eq!(wait(None), IDLE_RECHECK, "no retry: looks again on its own");
        assert_eq!(wait(Some(1_002_500)), Duration::from_millis(2_500));
        assert_eq!(wait(Some(999_000)), Duration::ZERO, "overdue: at once");
        assert_eq!(wait(Some(1_000_000 + 3_600_000)), IDLE_RECHECK);
    }

    #[test]
    fn a_batch_is_split_only_when_every_entry_was_refused_alike() {
        assert!(refused_as_a_whole(&vec![
            refused("InvalidParameterValue");
            3
        ]));
        assert!(!refused_as_a_whole(&[
            refused("InvalidParameterValue"),
            refused("MessageTooLong")
        ]));
        assert!(!refused_as_a_whole(&[
            refused("InvalidParameterValue"),
            Outcome::Delivered
        ]));
        assert!(!refused_as_a_whole(&[Outcome::Retry(CallError::new(
            "Throttling",
            ""
        ))]));
        assert!(!refused_as_a_whole(&[]));
    }

    #[tokio::test]
    async fn a_send_that_outlives_the_lease_has_no_outcome() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            vec![Outcome::Delivered; 2]
        };
        let deadline = std::time::Instant::now() + Duration::from_millis(20);
        let same = || Lease::Until(deadline);
        assert_eq!(within_lease(Lease::Until(deadline), same, slow).await, None);
        // A lease already over sends nothing, however fast the send would be.
        let lapsed = std::time::Instant::now() - Duration::from_millis(1);
        let fast = async { vec![Outcome::Delivered] };
        assert_eq!(
            within_lease(Lease::Until(lapsed), || Lease::Until(lapsed), fast).await,
            None
        );
        // Without a lease bound (one node), the send's own answer stands.
        let fast = async { vec![Outcome::Delivered] };
        assert_eq!(
            within_lease(Lease::Unbounded, || Lease::None, fast).await,
            Some(vec![Outcome::Delivered])
        );
    }

    #[tokio::test]
    async fn a_send_outliving_the_first_deadline_stands_while_renewals_extend_the_lease() {
        let slow = async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            vec![Outcome::Delivered; 2]
        };
        let first = std::time::Instant::now() + Duration::from_millis(30);
        // Renewed meanwhile: each renewal moves the deadline 50 ms past the time it is asked.
        let renewed = || Lease::Until(std::time::Instant::now() + Duration::from_millis(50));
        let outcomes = within_lease(Lease::Until(first), renewed, slow).await;
        assert_eq!(outcomes, Some(vec![Outcome::Delivered; 2]));

        // The lease lost after the send began (another node took the hook): the send is cut.
        let slow = async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            vec![Outcome::Delivered]
        };
        let started = std::time::Instant::now();
        let first = started + Duration::from_millis(30);
        assert_eq!(
            within_lease(Lease::Until(first), || Lease::None, slow).await,
            None
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
