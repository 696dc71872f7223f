//! Webhooks: one signed `POST` per event, the event JSON exactly as stored as the body.
//!
//! Headers are the ones Stream's SDK verifiers expect: `X-Webhook-Id` (the event id, the same on
//! every retry), `X-Webhook-Attempt` (1, 2, …), `X-Api-Key`, and the hook's signature (`signing`):
//! `X-Signature` (lowercase hex HMAC-SHA256 of the uncompressed body with the app's API secret)
//! or the Standard Webhooks headers. With the app's
//! `enable_hook_payload_compression`, the body is gzipped (`Content-Encoding: gzip`).
//!
//! What an answer means is decided by `outcome::classify_http_status`: 2xx delivered; 408, 429
//! and 5xx retried (honouring `Retry-After`); any other answer (4xx, and 3xx since redirects are
//! not followed) is tried 3 times in all, then dead-lettered: a receiver that refuses an event
//! rarely changes its mind, and the dead letter can be replayed. No connection or a timeout means
//! the receiver is down; an address in `deny_cidrs` is a `denied` dead letter at once.

use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hookrelay_core::Timestamp;
use hookrelay_core::hook::WebhookUrl;
use http::header::{
    CONTENT_ENCODING, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT,
};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use ipnet::IpNet;

pub use crate::http_client::denied;
use crate::http_client::{DeniedAddress, HOOKRELAY, PooledClient, no_answer_within};

use super::Outgoing;
use crate::outcome::CallError;
use crate::outcome::{Outcome, classify_http_status};
use crate::signing::Signer;
/// Bytes of a failed answer's body kept in `last_error`.
const KEPT_BODY_BYTES: usize = 1024;
/// Bytes of a successful answer's body read (so the connection can be reused) before giving up on it.
const DRAINED_BODY_BYTES: usize = 64 * 1024;

/// Settings of the webhook HTTP client, from the server config.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Limit on one request, answer included.
    pub timeout: Duration,
    /// Requests in flight per hook.
    pub in_flight: usize,
    /// Receivers in these address ranges are refused (empty: all allowed, since self-hosted
    /// receivers often live on private networks).
    pub deny: Vec<IpNet>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(6),
            in_flight: 16,
            deny: Vec::new(),
        }
    }
}

/// The shared HTTP client: one connection pool for all webhook hooks, with the deny-list.
#[derive(Clone)]
pub struct WebhookClient {
    http: PooledClient,
    deny: Arc<Vec<IpNet>>,
    /// Limit on one request, answer included.
    timeout: Duration,
}

impl WebhookClient {
    /// Fails only when the system has no usable CA certificates (for `https` receivers).
    pub fn new(settings: &WebhookSettings) -> std::io::Result<Self> {
        let deny = Arc::new(settings.deny.clone());
        let connect_timeout = settings.timeout.min(Duration::from_secs(3));
        Ok(Self {
            http: PooledClient::new(deny.clone(), connect_timeout)?,
            deny,
            timeout: settings.timeout,
        })
    }
}

// Names given as constants: a name parsed from a string is checked and copied on every request.
const X_WEBHOOK_ID: HeaderName = HeaderName::from_static("x-webhook-id");
const X_WEBHOOK_ATTEMPT: HeaderName = HeaderName::from_static("x-webhook-attempt");
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
const GZIP: HeaderValue = HeaderValue::from_static("gzip");

#[derive(Clone)]
pub struct WebhookDestination {
    client: WebhookClient,
    /// Parsed once: parsing it on every request was 4% of fan-out's CPU. A URL that does not
    /// parse keeps the parser's message, and each event is refused with it.
    url: Result<Target, String>,
    api_key: HeaderValue,
    compress: bool,
}

impl WebhookDestination {
    pub fn new(client: WebhookClient, url: &WebhookUrl, api_key: &str, compress: bool) -> Self {
        Self {
            client,
            url: Target::parse(url.as_str()),
            api_key: HeaderValue::from_str(api_key).unwrap_or(HeaderValue::from_static("")),
            compress,
        }
    }

    /// Sends each event as its own request (the worker gives one per batch).
    pub async fn send(&self, batch: &[Outgoing<'_>], signer: &Signer) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for out in batch {
            outcomes.push(self.post(out, signer).await);
        }
        outcomes
    }

