//! SNS: `PublishBatch` in the query protocol (a form body, an XML answer), one event per
//! notification, the event JSON as the `Message`.

use std::fmt::Write;

use aws_smithy_xml::decode::{Document, ScopedDecoder, try_data};
use hookrelay_core::Timestamp;
use hookrelay_core::hook::TopicArn;
use hookrelay_store::StoredEvent;

use super::{Attributes, Outgoing, STRING_TYPE, body_str, entry_id, fifo_group, outcomes};
use crate::aws::{AwsClient, AwsRequest};
use crate::outcome::CallError;
use crate::outcome::Outcome;
use crate::signing::Signer;

const FORM: &str = "application/x-www-form-urlencoded";
const API_VERSION: &str = "2010-03-31";

#[derive(Clone)]
pub struct SnsDestination {
    client: AwsClient,
    topic_arn: String,
    pub(super) fifo: bool,
}

/// A query-protocol body: `name=value` pairs, form-encoded.
struct Form(String);

impl Form {
    /// A form with room for `messages` events carrying `payload_bytes` of JSON: one
    /// allocation per call, where growing from a small buffer copied a batch's form several
    /// times over (fanout profile).
    fn new(action: &str, topic_arn: &str, messages: usize, payload_bytes: usize) -> Self {
        // JSON's quotes, colons, commas and braces take three bytes each once encoded (about a
        // fifth of its bytes); each message also carries its field names and attributes.
        const PER_MESSAGE: usize = 1024;
        let mut form = Self(String::with_capacity(
            payload_bytes + payload_bytes / 2 + PER_MESSAGE * messages + 256,
        ));
        form.add("Action", action);
        form.add("Version", API_VERSION);
        form.add("TopicArn", topic_arn);
        form
    }

    fn add(&mut self, name: impl std::fmt::Display, value: &str) {
        if !self.0.is_empty() {
            self.0.push('&');
        }
        let _ = write!(self.0, "{name}=");
        push_form_encoded(&mut self.0, value);
    }

    /// One message's fields under `prefix` (`PublishBatchRequestEntries.member.1.`, or nothing
    /// for `Publish`).
    fn message(
        &mut self,
        prefix: &str,
        event: &StoredEvent,
        attributes: &Attributes<'_>,
        fifo: bool,
    ) {
        self.add(format_args!("{prefix}Message"), &body_str(event));
        for (n, (name, value)) in attributes.iter().enumerate() {
            let entry = format!("{prefix}MessageAttributes.entry.{}", n + 1);
            self.add(format_args!("{entry}.Name"), name);
            self.add(format_args!("{entry}.Value.DataType"), STRING_TYPE);
            self.add(format_args!("{entry}.Value.StringValue"), value);
        }
        if fifo {
            self.add(format_args!("{prefix}MessageGroupId"), fifo_group(event));
            self.add(format_args!("{prefix}MessageDeduplicationId"), &event.id);
        }
    }

    fn into_request(self) -> AwsRequest<'static> {
        AwsRequest {
            content_type: FORM,
            target: None,
            body: self.0.into_bytes(),
        }
    }
}

