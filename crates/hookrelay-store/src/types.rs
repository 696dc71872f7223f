//! Records that cross the [`crate::Store`] boundary.

use std::collections::BTreeMap;

use hookrelay_core::{HookId, Secret, Timestamp};
use serde_json::{Map, Value};

use crate::{AppId, Epoch, Seq};

/// An app: its credentials and its settings.
#[derive(Debug, Clone)]
pub struct App {
    pub id: AppId,
    pub name: String,
    pub api_key: String,
    pub api_secret: Secret,
    /// The secret `api_secret` replaced, and until when it still authenticates API calls.
    pub previous_api_secret: Option<(Secret, Timestamp)>,
    pub settings: AppSettings,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl App {
    /// The replaced API secret, while its rotation window lasts at `now`.
    pub fn previous_secret_at(&self, now: Timestamp) -> Option<&Secret> {
        self.previous_api_secret
            .as_ref()
            .filter(|(_, until)| *until > now)
            .map(|(secret, _)| secret)
    }
}

/// The app settings a client set through `PATCH /app`, other than `event_hooks`. Plain fields are
/// kept as JSON; the legacy secret fields (`sqs_secret`, `sns_secret`) are kept apart, encrypted.
#[derive(Debug, Clone, Default)]
pub struct AppSettings {
    pub fields: Map<String, Value>,
    pub secrets: BTreeMap<String, Secret>,
}

/// The result of appending one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub id: String,
    /// `None` when an event with this id was already in the log.
    pub seq: Option<Seq>,
}

/// One event as the log holds it.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: Seq,
    pub id: String,
    pub event_type: String,
    pub cid: Option<String>,
    pub created_at: Timestamp,
    /// The exact JSON bytes delivered to destinations.
    pub payload: Payload,
}

/// Shared, immutable payload bytes: cloned into destination batches and webhook request bodies
/// without copying.
pub type Payload = bytes::Bytes;

/// What a delivery round starts from (see [`crate::Store::round_input`]).
#[derive(Debug, Clone)]
pub struct RoundInput {
    /// The cursor the round starts from.
    pub cursor: Cursor,
    /// Retry entries due, oldest first, with their events.
    pub due: Vec<DueRetry>,
    /// New events after the cursor, in order.
    pub events: Vec<StoredEvent>,
    /// When the first retry entry not in `due` comes due (`now` when `due` was cut at its
    /// limit): an idle worker sleeps until then without asking the store again.
    pub next_retry_at: Option<Timestamp>,
}

/// How much one round reads at most.
#[derive(Debug, Clone, Copy)]
pub struct RoundLimits {
    pub retries: usize,
    pub events: usize,
}

impl RoundLimits {
    /// Whether `due` retries read at `now` were cut at the limit: then more are due already,
    /// and the next retry is `now`. `None` means: look for the first one due after `now`.
    pub fn more_due(&self, due: usize, now: Timestamp) -> Option<Timestamp> {
        (due >= self.retries).then_some(now)
    }
}

/// A retry entry that is due, with its event.
#[derive(Debug, Clone)]
pub struct DueRetry {
    pub event: StoredEvent,
    pub attempts: u32,
    pub first_failed_at: Timestamp,
}

/// A failed delivery that will be tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryRecord {
    pub seq: Seq,
    pub attempts: u32,
    pub first_failed_at: Timestamp,
    pub next_attempt_at: Timestamp,
    pub last_error: String,
}

/// Why an event became a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// The message exceeds the destination's size limit (256 KB for SQS and SNS).
    TooLarge,
    /// The destination refused the message itself; no retry can cure it.
    Rejected,
    /// Retries did not succeed within the retry window.
    RetriesExhausted,
    /// The receiver's address is in `webhook.deny_cidrs`.
    Denied,
}

