//! The web console at `/console`: one page (HTML, JS and CSS embedded in the binary, no build
//! step, no network fetch) that shows an app's hooks, one hook's attempts and dead letters, and
//! where an event went, and drives pause, resume, replay and test sends.
//!
//! Signing in exchanges the app's API key and secret for a session cookie (`hookrelay_console`):
//! HttpOnly (scripts cannot read it), SameSite=Strict (no other site's page sends it), one hour
//! long, never the secret itself, and nothing kept in browser storage. The page then calls the
//! ordinary API with that cookie and an `X-Hookrelay-Console` header; the API accepts the cookie
//! only with that header, which a cross-site form cannot set, so requests cannot be forged from
//! elsewhere. A session names its app and a tag of the app's secret: rotating the secret ends it;
//! signing out revokes it on this node and clears the cookie. Sessions are signed with a key
//! this process draws at start, so they end when it restarts (behind a load balancer with several
//! nodes, route the console stickily).

use std::collections::HashMap;
use std::sync::Mutex;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hookrelay_core::hook::input::Fields;
use hookrelay_core::sign::hmac_sha256;
use hookrelay_store::App;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::error::{ApiError, ApiResult, Code};
use crate::extract::JsonBody;
use crate::state::AppState;

pub const COOKIE: &str = "hookrelay_console";
/// The header every console API call carries; the cookie counts only with it.
pub const HEADER: &str = "x-hookrelay-console";
const SESSION_SECONDS: i64 = 3600;

const INDEX: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");

/// Signs and checks console sessions.
pub struct Sessions {
    key: [u8; 32],
    /// Nonces of sessions signed out, until they expire anyway.
    revoked: Mutex<HashMap<String, i64>>,
}

impl Default for Sessions {
    fn default() -> Self {
        let seed = format!("{}{}", uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        Self {
            key: hmac_sha256(b"hookrelay console sessions", &[seed.as_bytes()]),
            revoked: Mutex::new(HashMap::new()),
        }
    }
}

fn now_secs() -> i64 {
    hookrelay_core::Timestamp::now().millis() / 1000
}

/// A short tag of the app's secret: a session outlives no rotation of it.
fn secret_tag(app: &App) -> String {
    hex_prefix(&hmac_sha256(
        app.api_secret.expose().as_bytes(),
        &[b"hookrelay console"],
    ))
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    fn issue(&self, app: &App) -> String {
        let claims = json!({
            "k": app.api_key,
            "exp": now_secs() + SESSION_SECONDS,
            "n": uuid::Uuid::new_v4().simple().to_string(),
            "s": secret_tag(app),
        });
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        let mac = URL_SAFE_NO_PAD.encode(hmac_sha256(&self.key, &[body.as_bytes()]));
        format!("{body}.{mac}")
    }

    /// The session's claims, if it is one of ours, unexpired and not signed out.
    fn open(&self, token: &str) -> Option<serde_json::Map<String, Value>> {
        let (body, mac) = token.split_once('.')?;
        let expected = URL_SAFE_NO_PAD.encode(hmac_sha256(&self.key, &[body.as_bytes()]));
        if !bool::from(expected.as_bytes().ct_eq(mac.as_bytes())) {
            return None;
        }
        let claims: serde_json::Map<String, Value> =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
        let exp = claims.get("exp")?.as_i64()?;
        let nonce = claims.get("n")?.as_str()?;
        let revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
        (exp > now_secs() && !revoked.contains_key(nonce)).then_some(claims)
    }

    fn revoke(&self, token: &str) {
        if let Some(claims) = self.open(token)
            && let (Some(n), Some(exp)) = (claims["n"].as_str(), claims["exp"].as_i64())
        {
            let mut revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner());
            let now = now_secs();
            revoked.retain(|_, until| *until > now);
            revoked.insert(n.to_owned(), exp);
        }
    }
}

/// The session cookie's value, if the request has one.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// The app a console request is signed in as (the cookie, with the console header).
pub async fn app_of(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<std::sync::Arc<App>>, ApiError> {
    let Some(token) = cookie(headers) else {
        return Ok(None);
    };
    let signed_out = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            Code::AuthenticationError,
            "the console session has ended: sign in again",
        )
    };
    let claims = state.console.open(token).ok_or_else(signed_out)?;
    let key = claims
        .get("k")
        .and_then(Value::as_str)
        .ok_or_else(signed_out)?;
    let app = state
        .apps
        .by_key(&*state.store, key)
        .await?
        .ok_or_else(signed_out)?;
    if claims.get("s").and_then(Value::as_str) != Some(secret_tag(&app).as_str()) {
        return Err(signed_out());
    }
    Ok(Some(app))
}