    async fn post(&self, out: &Outgoing<'_>, signer: &Signer) -> Outcome {
        let target = match &self.url {
            Ok(target) => target,
            Err(e) => {
                return Outcome::Refuse {
                    error: CallError::new("url", e.clone()),
                    attempts: 1,
                };
            }
        };
        if let Some(ip) = target.literal_ip
            && denied(&self.client.deny, ip)
        {
            return Outcome::Denied(CallError::new(
                "denied",
                format!("{ip} is in webhook.deny_cidrs"),
            ));
        }
        let request = match self.request(target, out, signer) {
            Ok(request) => request,
            Err(e) => {
                return Outcome::Refuse {
                    error: CallError::new("request", e.to_string()),
                    attempts: 1,
                };
            }
        };
        match tokio::time::timeout(self.client.timeout, self.exchange(request)).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => transport_outcome(&e),
            Err(_) => {
                Outcome::DestinationDown(no_answer_within(self.client.timeout, "webhook.timeout"))
            }
        }
    }

    /// The signed `POST` of one event.
    fn request(
        &self,
        target: &Target,
        out: &Outgoing<'_>,
        signer: &Signer,
    ) -> Result<Request<Full<Bytes>>, http::Error> {
        let payload = &out.event.payload;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(target.uri.clone())
            .header(USER_AGENT, HOOKRELAY)
            .header(CONTENT_TYPE, APPLICATION_JSON)
            .header(X_WEBHOOK_ID, out.event.id.as_str())
            .header(X_WEBHOOK_ATTEMPT, out.attempt)
            .header(X_API_KEY, self.api_key.clone());
        // Signed over the uncompressed body, as the verifiers read it.
        for (name, value) in signer.sign(&out.event.id, payload, Timestamp::now()) {
            request = request.header(name, value);
        }
        let body = if self.compress {
            request = request.header(CONTENT_ENCODING, GZIP);
            Bytes::from(gzip(payload))
        } else {
            payload.clone()
        };
        request.body(Full::new(body))
    }

    /// Sends the request and reads what its answer means.
    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Outcome, hyper_util::client::legacy::Error> {
        let response = self.client.http.request(request).await?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let mut body = response.into_body();
        if status.is_success() {
            // Read (a bounded part of) the answer so the connection goes back to the pool.
            let mut read = 0;
            while read < DRAINED_BODY_BYTES {
                match body.frame().await {
                    Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
                    _ => break,
                }
            }
            return Ok(Outcome::Delivered);
        }
        let mut kept = Vec::new();
        while kept.len() < KEPT_BODY_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        kept.extend_from_slice(data);
                    }
                }
                _ => break,
            }
        }
        kept.truncate(KEPT_BODY_BYTES);
        let code = status.as_u16();
        Ok(classify_http_status(CallError {
            code: format!("HTTP {code}"),
            message: String::from_utf8_lossy(&kept).into_owned(),
            http_status: Some(code),
            retry_after,
        }))
    }
}

/// A receiver's address, parsed once per hook.
#[derive(Clone, Debug)]
struct Target {
    uri: Uri,
    /// The host, when it is an IP address: checked against the deny-list before each call.
    literal_ip: Option<IpAddr>,
}

impl Target {
    /// Parsed as a WHATWG URL first, so hosts are in their ASCII form (punycode) and the path
    /// is percent-encoded, then as the URI that goes on the wire.
    fn parse(text: &str) -> Result<Self, String> {
        let url = url::Url::parse(text).map_err(|e| e.to_string())?;
        let literal_ip = url
            .host_str()
            .and_then(|host| host.trim_matches(['[', ']']).parse::<IpAddr>().ok());
        let uri = url.as_str().parse::<Uri>().map_err(|e| e.to_string())?;
        Ok(Self { uri, literal_ip })
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 3 + 64),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default()
}

/// A request that got no answer: the receiver is down, or its name resolves only to denied
/// addresses (a refusal of the address, not an outage).
fn transport_outcome(e: &hyper_util::client::legacy::Error) -> Outcome {
    let code = if e.is_connect() {
        "connection"
    } else {
        "transport"
    };
    let mut message = e.to_string();
    let mut is_denied = false;
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        is_denied |= cause.downcast_ref::<DeniedAddress>().is_some();
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    if is_denied {
        Outcome::Denied(CallError::new("denied", message))
    } else {
        Outcome::DestinationDown(CallError::new(code, message))
    }
}

