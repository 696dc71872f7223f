//! One delivery round as pure steps around the send: [`plan`] (what to send, what is too large,
//! what waits) → the worker sends → [`settle`] (what the outcomes mean: the progress to record,
//! what to tell the metrics, and whether the destination is down). Neither step touches the
//! network, the store or the clock, so each is tested on its own.
//!
//! The rules they encode:
//! * The cursor never passes an event that was not handled: it stops before the first new event
//!   that was held back (probing, FIFO order, a lapsed lease) or that waits in the log because
//!   the destination was down.
//! * A refused entry (the destination answered "no" to it) is retried up to its attempts, then
//!   dead-lettered; it never makes the round count as "destination down", so it never holds
//!   back the events behind it.
//! * A round in which no entry got an answer about itself is "destination down": SQS and SNS
//!   record nothing (the events wait in the log); webhooks record the attempts, since receivers
//!   see `X-Webhook-Attempt`.
//! * A too-large event becomes one dead letter, recorded in the round whose cursor passes it, so
//!   a round that cannot move the cursor does not dead-letter it again.

use hookrelay_core::{EventFilter, HookId, Timestamp};
use hookrelay_store::{
    AttemptEvent, AttemptOutcome, AttemptRecord, DeadLetterReason, DeadLetterRecord, DueRetry,
    Epoch, Progress, RetryRecord, Seq, StoredEvent,
};

use crate::batch::pack;
use crate::destinations::BatchLimits;
use crate::outcome::CallError;
use crate::outcome::Outcome;
use crate::retry::{Next, RetryPolicy};

/// An event on its way, and its history if it is a retry.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub event: StoredEvent,
    /// Its size as an SQS/SNS message, attributes included.
    pub size: usize,
    /// (failed attempts so far, first failure) of a retry entry.
    pub prior: Option<(u32, Timestamp)>,
}

impl Item {
    pub fn new(event: StoredEvent, prior: Option<(u32, Timestamp)>, limits: &BatchLimits) -> Self {
        let size = limits.message_size(&event);
        Self { event, size, prior }
    }

    /// The number of the attempt about to be made (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.prior.map_or(1, |(failed, _)| failed + 1)
    }

    fn is_new(&self) -> bool {
        self.prior.is_none()
    }
}

/// What a round will do before it sends anything.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Batches to send, in order.
    pub batches: Vec<Vec<Item>>,
    /// Read, but not sent this round (a probing round sends one batch).
    pub held: Vec<Item>,
    /// Over the destination's size limit.
    pub too_large: Vec<Item>,
    /// The newest event read from the log, filtered out or not.
    pub last_read: Option<Seq>,
    pub max_bytes: usize,
}

/// How much a round may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    /// The destination was down (the hook's circuit is open): send one batch, to probe it.
    pub probing: bool,
    /// The most entries the hook's rate limit lets this round send; `None` = no limit.
    pub budget: Option<usize>,
}

#[cfg(test)]
impl Shape {
    pub const FULL: Shape = Shape {
        probing: false,
        budget: None,
    };
    pub const PROBE: Shape = Shape {
        probing: true,
        budget: None,
    };
}

