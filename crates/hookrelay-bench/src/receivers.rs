//! Fast local destinations: the measuring instruments of the benchmark, not test doubles (the
//! correctness tests run against moto and real HTTP servers). One axum server answers:
//!
//! * SQS `SendMessageBatch` / `SendMessage` in the AWS JSON protocol the Rust SDK speaks
//!   (`X-Amz-Target: AmazonSQS.*`), queue = the last segment of `QueueUrl`;
//! * SNS `PublishBatch` in the query protocol (form body, XML answer), topic = the ARN's name;
//! * webhooks: `POST /hook/{n}`.
//!
//! Each records, per event, when it arrived (by the numeric event id) and counts deliveries per
//! destination, doing as little work as possible so the figures measure hookrelay. Event ids are
//! decimal numbers; destination names end in their index (`q3`, `t3`, `/hook/3`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;

/// What arrived, shared with the load generator.
pub struct Arrivals {
    pub epoch: Instant,
    /// Nanoseconds after `epoch` of each event's first arrival (0 = not yet), by event number.
    first: Vec<AtomicU64>,
    /// Deliveries per destination index (duplicates included).
    pub per_destination: Vec<AtomicU64>,
    pub total: AtomicU64,
    /// While true, every request is answered 503 (a destination outage).
    pub down: AtomicBool,
    /// Which destinations each event reached (bit `d` for destination `d`), by event number.
    reached: Vec<AtomicU16>,
    /// Distinct events per destination (duplicates not counted).
    distinct: Vec<AtomicU64>,
    /// Per destination: the last arrival (ns after epoch), and the longest time between two
    /// arrivals since [`Arrivals::reset_silences`].
    last: Vec<AtomicU64>,
    longest_silence: Vec<AtomicU64>,
}

