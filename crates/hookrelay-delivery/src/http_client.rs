//! The HTTP client every destination's calls go through: hyper-util's pooled client (HTTP/1.1,
//! TLS from rustls with the system's roots). Not reqwest: its layers above hyper (a redirect
//! service, there even with redirects off, that parses every request's URL again, and a retry
//! service) cost about 15% of fan-out's CPU.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use ipnet::IpNet;

use crate::outcome::CallError;

/// The `User-Agent` of every call.
pub const HOOKRELAY: HeaderValue =
    HeaderValue::from_static(concat!("hookrelay/", env!("CARGO_PKG_VERSION")));

/// A call that got no whole answer within `limit`, the value of the `setting` named.
pub fn no_answer_within(limit: Duration, setting: &str) -> CallError {
    CallError::new(
        "timeout",
        format!("no answer within {} ms ({setting})", limit.as_millis()),
    )
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector<DenyingResolver>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A pooled client; clones share the pool.
#[derive(Clone)]
pub struct PooledClient {
    /// Behind an `Arc`: the client is some 500 bytes, and every destination holds one.
    client: Arc<Client<Connector, Full<Bytes>>>,
}

impl PooledClient {
    /// A client that connects to no address in `deny` (an empty list allows all). Fails only
    /// when the system has no usable CA certificates.
    pub fn new(deny: Arc<Vec<IpNet>>, connect_timeout: Duration) -> std::io::Result<Self> {
        let mut tcp = HttpConnector::new_with_resolver(DenyingResolver { deny });
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            // No cap on idle connections per host: hooks of many apps often share a receiver's
            // host, and a cap below their requests in flight closed and reopened a tenth of the
            // connections under load. Idle ones close after a minute.
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Self {
            client: Arc::new(client),
        })
    }

    /// Sends a request; callers put their own limit on the whole exchange.
    pub fn request(&self, request: http::Request<Full<Bytes>>) -> ResponseFuture {
        self.client.request(request)
    }
}

/// Resolves names with the system resolver, then drops addresses in the deny-list, so a name
/// cannot lead the client to a refused range (checked at connection time, not only at save time).
#[derive(Clone)]
struct DenyingResolver {
    deny: Arc<Vec<IpNet>>,
}

impl tower_service::Service<Name> for DenyingResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
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
            Ok(allowed.into_iter())
        })
    }
}

/// The resolver's refusal, recognised in the error chain of a failed request.
#[derive(Debug)]
pub struct DeniedAddress(String);

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
