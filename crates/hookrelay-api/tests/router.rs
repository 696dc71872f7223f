//! The API's rules, tested in-process through the router (`tower::ServiceExt::oneshot`) on a
//! real embedded store: authentication as Stream's SDKs send it, tenant scoping of hooks, the
//! "absent field keeps its value" rule for hookrelay's own hook fields, ingest's all-or-nothing
//! answer, and the console's cookie-plus-header rule. The end-to-end suite (`tests/`) covers the
//! same server through real processes and SDKs.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hookrelay_api::{ApiLimits, AppState, router};
use hookrelay_core::Secret;
use hookrelay_core::sign::hmac_sha256;
use hookrelay_delivery::{DeliverySettings, Dispatcher};
use hookrelay_store::{SecretBox, SqliteStore, Store};
use serde_json::{Value, json};
use tower::ServiceExt;

struct Api {
    router: Router,
    _dir: tempfile::TempDir,
}

struct App {
    key: &'static str,
    secret: &'static str,
}

const A: App = App {
    key: "key-a",
    secret: "secret-of-app-a-0123456789",
};
const B: App = App {
    key: "key-b",
    secret: "secret-of-app-b-0123456789",
};

/// A server token as Stream's SDKs make it: HS256 over `{"server": true}`.
fn token(secret: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(r#"{"server":true}"#);
    let mac = hmac_sha256(
        secret.as_bytes(),
        &[header.as_bytes(), b".", claims.as_bytes()],
    );
    format!("{header}.{claims}.{}", URL_SAFE_NO_PAD.encode(mac))
}

async fn api() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(dir.path().join("hookrelay.db"), SecretBox::new(&[7; 32])).unwrap(),
    );
    for app in [&A, &B] {
        store
            .create_app(app.key, app.key, &Secret::new(app.secret))
            .await
            .unwrap();
    }
    // The dispatcher itself is not run: these tests are about the API's answers.
    let (_dispatcher, delivery) = Dispatcher::new(store.clone(), DeliverySettings::default())
        .await
        .unwrap();
    let state = AppState::new(store, ApiLimits::default(), delivery, None);
    Api {
        router: router(state),
        _dir: dir,
    }
}

impl Api {
    async fn call(
        &self,
        app: Option<&App>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let uri = match app {
            Some(app) if path.contains('?') => format!("{path}&api_key={}", app.key),
            Some(app) => format!("{path}?api_key={}", app.key),
            None => path.to_owned(),
        };
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(app) = app {
            request = request
                .header(header::AUTHORIZATION, token(app.secret))
                .header("stream-auth-type", "jwt");
        }
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

fn webhook(id: &str, extra: Value) -> Value {
    let mut hook = json!({"id": id, "enabled": true, "hook_type": "webhook",
                          "webhook_url": "https://example.com/hooks", "event_types": []});
    for (k, v) in extra.as_object().unwrap() {
        hook[k] = v.clone();
    }
    hook
}

#[tokio::test]
async fn requests_are_authenticated_as_stream_sdks_send_them() {
    let api = api().await;
    let (status, body) = api.call(None, "GET", "/app", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], 2, "Stream's AccessKeyError: {body}");
    let wrong = App {
        key: A.key,
        secret: B.secret,
    };
    let (status, body) = api.call(Some(&wrong), "GET", "/app", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], 43, "signature invalid: {body}");
    let (status, body) = api.call(Some(&A), "GET", "/app", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["app"]["event_hooks"], json!([]));
    // Unknown paths and methods answer in Stream's format too.
    let (status, body) = api.call(Some(&A), "GET", "/nowhere", None).await;
    assert_eq!(
        (status, body["StatusCode"].clone()),
        (StatusCode::NOT_FOUND, json!(404))
    );
}

