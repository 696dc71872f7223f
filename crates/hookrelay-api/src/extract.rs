//! A JSON body extractor whose every refusal is a Stream-format error: wrong content type,
//! over-limit body, malformed JSON.

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
        let limit = state.limits.max_body_bytes;
        let body = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Code::PayloadTooBig,
                    format!("the request body is larger than {limit} bytes"),
                )
            })?;
        Ok(JsonBody(body))
    }
}

impl JsonBody {
    /// Parses the body as a JSON object.
    pub fn object(&self) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
        if self.0.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Map::new());
        }
        match serde_json::from_slice(&self.0) {
            Ok(serde_json::Value::Object(map)) => Ok(map),
            Ok(_) => Err(ApiError::input("the request body must be a JSON object")),
            Err(e) => Err(ApiError::input(format!(
                "the request body is not valid JSON: {e}"
            ))),
        }
    }
}
