//! `check_sqs` / `check_sns`: try a destination for real, through the destinations' own calls.
//!
//! SQS: `GetQueueAttributes` (the queue exists and is readable with these credentials), then a
//! batch of one `health.check` event. SNS: a single `Publish` of the same event. The test message
//! is a real delivery: consumers see an event of type `health.check` and can ignore it.

use hookrelay_core::{Target, Timestamp};
use hookrelay_store::{App, StoredEvent};
use serde_json::{Map, Value, json};

use crate::aws::{AwsClients, Service};
use crate::destinations::sns::SnsDestination;
use crate::destinations::sqs::SqsDestination;
use crate::destinations::{Destination, Outgoing};
use crate::outcome::{CallError, Outcome};
use crate::signing::Signer;

/// Why a check failed, in the shape of Stream's `CheckSQSResponse` / `CheckSNSResponse`.
#[derive(Debug, Clone)]
pub struct CheckFailure {
    pub error: String,
    pub data: Map<String, Value>,
}

impl CheckFailure {
    pub fn new(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            data: Map::new(),
        }
    }

    fn from_call(prefix: &str, e: &CallError) -> Self {
        let mut data = Map::new();
        data.insert("aws_error_code".into(), e.code.clone().into());
        data.insert("aws_error_message".into(), e.message.clone().into());
        if let Some(status) = e.http_status {
            data.insert("http_status".into(), status.into());
        }
        Self {
            error: format!("{prefix}{e}"),
            data,
        }
    }
}

fn health_check_event() -> StoredEvent {
    let id = health_check_id();
    let now = Timestamp::now();
    let payload = json!({
        "type": "health.check",
        "id": id,
        "created_at": now.to_rfc3339(),
        "message": "hookrelay connection check",
    });
    StoredEvent {
        seq: hookrelay_store::Seq(0),
        id,
        event_type: "health.check".into(),
        cid: None,
        created_at: now,
        payload: payload.to_string().into_bytes().into(),
    }
}

/// A unique id for a check message, recognisable as one by consumers.
fn health_check_id() -> String {
    format!("health-check-{:016x}", rand::random::<u64>())
}

/// Checks one SQS or SNS target with the app's signing secret.
pub async fn check(clients: &AwsClients, app: &App, target: &Target) -> Result<(), CheckFailure> {
    let event = health_check_event();
    let signer = Signer::Stream {
        app_secret: app.api_secret.clone(),
    };
    match target {
        Target::Sqs {
            queue_url,
            region,
            auth,
        } => {
            let dest = SqsDestination::new(
                clients.client(Service::Sqs, region.as_str(), auth).await,
                queue_url,
            );
            dest.read_attributes().await.map_err(|e| {
                CheckFailure::from_call("reading the queue attributes failed. ", &e)
            })?;
            send_one(
                &Destination::Sqs(dest),
                &event,
                &signer,
                "sending the message failed. ",
            )
            .await
        }
        Target::Sns {
            topic_arn,
            region,
            auth,
        } => {
            let dest = SnsDestination::new(
                clients.client(Service::Sns, region.as_str(), auth).await,
                topic_arn,
            );
            // A single Publish, as Stream's check does ("publishing the message failed.").
            dest.publish_one(&event, &signer)
                .await
                .map_err(|e| CheckFailure::from_call("publishing the message failed. ", &e))
        }
        Target::Webhook { .. } => Err(CheckFailure::new("only SQS and SNS hooks can be checked")),
    }
}

/// What a hook's destination answered to a test event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestReport {
    pub event_id: String,
    pub latency: std::time::Duration,
    /// `None` when the event was delivered.
    pub error: Option<CallError>,
}

/// Sends a `health.check` event as one delivery attempt and reports what happened.
pub async fn send_test_event(destination: &Destination, signer: &Signer) -> TestReport {
    let event = health_check_event();
    let outgoing = Outgoing {
        event: &event,
        attempt: 1,
    };
    let started = std::time::Instant::now();
    let outcomes = destination
        .send(std::slice::from_ref(&outgoing), signer)
        .await;
    let latency = started.elapsed();
    let error = match outcomes.into_iter().next() {
        Some(Outcome::Delivered) => None,
        Some(failed) => failed.error().cloned(),
        None => Some(CallError::new(
            "missing",
            "the destination's answer did not mention the event",
        )),
    };
    TestReport {
        event_id: event.id,
        latency,
        error,
    }
}

async fn send_one(
    dest: &Destination,
    event: &StoredEvent,
    signer: &Signer,
    prefix: &str,
) -> Result<(), CheckFailure> {
    let outgoing = Outgoing { event, attempt: 1 };
    match dest
        .send(std::slice::from_ref(&outgoing), signer)
        .await
        .into_iter()
        .next()
    {
        Some(Outcome::Delivered) => Ok(()),
        Some(failed) => match failed.error() {
            Some(e) => Err(CheckFailure::from_call(prefix, e)),
            None => Err(CheckFailure::new(format!("{prefix}{failed:?}"))),
        },
        None => Err(CheckFailure::new(format!("{prefix}no result"))),
    }
}
