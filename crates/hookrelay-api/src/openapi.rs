//! `GET /openapi.json`: an OpenAPI 3.1 description of every route of [`crate::router`].
//!
//! Written here, beside the router, rather than derived from handler types: most handlers read
//! loosely typed JSON on purpose (Stream's SDKs send many shapes), so the document states the
//! contract the tests hold the server to. A unit test fails when a route of the router is missing
//! here or a path here has no route, and the end-to-end suite validates the document with a
//! standard OpenAPI validator.

use std::sync::OnceLock;

use serde_json::{Map, Value, json};

/// The document, built once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn json_body(schema: Value) -> Value {
    json!({"content": {"application/json": {"schema": schema}}})
}

/// An operation answering `ok` with the schema `answer` (JSON), and Stream-format errors.
fn op(summary: &str, tag: &str, ok: u16, answer: Value, errors: &[u16]) -> Map<String, Value> {
    let mut responses = Map::new();
    responses.insert(
        ok.to_string(),
        json!({"description": "Success", "content": {"application/json": {"schema": answer}}}),
    );
    for code in errors {
        responses.insert(
            code.to_string(),
            json!({"$ref": format!("#/components/responses/Error{code}")}),
        );
    }
    let mut o = Map::new();
    o.insert("summary".into(), summary.into());
    o.insert("tags".into(), json!([tag]));
    o.insert("responses".into(), Value::Object(responses));
    o
}

fn with_body(mut o: Map<String, Value>, body: Value) -> Map<String, Value> {
    let mut b = json_body(body);
    b["required"] = true.into();
    o.insert("requestBody".into(), b);
    o
}

fn with_params(mut o: Map<String, Value>, params: Value) -> Map<String, Value> {
    o.insert("parameters".into(), params);
    o
}

fn public(mut o: Map<String, Value>) -> Map<String, Value> {
    o.insert("security".into(), json!([]));
    o
}

fn path_param(name: &str, about: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": about, "schema": {"type": "string"}})
}

fn query_param(name: &str, about: &str, kind: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": about, "schema": {"type": kind}})
}

fn hook_param() -> Value {
    path_param(
        "hook_id",
        "The hook's id, as the app chose it or the server made it",
    )
}

fn page_params(extra: Vec<Value>) -> Value {
    let mut params = vec![
        hook_param(),
        query_param("limit", "Page size, 1 to 1000 (default 100)", "integer"),
        query_param(
            "before",
            "Continue after this id (the `next` of the previous page)",
            "integer",
        ),
    ];
    params.extend(extra);
    Value::Array(params)
}

fn object(props: Value) -> Value {
    json!({"type": "object", "properties": props})
}

fn hook_status_answer() -> Value {
    object(json!({"hook": schema("HookStatus"), "duration": {"type": "string"}}))
}

const AUTH_ERRORS: &[u16] = &[401, 403];
const READ_ERRORS: &[u16] = &[401, 403, 404];
const WRITE_ERRORS: &[u16] = &[400, 401, 403, 404, 413, 415, 503];