/// Plans a round: the due retries and the new events the filter takes, too-large ones set
/// apart, packed into batches. A probing round (the destination was down) sends only its first
/// batch, made from the head of the log when there is anything new: the retry set may be made of
/// entries the destination refused, which say nothing about whether it is back. Entries beyond
/// the rate limit's budget are held for a later round.
pub(crate) fn plan(
    due: Vec<DueRetry>,
    events: Vec<StoredEvent>,
    filter: &EventFilter,
    limits: BatchLimits,
    shape: Shape,
) -> Plan {
    let last_read = events.last().map(|e| e.seq);
    let retries = due
        .into_iter()
        .map(|d| Item::new(d.event, Some((d.attempts, d.first_failed_at)), &limits));
    let new = events
        .into_iter()
        .filter(|e| filter.matches_event(&e.event_type, &e.payload))
        .map(|e| Item::new(e, None, &limits));
    let mut ordered: Vec<Item> = if shape.probing {
        let new: Vec<Item> = new.collect();
        new.into_iter().chain(retries).collect()
    } else {
        retries.chain(new).collect()
    };
    let over_budget = match shape.budget {
        Some(budget) if ordered.len() > budget => ordered.split_off(budget),
        _ => Vec::new(),
    };
    let (too_large, sendable): (Vec<Item>, Vec<Item>) = ordered
        .into_iter()
        .partition(|i| limits.size_limited && i.size > limits.max_bytes);
    let mut batches = pack(sendable, |i| i.size, limits.max_entries, limits.max_bytes);
    let mut held = if shape.probing && batches.len() > 1 {
        batches.drain(1..).flatten().collect()
    } else {
        Vec::new()
    };
    held.extend(over_budget);
    Plan {
        batches,
        held,
        too_large,
        last_read,
        max_bytes: limits.max_bytes,
    }
}

/// How the destination takes failures, for [`settle`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct SettleRules<'a> {
    pub fifo: bool,
    /// Webhooks: every attempt counts, even in a round where the receiver was down.
    pub counts_attempts: bool,
    pub retry: &'a RetryPolicy,
}

/// What to tell the metrics about a round, once its progress is recorded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Note {
    Delivered {
        latency_secs: f64,
    },
    Failed {
        error: CallError,
        will_retry: bool,
    },
    DeadLettered {
        reason: DeadLetterReason,
        event_id: String,
        error: String,
    },
}

/// What a round came to.
#[derive(Debug)]
pub(crate) struct Settlement {
    pub progress: Progress,
    pub notes: Vec<Note>,
    /// Set when the hook must back off: no entry got an answer about itself, or a FIFO round
    /// stopped at a failure.
    pub back_off: Option<CallError>,
}

/// The results of a round's sends: each sent batch with one outcome per entry, and the batches
/// left unsent (a FIFO round stops at the first batch not wholly delivered; a lapsed lease or a
/// worker told to stop stops any round).
#[derive(Debug, Default)]
pub(crate) struct Sent {
    pub results: Vec<Call>,
    pub unsent: Vec<Vec<Item>>,
    /// The first new event of the batches whose sends were dropped mid-flight (the worker was
    /// told to stop) or outlived the lease: their outcome is unknown, so they are sent again.
    pub abandoned_from: Option<Seq>,
}

/// One call to the destination: its entries, one outcome each, and when and how long it ran.
#[derive(Debug)]
pub(crate) struct Call {
    pub items: Vec<Item>,
    pub outcomes: Vec<Outcome>,
    pub at: Timestamp,
    pub duration_us: u64,
}

impl Call {
    /// Whether the destination answered about any entry of the call.
    pub fn answered(&self) -> bool {
        self.outcomes.iter().any(Outcome::destination_answered)
    }
}

