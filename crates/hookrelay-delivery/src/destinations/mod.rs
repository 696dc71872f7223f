//! Where events go. One module per destination; each turns a batch of stored events into one
//! SDK call and reports, per entry, whether it was delivered.
//!
//! A closed set of destinations is an enum, not a trait object: the dispatcher matches on it in
//! one place and each arm calls one module.

pub mod sns;
pub mod sqs;

use hookrelay_core::event::is_valid_event_id;
use hookrelay_core::{EventHook, Secret, Target};
use hookrelay_store::StoredEvent;

use crate::aws::{AwsClients, CallError};

/// The result of one entry of a batch call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryOutcome {
    Delivered,
    Failed(CallError),
}

/// A hook's destination, ready to send.
#[derive(Clone)]
pub enum Destination {
    Sqs(sqs::SqsDestination),
    Sns(sns::SnsDestination),
}

impl Destination {
    /// The destination of a hook; `None` for hook types this build does not deliver yet.
    pub async fn for_hook(clients: &AwsClients, hook: &EventHook) -> Option<Self> {
        Some(match &hook.target {
            Target::Sqs {
                queue_url,
                region,
                auth,
            } => Self::Sqs(sqs::SqsDestination::new(
                clients.sqs(region.as_str(), auth).await,
                queue_url,
            )),
            Target::Sns {
                topic_arn,
                region,
                auth,
            } => Self::Sns(sns::SnsDestination::new(
                clients.sns(region.as_str(), auth).await,
                topic_arn,
            )),
            Target::Webhook { .. } => return None,
        })
    }

    /// FIFO queues and topics keep order per group; the dispatcher sends their batches one at a
    /// time.
    pub fn is_fifo(&self) -> bool {
        match self {
            Self::Sqs(d) => d.fifo,
            Self::Sns(d) => d.fifo,
        }
    }

    /// Sends one batch (≤ 10 events, within the size limit). `Err` means the call as a whole
    /// failed and nothing was delivered; `Ok` gives one outcome per event, in order.
    pub async fn send(
        &self,
        events: &[StoredEvent],
        app_secret: &Secret,
    ) -> Result<Vec<EntryOutcome>, CallError> {
        match self {
            Self::Sqs(d) => d.send(events, app_secret).await,
            Self::Sns(d) => d.send(events, app_secret).await,
        }
    }
}

/// The FIFO message group of an event: its channel (`cid`), so each channel's events stay in
/// order while channels proceed in parallel; the event type when it has no usable `cid`.
pub fn fifo_group(event: &StoredEvent) -> &str {
    match event.cid.as_deref() {
        Some(cid) if is_valid_event_id(cid) => cid,
        _ => &event.event_type,
    }
}

/// The body as text: stored payloads are JSON that was parsed from a `&str`, so always UTF-8.
pub fn body_text(event: &StoredEvent) -> String {
    String::from_utf8_lossy(&event.payload).into_owned()
}

/// Maps batch-result ids (the entry's index) to outcomes: every entry starts as failed, and only
/// an explicit success marks it delivered, so an entry the response forgot is retried, not lost.
pub(crate) fn outcomes(
    len: usize,
    successful: impl Iterator<Item = String>,
    failed: impl Iterator<Item = (String, CallError)>,
) -> Vec<EntryOutcome> {
    let mut out = vec![
        EntryOutcome::Failed(CallError {
            code: "missing".into(),
            message: "the batch response did not mention this entry".into(),
            http_status: None,
            permanent: false,
        });
        len
    ];
    for id in successful {
        if let Some(slot) = id.parse::<usize>().ok().and_then(|i| out.get_mut(i)) {
            *slot = EntryOutcome::Delivered;
        }
    }
    for (id, err) in failed {
        if let Some(slot) = id.parse::<usize>().ok().and_then(|i| out.get_mut(i)) {
            *slot = EntryOutcome::Failed(err);
        }
    }
    out
}

/// An SDK builder's error: a required field was missing. It cannot happen with the fields set
/// here, but it is reported, never unwrapped.
pub(crate) fn build_error(e: impl std::fmt::Display) -> CallError {
    CallError {
        code: "request".into(),
        message: e.to_string(),
        http_status: None,
        permanent: false,
    }
}