fn paths() -> Value {
    let app_get = || {
        op(
            "The app's settings and event hooks",
            "Stream-compatible",
            200,
            object(json!({"app": schema("App"), "duration": {"type": "string"}})),
            AUTH_ERRORS,
        )
    };
    let app_patch = || {
        with_body(
            op(
                "Update app settings; `event_hooks` replaces the app's hooks",
                "Stream-compatible",
                200,
                object(json!({"duration": {"type": "string"}})),
                WRITE_ERRORS,
            ),
            schema("UpdateApp"),
        )
    };
    let check = |what: &str| {
        with_body(
            op(
                &format!(
                    "Send a test message to the app's {what} hooks, or to the one in the body"
                ),
                "Stream-compatible",
                200,
                schema("CheckResult"),
                WRITE_ERRORS,
            ),
            json!({"type": "object", "additionalProperties": true}),
        )
    };
    let status_only = |summary: &str| {
        op(
            summary,
            "Hooks",
            200,
            hook_status_answer(),
            &[401, 403, 404, 503],
        )
    };
    let mut p = Map::new();
    let mut put = |path: &str, methods: Vec<(&str, Map<String, Value>)>| {
        let item: Map<String, Value> = methods
            .into_iter()
            .map(|(m, o)| (m.to_owned(), Value::Object(o)))
            .collect();
        p.insert(path.to_owned(), Value::Object(item));
    };
    put("/app", vec![("get", app_get()), ("patch", app_patch())]);
    put(
        "/api/v2/app",
        vec![("get", app_get()), ("patch", app_patch())],
    );
    put("/check_sqs", vec![("post", check("SQS"))]);
    put("/api/v2/check_sqs", vec![("post", check("SQS"))]);
    put("/check_sns", vec![("post", check("SNS"))]);
    put("/api/v2/check_sns", vec![("post", check("SNS"))]);
    put(
        "/hook/events",
        vec![(
            "get",
            op(
                "The event types hooks can subscribe to",
                "Stream-compatible",
                200,
                object(json!({"events": {"type": "array", "items": {"type": "object"}}})),
                AUTH_ERRORS,
            ),
        )],
    );
    put(
        "/v1/events",
        vec![(
            "post",
            with_body(
                op(
                    "Ingest one event or a batch; answered once durable",
                    "Events",
                    201,
                    schema("IngestResult"),
                    WRITE_ERRORS,
                ),
                json!({"oneOf": [schema("Event"), object(json!({"events": {"type": "array", "items": schema("Event"), "minItems": 1, "maxItems": 1000}}))]}),
            ),
        )],
    );
    put(
        "/v1/events/{event_id}",
        vec![(
            "get",
            with_params(
                op(
                    "An event and where it went: per hook, filter match, state and attempts",
                    "Events",
                    200,
                    schema("EventTrace"),
                    READ_ERRORS,
                ),
                json!([path_param("event_id", "The event's id")]),
            ),
        )],
    );
    put(
        "/v1/inlets/stream",
        vec![(
            "post",
            public(with_params(
                with_body(
                    op(
                        "Stream's own webhook as a source: the event, signed with X-Signature",
                        "Events",
                        200,
                        object(
                            json!({"id": {"type": "string"}, "duplicate": {"type": "boolean"}, "duration": {"type": "string"}}),
                        ),
                        &[400, 401, 413, 415, 503],
                    ),
                    schema("Event"),
                ),
                json!([
                    {"name": "X-Api-Key", "in": "header", "required": true, "schema": {"type": "string"}},
                    {"name": "X-Signature", "in": "header", "required": true, "description": "Hex HMAC-SHA256 of the body with the app's API secret", "schema": {"type": "string"}},
                    {"name": "X-Webhook-Id", "in": "header", "required": false, "description": "Idempotency key: becomes the event id when the event has none", "schema": {"type": "string"}},
                ]),
            )),
        )],
    );
    put(
        "/v1/app",
        vec![(
            "delete",
            op(
                "Delete the app with its hooks, backlogs, dead letters and events",
                "App",
                200,
                object(json!({"deleted": {"type": "boolean"}, "duration": {"type": "string"}})),
                AUTH_ERRORS,
            ),
        )],
    );
    put(
        "/v1/app/secret",
        vec![(
            "post",
            with_body(
                op(
                    "Replace the API secret, optionally keeping the old one for a window",
                    "App",
                    200,
                    object(
                        json!({"previous_secret_valid_until": {"type": ["string", "null"]}, "duration": {"type": "string"}}),
                    ),
                    WRITE_ERRORS,
                ),
                object(
                    json!({"api_secret": {"type": "string", "minLength": 16, "maxLength": 256}, "keep_previous_seconds": {"type": "integer", "minimum": 0, "maximum": 2592000}}),
                ),
            ),
        )],
    );
    put(
        "/v1/hooks",
        vec![(
            "get",
            op(
                "Every hook of the app with its state, lag and counters",
                "Hooks",
                200,
                object(
                    json!({"hooks": {"type": "array", "items": schema("HookStatus")}, "duration": {"type": "string"}}),
                ),
                AUTH_ERRORS,
            ),
        )],
    );
    put(
        "/v1/hooks/{hook_id}",
        vec![(
            "get",
            with_params(
                status_only("One hook's state, lag, counters and last hour"),
                json!([hook_param()]),
            ),
        )],
    );
    put(
        "/v1/hooks/{hook_id}/pause",
        vec![(
            "post",
            with_params(
                status_only("Stop delivery, keeping the backlog"),
                json!([hook_param()]),
            ),
        )],
    );
    put(
        "/v1/hooks/{hook_id}/resume",
        vec![(
            "post",
            with_params(
                status_only("Restart delivery where it stopped"),
                json!([hook_param()]),
            ),
        )],
    );
    put(
        "/v1/hooks/{hook_id}/replay",
        vec![(
            "post",
            with_params(
                with_body(
                    op(
                        "Deliver again every retained event since a time",
                        "Hooks",
                        200,
                        object(
                            json!({"events_after_cursor": {"type": "integer"}, "duration": {"type": "string"}}),
                        ),
                        WRITE_ERRORS,
                    ),
                    object(json!({"since": {"type": "string", "format": "date-time"}})),
                ),
                json!([hook_param()]),
            ),
        )],
    );
    put(
        "/v1/hooks/{hook_id}/test",
        vec![(
            "post",
            with_params(
                op(
                    "Send one health.check event through the hook's delivery path",
                    "Hooks",
                    200,
                    schema("TestReport"),
                    &[401, 403, 404],
                ),
                json!([hook_param()]),
            ),
        )],
    );
    put(
        "/v1/hooks/{hook_id}/signing_secret",
        vec![(
            "get",
            with_params(
                op(
                    "The hook's Standard Webhooks secret(s), in clear",
                    "Hooks",
                    200,
                    object(
                        json!({"webhook_signature": {"type": "string"}, "webhook_secret": {"type": "string"}, "previous": {"type": ["object", "null"]}, "duration": {"type": "string"}}),
                    ),
                    READ_ERRORS,
                ),
                json!([hook_param()]),
            ),
        )],
    );
    put(
        "/v1/hooks/{hook_id}/dead_letters",
        vec![(
            "get",
            with_params(
                op(
                    "The hook's dead letters, newest first",
                    "Dead letters",
                    200,
                    object(
                        json!({"dead_letters": {"type": "array", "items": schema("DeadLetter")}, "next": {"type": ["integer", "null"]}, "duration": {"type": "string"}}),
                    ),
                    READ_ERRORS,
                ),
                page_params(vec![]),
            ),
        )],
    );
    put(
        "/v1/hooks/{hook_id}/dead_letters/replay",
        vec![(
            "post",
            with_params(
                with_body(
                    op(
                        "Put dead letters back into delivery (all, or these event ids)",
                        "Dead letters",
                        200,
                        object(
                            json!({"replayed": {"type": "integer"}, "not_found": {"type": "array", "items": {"type": "string"}}, "duration": {"type": "string"}}),
                        ),
                        WRITE_ERRORS,
                    ),
                    object(json!({"event_ids": {"type": "array", "items": {"type": "string"}}})),
                ),
                json!([hook_param()]),
            ),
        )],
    );
    put(
        "/v1/hooks/{hook_id}/attempts",
        vec![(
            "get",
            with_params(
                op(
                    "The hook's delivery attempts, newest first",
                    "Delivery log",
                    200,
                    object(
                        json!({"attempts": {"type": "array", "items": schema("Attempt")}, "next": {"type": ["integer", "null"]}, "duration": {"type": "string"}}),
                    ),
                    &[400, 401, 403, 404],
                ),
                page_params(vec![
                    json!({"name": "outcome", "in": "query", "required": false, "schema": schema("AttemptOutcome")}),
                ]),
            ),
        )],
    );
    let text = |summary: &str, media: &str| {
        let mut o = Map::new();
        o.insert("summary".into(), summary.into());
        o.insert("tags".into(), json!(["Operations"]));
        o.insert("security".into(), json!([]));
        o.insert("responses".into(), json!({"200": {"description": "Success", "content": {media: {"schema": {"type": "string"}}}}}));
        o
    };
    put(
        "/healthz",
        vec![("get", text("The process answers", "application/json"))],
    );
    put(
        "/readyz",
        vec![("get", {
            let mut o = text(
                "The store takes writes and delivery runs (503 otherwise)",
                "application/json",
            );
            o["responses"]["503"] = json!({"$ref": "#/components/responses/Error503"});
            o
        })],
    );
    put(
        "/metrics",
        vec![(
            "get",
            text(
                "Prometheus metrics (bearer token when configured)",
                "text/plain",
            ),
        )],
    );
    put(
        "/openapi.json",
        vec![("get", {
            let mut o = text("This document", "application/json");
            o["tags"] = json!(["Operations"]);
            o
        })],
    );
    put(
        "/console",
        vec![("get", text("The web console (HTML)", "text/html"))],
    );
    put(
        "/console/{asset}",
        vec![(
            "get",
            with_params(
                text(
                    "A console asset (app.js, app.css), embedded in the binary",
                    "text/plain",
                ),
                json!([path_param("asset", "app.js or app.css")]),
            ),
        )],
    );
    put(
        "/console/session",
        vec![
            (
                "get",
                public(op(
                    "Who the console is signed in as",
                    "Console",
                    200,
                    object(json!({"app_id": {"type": "integer"}, "api_key": {"type": "string"}})),
                    &[401],
                )),
            ),
            (
                "post",
                public(with_body(
                    op(
                        "Sign in: the app's key and secret for a short-lived HttpOnly session cookie",
                        "Console",
                        200,
                        object(
                            json!({"app_id": {"type": "integer"}, "api_key": {"type": "string"}}),
                        ),
                        &[400, 401],
                    ),
                    object(
                        json!({"api_key": {"type": "string"}, "api_secret": {"type": "string"}}),
                    ),
                )),
            ),
            (
                "delete",
                public(op(
                    "Sign out: the session ends and its cookie is cleared",
                    "Console",
                    200,
                    object(json!({})),
                    &[],
                )),
            ),
        ],
    );
    Value::Object(p)
}

