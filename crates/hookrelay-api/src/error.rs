//! Errors in Stream's format. Every error body carries all of `code`, `message`, `StatusCode`,
//! `duration`, `more_info` and `details`: the new Python SDK raises `KeyError` instead of its API
//! exception when one is missing. Messages read
//! `<Operation> failed with error: "<detail>"`, as Stream's do.
//!
//! Internal causes (database errors, …) are logged with the request and never sent to clients.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::context;

/// Stream's error codes that hookrelay uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InternalError = -1,
    AccessKeyError = 2,
    InputError = 4,
    AuthenticationError = 5,
    NotFound = 16,
    NotAllowed = 17,
    PayloadTooBig = 22,
    TokenExpired = 40,
    TokenNotValidYet = 41,
    TokenUsedBeforeIssued = 42,
    TokenSignatureInvalid = 43,
}

/// An error as the client sees it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: Code,
    pub detail: String,
    /// `{field: reason}` for input errors, as Stream's `exception_fields`.
    pub fields: Map<String, Value>,
    /// Seconds for a `Retry-After` header (answers that say "not now").
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: Code, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            fields: Map::new(),
            retry_after: None,
        }
    }

    /// 400, code 4.
    pub fn input(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Code::InputError, detail)
    }

    /// 400, code 4, naming the field.
    pub fn field(field: &str, reason: &str) -> Self {
        let mut e = Self::input(format!("{field}: {reason}"));
        e.fields
            .insert(field.to_owned(), Value::String(reason.to_owned()));
        e
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, Code::NotFound, detail)
    }

    /// Logs `cause` with the request and answers a bare 500: the client learns nothing internal.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(operation = context::operation(), error = %cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::InternalError,
            "internal error; the server log has the details",
        )
    }
}

impl From<hookrelay_store::StoreError> for ApiError {
    /// A store that cannot write now (disk full, database away) is a 503 with `Retry-After`:
    /// the client keeps the request and sends it again; anything else is a 500.
    fn from(e: hookrelay_store::StoreError) -> Self {
        if e.is_temporary() {
            tracing::warn!(operation = context::operation(), error = %e, "store unavailable; answering 503");
            let mut error = Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Code::InternalError,
                "the store cannot take writes right now; nothing of this request was stored, send it again later",
            );
            error.retry_after = Some(STORE_RETRY_AFTER_SECS);
            return error;
        }
        Self::internal(e)
    }
}

/// What a 503 from the store asks clients to wait.
const STORE_RETRY_AFTER_SECS: u32 = 1;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = format!(
            "{} failed with error: \"{}\"",
            context::operation(),
            self.detail.replace('"', "'")
        );
        let body = json!({
            "code": self.code as i32,
            "message": message,
            "exception_fields": self.fields,
            "StatusCode": self.status.as_u16(),
            "duration": context::duration(),
            "more_info": "https://getstream.io/chat/docs/api_errors_response",
            "details": [],
        });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
