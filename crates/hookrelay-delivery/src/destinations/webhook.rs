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
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hookrelay_core::Timestamp;
use hookrelay_core::hook::WebhookUrl;
use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};

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

/// The shared HTTP client: one connection pool for all hooks.
#[derive(Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    deny: Arc<Vec<IpNet>>,
}

/// Resolves names with the system resolver, then drops addresses in the deny-list, so a name
/// cannot lead the client to a refused range (checked at connection time, not only at save time).
struct DenyingResolver {
    deny: Arc<Vec<IpNet>>,
}

impl Resolve for DenyingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let deny = self.deny.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| !denied(&deny, a.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(Box::new(DeniedAddress(format!(
                    "{host} resolves only to addresses in webhook.deny_cidrs"
                ))) as _);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The resolver's refusal, recognised in the error chain of a failed request.
#[derive(Debug)]
struct DeniedAddress(String);

impl std::fmt::Display for DeniedAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeniedAddress {}

/// Whether an address is in a denied range. An IPv6 address that carries an IPv4 one
/// (`::ffff:127.0.0.1`, the deprecated `::127.0.0.1`) reaches that IPv4 address, so both forms
/// are checked.
pub fn denied(deny: &[IpNet], ip: IpAddr) -> bool {
    let embedded = match ip {
        IpAddr::V6(v6) => v6.to_ipv4().map(IpAddr::V4),
        IpAddr::V4(_) => None,
    };
    std::iter::once(ip)
        .chain(embedded)
        .any(|ip| deny.iter().any(|net| net.contains(&ip)))
}

impl WebhookClient {
    pub fn new(settings: &WebhookSettings) -> Result<Self, reqwest::Error> {
        let deny = Arc::new(settings.deny.clone());
        let http = reqwest::Client::builder()
            .user_agent(concat!("hookrelay/", env!("CARGO_PKG_VERSION")))
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(3)))
            .redirect(reqwest::redirect::Policy::none())
            // No cap on idle connections per host: hooks of many apps often share a receiver's
            // host, and a cap below their requests in flight closed and reopened a tenth of the
            // connections under load. Idle ones close after a minute.
            .pool_idle_timeout(Duration::from_secs(60))
            .dns_resolver(Arc::new(DenyingResolver { deny: deny.clone() }))
            .build()?;
        Ok(Self { http, deny })
    }
}

// Names given as constants: a name parsed from a string is checked and copied on every request.
const X_WEBHOOK_ID: HeaderName = HeaderName::from_static("x-webhook-id");
const X_WEBHOOK_ATTEMPT: HeaderName = HeaderName::from_static("x-webhook-attempt");
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

#[derive(Clone)]
pub struct WebhookDestination {
    client: WebhookClient,
    /// Parsed once: parsing it on every request was 4% of fan-out's CPU. A URL that does not
    /// parse keeps the parser's message, and each event is refused with it.
    url: Result<reqwest::Url, String>,
    api_key: HeaderValue,
    compress: bool,
}

impl WebhookDestination {
    pub fn new(client: WebhookClient, url: &WebhookUrl, api_key: &str, compress: bool) -> Self {
        Self {
            client,
            url: reqwest::Url::parse(url.as_str()).map_err(|e| e.to_string()),
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
        let url = match &self.url {
            Ok(url) => url.clone(),
            Err(e) => {
                return Outcome::Refuse {
                    error: CallError::new("url", e.clone()),
                    attempts: 1,
                };
            }
        };
        if let Some(host) = url.host_str()
            && let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>()
            && denied(&self.client.deny, ip)
        {
            return Outcome::Denied(CallError::new(
                "denied",
                format!("{ip} is in webhook.deny_cidrs"),
            ));
        }
        let payload = &out.event.payload;
        let mut request = self
            .client
            .http
            .post(url)
            .header(CONTENT_TYPE, APPLICATION_JSON)
            .header(X_WEBHOOK_ID, &out.event.id)
            .header(X_WEBHOOK_ATTEMPT, out.attempt)
            .header(X_API_KEY, self.api_key.clone());
        // Signed over the uncompressed body, as the verifiers read it.
        for (name, value) in signer.sign(&out.event.id, payload, Timestamp::now()) {
            request = request.header(name, value);
        }
        request = if self.compress {
            request.header(CONTENT_ENCODING, "gzip").body(gzip(payload))
        } else {
            request.body(payload.clone())
        };
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) => return transport_outcome(e),
        };
        let status = response.status();
        if status.is_success() {
            // Read (a bounded part of) the answer so the connection goes back to the pool.
            let mut read = 0;
            while read < DRAINED_BODY_BYTES {
                match response.chunk().await {
                    Ok(Some(chunk)) => read += chunk.len(),
                    _ => break,
                }
            }
            return Outcome::Delivered;
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let mut body = Vec::new();
        while body.len() < KEPT_BODY_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        body.truncate(KEPT_BODY_BYTES);
        let code = status.as_u16();
        classify_http_status(CallError {
            code: format!("HTTP {code}"),
            message: String::from_utf8_lossy(&body).into_owned(),
            http_status: Some(code),
            retry_after,
        })
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
fn transport_outcome(e: reqwest::Error) -> Outcome {
    let code = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection"
    } else {
        "transport"
    };
    let mut message = e.to_string();
    let mut is_denied = false;
    let mut source = std::error::Error::source(&e);
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