fn schemas() -> Value {
    json!({
        "Error": {
            "type": "object",
            "description": "Stream's error format",
            "required": ["code", "message", "StatusCode"],
            "properties": {
                "code": {"type": "integer", "description": "Stream error code (4 input, 5 authentication, 16 not found, 17 not allowed, 22 too big, 43 signature, -1 internal)"},
                "message": {"type": "string"},
                "exception_fields": {"type": "object", "additionalProperties": {"type": "string"}},
                "StatusCode": {"type": "integer"},
                "duration": {"type": "string"},
                "more_info": {"type": "string"},
            },
        },
        "EventHook": {
            "type": "object",
            "required": ["hook_type"],
            "properties": {
                "id": {"type": "string"},
                "enabled": {"type": "boolean"},
                "hook_type": {"type": "string", "enum": ["webhook", "sqs", "sns"]},
                "event_types": {"type": "array", "items": {"type": "string"}},
                "product": {"type": "string"},
                "webhook_url": {"type": "string"},
                "sqs_queue_url": {"type": "string"}, "sqs_region": {"type": "string"},
                "sqs_auth_type": {"type": "string", "enum": ["keys", "resource", "role"]},
                "sqs_key": {"type": "string"}, "sqs_secret": {"type": "string"}, "sqs_role_arn": {"type": "string"},
                "sns_topic_arn": {"type": "string"}, "sns_region": {"type": "string"},
                "sns_auth_type": {"type": "string", "enum": ["keys", "resource", "role"]},
                "sns_key": {"type": "string"}, "sns_secret": {"type": "string"}, "sns_role_arn": {"type": "string"},
                "should_send_custom_events": {"type": "boolean"},
                "sns_event_based_message_group_id_enabled": {"type": "boolean"},
                "rate_limit": {"type": ["integer", "null"], "minimum": 0, "description": "hookrelay: events per second; absent keeps the stored value"},
                "webhook_signature": {"type": "string", "enum": ["stream", "standard"]},
                "webhook_secret": {"type": "string", "description": "whsec_…; shown masked"},
                "filter": {"type": ["object", "null"], "description": "hookrelay: content filter (paths to lists of conditions)"},
                "delete": {"type": "boolean"},
                "created_at": {}, "updated_at": {},
            },
            "additionalProperties": true,
        },
        "App": {
            "type": "object",
            "properties": {"id": {"type": "integer"}, "name": {"type": "string"}, "event_hooks": {"type": "array", "items": schema("EventHook")}},
            "additionalProperties": true,
        },
        "UpdateApp": {
            "type": "object",
            "properties": {"event_hooks": {"type": "array", "items": schema("EventHook")}, "explicit_event_hooks_deletion": {"type": "boolean"}},
            "additionalProperties": true,
        },
        "CheckResult": {
            "type": "object",
            "properties": {"status": {"type": "string", "enum": ["ok", "error"]}, "error": {"type": "string"}, "data": {"type": "object"}, "duration": {"type": "string"}},
        },
        "Event": {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"type": "string"}, "id": {"type": "string"}, "created_at": {"type": "string"}, "cid": {"type": "string"}},
            "additionalProperties": true,
        },
        "IngestResult": {
            "type": "object",
            "properties": {
                "events": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"}, "duplicate": {"type": "boolean"}}}},
                "duration": {"type": "string"},
            },
        },
        "HookStatus": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "hook_type": {"type": "string"},
                "enabled": {"type": "boolean"},
                "paused": {"type": "boolean"},
                "state": {"type": "string", "enum": ["healthy", "retrying", "backing_off", "open", "paused", "disabled"]},
                "node": {"type": ["string", "null"]},
                "lag": {"type": "object", "properties": {"events": {"type": "integer"}, "oldest_pending_age_seconds": {"type": ["number", "null"]}}},
                "in_flight": {"type": "integer"},
                "retry_backlog": {"type": "integer"},
                "dead_letters": {"type": "integer"},
                "delivered": {"type": "integer"},
                "failed": {"type": "integer"},
                "dead_lettered": {"type": "integer"},
                "dropped": {"type": "integer"},
                "last_success_at": {"type": ["string", "null"]},
                "last_error": {"type": ["object", "null"], "properties": {"at": {"type": "string"}, "code": {"type": "string"}, "message": {"type": "string"}}},
                "rate_limit": {"type": ["integer", "null"]},
                "current_rate": {"type": ["number", "null"]},
                "per_minute": {"type": "array", "items": {"type": "object", "properties": {"at": {"type": "string"}, "delivered": {"type": "integer"}, "failed": {"type": "integer"}}}},
            },
        },
        "DeadLetter": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"}, "event_id": {"type": "string"}, "event_type": {"type": "string"},
                "reason": {"type": "string", "enum": ["too_large", "rejected", "retries_exhausted", "denied"]},
                "attempts": {"type": "integer"}, "last_error": {"type": "string"}, "created_at": {"type": "string"},
            },
        },
        "AttemptOutcome": {"type": "string", "enum": ["delivered", "retrying", "refused", "dead_lettered", "dropped", "destination_down"]},
        "Attempt": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "at": {"type": "string", "format": "date-time"},
                "outcome": schema("AttemptOutcome"),
                "duration_ms": {"type": "number"},
                "events": {"type": "array", "items": {"type": "object", "properties": {"event_id": {"type": "string"}, "attempt": {"type": "integer"}}}},
                "code": {"type": ["string", "null"]},
                "http_status": {"type": ["integer", "null"]},
                "response": {"type": ["string", "null"], "description": "The first 1 KB of the answer, on failure"},
            },
        },
        "EventTrace": {
            "type": "object",
            "properties": {
                "event": {"type": "object", "properties": {"id": {"type": "string"}, "type": {"type": "string"}, "created_at": {"type": "string"}, "payload": {"type": "object"}}},
                "hooks": {"type": "array", "items": {"type": "object", "properties": {
                    "hook_id": {"type": "string"},
                    "hook_type": {"type": "string"},
                    "matched": {"type": "boolean"},
                    "state": {"type": "string", "enum": ["pending", "delivered", "retrying", "dead_letter", "dropped", "filtered_out", "skipped"]},
                    "retry": {"type": ["object", "null"]},
                    "attempts": {"type": "array", "items": schema("Attempt")},
                }}},
                "now": {"type": "string"},
                "duration": {"type": "string"},
            },
        },
        "TestReport": {
            "type": "object",
            "properties": {"status": {"type": "string", "enum": ["ok", "error"]}, "event_id": {"type": "string"}, "latency_ms": {"type": "number"}, "error": {"type": "object"}, "duration": {"type": "string"}},
        },
    })
}