#[tokio::test]
async fn hooks_are_scoped_to_their_app_and_own_fields_survive_a_round_trip() {
    let api = api().await;
    let hook = webhook(
        "orders",
        json!({"rate_limit": 50, "webhook_signature": "standard",
                                         "filter": {"channel_type": ["messaging"]}}),
    );
    let (status, body) = api
        .call(
            Some(&A),
            "PATCH",
            "/app",
            Some(json!({"event_hooks": [hook]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Another app can use the same id, and cannot see or touch app A's hook.
    let (status, _) = api
        .call(
            Some(&B),
            "PATCH",
            "/app",
            Some(json!({"event_hooks": [webhook("orders", json!({}))]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, a) = api.call(Some(&A), "GET", "/app", None).await;
    let (_, b) = api.call(Some(&B), "GET", "/app", None).await;
    assert_eq!(a["app"]["event_hooks"][0]["rate_limit"], 50);
    assert!(b["app"]["event_hooks"][0].get("rate_limit").is_none());
    assert_eq!(
        a["app"]["event_hooks"][0]["webhook_secret"], "********",
        "masked"
    );
    let (status, _) = api
        .call(Some(&B), "GET", "/v1/hooks/orders/signing_secret", None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "B's hook has no signing secret, A's is not B's"
    );
    let (status, _) = api
        .call(Some(&B), "POST", "/v1/hooks/nope/pause", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Python's getstream sends the hook back without the fields it does not know: kept.
    let stream_shaped = webhook("orders", json!({}));
    let (status, _) = api
        .call(
            Some(&A),
            "PATCH",
            "/app",
            Some(json!({"event_hooks": [stream_shaped]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, a) = api.call(Some(&A), "GET", "/app", None).await;
    let kept = &a["app"]["event_hooks"][0];
    assert_eq!(
        (
            kept["rate_limit"].clone(),
            kept["webhook_signature"].clone()
        ),
        (json!(50), json!("standard"))
    );
    assert_eq!(kept["filter"], json!({"channel_type": ["messaging"]}));

    // A bad field is named precisely, and nothing changes.
    let bad = webhook("orders", json!({"filter": {"cid": [{"regex": "x"}]}}));
    let (status, body) = api
        .call(
            Some(&A),
            "PATCH",
            "/app",
            Some(json!({"event_hooks": [bad]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["exception_fields"]
            .get("event_hooks[0].filter[\"cid\"][0].regex")
            .is_some(),
        "{body}"
    );
}

#[tokio::test]
async fn ingest_takes_a_request_whole_or_not_at_all() {
    let api = api().await;
    let events =
        json!({"events": [{"id": "e1", "type": "message.new"}, {"id": "e2", "type": "Bad Type"}]});
    let (status, body) = api.call(Some(&A), "POST", "/v1/events", Some(events)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["exception_fields"].get("events[1]").is_some(),
        "{body}"
    );
    let (status, _) = api.call(Some(&A), "GET", "/v1/events/e1", None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "nothing of a refused request is stored"
    );

    let events = json!({"events": [{"id": "e1", "type": "message.new"}]});
    let (status, body) = api
        .call(Some(&A), "POST", "/v1/events", Some(events.clone()))
        .await;
    assert_eq!(
        (status, body["events"][0]["id"].clone()),
        (StatusCode::CREATED, json!("e1"))
    );
    let (_, again) = api.call(Some(&A), "POST", "/v1/events", Some(events)).await;
    assert_eq!(again["events"][0]["duplicate"], true);
    let (status, found) = api.call(Some(&A), "GET", "/v1/events/e1", None).await;
    assert_eq!(
        (status, found["event"]["type"].clone()),
        (StatusCode::OK, json!("message.new"))
    );
    // App B has no event e1.
    let (status, _) = api.call(Some(&B), "GET", "/v1/events/e1", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_console_cookie_counts_only_with_the_console_header() {
    let api = api().await;
    let sign_in = Request::post("/console/session")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"api_key": A.key, "api_secret": A.secret}).to_string(),
        ))
        .unwrap();
    let response = api.router.clone().oneshot(sign_in).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();
    let hooks = |with_header: bool| {
        let mut request = Request::get("/v1/hooks").header(header::COOKIE, session.clone());
        if with_header {
            request = request.header("X-Hookrelay-Console", "1");
        }
        api.router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
    };
    assert_eq!(hooks(true).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        hooks(false).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let wrong = Request::post("/console/session")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"api_key": A.key, "api_secret": B.secret}).to_string(),
        ))
        .unwrap();
    assert_eq!(
        api.router.clone().oneshot(wrong).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}
