//! SQS: `SendMessageBatch`, one event per message, the event JSON as the body.

use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use hookrelay_core::Timestamp;
use hookrelay_core::hook::QueueUrl;
use hookrelay_store::StoredEvent;

use super::{
    ATTR_EVENT_ID, ATTR_EVENT_TYPE, Outgoing, STRING_TYPE, body_text, build_error, fifo_group,
    outcomes,
};
use crate::aws::call_error;
use crate::outcome::CallError;
use crate::outcome::Outcome;
use crate::signing::Signer;

#[derive(Clone)]
pub struct SqsDestination {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    pub(super) fifo: bool,
}

fn attribute(value: &str) -> Result<MessageAttributeValue, CallError> {
    MessageAttributeValue::builder()
        .data_type(STRING_TYPE)
        .string_value(value)
        .build()
        .map_err(build_error)
}

impl SqsDestination {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: &QueueUrl) -> Self {
        Self {
            client,
            queue_url: queue_url.to_string(),
            fifo: queue_url.is_fifo(),
        }
    }

    /// Reads the queue's ARN: the queue exists and these credentials may use it.
    pub async fn read_attributes(&self) -> Result<(), CallError> {
        self.client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| call_error(&e))
    }

    /// One entry: body, the type, id and signature attributes, and for FIFO queues group and
    /// deduplication ids.
    pub fn entry(
        &self,
        index: usize,
        event: &StoredEvent,
        signer: &Signer,
        now: Timestamp,
    ) -> Result<SendMessageBatchRequestEntry, CallError> {
        let mut entry = SendMessageBatchRequestEntry::builder()
            .id(index.to_string())
            .message_body(body_text(event))
            .message_attributes(ATTR_EVENT_TYPE, attribute(&event.event_type)?)
            .message_attributes(ATTR_EVENT_ID, attribute(&event.id)?);
        for (name, value) in signer.sign(&event.id, &event.payload, now) {
            entry = entry.message_attributes(name, attribute(&value)?);
        }
        if self.fifo {
            entry = entry
                .message_group_id(fifo_group(event))
                .message_deduplication_id(&event.id);
        }
        entry.build().map_err(build_error)
    }

    pub async fn send(
        &self,
        batch: &[Outgoing],
        signer: &Signer,
    ) -> Result<Vec<Outcome>, CallError> {
        let events = batch.iter().map(|o| &o.event);
        let len = batch.len();
        let now = Timestamp::now();
        let entries = events
            .enumerate()
            .map(|(i, e)| self.entry(i, e, signer, now))
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| call_error(&e))?;
        Ok(outcomes(
            len,
            out.successful.into_iter().map(|s| s.id),
            out.failed
                .into_iter()
                .map(|f| (f.id, CallError::new(f.code, f.message.unwrap_or_default()))),
        ))
    }
}