fn build() -> Value {
    let mut responses = Map::new();
    for (code, about) in [
        (
            400,
            "Bad input (Stream code 4), with the fields at fault in exception_fields",
        ),
        (401, "Missing or bad credentials"),
        (403, "Not allowed (a user token, or not a JWT)"),
        (404, "No such hook or event"),
        (413, "The body is too large"),
        (415, "Not JSON, or compressed"),
        (
            503,
            "The store is not taking writes (retry after Retry-After)",
        ),
    ] {
        responses.insert(
            format!("Error{code}"),
            json!({"description": about, "content": {"application/json": {"schema": schema("Error")}}}),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "hookrelay",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Event hooks to SQS, SNS and webhooks, wire-compatible with Stream Chat's server-side API. Authenticate as Stream's SDKs do: the api_key query parameter, a server JWT (HS256, signed with the API secret) in Authorization, and stream-auth-type: jwt. The console authenticates with its session cookie and the X-Hookrelay-Console header instead.",
        },
        "security": [{"api_key": [], "jwt": [], "auth_type": []}, {"console_session": [], "console_header": []}],
        "paths": paths(),
        "components": {
            "securitySchemes": {
                "api_key": {"type": "apiKey", "in": "query", "name": "api_key"},
                "jwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "auth_type": {"type": "apiKey", "in": "header", "name": "stream-auth-type"},
                "console_session": {"type": "apiKey", "in": "cookie", "name": "hookrelay_console"},
                "console_header": {"type": "apiKey", "in": "header", "name": "X-Hookrelay-Console"},
            },
            "schemas": schemas(),
            "responses": responses,
        },
    })
}