/// Turns a round's outcomes into the progress to record. `cursor` is where the hook's cursor
/// stands; `now` is when the round started.
pub(crate) fn settle(
    hook: &HookId,
    epoch: Epoch,
    cursor: Seq,
    plan: Plan,
    sent: Sent,
    rules: SettleRules<'_>,
    now: Timestamp,
) -> Settlement {
    let mut s = Settling {
        progress: Progress::new(hook.clone(), epoch),
        notes: Vec::new(),
        stop_before: None,
        retry: rules.retry,
        now,
    };
    for item in plan.held.iter().chain(sent.unsent.iter().flatten()) {
        s.hold(item);
    }
    if let Some(seq) = sent.abandoned_from {
        s.hold_from(seq);
    }
    let answered = sent.results.iter().any(Call::answered);
    let down = !sent.results.is_empty() && !answered;
    let mut last_error = None;
    let mut fifo_stopped = false;
    for call in sent.results {
        let mut log = CallLog::new(call.at, call.duration_us);
        for (item, outcome) in call.items.into_iter().zip(call.outcomes) {
            if let Some(e) = outcome.error() {
                last_error = Some(e.clone());
            }
            let entry = attempt_event(&item);
            let (logged, error) = match outcome {
                Outcome::Delivered => {
                    let latency_ms = (now.millis() - item.event.created_at.millis()).max(0);
                    s.notes.push(Note::Delivered {
                        latency_secs: latency_ms as f64 / 1000.0,
                    });
                    if !item.is_new() {
                        s.progress.retries_done.push(item.event.seq);
                    }
                    (AttemptOutcome::Delivered, None)
                }
                Outcome::Denied(error) => {
                    s.dead_letter(item, DeadLetterReason::Denied, &error, true);
                    (AttemptOutcome::DeadLettered, Some(error))
                }
                Outcome::Refuse { error, attempts } => {
                    if item.attempt() >= attempts {
                        s.dead_letter(item, DeadLetterReason::Rejected, &error, true);
                        (AttemptOutcome::DeadLettered, Some(error))
                    } else {
                        s.schedule(item, error.clone());
                        (AttemptOutcome::Refused, Some(error))
                    }
                }
                Outcome::Retry(ref error) | Outcome::DestinationDown(ref error) => {
                    let error = error.clone();
                    let kind = if matches!(outcome, Outcome::DestinationDown(_)) {
                        AttemptOutcome::DestinationDown
                    } else {
                        AttemptOutcome::Retrying
                    };
                    if rules.fifo && item.is_new() {
                        // Resent from the log next round, to keep the group's order.
                        s.hold(&item);
                        fifo_stopped = true;
                        (kind, Some(error))
                    } else if down && !rules.counts_attempts {
                        // The destination took nothing: new events wait in the log, retry
                        // entries stay as they are.
                        s.hold(&item);
                        (AttemptOutcome::DestinationDown, Some(error))
                    } else if s.schedule(item, error.clone()) {
                        (kind, Some(error))
                    } else {
                        (AttemptOutcome::DeadLettered, Some(error))
                    }
                }
                Outcome::TooLarge { .. } => continue,
            };
            log.add(entry, logged, error.as_ref());
        }
        s.progress.attempts.extend(log.records());
    }
    let new_cursor = s.stop_before.map(|seq| seq - 1).or(plan.last_read);
    for item in plan.too_large {
        // A replayed retry entry is dead-lettered again at once; a new event when the cursor
        // passes it, so exactly once.
        if !item.is_new() || new_cursor.is_some_and(|c| item.event.seq <= c) {
            let error = CallError::new(
                "too_large",
                format!(
                    "the message is {} bytes with its attributes; SQS and SNS take at most {}",
                    item.size, plan.max_bytes
                ),
            );
            let mut log = CallLog::new(now, 0);
            log.add(attempt_event(&item), AttemptOutcome::Dropped, Some(&error));
            s.progress.attempts.extend(log.records());
            s.dead_letter(item, DeadLetterReason::TooLarge, &error, false);
        }
    }
    s.progress.cursor = new_cursor.filter(|c| *c > cursor);
    let back_off = if down || fifo_stopped {
        Some(last_error.unwrap_or_default())
    } else {
        None
    };
    Settlement {
        progress: s.progress,
        notes: s.notes,
        back_off,
    }
}

/// Bytes of a failed answer (or error message) the delivery log keeps.
const LOGGED_RESPONSE_BYTES: usize = 1024;

fn attempt_event(item: &Item) -> AttemptEvent {
    AttemptEvent {
        seq: item.event.seq,
        id: item.event.id.clone(),
        attempt: item.attempt(),
    }
}

/// The delivery-log records of one call: its entries grouped by what they came to, so a batch
/// delivered at once is one record.
struct CallLog {
    at: Timestamp,
    duration_us: u64,
    records: Vec<AttemptRecord>,
}

impl CallLog {
    fn new(at: Timestamp, duration_us: u64) -> Self {
        Self {
            at,
            duration_us,
            records: Vec::new(),
        }
    }

