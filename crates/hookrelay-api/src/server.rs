//! The HTTP server around the router: our own accept loop on hyper, so that no client can hold
//! the server's resources for free.
//!
//! * At most `max_connections` open connections; past that a new one is closed at once (a log
//!   line every 10 s while it happens, and `hookrelay_http_connections_refused_total`).
//! * A client has `header_timeout` to send a request's headers, counted from the connection's
//!   start or the end of the previous answer: this closes slowloris connections and idle
//!   keep-alive ones alike. Bodies have `body_timeout` (enforced where they are read, `extract`).
//! * An answer given before the request's body was read says `Connection: close`, so the client
//!   does not send its next request down a connection the server is about to close.
//! * On shutdown, idle connections close at once; requests in progress get `drain_timeout`,
//!   then the rest are dropped (a stalled client cannot hold the exit).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Limits of the HTTP server, from the server config.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub drain_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown`, then drains (see the module doc).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: HttpSettings,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout);
    let router = router.layer(axum::middleware::from_fn(close_if_body_unread));
    let refused = RefusalLog::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, most likely: let some connections end first.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refused.connection_refused(settings.max_connections);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(settings.drain_timeout) => {
            tracing::warn!(drain_ms = settings.drain_timeout.as_millis() as u64,
                "requests still in progress after the drain timeout; closing their connections");
        }
    }
}

/// Counts refused connections, and says so in the log at most every 10 s.
#[derive(Default)]
struct RefusalLog {
    since_last_line: AtomicU64,
    last_line: std::sync::Mutex<Option<Instant>>,
}

impl RefusalLog {
    fn connection_refused(&self, limit: usize) {
        hookrelay_core::telemetry::record_connection_refused();
        let refused = self.since_last_line.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
            *last = Some(Instant::now());
            self.since_last_line.store(0, Ordering::Relaxed);
            tracing::warn!(
                max_connections = limit,
                refused,
                "connection limit reached; closing new connections (http.max_connections)"
            );
        }
    }
}

/// Adds `Connection: close` to an answer given before the request's body was read to its end.
async fn close_if_body_unread(request: Request, next: Next) -> Response {
    let has_body = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0")
        || request.headers().contains_key(header::TRANSFER_ENCODING);
    if !has_body {
        return next.run(request).await;
    }
    let finished = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        Body::new(TrackedBody {
            inner: body,
            finished: finished.clone(),
        })
    });
    let mut response = next.run(request).await;
    if !finished.load(Ordering::Acquire) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A request body that records whether it was read to its end.
struct TrackedBody {
    inner: Body,
    finished: Arc<AtomicBool>,
}

impl http_body::Body for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.finished.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
