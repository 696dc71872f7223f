//! SQS: `SendMessageBatch` in the AWS JSON protocol, one event per message, the event JSON as the
//! body.

use hookrelay_core::Timestamp;
use hookrelay_core::hook::QueueUrl;
use serde::Deserialize;

use super::json_text::push_string;
use super::{Attributes, Outgoing, STRING_TYPE, body_str, entry_id, fifo_group, outcomes};
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

    /// The request body of one batch: `{"QueueUrl": …, "Entries": [{"Id", "MessageBody",
    /// "MessageAttributes", and for FIFO queues "MessageGroupId" and "MessageDeduplicationId"}]}`.
    /// Written by hand, not through serde, so each event's JSON is escaped in runs (`json_text`).
    fn batch_body(&self, batch: &[Outgoing<'_>], signer: &Signer, now: Timestamp) -> Vec<u8> {
        // Room for the payloads, their escapes (a quote in about every eight bytes of JSON),
        // each entry's attributes and signature, and the envelope: one allocation per batch.
        let payloads: usize = batch.iter().map(|o| o.event.payload.len()).sum();
        let mut out = Vec::with_capacity(payloads + payloads / 8 + 400 * batch.len() + 100);
        out.extend_from_slice(br#"{"QueueUrl":"#);
        push_string(&mut out, &self.queue_url);
        out.extend_from_slice(br#","Entries":["#);
        for (i, outgoing) in batch.iter().enumerate() {
            let event = outgoing.event;
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(br#"{"Id":"#);
            push_string(&mut out, &entry_id(i));
            out.extend_from_slice(br#","MessageBody":"#);
            push_string(&mut out, &body_str(event));
            out.extend_from_slice(br#","MessageAttributes":{"#);
            let attributes = Attributes::of_event(event, signer, now);
            for (n, (name, value)) in attributes.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                push_string(&mut out, name);
                out.extend_from_slice(br#":{"DataType":"#);
                push_string(&mut out, STRING_TYPE);
                out.extend_from_slice(br#","StringValue":"#);
                push_string(&mut out, value);
                out.push(b'}');
            }
            out.push(b'}');
            if self.fifo {
                out.extend_from_slice(br#","MessageGroupId":"#);
                push_string(&mut out, fifo_group(event));
                out.extend_from_slice(br#","MessageDeduplicationId":"#);
                push_string(&mut out, &event.id);
            }
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
        out
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
    use hookrelay_store::StoredEvent;

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