fn session_cookie(value: &str, max_age: i64) -> HeaderValue {
    let cookie = format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}");
    HeaderValue::from_str(&cookie).unwrap_or(HeaderValue::from_static(""))
}

/// `POST /console/session` `{"api_key", "api_secret"}`: sign in.
pub async fn sign_in(State(state): State<AppState>, body: JsonBody) -> ApiResult<Response> {
    let request = body.object().await?;
    let f = Fields(&request);
    let field = |e: hookrelay_core::hook::input::FieldError| ApiError::field(&e.field, &e.reason);
    let key = f.required_str("api_key").map_err(field)?;
    let secret = f.required_str("api_secret").map_err(field)?;
    let refused = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            Code::AuthenticationError,
            "the API key and secret do not match an app",
        )
    };
    let app = state
        .apps
        .by_key(&*state.store, key)
        .await?
        .ok_or_else(refused)?;
    let now = hookrelay_core::Timestamp::now();
    let matches =
        |s: &hookrelay_core::Secret| bool::from(s.expose().as_bytes().ct_eq(secret.as_bytes()));
    if !(matches(&app.api_secret) || app.previous_secret_at(now).is_some_and(matches)) {
        return Err(refused());
    }
    let token = state.console.issue(&app);
    tracing::info!(app_id = %app.id, "console sign-in");
    let mut response = Json(json!({"app_id": app.id, "api_key": app.api_key})).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&token, SESSION_SECONDS));
    Ok(response)
}

/// `GET /console/session`: who the console is signed in as (401 when it is not).
pub async fn whoami(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    match app_of(&state, &headers).await? {
        Some(app) => Ok(Json(json!({"app_id": app.id, "api_key": app.api_key}))),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            Code::AuthenticationError,
            "not signed in",
        )),
    }
}

/// `DELETE /console/session`: sign out.
pub async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = cookie(&headers) {
        state.console.revoke(token);
    }
    let mut response = Json(json!({})).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", 0));
    response
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// `GET /console`: the page.
pub async fn page() -> Response {
    let mut response = asset(INDEX, "text/html; charset=utf-8");
    let headers = response.headers_mut();
    // Everything the page loads comes from this server; it may not be framed.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// `GET /console/{asset}`: the script and the style sheet.
pub async fn assets(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "app.js" => asset(SCRIPT, "text/javascript; charset=utf-8"),
        "app.css" => asset(STYLE, "text/css; charset=utf-8"),
        _ => ApiError::not_found(format!("no console asset {name}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookrelay_core::{Secret, Timestamp};

    fn app(secret: &str) -> App {
        App {
            id: hookrelay_store::AppId(1),
            name: "a".into(),
            api_key: "key".into(),
            api_secret: Secret::new(secret),
            previous_api_secret: None,
            settings: Default::default(),
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(0),
        }
    }

    #[test]
    fn sessions_are_signed_revocable_and_tied_to_the_secret() {
        let sessions = Sessions::default();
        let token = sessions.issue(&app("s1"));
        let claims = sessions.open(&token).unwrap();
        assert_eq!(claims["k"], "key");
        assert_eq!(claims["s"], secret_tag(&app("s1")));
        assert_ne!(
            claims["s"],
            secret_tag(&app("s2")),
            "a rotated secret ends the session"
        );
        // Tampered or foreign tokens are refused.
        let (body, mac) = token.split_once('.').unwrap();
        assert!(sessions.open(&format!("{body}x.{mac}")).is_none());
        assert!(Sessions::default().open(&token).is_none());
        sessions.revoke(&token);
        assert!(sessions.open(&token).is_none());
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; hookrelay_console=tok.en; b=2"),
        );
        assert_eq!(cookie(&headers), Some("tok.en"));
        let value = session_cookie("v", 3600);
        let text = value.to_str().unwrap();
        assert!(
            text.contains("HttpOnly")
                && text.contains("SameSite=Strict")
                && text.contains("Path=/")
        );
    }
}
