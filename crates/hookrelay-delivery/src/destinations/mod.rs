//! Where events go. One module per destination; each turns a batch of stored events into one
//! call (an HTTP request, or an SQS/SNS call through `aws`) and reports, per entry, whether it
//! was delivered.
//!
//! A closed set of destinations is an enum, not a trait object: the dispatcher matches on it in
//! one place and each arm calls one module.

mod json_text;
pub mod sns;
pub mod sqs;
pub mod webhook;

use hookrelay_core::event::is_valid_event_id;
use hookrelay_core::limits::{AWS_MAX_BATCH_ENTRIES, AWS_MAX_MESSAGE_BYTES};
use hookrelay_core::{EventHook, Target, Timestamp};
use hookrelay_store::StoredEvent;

use std::borrow::Cow;

use crate::aws::{AwsClients, Service};
use crate::batch::aws_message_size;
use crate::outcome::CallError;
use crate::outcome::{Outcome, classify_call_error, classify_entry_error};
use crate::signing::{SignatureSize, Signer};

/// The message attributes every SQS/SNS message carries, by name. Consumers de-duplicate on
/// `event_id`, route on `event_type` (SNS filter policies), and verify origin with the hook's
/// signature attributes (`signing`).
pub const ATTR_EVENT_TYPE: &str = "event_type";
pub const ATTR_EVENT_ID: &str = "event_id";
/// The data type of every attribute.
pub const STRING_TYPE: &str = "String";

/// An event on its way, with the number of this attempt (1 for the first).
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub event: &'a StoredEvent,
    pub attempt: u32,
}

/// How a destination takes its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_entries: usize,
    pub max_bytes: usize,
    /// Messages over `max_bytes` are dead-lettered as `too_large` (SQS and SNS).
    pub size_limited: bool,
    /// What the hook's signature attributes add to each message.
    pub signature: SignatureSize,
}

impl BatchLimits {
    /// The size AWS counts for an event as a message.
    pub fn message_size(&self, event: &StoredEvent) -> usize {
        aws_message_size(
            event.payload.len(),
            &event.event_type,
            &event.id,
            self.signature.bytes(event.id.len()),
        )
    }
}

/// What a hook's destination needs to know about its app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppContext {
    pub api_key: String,
    /// `enable_hook_payload_compression`: gzip webhook bodies.
    pub compress: bool,
}

/// A hook's destination, ready to send.
#[derive(Clone)]
pub enum Destination {
    Sqs(sqs::SqsDestination),
    Sns(sns::SnsDestination),
    Webhook(webhook::WebhookDestination),
}

impl Destination {
    pub async fn for_hook(
        clients: &AwsClients,
        http: &webhook::WebhookClient,
        hook: &EventHook,
        app: &AppContext,
    ) -> Self {
        match &hook.target {
            Target::Sqs {
                queue_url,
                region,
                auth,
            } => Self::Sqs(sqs::SqsDestination::new(
                clients.client(Service::Sqs, region.as_str(), auth).await,
                queue_url,
            )),
            Target::Sns {
                topic_arn,
                region,
                auth,
            } => Self::Sns(sns::SnsDestination::new(
                clients.client(Service::Sns, region.as_str(), auth).await,
                topic_arn,
            )),
            Target::Webhook { url } => Self::Webhook(webhook::WebhookDestination::new(
                http.clone(),
                url,
                &app.api_key,
                app.compress,
            )),
        }
    }

    /// FIFO queues and topics keep order per group; the dispatcher sends their batches one at a
    /// time.
    pub fn is_fifo(&self) -> bool {
        match self {
            Self::Sqs(d) => d.fifo,
            Self::Sns(d) => d.fifo,
            Self::Webhook(_) => false,
        }
    }

