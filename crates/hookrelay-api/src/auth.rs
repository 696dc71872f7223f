//! Server-side authentication exactly as Stream's SDKs send it:
//! the `api_key` query parameter names the app, the `Authorization` header carries a raw HS256
//! JWT (no `Bearer`, though one is tolerated) signed with that app's secret, and
//! `stream-auth-type: jwt`. A token is a server token when it says `server: true` or has no
//! `user_id` (the new Python SDK signs `{}`); user tokens are refused.
//!
//! HS256 is verified here with the same HMAC code that signs deliveries, rather than with a JWT
//! library: the only algorithm accepted is HS256 (no `none`, no key confusion), and the claims
//! checked are the three registered time claims when present.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hookrelay_core::sign::hmac_sha256;
use hookrelay_store::App;
use serde::Deserialize;
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::error::{ApiError, Code};
use crate::state::AppState;

/// Clock skew tolerated on `nbf` and `iat`, in seconds.
const LEEWAY_SECS: i64 = 5;

/// The authenticated app of a request.
pub struct AppAuth(pub Arc<App>);

#[derive(Deserialize)]
struct KeyQuery {
    api_key: Option<String>,
}

fn unauthorized(code: Code, detail: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, detail)
}

impl FromRequestParts<AppState> for AppAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Query(query) = Query::<KeyQuery>::try_from_uri(&parts.uri)
            .map_err(|_| ApiError::input("the query string is malformed"))?;
        // The web console: its session cookie, with the header no cross-site form can set.
        if query.api_key.is_none()
            && parts.headers.contains_key(crate::console::HEADER)
            && let Some(app) = crate::console::app_of(state, &parts.headers).await?
        {
            return Ok(AppAuth(app));
        }
        let api_key = query
            .api_key
            .filter(|k| !k.is_empty())
            .ok_or_else(|| unauthorized(Code::AccessKeyError, "api_key not provided"))?;
        let app = state
            .apps
            .by_key(&*state.store, &api_key)
            .await?
            .ok_or_else(|| unauthorized(Code::AccessKeyError, "api_key not valid"))?;

        let auth_type = parts
            .headers
            .get("stream-auth-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("jwt");
        if !auth_type.eq_ignore_ascii_case("jwt") {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                Code::NotAllowed,
                "server-side endpoints need stream-auth-type: jwt with a server token",
            ));
        }
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(|t| t.strip_prefix("Bearer ").unwrap_or(t).trim())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                unauthorized(
                    Code::AuthenticationError,
                    "JWT token is missing from the Authorization header",
                )
            })?;
        let mut claims = verify_hs256(token, app.api_secret.expose().as_bytes(), now_secs());
        // During a rotation window the replaced secret still signs valid tokens.
        if claims.is_err()
            && let Some(old) = app.previous_secret_at(hookrelay_core::Timestamp::now())
            && let Ok(by_old) = verify_hs256(token, old.expose().as_bytes(), now_secs())
        {
            claims = Ok(by_old);
        }
        let claims = claims?;
        let server = claims.get("server") == Some(&Value::Bool(true));
        let user = claims.get("user_id").is_some_and(|u| !u.is_null());
        if user && !server {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                Code::NotAllowed,
                "this endpoint needs a server-side token; a user token (with user_id) was given",
            ));
        }
        Ok(AppAuth(app))
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Verifies an HS256 JWT and returns its claims.
pub fn verify_hs256(
    token: &str,
    secret: &[u8],
    now: i64,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let malformed = || unauthorized(Code::AuthenticationError, "JWT token is malformed");
    let mut parts = token.split('.');
    let (Some(header_b64), Some(claims_b64), Some(sig_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let header: Value = URL_SAFE_NO_PAD
        .decode(header_b64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(malformed)?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(unauthorized(
            Code::AuthenticationError,
            "JWT token must be signed with HS256",
        ));
    }
    let signature = URL_SAFE_NO_PAD.decode(sig_b64).map_err(|_| malformed())?;
    let expected = hmac_sha256(
        secret,
        &[header_b64.as_bytes(), b".", claims_b64.as_bytes()],
    );
    if !bool::from(expected.as_slice().ct_eq(&signature)) {
        return Err(unauthorized(
            Code::TokenSignatureInvalid,
            "JWT token signature is invalid: the token was not signed with this app's API secret (check the secret your client uses)",
        ));
    }
    let claims: serde_json::Map<String, Value> = URL_SAFE_NO_PAD
        .decode(claims_b64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(malformed)?;
    // RFC 7519 NumericDate: a claim that is there must be a number (as PyJWT insists too);
    // a string or a boolean is not "no expiry".
    let mut times = [None; 3];
    for (slot, name) in times.iter_mut().zip(["exp", "nbf", "iat"]) {
        *slot = match claims.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64().map(|t| t as i64),
            Some(_) => {
                return Err(unauthorized(
                    Code::AuthenticationError,
                    &format!("JWT token claim {name} must be a number (seconds since 1970)"),
                ));
            }
        };
    }
    let [exp, nbf, iat] = times;
    if exp.is_some_and(|exp| exp <= now) {
        return Err(unauthorized(Code::TokenExpired, "JWT token has expired"));
    }
    if nbf.is_some_and(|nbf| nbf > now + LEEWAY_SECS) {
        return Err(unauthorized(
            Code::TokenNotValidYet,
            "JWT token is not valid yet",
        ));
    }
    if iat.is_some_and(|iat| iat > now + LEEWAY_SECS) {
        return Err(unauthorized(
            Code::TokenUsedBeforeIssued,
            "JWT token is used before its issue time",
        ));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Test vectors produced by the Stream SDKs themselves (secret "SECRET").
    const SERVER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzZXJ2ZXIiOnRydWV9.c3gLyYYgWMGAO9pMhg81wLvrv6XQ_r-dTelnLXfnDIM";
    const EMPTY: &str =
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30.sr08LEMNntsBjm8vu8Xv1ciDBmKZUv-dRKiO2efI7KI";

    fn sign(claims: &str, secret: &[u8]) -> String {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let c = URL_SAFE_NO_PAD.encode(claims);
        let s = URL_SAFE_NO_PAD.encode(hmac_sha256(secret, &[h.as_bytes(), b".", c.as_bytes()]));
        format!("{h}.{c}.{s}")
    }

    #[test]
    fn sdk_tokens_verify() {
        assert_eq!(verify_hs256(SERVER, b"SECRET", 0).unwrap()["server"], true);
        assert!(verify_hs256(EMPTY, b"SECRET", 0).unwrap().is_empty());
        assert_eq!(
            verify_hs256(&sign(r#"{"server":true}"#, b"SECRET"), b"SECRET", 0).unwrap()["server"],
            true
        );
    }

    #[test]
    fn bad_tokens_get_their_codes() {
        let code = |t: &str, now| verify_hs256(t, b"SECRET", now).unwrap_err().code;
        assert_eq!(
            code(SERVER.replace("c3g", "c3h").as_str(), 0),
            Code::TokenSignatureInvalid
        );
        assert_eq!(
            verify_hs256(SERVER, b"OTHER", 0).unwrap_err().code,
            Code::TokenSignatureInvalid
        );
        assert_eq!(code("not-a-jwt", 0), Code::AuthenticationError);
        assert_eq!(
            code(&sign(r#"{"exp":100}"#, b"SECRET"), 200),
            Code::TokenExpired
        );
        assert_eq!(
            code(&sign(r#"{"nbf":300}"#, b"SECRET"), 200),
            Code::TokenNotValidYet
        );
        assert_eq!(
            code(&sign(r#"{"iat":300}"#, b"SECRET"), 200),
            Code::TokenUsedBeforeIssued
        );
        for claims in [
            r#"{"exp":"100"}"#,
            r#"{"exp":true}"#,
            r#"{"nbf":"soon"}"#,
            r#"{"iat":[1]}"#,
            r#"{"exp":{"at":1}}"#,
        ] {
            let err = verify_hs256(&sign(claims, b"SECRET"), b"SECRET", 200).unwrap_err();
            assert_eq!(err.code, Code::AuthenticationError, "{claims}");
            assert!(err.detail.contains("must be a number"), "{claims}");
        }
        assert!(verify_hs256(&sign(r#"{"exp":null}"#, b"SECRET"), b"SECRET", 200).is_ok());
        // alg "none" is refused even with an empty signature.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode("{}")
        );
        assert_eq!(code(&none, 0), Code::AuthenticationError);
    }
}