impl DeadLetterReason {
    /// Every reason, in a fixed order (metrics keep a counter per reason).
    pub const ALL: [Self; 4] = [
        Self::TooLarge,
        Self::Rejected,
        Self::RetriesExhausted,
        Self::Denied,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Rejected => "rejected",
            Self::RetriesExhausted => "retries_exhausted",
            Self::Denied => "denied",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "too_large" => Self::TooLarge,
            "rejected" => Self::Rejected,
            "retries_exhausted" => Self::RetriesExhausted,
            "denied" => Self::Denied,
            _ => return None,
        })
    }
}

/// A new dead letter.
#[derive(Debug, Clone)]
pub struct DeadLetterRecord {
    pub event: StoredEvent,
    pub reason: DeadLetterReason,
    pub attempts: u32,
    pub last_error: String,
}

/// A stored dead letter.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub id: i64,
    pub seq: Seq,
    pub event_id: String,
    pub event_type: String,
    pub reason: DeadLetterReason,
    pub attempts: u32,
    pub last_error: String,
    pub created_at: Timestamp,
}

/// A hook as the dispatcher sees it: its configuration and its operational state.
#[derive(Debug, Clone)]
pub struct HookRecord {
    pub app: AppId,
    pub hook: hookrelay_core::EventHook,
    /// Paused through the operations API: delivery stops, the backlog is kept.
    pub paused: bool,
}

/// A hook reached through its own app: the only way to name a hook to the operations the API
/// exposes (pause, rewind, dead letters and their replay, the delivery log), so a handler cannot
/// reach another app's hook by forgetting a check. Only the store makes one
/// ([`crate::Store::app_hooks`], [`crate::Store::app_hook`]).
#[derive(Debug, Clone)]
pub struct AppHook {
    record: HookRecord,
}

impl AppHook {
    pub(crate) fn new(record: HookRecord) -> Self {
        Self { record }
    }

    pub fn id(&self) -> &HookId {
        &self.record.hook.id
    }

    pub fn app(&self) -> AppId {
        self.record.app
    }

    pub fn record(&self) -> &HookRecord {
        &self.record
    }
}

/// Where a hook's delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub seq: Seq,
    /// Changes when the cursor is rewound; progress recorded under an older epoch is refused.
    pub epoch: Epoch,
}

impl Cursor {
    /// Where a round starts: from this cursor (the worker's own), or from the stored one if it
    /// was rewound since (its epoch changed).
    pub fn or_rewound(self, stored: Cursor) -> Cursor {
        if stored.epoch == self.epoch {
            self
        } else {
            stored
        }
    }
}

/// What a hook still has to do, from the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookBacklog {
    pub cursor: Seq,
    /// Events of the app after the cursor (the hook's filter not applied). This and the two
    /// counts below stop at the `count_up_to` the caller gave.
    pub events_behind: u64,
    pub retries: u64,
    pub dead_letters: u64,
    /// Creation time of the oldest event still to deliver (after the cursor or in the retry set).
    pub oldest_pending: Option<Timestamp>,
    /// The node delivering the hook, when several share the store.
    pub owner: Option<String>,
}

/// One round of a hook's delivery results, applied atomically by [`crate::Store::record_progress`].
#[derive(Debug, Clone)]
pub struct Progress {
    pub hook: HookId,
    /// The epoch the round started under (see [`Cursor`]).
    pub epoch: Epoch,
    /// Move the cursor forward to this sequence number (never backwards).
    pub cursor: Option<Seq>,
    /// Insert or update these retry entries.
    pub retries: Vec<RetryRecord>,
    /// Remove these retry entries (delivered, or moved to dead letters).
    pub retries_done: Vec<Seq>,
    pub dead_letters: Vec<DeadLetterRecord>,
    /// The round's delivery attempts, for the delivery log.
    pub attempts: Vec<AttemptRecord>,
    /// The round left its hook nothing to do, so nothing waits on this write but the hook's
    /// own next round: a store may hold it briefly and commit it with the next appends rather
    /// than in a commit of its own. It is answered once committed, as any other.
    pub can_wait: bool,
}