/// Appends `value` form-encoded (`application/x-www-form-urlencoded`: ASCII letters, digits
/// and `*-._` as they are, space as `+`, every other byte as `%XX`). An event's JSON is mostly
/// bytes left as they are, so they are copied in runs: this is the bulk of an SNS body, and
/// encoding it byte by byte showed in the fan-out profile.
fn push_form_encoded(out: &mut String, value: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let unchanged = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_');
    let bytes = value.as_bytes();
    out.reserve(bytes.len() + bytes.len() / 2);
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if unchanged(b) {
            continue;
        }
        // A run holds only ASCII bytes left as they are, so both its ends are character
        // boundaries (every byte of a multi-byte character is encoded).
        if run_start < i {
            out.push_str(&value[run_start..i]);
        }
        run_start = i + 1;
        if b == b' ' {
            out.push('+');
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
    out.push_str(&value[run_start..]);
}

impl SnsDestination {
    pub fn new(client: AwsClient, topic_arn: &TopicArn) -> Self {
        Self {
            client,
            topic_arn: topic_arn.to_string(),
            fifo: topic_arn.is_fifo(),
        }
    }

    /// Publishes one event alone (`Publish`, not a batch), as Stream's `check_sns` does.
    pub async fn publish_one(&self, event: &StoredEvent, signer: &Signer) -> Result<(), CallError> {
        let mut form = Form::new("Publish", &self.topic_arn, 1, event.payload.len());
        let attributes = Attributes::of_event(event, signer, Timestamp::now());
        form.message("", event, &attributes, self.fifo);
        self.client.call(form.into_request()).await.map(|_| ())
    }

    fn batch_form(&self, batch: &[Outgoing<'_>], signer: &Signer, now: Timestamp) -> Form {
        let payloads: usize = batch.iter().map(|o| o.event.payload.len()).sum();
        let mut form = Form::new("PublishBatch", &self.topic_arn, batch.len(), payloads);
        for (i, outgoing) in batch.iter().enumerate() {
            let prefix = format!("PublishBatchRequestEntries.member.{}.", i + 1);
            form.add(format_args!("{prefix}Id"), &entry_id(i));
            let attributes = Attributes::of_event(outgoing.event, signer, now);
            form.message(&prefix, outgoing.event, &attributes, self.fifo);
        }
        form
    }

    pub async fn send(
        &self,
        batch: &[Outgoing<'_>],
        signer: &Signer,
    ) -> Result<Vec<Outcome>, CallError> {
        let form = self.batch_form(batch, signer, Timestamp::now());
        let answer = self.client.call(form.into_request()).await?;
        let (successful, failed) = read_batch_answer(&answer).map_err(|e| {
            CallError::new("response", format!("PublishBatch answer unreadable: {e}"))
        })?;
        Ok(outcomes(
            batch.len(),
            successful.into_iter(),
            failed.into_iter(),
        ))
    }
}

type BatchAnswer = (Vec<String>, Vec<(String, CallError)>);

/// The ids of the successful and failed entries of a `PublishBatchResponse`.
fn read_batch_answer(xml: &[u8]) -> Result<BatchAnswer, String> {
    let text = std::str::from_utf8(xml).map_err(|e| e.to_string())?;
    let mut doc = Document::new(text);
    let mut root = doc.root_element().map_err(|e| e.to_string())?;
    let (mut successful, mut failed) = (Vec::new(), Vec::new());
    while let Some(mut tag) = root.next_tag() {
        if !tag.start_el().matches("PublishBatchResult") {
            continue;
        }
        while let Some(mut list) = tag.next_tag() {
            let is_success = list.start_el().matches("Successful");
            let is_failure = list.start_el().matches("Failed");
            while let Some(mut member) = list.next_tag() {
                let fields = member_fields(&mut member)?;
                if is_success {
                    successful.push(fields.id);
                } else if is_failure {
                    failed.push((fields.id, CallError::new(fields.code, fields.message)));
                }
            }
        }
    }
    Ok((successful, failed))
}

#[derive(Default)]
struct MemberFields {
    id: String,
    code: String,
    message: String,
}

fn member_fields(member: &mut ScopedDecoder<'_, '_>) -> Result<MemberFields, String> {
    let mut fields = MemberFields::default();
    while let Some(mut field) = member.next_tag() {
        let slot = match field.start_el().local() {
            "Id" => &mut fields.id,
            "Code" => &mut fields.code,
            "Message" => &mut fields.message,
            _ => continue,
        };
        *slot = try_data(&mut field)
            .map_err(|e| e.to_string())?
            .into_owned();
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_answer_names_its_successes_and_failures() {
        let xml = br#"<PublishBatchResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
          <PublishBatchResult>
            <Successful><member><Id>0</Id><MessageId>m0</MessageId></member></Successful>
            <Failed><member><Id>1</Id><Code>InvalidParameter</Code><Message>bad &amp; worse</Message><SenderFault>true</SenderFault></member></Failed>
          </PublishBatchResult>
          <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>
        </PublishBatchResponse>"#;
        let (ok, failed) = read_batch_answer(xml).unwrap();
        assert_eq!(ok, ["0"]);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, "1");
        assert_eq!(
            failed[0].1,
            CallError::new("InvalidParameter", "bad & worse")
        );
        let empty = br#"<PublishBatchResponse><PublishBatchResult><Successful/><Failed/></PublishBatchResult></PublishBatchResponse>"#;
        assert_eq!(read_batch_answer(empty).unwrap(), (vec![], vec![]));
        assert!(read_batch_answer(b"not xml").is_err());
    }

    #[test]
    fn form_encoding_matches_the_standard_serializer() {
        let every_char: String = (0u32..0x300).filter_map(char::from_u32).collect();
        for value in [
            "",
            "plain-Text_1.2*",
            " a b ",
            r#"{"type":"message.new","text":"a&b=c+d%e/f?g#h"}"#,
            "é ü 日本語 🎉",
            "🎉",
            "x🎉",
            "🎉x",
            &every_char,
        ] {
            let mut encoded = String::new();
            push_form_encoded(&mut encoded, value);
            let expected: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
            assert_eq!(encoded, expected, "{value:?}");
        }
    }

    #[test]
    fn a_batch_of_chat_events_is_built_without_growing_its_form() {
        let text = "Are we still on for lunch tomorrow? I can book the place near the office, \
                    or we could try the new one downtown, if you're up for it. "
            .repeat(6);
        let payload = format!(
            r#"{{"type":"message.new","cid":"messaging:general","channel_type":"messaging","channel_id":"general","message":{{"id":"5e8a1c2d-0f6b-4c3e-9a7d-2b1f0e9c8d7a","text":"{text}","user":{{"id":"ann","name":"Ann"}},"created_at":"2026-12-07T10:00:00.000Z"}},"user":{{"id":"ann"}},"created_at":"2026-12-07T10:00:00.000Z"}}"#
        );
        let events: Vec<StoredEvent> = (0..10)
            .map(|i| StoredEvent {
                seq: hookrelay_store::Seq(i + 1),
                id: format!("5e8a1c2d-0f6b-4c3e-9a7d-{i:012}"),
                event_type: "message.new".into(),
                cid: Some("messaging:general".into()),
                created_at: Timestamp::from_millis(0),
                payload: payload.clone().into_bytes().into(),
            })
            .collect();
        let batch: Vec<Outgoing<'_>> = events
            .iter()
            .map(|event| Outgoing { event, attempt: 1 })
            .collect();
        let signer = Signer::Stream {
            app_secret: hookrelay_core::Secret::new("s"),
        };
        let arn: TopicArn = "arn:aws:sns:us-east-1:123456789012:chat-events"
            .parse()
            .unwrap();
        let dest = SnsDestination::new(AwsClient::for_tests(crate::aws::Service::Sns), &arn);
        let room = Form::new("PublishBatch", &arn.to_string(), 10, payload.len() * 10)
            .0
            .capacity();
        let form = dest.batch_form(&batch, &signer, Timestamp::from_millis(0));
        assert!(payload.len() > 1000, "a 1 KB event");
        assert_eq!(
            form.0.capacity(),
            room,
            "{} bytes built in the room reserved",
            form.0.len()
        );
    }

    #[test]
    fn a_batch_is_the_form_the_sns_api_takes() {
        let event = StoredEvent {
            seq: hookrelay_store::Seq(1),
            id: "e 1".into(),
            event_type: "message.new".into(),
            cid: None,
            created_at: Timestamp::from_millis(0),
            payload: br#"{"type":"message.new","text":"a&b=c"}"#.to_vec().into(),
        };
        let signer = Signer::Stream {
            app_secret: hookrelay_core::Secret::new("s"),
        };
        let arn: TopicArn = "arn:aws:sns:us-east-1:123456789012:t".parse().unwrap();
        let dest = SnsDestination::new(AwsClient::for_tests(crate::aws::Service::Sns), &arn);
        let form = dest.batch_form(
            &[Outgoing {
                event: &event,
                attempt: 1,
            }],
            &signer,
            Timestamp::from_millis(0),
        );
        let pairs: std::collections::HashMap<String, String> =
            form_urlencoded::parse(form.0.as_bytes())
                .into_owned()
                .collect();
        let entry = "PublishBatchRequestEntries.member.1.";
        assert_eq!(pairs["Action"], "PublishBatch");
        assert_eq!(pairs["TopicArn"], arn.to_string());
        assert_eq!(pairs[&format!("{entry}Id")], "0");
        assert_eq!(
            pairs[&format!("{entry}Message")],
            r#"{"type":"message.new","text":"a&b=c"}"#
        );
        assert_eq!(
            pairs[&format!("{entry}MessageAttributes.entry.1.Name")],
            "event_type"
        );
        assert_eq!(
            pairs[&format!("{entry}MessageAttributes.entry.2.Value.StringValue")],
            "e 1"
        );
        assert_eq!(
            pairs[&format!("{entry}MessageAttributes.entry.3.Name")],
            "X-Signature"
        );
        assert!(!pairs.contains_key(&format!("{entry}MessageGroupId")));
    }
}