    /// The batch limits for a hook that signs with `signer`.
    pub fn limits(&self, signer: &Signer) -> BatchLimits {
        let signature = signer.attribute_size();
        match self {
            Self::Sqs(_) | Self::Sns(_) => BatchLimits {
                max_entries: AWS_MAX_BATCH_ENTRIES,
                // SNS's batch limit; SQS's is now 1 MiB, but 256 KiB works with both everywhere.
                max_bytes: AWS_MAX_MESSAGE_BYTES,
                size_limited: true,
                signature,
            },
            Self::Webhook(_) => BatchLimits {
                max_entries: 1,
                max_bytes: usize::MAX,
                size_limited: false,
                signature,
            },
        }
    }

    /// Whether a failed attempt is recorded even when the whole round failed. Webhook receivers
    /// see the attempt number (`X-Webhook-Attempt`), so every attempt must count; SQS and SNS
    /// calls that all fail leave their events in the log instead.
    pub fn counts_attempts(&self) -> bool {
        matches!(self, Self::Webhook(_))
    }

    /// Sends one batch (within [`Destination::limits`]) and gives one outcome per event, in
    /// order. A batch call that failed as a whole gives every entry that call's outcome.
    pub async fn send(&self, batch: &[Outgoing<'_>], signer: &Signer) -> Vec<Outcome> {
        let call = match self {
            Self::Sqs(d) => d.send(batch, signer).await,
            Self::Sns(d) => d.send(batch, signer).await,
            Self::Webhook(d) => return d.send(batch, signer).await,
        };
        call.unwrap_or_else(|error| vec![classify_call_error(error); batch.len()])
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

/// The body as text: stored payloads are JSON that was parsed from a `&str`, so always UTF-8
/// (the strict check is much cheaper than the lossy one, which is only the fallback).
pub fn body_str(event: &StoredEvent) -> Cow<'_, str> {
    match std::str::from_utf8(&event.payload) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(&event.payload),
    }
}

/// The message attributes of one SQS/SNS message, in order: every one a `String`.
#[derive(Debug, Default)]
pub struct Attributes<'a>(Vec<(&'static str, Cow<'a, str>)>);

impl<'a> Attributes<'a> {
    pub fn new() -> Self {
        Self(Vec::with_capacity(3))
    }

    pub fn push(&mut self, name: &'static str, value: Cow<'a, str>) {
        self.0.push((name, value));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.0.iter().map(|(name, value)| (*name, value.as_ref()))
    }

    /// The type, id and signature attributes of an event (`event_type` makes SNS subscription
    /// filter policies work; `event_id` lets consumers de-duplicate).
    pub fn of_event(event: &'a StoredEvent, signer: &Signer, now: Timestamp) -> Self {
        let mut attributes = Self::new();
        attributes.push(ATTR_EVENT_TYPE, event.event_type.as_str().into());
        attributes.push(ATTR_EVENT_ID, event.id.as_str().into());
        for (name, value) in signer.sign(&event.id, &event.payload, now) {
            attributes.push(name, value.into());
        }
        attributes
    }
}

/// The id of a batch entry: its index in the batch (`"0"` to `"9"` in every full batch).
pub(crate) fn entry_id(index: usize) -> Cow<'static, str> {
    const IDS: [&str; AWS_MAX_BATCH_ENTRIES] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match IDS.get(index) {
        Some(id) => Cow::Borrowed(id),
        None => Cow::Owned(index.to_string()),
    }
}

/// Maps batch-result ids (the entry's index) to outcomes: every entry starts as failed, and only
/// an explicit success marks it delivered, so an entry the response forgot is retried, not lost.
pub(crate) fn outcomes(
    len: usize,
    successful: impl Iterator<Item = String>,
    failed: impl Iterator<Item = (String, CallError)>,
) -> Vec<Outcome> {
    let missing = CallError::new("missing", "the batch response did not mention this entry");
    let mut out = vec![Outcome::Retry(missing); len];
    for id in successful {
        if let Some(slot) = id.parse::<usize>().ok().and_then(|i| out.get_mut(i)) {
            *slot = Outcome::Delivered;
        }
    }
    for (id, err) in failed {
        if let Some(slot) = id.parse::<usize>().ok().and_then(|i| out.get_mut(i)) {
            *slot = classify_entry_error(err);
        }
    }
    out
}