    fn add(&mut self, event: AttemptEvent, outcome: AttemptOutcome, error: Option<&CallError>) {
        let code = error.map(|e| e.code.clone());
        let http_status = error.and_then(|e| e.http_status);
        let response = error.map(|e| {
            let mut end = e.message.len().min(LOGGED_RESPONSE_BYTES);
            while !e.message.is_char_boundary(end) {
                end -= 1;
            }
            e.message[..end].to_owned()
        });
        let same = |r: &&mut AttemptRecord| {
            r.outcome == outcome
                && r.code == code
                && r.http_status == http_status
                && r.response == response
        };
        match self.records.iter_mut().find(same) {
            Some(record) => record.events.push(event),
            None => self.records.push(AttemptRecord {
                events: vec![event],
                at: self.at,
                duration_us: self.duration_us,
                outcome,
                code,
                http_status,
                response,
            }),
        }
    }

    fn records(self) -> Vec<AttemptRecord> {
        self.records
    }
}

struct Settling<'a> {
    progress: Progress,
    notes: Vec<Note>,
    /// The first new event that must be read again next round.
    stop_before: Option<Seq>,
    retry: &'a RetryPolicy,
    now: Timestamp,
}

impl Settling<'_> {
    /// A new event not handled this round: the cursor stops before it. (A retry entry not
    /// handled stays in the retry set as it is.)
    fn hold(&mut self, item: &Item) {
        if item.is_new() {
            self.hold_from(item.event.seq);
        }
    }

    fn hold_from(&mut self, seq: Seq) {
        self.stop_before = Some(self.stop_before.map_or(seq, |s| s.min(seq)));
    }

    /// Schedules the next attempt of a failed entry, or dead-letters it once the retry window
    /// is over (then false). A destination's `Retry-After` wins over the schedule, within its cap.
    fn schedule(&mut self, item: Item, error: CallError) -> bool {
        let attempts = item.attempt();
        let first_failed_at = item.prior.map_or(self.now, |(_, first)| first);
        match self.retry.next(first_failed_at, attempts, self.now) {
            Next::GiveUp => {
                self.dead_letter(item, DeadLetterReason::RetriesExhausted, &error, true);
                false
            }
            Next::RetryAt(at) => {
                let at = match error.retry_after {
                    Some(after) => {
                        let after = after.min(self.retry.cap).as_millis() as i64;
                        at.max(self.now.saturating_add_millis(after))
                    }
                    None => at,
                };
                self.notes.push(Note::Failed {
                    error: error.clone(),
                    will_retry: true,
                });
                self.progress.retries.push(RetryRecord {
                    seq: item.event.seq,
                    attempts,
                    first_failed_at,
                    next_attempt_at: at,
                    last_error: error.to_string(),
                });
                true
            }
        }
    }

    fn dead_letter(
        &mut self,
        item: Item,
        reason: DeadLetterReason,
        error: &CallError,
        attempted: bool,
    ) {
        let attempts = if attempted {
            item.attempt()
        } else {
            item.prior.map_or(0, |(n, _)| n)
        };
        if attempted {
            self.notes.push(Note::Failed {
                error: error.clone(),
                will_retry: false,
            });
        }
        self.notes.push(Note::DeadLettered {
            reason,
            event_id: item.event.id.clone(),
            error: error.to_string(),
        });
        self.progress.dead_letters.push(DeadLetterRecord {
            event: item.event,
            reason,
            attempts,
            last_error: error.to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::signing::SignatureSize;

    const HOOK: &str = "h";

    fn event(seq: i64, bytes: usize) -> StoredEvent {
        StoredEvent {
            seq: Seq(seq),
            id: format!("e{seq}"),
            event_type: "message.new".into(),
            cid: None,
            created_at: Timestamp::from_millis(1_000),
            payload: vec![b'x'; bytes].into(),
        }
    }

    fn retry_of(seq: i64, attempts: u32) -> DueRetry {
        DueRetry {
            event: event(seq, 10),
            attempts,
            first_failed_at: Timestamp::from_millis(2_000),
        }
    }

    fn aws() -> BatchLimits {
        BatchLimits {
            max_entries: 10,
            max_bytes: 256 * 1024,
            size_limited: true,
            signature: SignatureSize::default(),
        }
    }

    fn webhook() -> BatchLimits {
        BatchLimits {
            max_entries: 1,
            max_bytes: usize::MAX,
            size_limited: false,
            signature: SignatureSize::default(),
        }
    }

    fn all() -> EventFilter {
        EventFilter::new(&[])
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(600),
            window: Duration::from_secs(3600),
        }
    }

    fn rules(policy: &RetryPolicy, fifo: bool, counts_attempts: bool) -> SettleRules<'_> {
        SettleRules {
            fifo,
            counts_attempts,
            retry: policy,
        }
    }

    fn err(code: &str) -> CallError {
        CallError::new(code, "m")
    }

    fn refused() -> Outcome {
        Outcome::Refuse {
            error: err("HTTP 400"),
            attempts: 3,
        }
    }

    /// Sends every planned batch and answers each entry with `answer(seq)`.
    fn send_all(plan: &mut Plan, answer: impl Fn(&Item) -> Outcome) -> Sent {
        let results = plan
            .batches
            .drain(..)
            .map(|items| {
                let outcomes = items.iter().map(&answer).collect();
                Call {
                    items,
                    outcomes,
                    at: Timestamp::from_millis(3_000),
                    duration_us: 100,
                }
            })
            .collect();
        Sent {
            results,
            ..Sent::default()
        }
    }

    fn run(
        mut plan: Plan,
        cursor: i64,
        rules: SettleRules<'_>,
        answer: impl Fn(&Item) -> Outcome,
    ) -> Settlement {
        let sent = send_all(&mut plan, answer);
        settled(plan, sent, Seq(cursor), rules)
    }

    fn settled(plan: Plan, sent: Sent, cursor: Seq, rules: SettleRules<'_>) -> Settlement {
        let hook = HookId::try_from(HOOK.to_owned()).unwrap();
        settle(
            &hook,
            Epoch(0),
            cursor,
            plan,
            sent,
            rules,
            Timestamp::from_millis(10_000),
        )
    }

    fn dead(s: &Settlement) -> Vec<(i64, &'static str)> {
        s.progress
            .dead_letters
            .iter()
            .map(|d| (d.event.seq.0, d.reason.as_str()))
            .collect()
    }

    #[test]
    fn refusals_do_not_hold_back_the_events_behind_them() {
        let p = policy();
        // 3 refused retry entries, one new good event: everything settles, the cursor moves.
        let due = vec![retry_of(1, 1), retry_of(2, 2), retry_of(3, 2)];
        let planned = plan(due, vec![event(4, 10)], &all(), webhook(), Shape::FULL);
        let s = run(planned, 3, rules(&p, false, true), |i| {
            if i.event.seq.0 == 4 {
                Outcome::Delivered
            } else {
                refused()
            }
        });
        assert!(s.back_off.is_none(), "refusals are answers: not down");
        assert_eq!(s.progress.cursor, Some(Seq(4)));
        assert_eq!(dead(&s), vec![(2, "rejected"), (3, "rejected")]);
        assert_eq!(
            s.progress
                .retries
                .iter()
                .map(|r| r.seq.0)
                .collect::<Vec<_>>(),
            vec![1]
        );
    }

    #[test]
    fn a_round_of_refusals_alone_is_not_a_destination_down() {
        let p = policy();
        let planned = plan(
            vec![],
            vec![event(1, 10), event(2, 10)],
            &all(),
            webhook(),
            Shape::FULL,
        );
        let s = run(planned, 0, rules(&p, false, true), |_| refused());
        assert!(s.back_off.is_none());
        assert_eq!(s.progress.retries.len(), 2);
        assert_eq!(s.progress.cursor, Some(Seq(2)));
    }

    #[test]
    fn denied_addresses_are_dead_letters_at_once() {
        let p = policy();
        let planned = plan(vec![], vec![event(1, 10)], &all(), webhook(), Shape::FULL);
        let s = run(planned, 0, rules(&p, false, true), |_| {
            Outcome::Denied(err("denied"))
        });
        assert_eq!(dead(&s), vec![(1, "denied")]);
        assert!(s.back_off.is_none() && s.progress.retries.is_empty());
    }

    #[test]
    fn a_down_aws_destination_records_nothing_and_backs_off() {
        let p = policy();
        let events: Vec<_> = (1..=25).map(|s| event(s, 10)).collect();
        let planned = plan(vec![retry_of(0, 1)], events, &all(), aws(), Shape::FULL);
        assert_eq!(planned.batches.len(), 3);
        let s = run(planned, 0, rules(&p, false, false), |_| {
            Outcome::DestinationDown(err("AccessDenied"))
        });
        assert_eq!(s.back_off.map(|e| e.code), Some("AccessDenied".into()));
        let p = &s.progress;
        assert!(
            p.cursor.is_none() && p.retries.is_empty() && p.dead_letters.is_empty(),
            "events wait in the log: {p:?}"
        );
        // The delivery log still shows each call, one record per batch.
        assert_eq!(p.attempts.len(), 3);
        assert!(
            p.attempts
                .iter()
                .all(|a| a.outcome == AttemptOutcome::DestinationDown)
        );
        assert_eq!(p.attempts[0].events.len(), 10);
        assert_eq!(
            p.attempts[0].events[0].attempt, 2,
            "the retry entry's second attempt"
        );
    }

    #[test]
    fn the_delivery_log_keeps_one_record_per_call_and_outcome() {
        let p = policy();
        let events: Vec<_> = (1..=10).map(|s| event(s, 10)).collect();
        let planned = plan(vec![], events, &all(), aws(), Shape::FULL);
        let s = run(planned, 0, rules(&p, false, false), |i| {
            match i.event.seq.0 {
                3 | 7 => Outcome::Retry(CallError {
                    http_status: Some(503),
                    ..CallError::new("ServiceUnavailable", "x".repeat(5000))
                }),
                9 => refused(),
                _ => Outcome::Delivered,
            }
        });
        let log: Vec<(AttemptOutcome, Vec<i64>)> = s
            .progress
            .attempts
            .iter()
            .map(|a| (a.outcome, a.events.iter().map(|e| e.seq.0).collect()))
            .collect();
        assert_eq!(
            log,
            vec![
                (AttemptOutcome::Delivered, vec![1, 2, 4, 5, 6, 8, 10]),
                (AttemptOutcome::Retrying, vec![3, 7]),
                (AttemptOutcome::Refused, vec![9]),
            ]
        );
        let retrying = &s.progress.attempts[1];
        assert_eq!(retrying.response.as_ref().map(String::len), Some(1024));
        assert_eq!(retrying.http_status, Some(503));
        assert_eq!(retrying.duration_us, 100);
    }

    #[test]
    fn a_down_webhook_counts_its_attempts() {
        let p = policy();
        let planned = plan(vec![], vec![event(1, 10)], &all(), webhook(), Shape::FULL);
        let s = run(planned, 0, rules(&p, false, true), |_| {
            Outcome::Retry(err("HTTP 503"))
        });
        assert!(s.back_off.is_some());
        assert_eq!(s.progress.retries.len(), 1);
        assert_eq!(s.progress.cursor, Some(Seq(1)));
    }

    #[test]
    fn probing_sends_one_batch_from_the_head_of_the_log() {
        let due = vec![retry_of(1, 1), retry_of(2, 1)];
        let planned = plan(
            due,
            vec![event(5, 10), event(6, 10)],
            &all(),
            webhook(),
            Shape::PROBE,
        );
        assert_eq!(planned.batches.len(), 1);
        assert_eq!(planned.batches[0][0].event.seq.0, 5, "the probe is new");
        let p = policy();
        let s = run(planned, 4, rules(&p, false, true), |_| Outcome::Delivered);
        // 6 was held: the cursor stops before it; the held retries stay as they are.
        assert_eq!(s.progress.cursor, Some(Seq(5)));
        assert!(s.progress.retries.is_empty() && s.progress.retries_done.is_empty());
    }

    #[test]
    fn fifo_stops_at_a_failure_and_resends_from_the_log() {
        let p = policy();
        let events: Vec<_> = (1..=3).map(|s| event(s, 10)).collect();
        let planned = plan(vec![], events, &all(), aws(), Shape::FULL);
        let s = run(planned, 0, rules(&p, true, false), |i| {
            if i.event.seq.0 == 2 {
                Outcome::Retry(err("InternalError"))
            } else {
                Outcome::Delivered
            }
        });
        assert_eq!(
            s.progress.cursor,
            Some(Seq(1)),
            "stops before the failed event"
        );
        assert!(
            s.progress.retries.is_empty(),
            "no retry entry: order comes from the log"
        );
        assert!(s.back_off.is_some());
    }

    #[test]
    fn unsent_batches_hold_the_cursor() {
        let p = policy();
        let events: Vec<_> = (1..=20).map(|s| event(s, 10)).collect();
        let mut planned = plan(vec![], events, &all(), aws(), Shape::FULL);
        let second = planned.batches.pop().unwrap();
        let mut sent = send_all(&mut planned, |_| Outcome::Delivered);
        sent.unsent.push(second);
        let s = settled(planned, sent, Seq(0), rules(&p, false, false));
        assert_eq!(s.progress.cursor, Some(Seq(10)));
    }

    #[test]
    fn sends_dropped_mid_flight_are_sent_again() {
        let p = policy();
        let events: Vec<_> = (1..=30).map(|s| event(s, 10)).collect();
        let mut planned = plan(vec![], events, &all(), aws(), Shape::FULL);
        let in_flight = planned.batches.split_off(1); // batches 2 and 3 were in flight
        let mut sent = send_all(&mut planned, |_| Outcome::Delivered);
        sent.abandoned_from = in_flight.iter().flatten().map(|i| i.event.seq).min();
        let s = settled(planned, sent, Seq(0), rules(&p, false, false));
        assert_eq!(
            s.progress.cursor,
            Some(Seq(10)),
            "the acknowledged batch is recorded"
        );
    }

    #[test]
    fn too_large_events_are_dead_lettered_once_when_the_cursor_passes_them() {
        let p = policy();
        let big = 300 * 1024;
        let events = vec![event(1, big), event(2, 10), event(3, big)];
        // Down: nothing sent gets through. Event 1 is before the first waiting event, so it is
        // dead-lettered now; event 3 is after it, so it waits to be planned again.
        let planned = plan(vec![], events.clone(), &all(), aws(), Shape::FULL);
        let s = run(planned, 0, rules(&p, false, false), |_| {
            Outcome::DestinationDown(err("NonExistentQueue"))
        });
        assert_eq!(dead(&s), vec![(1, "too_large")]);
        assert_eq!(s.progress.cursor, Some(Seq(1)));
        // The next round starts after 1: the destination is back, 3 is dead-lettered, once.
        let planned = plan(vec![], events[1..].to_vec(), &all(), aws(), Shape::FULL);
        let s = run(planned, 1, rules(&p, false, false), |_| Outcome::Delivered);
        assert_eq!(dead(&s), vec![(3, "too_large")]);
        assert_eq!(s.progress.cursor, Some(Seq(3)));
        let notes = s
            .notes
            .iter()
            .filter(|n| matches!(n, Note::DeadLettered { .. }))
            .count();
        assert_eq!(notes, 1);
    }

    #[test]
    fn a_replayed_too_large_dead_letter_is_checked_again() {
        let p = policy();
        let mut due = retry_of(7, 0);
        due.event = event(7, 300 * 1024);
        let planned = plan(vec![due], vec![], &all(), aws(), Shape::FULL);
        assert!(planned.batches.is_empty());
        let s = run(planned, 9, rules(&p, false, false), |_| Outcome::Delivered);
        assert_eq!(dead(&s), vec![(7, "too_large")]);
    }

    #[test]
    fn retries_end_in_a_dead_letter_after_the_window() {
        let p = RetryPolicy {
            window: Duration::from_secs(1),
            ..policy()
        };
        let planned = plan(vec![retry_of(1, 4)], vec![], &all(), webhook(), Shape::FULL);
        let s = run(planned, 1, rules(&p, false, true), |_| {
            Outcome::Retry(err("HTTP 500"))
        });
        assert_eq!(dead(&s), vec![(1, "retries_exhausted")]);
    }

    #[test]
    fn retry_after_wins_within_the_cap() {
        let p = policy();
        let planned = plan(vec![], vec![event(1, 10)], &all(), webhook(), Shape::FULL);
        let s = run(planned, 0, rules(&p, false, true), |_| {
            Outcome::Retry(CallError {
                retry_after: Some(Duration::from_secs(120)),
                ..err("HTTP 429")
            })
        });
        let r = &s.progress.retries[0];
        assert!(r.next_attempt_at.millis() >= 10_000 + 120_000);
    }

    #[test]
    fn the_filter_moves_the_cursor_past_events_it_does_not_take() {
        let p = policy();
        let filter = EventFilter::new(&["reaction.new".to_owned()]);
        let planned = plan(
            vec![],
            vec![event(1, 10), event(2, 10)],
            &filter,
            aws(),
            Shape::FULL,
        );
        assert!(planned.batches.is_empty());
        let s = run(planned, 0, rules(&p, false, false), |_| Outcome::Delivered);
        assert_eq!(s.progress.cursor, Some(Seq(2)));
    }

    #[test]
    fn a_rate_limit_budget_holds_the_rest_and_the_cursor_stops_before_them() {
        let p = policy();
        let events: Vec<StoredEvent> = (1..=5).map(|seq| event(seq, 10)).collect();
        let shape = Shape {
            probing: false,
            budget: Some(2),
        };
        let planned = plan(vec![retry_of(0, 1)], events, &all(), webhook(), shape);
        assert_eq!(planned.batches.len(), 2, "the retry and one new event");
        assert_eq!(planned.held.len(), 4);
        let s = run(planned, 0, rules(&p, false, true), |_| Outcome::Delivered);
        assert_eq!(
            s.progress.cursor,
            Some(Seq(1)),
            "events 2 to 5 wait in the log"
        );
    }

    #[test]
    fn the_content_filter_reads_each_events_json() {
        let p = policy();
        let with = |seq: i64, role: &str| StoredEvent {
            payload: format!(
                r#"{{"type":"message.new","message":{{"user":{{"role":"{role}"}}}}}}"#
            )
            .into_bytes()
            .into(),
            ..event(seq, 0)
        };
        let content = hookrelay_core::ContentFilter::compile(
            serde_json::json!({"message.user.role": ["admin", "moderator"]}),
        )
        .unwrap();
        let filter = EventFilter::new(&[]).with_content(Some(content));
        let planned = plan(
            vec![],
            vec![with(1, "user"), with(2, "admin"), with(3, "guest")],
            &filter,
            webhook(),
            Shape::FULL,
        );
        let sent: Vec<i64> = planned
            .batches
            .iter()
            .flatten()
            .map(|i| i.event.seq.0)
            .collect();
        assert_eq!(sent, vec![2]);
        let s = run(planned, 0, rules(&p, false, true), |_| Outcome::Delivered);
        assert_eq!(
            s.progress.cursor,
            Some(Seq(3)),
            "filtered-out events are passed"
        );
    }
}
