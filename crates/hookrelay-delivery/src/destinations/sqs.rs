//! SQS: `SendMessageBatch` in the AWS JSON protocol, one event per message, the event JSON as the
//! body.

use hookrelay_core::Timestamp;
use hookrelay_core::hook::QueueUrl;
use hookrelay_store::StoredEvent;
use serde::{Deserialize, Serialize};

use super::{Attributes, Outgoing, body_str, entry_id, fifo_group, outcomes};
use crate::aws::{AwsClient, AwsRequest};
use crate::outcome::CallError;
use crate::outcome::Outcome;
use crate::signing::Signer;

const JSON_1_0: &str = "application/x-amz-json-1.0";

#[derive(Clone)]
pub struct SqsDestination {
    client: AwsClient,
    queue_url: String,
    pub(super) fifo: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessageBatch<'a> {
    queue_url: &'a str,
    entries: Vec<Entry<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Entry<'a> {
    id: std::borrow::Cow<'static, str>,
    message_body: std::borrow::Cow<'a, str>,
    message_attributes: Attributes<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_group_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_deduplication_id: Option<&'a str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchAnswer {
    #[serde(default)]
    successful: Vec<Succeeded>,
    #[serde(default)]
    failed: Vec<Failed>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Succeeded {
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Failed {
    id: String,
    code: String,
    #[serde(default)]
    message: Option<String>,
}

impl SqsDestination {
    pub fn new(client: AwsClient, queue_url: &QueueUrl) -> Self {
        Self {
            client,
            queue_url: queue_url.to_string(),
            fifo: queue_url.is_fifo(),
        }
    }

    /// Reads the queue's ARN: the queue exists and these credentials may use it.
    pub async fn read_attributes(&self) -> Result<(), CallError> {
        let body = serde_json::json!({
            "QueueUrl": self.queue_url,
            "AttributeNames": ["QueueArn"],
        });
        self.client
            .call(AwsRequest {
                content_type: JSON_1_0,
                target: Some("AmazonSQS.GetQueueAttributes"),
                body: body.to_string().into_bytes(),
            })
            .await
            .map(|_| ())
    }

    /// One entry: body, the type, id and signature attributes, and for FIFO queues group and
    /// deduplication ids.
    fn entry<'a>(
        &self,
        index: usize,
        event: &'a StoredEvent,
        signer: &Signer,
        now: Timestamp,
    ) -> Entry<'a> {
        Entry {
            id: entry_id(index),
            message_body: body_str(event),
            message_attributes: Attributes::of_event(event, signer, now),
            message_group_id: self.fifo.then(|| fifo_group(event)),
            message_deduplication_id: self.fifo.then_some(event.id.as_str()),
        }
    }

    /// The request body of one batch.
    fn batch_body(&self, batch: &[Outgoing<'_>], signer: &Signer, now: Timestamp) -> Vec<u8> {
        let request = SendMessageBatch {
            queue_url: &self.queue_url,
            entries: batch
                .iter()
                .enumerate()
                .map(|(i, o)| self.entry(i, o.event, signer, now))
                .collect(),
        };
        serde_json::to_vec(&request).expect("a request of strings always serialises")
    }

    pub async fn send(
        &self,
        batch: &[Outgoing<'_>],
        signer: &Signer,
    ) -> Result<Vec<Outcome>, CallError> {
        let body = self.batch_body(batch, signer, Timestamp::now());
        let answer = self
            .client
            .call(AwsRequest {
                content_type: JSON_1_0,
                target: Some("AmazonSQS.SendMessageBatch"),
                body,
            })
            .await?;
        let answer: BatchAnswer = serde_json::from_slice(&answer).map_err(|e| {
            CallError::new(
                "response",
                format!("SendMessageBatch answer unreadable: {e}"),
            )
        })?;
        Ok(outcomes(
            batch.len(),
            answer.successful.into_iter().map(|s| s.id),
            answer
                .failed
                .into_iter()
                .map(|f| (f.id, CallError::new(f.code, f.message.unwrap_or_default()))),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_the_json_the_sqs_api_takes() {
        let event = StoredEvent {
            seq: hookrelay_store::Seq(1),
            id: "e1".into(),
            event_type: "message.new".into(),
            cid: Some("messaging:general".into()),
            created_at: Timestamp::from_millis(0),
            payload: br#"{"type":"message.new","text":"a \"quote\""}"#.to_vec().into(),
        };
        let outgoing = [Outgoing {
            event: &event,
            attempt: 1,
        }];
        let signer = Signer::Stream {
            app_secret: hookrelay_core::Secret::new("s"),
        };
        let url: QueueUrl = "https://sqs.us-east-1.amazonaws.com/123456789012/q.fifo"
            .parse()
            .unwrap();
        let clients = AwsClient::for_tests(crate::aws::Service::Sqs);
        let dest = SqsDestination::new(clients, &url);
        let body = dest.batch_body(&outgoing, &signer, Timestamp::from_millis(0));
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let entry = &json["Entries"][0];
        assert_eq!(json["QueueUrl"], url.to_string());
        assert_eq!(entry["Id"], "0");
        assert_eq!(
            entry["MessageBody"],
            r#"{"type":"message.new","text":"a \"quote\""}"#
        );
        assert_eq!(
            entry["MessageAttributes"]["event_type"],
            serde_json::json!({"DataType": "String", "StringValue": "message.new"})
        );
        assert_eq!(entry["MessageAttributes"]["event_id"]["StringValue"], "e1");
        assert_eq!(
            entry["MessageAttributes"]["X-Signature"]["StringValue"]
                .as_str()
                .unwrap()
                .len(),
            64
        );
        assert_eq!(entry["MessageGroupId"], "messaging:general");
        assert_eq!(entry["MessageDeduplicationId"], "e1");
    }
}