impl Progress {
    pub fn new(hook: HookId, epoch: Epoch) -> Self {
        Self {
            hook,
            epoch,
            cursor: None,
            retries: Vec::new(),
            retries_done: Vec::new(),
            dead_letters: Vec::new(),
            attempts: Vec::new(),
            can_wait: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.cursor.is_none()
            && self.retries.is_empty()
            && self.retries_done.is_empty()
            && self.dead_letters.is_empty()
            && self.attempts.is_empty()
    }
}

/// What one delivery attempt came to, as the delivery log keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    Delivered,
    /// Failed; the event is in the retry set.
    Retrying,
    /// The destination refused it; it has attempts left.
    Refused,
    /// This attempt made it a dead letter.
    DeadLettered,
    /// Over the destination's size limit: never sent, dead-lettered.
    Dropped,
    /// The destination took nothing (no connection, timeout, 5xx to everything); the event waits.
    DestinationDown,
}

impl AttemptOutcome {
    pub const ALL: [Self; 6] = [
        Self::Delivered,
        Self::Retrying,
        Self::Refused,
        Self::DeadLettered,
        Self::Dropped,
        Self::DestinationDown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retrying => "retrying",
            Self::Refused => "refused",
            Self::DeadLettered => "dead_lettered",
            Self::Dropped => "dropped",
            Self::DestinationDown => "destination_down",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// One event of an attempt: a call delivers several events at once (an SQS batch), and the log
/// keeps a batch's successes as one record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttemptEvent {
    pub seq: Seq,
    pub id: String,
    /// The attempt's number for this event (1 for the first).
    pub attempt: u32,
}

/// One delivery attempt of one or more events with the same outcome (one call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub events: Vec<AttemptEvent>,
    pub at: Timestamp,
    pub duration_us: u64,
    pub outcome: AttemptOutcome,
    /// The error code (`HTTP 500`, an AWS code) on failure.
    pub code: Option<String>,
    pub http_status: Option<u16>,
    /// The first 1 KB of the destination's answer (or the error message) on failure.
    pub response: Option<String>,
}

impl AttemptRecord {
    /// The lowest and highest sequence numbers of its events (`None` when it has none).
    pub fn seq_range(&self) -> Option<(Seq, Seq)> {
        let seqs = self.events.iter().map(|e| e.seq);
        Some((seqs.clone().min()?, seqs.max()?))
    }
}

/// A stored attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub id: i64,
    pub record: AttemptRecord,
}

/// Where one event stands for one hook, from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookTrace {
    pub hook: HookId,
    /// The hook's cursor: events at or below it are done (delivered, dead-lettered, retrying,
    /// or passed by its filter).
    pub cursor: Seq,
    /// `(failed attempts, next attempt, last error)` while the event is in the retry set.
    pub retry: Option<(u32, Timestamp, String)>,
    pub dead_letter: Option<DeadLetterReason>,
    /// Attempts that include the event, oldest first.
    pub attempts: Vec<Attempt>,
}

/// One event and what happened to it at each of the given hooks.
#[derive(Debug, Clone)]
pub struct EventTrace {
    pub event: StoredEvent,
    pub hooks: Vec<HookTrace>,
}

/// What one lease round left this node with (see [`crate::Store::lease_round`]).
#[derive(Debug, Clone, Default)]
pub struct LeaseRound {
    /// Hooks this node holds a lease on now.
    pub owned: std::collections::HashSet<HookId>,
    /// How many of them it should give up (after stopping their workers) so that other live
    /// nodes get their share.
    pub surplus: usize,
    /// When the next round is due (sooner than `renew_every` when another node's lease is
    /// about to run out).
    pub next_in: std::time::Duration,
    /// How often leases must be renewed to stay held.
    pub renew_every: std::time::Duration,
}

/// A node's right to deliver a hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// One node owns every hook (the embedded store).
    Unbounded,
    /// Held until this instant, unless renewed.
    Until(std::time::Instant),
    /// Not held: do not send.
    None,
}

impl Lease {
    /// Whether sends may start now.
    pub fn is_held(&self) -> bool {
        match self {
            Lease::Unbounded => true,
            Lease::Until(deadline) => std::time::Instant::now() < *deadline,
            Lease::None => false,
        }
    }
}