impl Arrivals {
    pub fn new(epoch: Instant, events: usize, destinations: usize) -> Arc<Self> {
        Arc::new(Self {
            epoch,
            first: (0..events).map(|_| AtomicU64::new(0)).collect(),
            per_destination: (0..destinations).map(|_| AtomicU64::new(0)).collect(),
            total: AtomicU64::new(0),
            down: AtomicBool::new(false),
            reached: (0..events).map(|_| AtomicU16::new(0)).collect(),
            distinct: (0..destinations).map(|_| AtomicU64::new(0)).collect(),
            last: (0..destinations).map(|_| AtomicU64::new(0)).collect(),
            longest_silence: (0..destinations).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    fn record(&self, destination: usize, id: &str) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.per_destination.get(destination) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let now = self.epoch.elapsed().as_nanos().max(1) as u64;
        if let Some(last) = self.last.get(destination) {
            let before = last.swap(now, Ordering::Relaxed);
            if before != 0 {
                self.longest_silence[destination]
                    .fetch_max(now.saturating_sub(before), Ordering::Relaxed);
            }
        }
        let Some(n) = id.parse::<usize>().ok() else {
            return;
        };
        if let Some(slot) = self.first.get(n) {
            let _ = slot.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        }
        if let (Some(reached), Some(distinct)) =
            (self.reached.get(n), self.distinct.get(destination))
        {
            let bit = 1u16 << (destination % 16);
            if reached.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
                distinct.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Distinct events that reached destination `d`.
    pub fn distinct(&self, d: usize) -> u64 {
        self.distinct[d].load(Ordering::Relaxed)
    }

    /// Deliveries of an event a destination already had. Read while deliveries arrive, it may
    /// be off by the few being recorded at that instant (the two counts are read one after the
    /// other): compare readings with `saturating_sub`.
    pub fn duplicates(&self) -> u64 {
        let distinct: u64 = self
            .distinct
            .iter()
            .map(|d| d.load(Ordering::Relaxed))
            .sum();
        self.total.load(Ordering::Relaxed).saturating_sub(distinct)
    }

    /// The longest time any destination went without an arrival since the last reset, in
    /// seconds (time before a destination's first arrival does not count).
    pub fn longest_silence_s(&self) -> f64 {
        let ns = self
            .longest_silence
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        ns as f64 / 1e9
    }

    pub fn reset_silences(&self) {
        for s in &self.longest_silence {
            s.store(0, Ordering::Relaxed);
        }
    }

    /// Arrival time (ns after epoch) of event `n`, if it arrived.
    pub fn arrival(&self, n: usize) -> Option<u64> {
        match self.first.get(n)?.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    pub fn delivered(&self, destination: usize) -> u64 {
        self.per_destination[destination].load(Ordering::Relaxed)
    }
}

fn index_suffix(name: &str) -> usize {
    let digits: String = name
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits
        .chars()
        .rev()
        .collect::<String>()
        .parse()
        .unwrap_or(0)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SqsBatch<'a> {
    #[serde(borrow)]
    queue_url: &'a str,
    #[serde(default, borrow)]
    entries: Vec<SqsEntry<'a>>,
    #[serde(default, borrow)]
    message_attributes: Option<Attributes<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SqsEntry<'a> {
    #[serde(borrow)]
    id: &'a str,
    #[serde(borrow)]
    message_attributes: Attributes<'a>,
}

#[derive(Deserialize)]
struct Attributes<'a> {
    #[serde(borrow)]
    event_id: Attr<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Attr<'a> {
    #[serde(borrow)]
    string_value: std::borrow::Cow<'a, str>,
}

async fn aws(State(arrivals): State<Arc<Arrivals>>, headers: HeaderMap, body: Bytes) -> Response {
    if arrivals.down.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    match headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        Some(target) => sqs(&arrivals, target, &body),
        None => sns(&arrivals, &body),
    }
}

fn sqs(arrivals: &Arrivals, target: &str, body: &[u8]) -> Response {
    let Ok(batch) = serde_json::from_slice::<SqsBatch<'_>>(body) else {
        return (StatusCode::BAD_REQUEST, "bad request").into_response();
    };
    let queue = index_suffix(batch.queue_url);
    let json = if target.ends_with("SendMessageBatch") {
        let mut out = String::from(r#"{"Successful":["#);
        for (i, e) in batch.entries.iter().enumerate() {
            arrivals.record(queue, &e.message_attributes.event_id.string_value);
            if i > 0 {
                out.push(',');
            }
            out.push_str(&format!(
                r#"{{"Id":"{}","MessageId":"m{i}","MD5OfMessageBody":"00000000000000000000000000000000"}}"#,
                e.id
            ));
        }
        out.push_str(r#"],"Failed":[]}"#);
        out
    } else {
        if let Some(a) = &batch.message_attributes {
            arrivals.record(queue, &a.event_id.string_value);
        }
        r#"{"MessageId":"m","MD5OfMessageBody":"00000000000000000000000000000000"}"#.to_owned()
    };
    ([("content-type", "application/x-amz-json-1.0")], json).into_response()
}

fn sns(arrivals: &Arrivals, body: &[u8]) -> Response {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let topic = pairs
        .iter()
        .find(|(k, _)| k == "TopicArn")
        .map_or(0, |(_, v)| index_suffix(v));
    let mut ids = Vec::new();
    for (k, v) in &pairs {
        // PublishBatchRequestEntries.member.N.MessageAttributes.entry.M.Name = event_id
        if v == "event_id" && k.ends_with(".Name") {
            let value_key = format!("{}.Value.StringValue", &k[..k.len() - ".Name".len()]);
            if let Some((_, id)) = pairs.iter().find(|(k2, _)| *k2 == value_key) {
                arrivals.record(topic, id);
            }
        }
        if k.ends_with(".Id") && k.starts_with("PublishBatchRequestEntries.member.") {
            ids.push(v.clone());
        }
    }
    let mut xml = String::from(
        r#"<PublishBatchResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishBatchResult><Successful>"#,
    );
    for id in ids {
        xml.push_str(&format!(
            "<member><Id>{id}</Id><MessageId>m{id}</MessageId></member>"
        ));
    }
    xml.push_str("</Successful><Failed/></PublishBatchResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></PublishBatchResponse>");
    ([("content-type", "text/xml")], xml).into_response()
}

async fn webhook(
    State(arrivals): State<Arc<Arrivals>>,
    Path(n): Path<usize>,
    headers: HeaderMap,
) -> StatusCode {
    if arrivals.down.load(Ordering::Relaxed) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if let Some(id) = headers.get("x-webhook-id").and_then(|v| v.to_str().ok()) {
        arrivals.record(n, id);
    }
    StatusCode::OK
}

/// Starts the receivers on a free loopback port; returns the port.
pub async fn start(arrivals: Arc<Arrivals>) -> anyhow::Result<u16> {
    let app = Router::new()
        .route("/", post(aws))
        .route("/hook/{n}", post(webhook))
        .with_state(arrivals);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(port)
}
