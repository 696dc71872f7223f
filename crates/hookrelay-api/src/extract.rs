//! A JSON body extractor whose every refusal is a Stream-format error: wrong content type, an
//! encoding the server does not decode, over-limit body (refused from its `Content-Length`
//! before any of it is read), malformed JSON.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};

use crate::error::{ApiError, Code};
use crate::state::AppState;

/// The request body, checked to be JSON (by `Content-Type`) and within the size limit.
/// Parsing is left to the handler, which knows what shape it wants.
pub struct JsonBody(pub Bytes);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or_default();
            let mime = ct.split(';').next().unwrap_or_default().trim();
            if !mime.eq_ignore_ascii_case("application/json") && !mime.ends_with("+json") {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    Code::InputError,
                    format!("Content-Type must be application/json, not {ct:?}"),
                ));
            }
        }
        if let Some(encoding) = req.headers().get(header::CONTENT_ENCODING) {
            let encoding = encoding.to_str().unwrap_or_default().trim();
            if !encoding.is_empty() && !encoding.eq_ignore_ascii_case("identity") {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    Code::InputError,
                    format!(
                        "Content-Encoding {encoding:?} is not supported: send the body uncompressed"
                    ),
                ));
            }
        }
        let limit = state.limits.max_body_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large(limit));
        }
        let timeout = state.limits.body_timeout;
        let body = tokio::time::timeout(timeout, axum::body::to_bytes(req.into_body(), limit))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    Code::InputError,
                    format!(
                        "the request body did not arrive within {} s",
                        timeout.as_secs_f64()
                    ),
                )
            })?
            .map_err(|_| too_large(limit))?;
        Ok(JsonBody(body))
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        Code::PayloadTooBig,
        format!("the request body is larger than {limit} bytes"),
    )
}

/// Bodies up to this size are parsed on the async threads; larger ones on the blocking pool, so
/// one large request cannot stall every other request for the milliseconds its parse takes.
const PARSE_INLINE_BYTES: usize = 64 * 1024;

impl JsonBody {
    /// Parses the body as a JSON object.
    pub async fn object(&self) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
        if self.0.len() <= PARSE_INLINE_BYTES {
            return parse_object(&self.0);
        }
        let body = self.0.clone();
        tokio::task::spawn_blocking(move || parse_object(&body))
            .await
            .map_err(ApiError::internal)?
    }
}

fn parse_object(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::input("the request body must be a JSON object")),
        Err(e) => Err(ApiError::input(format!(
            "the request body is not valid JSON: {e}"
        ))),
    }
}
