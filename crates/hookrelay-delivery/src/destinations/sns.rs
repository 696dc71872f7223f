//! SNS: `PublishBatch`, one event per notification, the event JSON as the `Message`.

use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use hookrelay_core::Timestamp;
use hookrelay_core::hook::TopicArn;
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
pub struct SnsDestination {
    client: aws_sdk_sns::Client,
    topic_arn: String,
    pub(super) fifo: bool,
}

fn attribute(value: &str) -> Result<MessageAttributeValue, CallError> {
    MessageAttributeValue::builder()
        .data_type(STRING_TYPE)
        .string_value(value)
        .build()
        .map_err(build_error)
}

impl SnsDestination {
    pub fn new(client: aws_sdk_sns::Client, topic_arn: &TopicArn) -> Self {
        Self {
            client,
            topic_arn: topic_arn.to_string(),
            fifo: topic_arn.is_fifo(),
        }
    }

    /// Publishes one event alone (`Publish`, not a batch), as Stream's `check_sns` does.
    pub async fn publish_one(&self, event: &StoredEvent, signer: &Signer) -> Result<(), CallError> {
        let mut publish = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .message(body_text(event));
        for (name, value) in Self::attributes(event, signer, Timestamp::now())? {
            publish = publish.message_attributes(name, value);
        }
        if self.fifo {
            publish = publish
                .message_group_id(fifo_group(event))
                .message_deduplication_id(&event.id);
        }
        publish.send().await.map(|_| ()).map_err(|e| call_error(&e))
    }

    /// The type, id and signature attributes (`event_type` makes SNS subscription filter
    /// policies work).
    fn attributes(
        event: &StoredEvent,
        signer: &Signer,
        now: Timestamp,
    ) -> Result<Vec<(&'static str, MessageAttributeValue)>, CallError> {
        let mut out = vec![
            (ATTR_EVENT_TYPE, attribute(&event.event_type)?),
            (ATTR_EVENT_ID, attribute(&event.id)?),
        ];
        for (name, value) in signer.sign(&event.id, &event.payload, now) {
            out.push((name, attribute(&value)?));
        }
        Ok(out)
    }

    pub async fn send(
        &self,
        batch: &[Outgoing],
        signer: &Signer,
    ) -> Result<Vec<Outcome>, CallError> {
        let events = batch.iter().map(|o| &o.event);
        let len = batch.len();
        let now = Timestamp::now();
        let mut entries = Vec::with_capacity(len);
        for (i, event) in events.enumerate() {
            let mut entry = PublishBatchRequestEntry::builder()
                .id(i.to_string())
                .message(body_text(event));
            for (name, value) in Self::attributes(event, signer, now)? {
                entry = entry.message_attributes(name, value);
            }
            if self.fifo {
                entry = entry
                    .message_group_id(fifo_group(event))
                    .message_deduplication_id(&event.id);
            }
            entries.push(entry.build().map_err(build_error)?);
        }
        let out = self
            .client
            .publish_batch()
            .topic_arn(&self.topic_arn)
            .set_publish_batch_request_entries(Some(entries))
            .send()
            .await
            .map_err(|e| call_error(&e))?;
        Ok(outcomes(
            len,
            out.successful
                .unwrap_or_default()
                .into_iter()
                .filter_map(|s| s.id),
            out.failed
                .unwrap_or_default()
                .into_iter()
                .map(|f| (f.id, CallError::new(f.code, f.message.unwrap_or_default()))),
        ))
    }
}
