//! Per-request context every response needs: when the request started (for `duration`) and which
//! Stream operation it is (for error messages). A middleware sets both in a tokio task-local for
//! the lifetime of the request, so handlers, extractors and error rendering can all read them
//! without threading them through every signature.

use std::time::Instant;

use axum::extract::Request;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

#[derive(Clone, Copy)]
struct Context {
    started: Instant,
    operation: &'static str,
}

tokio::task_local! {
    static CONTEXT: Context;
}

/// `duration` as Stream writes it: `"1.23ms"`.
pub fn duration() -> String {
    let elapsed = CONTEXT
        .try_with(|c| c.started.elapsed())
        .unwrap_or_default();
    format!("{:.2}ms", elapsed.as_secs_f64() * 1000.0)
}

/// Seconds since the request started.
pub fn elapsed_secs() -> f64 {
    CONTEXT
        .try_with(|c| c.started.elapsed().as_secs_f64())
        .unwrap_or_default()
}

/// The Stream operation name of the current request (`GetApp`, `UpdateApp`, …).
pub fn operation() -> &'static str {
    CONTEXT.try_with(|c| c.operation).unwrap_or("Request")
}

fn operation_of(method: &Method, path: &str) -> &'static str {
    let path = path.strip_prefix("/api/v2").unwrap_or(path);
    match (method.as_str(), path) {
        ("GET", "/app") => "GetApp",
        ("PATCH", "/app") => "UpdateApp",
        ("POST", "/check_sqs") => "CheckSQS",
        ("POST", "/check_sns") => "CheckSNS",
        ("GET", "/hook/events") => "GetHookEvents",
        ("POST", "/v1/events") => "IngestEvents",
        (_, p) if p.starts_with("/v1/hooks") && p.contains("replay") => "Replay",
        (_, p) if p.starts_with("/v1/hooks") => "Hooks",
        _ => "Request",
    }
}

pub async fn middleware(req: Request, next: Next) -> Response {
    let context = Context {
        started: Instant::now(),
        operation: operation_of(req.method(), req.uri().path()),
    };
    CONTEXT.scope(context, next.run(req)).await
}