/// `Retry-After` as seconds or as an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    if let Ok(secs) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate_to_unix(value.trim())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs() as i64;
    Some(Duration::from_secs((when - now).max(0) as u64))
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form HTTP requires senders to use.
fn httpdate_to_unix(s: &str) -> Option<i64> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let dt = time::PrimitiveDateTime::parse(s, &format).ok()?;
    Some(dt.assume_utc().unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookrelay_core::{EventHook, Secret};
    use hookrelay_store::{Seq, StoredEvent};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn destination(url: &str, timeout: Duration, deny: &[&str]) -> WebhookDestination {
        let settings = WebhookSettings {
            timeout,
            deny: deny.iter().map(|d| d.parse().unwrap()).collect(),
            ..WebhookSettings::default()
        };
        WebhookDestination {
            client: WebhookClient::new(&settings).unwrap(),
            url: Target::parse(url),
            api_key: HeaderValue::from_static("key"),
            compress: false,
        }
    }

    /// One event through a destination, as the worker sends it.
    async fn post(destination: &WebhookDestination) -> Outcome {
        let hook: EventHook = serde_json::from_value(serde_json::json!({
            "id": "h", "enabled": true, "event_types": [], "product": "all",
            "target": {"hook_type": "webhook", "url": "https://example.com/"},
            "should_send_custom_events": null, "sns_event_based_message_group_id_enabled": null,
            "created_at": 0, "updated_at": 0,
        }))
        .unwrap();
        let signer = Signer::for_hook(&hook, &Secret::new("app-secret"));
        let event = StoredEvent {
            seq: Seq(1),
            id: "e1".into(),
            event_type: "message.new".into(),
            cid: None,
            created_at: Timestamp::from_millis(1_000),
            payload: br#"{"type":"message.new"}"#.to_vec().into(),
        };
        let out = Outgoing {
            event: &event,
            attempt: 1,
        };
        destination.post(&out, &signer).await
    }

    fn down_code(outcome: &Outcome) -> &str {
        match outcome {
            Outcome::DestinationDown(e) => &e.code,
            other => panic!("expected the destination down, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_receiver_that_never_answers_times_out_and_a_closed_port_cannot_connect() {
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", silent.local_addr().unwrap());
        // Accepts and reads, never answers.
        tokio::spawn(async move {
            let (mut socket, _) = silent.accept().await.unwrap();
            let mut buf = vec![0; 4096];
            while socket.read(&mut buf).await.unwrap_or(0) > 0 {}
        });
        let started = std::time::Instant::now();
        let outcome = post(&destination(&url, Duration::from_millis(300), &[])).await;
        assert_eq!(down_code(&outcome), "timeout");
        assert!(started.elapsed() < Duration::from_secs(5));

        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", closed.local_addr().unwrap());
        drop(closed);
        let outcome = post(&destination(&url, Duration::from_secs(2), &[])).await;
        assert_eq!(down_code(&outcome), "connection");
    }

    #[tokio::test]
    async fn an_answer_is_classified_with_its_body_and_retry_after() {
        let receiver = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", receiver.local_addr().unwrap());
        let request = tokio::spawn(async move {
            let (mut socket, _) = receiver.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = vec![0; 4096];
            // The head, then the 22-byte body the test sends.
            while !got.ends_with(br#"{"type":"message.new"}"#) {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "the request ended early");
                got.extend_from_slice(&buf[..n]);
            }
            socket
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nbusy")
                .await
                .unwrap();
            String::from_utf8(got).unwrap().to_lowercase()
        });
        let outcome = post(&destination(&url, Duration::from_secs(5), &[])).await;
        let Outcome::Retry(error) = outcome else {
            panic!("a 503 is retried: {outcome:?}");
        };
        assert_eq!(
            (
                error.code.as_str(),
                error.message.as_str(),
                error.http_status
            ),
            ("HTTP 503", "busy", Some(503))
        );
        assert_eq!(error.retry_after, Some(Duration::from_secs(7)));
        let head = request.await.unwrap();
        for header in [
            "post /hook http/1.1",
            "x-webhook-id: e1",
            "x-webhook-attempt: 1",
            "x-api-key: key",
            "x-signature: ",
            "user-agent: hookrelay/",
        ] {
            assert!(head.contains(header), "{header:?} missing from {head}");
        }
    }

    #[tokio::test]
    async fn a_name_that_resolves_only_into_denied_ranges_is_refused() {
        let deny = ["127.0.0.0/8", "::1/128"];
        let outcome = post(&destination(
            "http://localhost:9/hook",
            Duration::from_secs(2),
            &deny,
        ))
        .await;
        assert!(
            matches!(&outcome, Outcome::Denied(e) if e.code == "denied"),
            "{outcome:?}"
        );
        // An address given as such is refused before any connection.
        let outcome = post(&destination(
            "http://[::ffff:127.0.0.1]:9/hook",
            Duration::from_secs(2),
            &deny,
        ))
        .await;
        assert!(matches!(&outcome, Outcome::Denied(_)), "{outcome:?}");
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(
            httpdate_to_unix("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784111777)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn deny_list_matches_ranges() {
        let deny: Vec<IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ];
        for ip in [
            "10.1.2.3",
            "::1",
            "127.0.0.1",
            // IPv4 inside IPv6: mapped and compatible forms reach the IPv4 address.
            "::ffff:127.0.0.1",
            "::ffff:7f00:1",
            "0:0:0:0:0:ffff:127.0.0.1",
            "::127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(denied(&deny, ip.parse().unwrap()), "{ip}");
        }
        for ip in ["11.0.0.1", "::ffff:11.0.0.1", "2001:db8::1", "192.168.1.1"] {
            assert!(!denied(&deny, ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let data = br#"{"type":"message.new","text":"hello hello hello"}"#;
        let mut out = String::new();
        flate2::read::GzDecoder::new(&gzip(data)[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out.as_bytes(), data);
    }
}