pub async fn serve() -> axum::Json<Value> {
    axum::Json(document().clone())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every `.route("<path>", <methods>)` in the router's source, as (path, method) pairs.
    fn routes_in_source() -> BTreeSet<(String, String)> {
        let source = include_str!("lib.rs");
        let mut found = BTreeSet::new();
        for call in source.split(".route(").skip(1) {
            let path = call.split('"').nth(1).expect("a path literal");
            // The methods: up to the end of this call (the next line starting a method call on
            // the router, or the end of the chain).
            let end = call.find("\n        .").unwrap_or(call.len());
            for method in ["get", "post", "patch", "delete", "put"] {
                let needle = format!("{method}(");
                let mentioned = call[..end].match_indices(&needle).any(|(i, _)| {
                    i == 0
                        || !call.as_bytes()[i - 1].is_ascii_alphanumeric()
                            && call.as_bytes()[i - 1] != b'_'
                });
                if mentioned {
                    found.insert((path.to_owned(), method.to_owned()));
                }
            }
        }
        found
    }

    fn routes_in_document() -> BTreeSet<(String, String)> {
        let mut found = BTreeSet::new();
        for (path, item) in document()["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                found.insert((path.clone(), method.clone()));
            }
        }
        found
    }

    #[test]
    fn the_document_describes_every_route_and_no_other() {
        let router = routes_in_source();
        let document = routes_in_document();
        assert!(
            router.len() > 30,
            "the router's routes were found: {router:?}"
        );
        let undocumented: Vec<_> = router.difference(&document).collect();
        let unrouted: Vec<_> = document.difference(&router).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from the document: {undocumented:?}"
        );
        assert!(
            unrouted.is_empty(),
            "documented paths without a route: {unrouted:?}"
        );
    }

    #[test]
    fn every_reference_resolves() {
        let text = document().to_string();
        let components = &document()["components"];
        for part in text.split("\"$ref\":\"#/components/").skip(1) {
            let target = part.split('"').next().unwrap();
            let mut at = components;
            for segment in target.split('/') {
                at = &at[segment];
            }
            assert!(!at.is_null(), "{target} is referenced but not defined");
        }
    }
}
