//! What an ingested event must look like, and the bytes hookrelay stores and delivers for it.
//!
//! The caller's JSON is kept byte for byte: the stored payload is the event exactly as sent, with
//! `id` and `created_at` spliced in at the front only when the caller left them out. Nothing is
//! re-serialised, so key order, number formatting and unknown fields survive, and ingest does not
//! pay for building and printing a JSON tree per event.

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::Timestamp;
use crate::limits::{MAX_EVENT_ID_LEN, MAX_EVENT_TYPE_LEN};

/// An event ready to append to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedEvent {
    pub id: String,
    pub event_type: String,
    /// The channel id, used as the FIFO message group.
    pub cid: Option<String>,
    pub payload: Vec<u8>,
}

/// The fields hookrelay reads; everything else in the event is carried through untouched.
/// `Option<Value>` fields use `present` so that `"id": null` is seen (and refused) rather than
/// taken for a missing id, which would put a second `id` key in the stored JSON.
#[derive(Deserialize)]
struct Head {
    #[serde(rename = "type", default, deserialize_with = "present")]
    event_type: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    id: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    created_at: Option<Value>,
    #[serde(default)]
    cid: Option<Value>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Checks an event type: `[a-z0-9_.-]+`, at most 64 characters.
pub fn is_valid_event_type(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_EVENT_TYPE_LEN
        && t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
}

/// An event id: 1–128 printable ASCII characters without spaces, so it is valid as an HTTP header
/// value and as an SQS `MessageDeduplicationId`.
pub fn is_valid_event_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_EVENT_ID_LEN && id.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// When a request arrived, as the `created_at` an event without its own gets. Formatted once
/// per request: every event of a request shares it, and formatting it per event was a
/// noticeable part of ingest.
#[derive(Debug, Clone)]
pub struct ReceivedAt(String);

impl ReceivedAt {
    pub fn new(at: Timestamp) -> Self {
        Self(at.to_rfc3339())
    }

    pub fn now() -> Self {
        Self::new(Timestamp::now())
    }
}

/// Validates one event (as raw JSON) and produces its stored form. The error completes the
/// sentence "events[i]: …".
pub fn prepare_event(
    raw: &RawValue,
    received: &ReceivedAt,
    max_bytes: usize,
) -> Result<PreparedEvent, String> {
    prepare_event_with_id(raw, received, max_bytes, None)
}

/// [`prepare_event`], with the id an event without its own takes (a valid event id; a new UUID
/// when `None`). An inlet passes the sender's delivery id, so a redelivery is a duplicate.
pub fn prepare_event_with_id(
    raw: &RawValue,
    received: &ReceivedAt,
    max_bytes: usize,
    default_id: Option<&str>,
) -> Result<PreparedEvent, String> {
    let text = raw.get();
    if !text.starts_with('{') {
        return Err("must be a JSON object".into());
    }
    let head: Head = serde_json::from_str(text).map_err(|e| format!("is not valid: {e}"))?;
    let event_type = match head.event_type {
        Some(Value::String(t)) if is_valid_event_type(&t) => t,
        Some(Value::String(t)) => {
            return Err(format!(
                "type {t:?} is not valid: use 1 to {MAX_EVENT_TYPE_LEN} of a-z, 0-9, '_', '.', '-'"
            ));
        }
        Some(_) => return Err("type must be a string".into()),
        None => return Err("type is required".into()),
    };
    let cid = match head.cid {
        // NUL cannot be stored in a database text column, nor be an SQS group id.
        Some(Value::String(c)) if c.contains('\0') => {
            return Err("cid must not contain NUL characters".into());
        }
        Some(Value::String(c)) => Some(c),
        _ => None,
    };
    let (id, id_given) = match head.id {
        Some(Value::String(id)) if is_valid_event_id(&id) => (id, true),
        Some(_) => {
            return Err(format!(
                "id must be a string of 1 to {MAX_EVENT_ID_LEN} printable ASCII characters without spaces"
            ));
        }
        None => (
            default_id.map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned),
            false,
        ),
    };
    let mut prefix = String::new();
    if !id_given {
        for part in ["\"id\":\"", &id, "\","] {
            prefix.push_str(part);
        }
    }
    if head.created_at.is_none() {
        for part in ["\"created_at\":\"", &received.0, "\","] {
            prefix.push_str(part);
        }
    }
    let payload = if prefix.is_empty() {
        text.as_bytes().to_vec()
    } else {
        let body = &text[1..];
        // `{}` has no type and was refused above, so `body` holds at least one member and the
        // comma that ends `prefix` always separates two members.
        let mut out = Vec::with_capacity(text.len() + prefix.len());
        out.push(b'{');
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(body.as_bytes());
        out
    };
    if payload.len() > max_bytes {
        return Err(format!(
            "is {} bytes, more than the {max_bytes} bytes allowed per event",
            payload.len()
        ));
    }
    Ok(PreparedEvent {
        id,
        event_type,
        cid,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prep(s: &str) -> Result<PreparedEvent, String> {
        let raw: Box<RawValue> = serde_json::from_str(s).unwrap();
        prepare_event(
            &raw,
            &ReceivedAt::new(Timestamp::parse_rfc3339("2026-01-02T03:04:05.000006Z").unwrap()),
            1 << 20,
        )
    }

    #[test]
    fn keeps_the_callers_bytes_and_adds_id_and_created_at_only_when_missing() {
        let given = r#"{"type":"message.new","id":"e1","created_at":"x","b":2,"a":1}"#;
        assert_eq!(prep(given).unwrap().payload, given.as_bytes());

        let ev = prep(r#"{"type":"message.new", "cid":"messaging:fun", "z":[1,2]}"#).unwrap();
        let text = String::from_utf8(ev.payload).unwrap();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["id"], ev.id.as_str());
        assert_eq!(parsed["created_at"], "2026-01-02T03:04:05.000006Z");
        assert!(text.ends_with(r#""type":"message.new", "cid":"messaging:fun", "z":[1,2]}"#));
        assert_eq!(ev.cid.as_deref(), Some("messaging:fun"));
        assert_eq!(ev.id.len(), 36);
    }

    #[test]
    fn refuses_bad_events_with_a_reason() {
        for (input, want) in [
            (r#"[1]"#, "object"),
            (r#""message.new""#, "object"),
            (r#"{"text":"hi"}"#, "type is required"),
            (r#"{"type":null}"#, "type must be a string"),
            (r#"{"type":7}"#, "type must be a string"),
            (r#"{"type":"Message New"}"#, "not valid"),
            (r#"{"type":"message.new","id":null}"#, "id must be"),
            (r#"{"type":"message.new","id":"has space"}"#, "id must be"),
            (r#"{"type":"a","type":"b"}"#, "duplicate"),
            (
                r#"{"type":"a","cid":"x\u0000y"}"#,
                "cid must not contain NUL",
            ),
        ] {
            let err = prep(input).expect_err(input);
            assert!(err.contains(want), "{input}: {err}");
        }
        let big = format!(r#"{{"type":"x","pad":"{}"}}"#, "a".repeat(2 << 20));
        assert!(prep(&big).unwrap_err().contains("bytes"));
    }
}
