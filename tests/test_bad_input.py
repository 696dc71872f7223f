"""Bad input gets Stream's error format (status, code, message, and every field the SDKs need),
and changes nothing that was stored (issue 2)."""

import json

import pytest

from conftest import server_token, sqs_hook

ERROR_FIELDS = {"code", "message", "StatusCode", "duration", "more_info", "details"}
SQS_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/q"


def hook(**fields):
    return sqs_hook("q", **fields)


# (case, request changes, expected status, expected code, text the message must contain)
BAD_HOOKS = [
    ("unknown hook type", {"hook_type": "carrier_pigeon"}, "hook_type"),
    ("pending_message", {"hook_type": "pending_message", "webhook_url": "https://x.io"}, "not supported"),
    ("missing hook type", {"hook_type": None}, "hook_type: is required"),
    ("non-SQS queue URL", {"sqs_queue_url": "https://foo.com/bar"}, "sqs_queue_url"),
    ("missing queue URL", {"sqs_queue_url": None}, "sqs_queue_url: is required"),
    ("missing region", {"sqs_region": None}, "sqs_region: is required"),
    ("bad region", {"sqs_region": "moon-base-1"}, "sqs_region"),
    ("region differs from URL", {"sqs_region": "eu-west-1"}, "does not match"),
    ("unknown auth type", {"sqs_auth_type": "password"}, "sqs_auth_type"),
    ("keys without secret", {"sqs_secret": None}, "sqs_secret: is required"),
    ("keys without key", {"sqs_key": None}, "sqs_key: is required"),
    ("role without ARN", {"sqs_auth_type": "role"}, "sqs_role_arn: is required"),
    ("bad role ARN", {"sqs_auth_type": "role", "sqs_role_arn": "arn:aws:iam::1:user/x"}, "sqs_role_arn"),
    ("bad SNS ARN", {"hook_type": "sns", "sns_topic_arn": "arn:aws:sns:us-east-1:1111111111:t", "sns_region": "us-east-1"}, "sns_topic_arn"),
    ("webhook without URL", {"hook_type": "webhook"}, "webhook_url: is required"),
    ("webhook with ftp URL", {"hook_type": "webhook", "webhook_url": "ftp://x.io"}, "webhook_url"),
    ("empty event type", {"event_types": [""]}, "event_types[0]"),
    ("too many event types", {"event_types": [f"t{i}" for i in range(101)]}, "at most 100"),
    ("mid-string wildcard", {"event_types": ["mess*age.new"]}, "event_types[0]"),
    ("enabled not a boolean", {"enabled": "yes"}, "enabled: must be true or false"),
    ("masked secret for a new hook", {"sqs_secret": "********"}, "masked"),
]


@pytest.mark.parametrize("case,changes,text", BAD_HOOKS, ids=[c[0] for c in BAD_HOOKS])
def test_invalid_hook_is_refused_and_nothing_changes(server, case, changes, text):
    good = server.set_hooks([hook(event_types=["message.new"])])
    bad = hook()
    for k, v in changes.items():
        if v is None:
            bad.pop(k, None)
        else:
            bad[k] = v
    # The bad hook comes second: the first (valid) one must not be stored either.
    r = server.request("PATCH", "/app", {"event_hooks": [hook(), bad]})
    body = r.json()
    assert r.status_code == 400, body
    assert ERROR_FIELDS <= body.keys()
    assert body["code"] == 4 and body["StatusCode"] == 400
    assert body["message"].startswith('UpdateApp failed with error: "event_hooks[1].'), body["message"]
    assert text in body["message"], body["message"]
    assert server.get_app()["event_hooks"] == good


# (case, method, path, kwargs for Server.request, status, code)
BAD_REQUESTS = [
    ("malformed JSON", "PATCH", "/app", {"raw": '{"event_hooks": [}'}, 400, 4),
    ("body not an object", "PATCH", "/app", {"raw": "[1,2]"}, 400, 4),
    ("event_hooks not an array", "PATCH", "/app", {"body": {"event_hooks": {"a": 1}}}, 400, 4),
    ("wrong content type", "PATCH", "/app", {"raw": "event_hooks=1", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 415, 4),
    ("missing JWT", "GET", "/app", {"token": ""}, 401, 5),
    ("garbage JWT", "GET", "/app", {"token": "abc.def"}, 401, 5),
    ("JWT signed with another secret", "GET", "/app", {"token": server_token("not-the-secret")}, 401, 43),
    ("expired JWT", "GET", "/app", {"token": "EXPIRED"}, 401, 40),
    ("user token", "GET", "/app", {"token": "USER"}, 403, 17),
    ("missing api key", "GET", "/app", {"api_key": ""}, 401, 2),
    ("unknown api key", "GET", "/app", {"api_key": "nosuchkey"}, 401, 2),
    ("body over the limit", "PATCH", "/app", {"raw": json.dumps({"webhook_url": "https://x.io/" + "a" * 5_000_000})}, 413, 22),
    ("unknown route", "GET", "/nope", {}, 404, 16),
    ("setting of the wrong type", "PATCH", "/app", {"body": {"enable_hook_payload_compression": "yes"}}, 400, 4),
    ("legacy sqs_url not a URL", "PATCH", "/app", {"body": {"sqs_url": "foobar"}}, 400, 4),
]


@pytest.mark.parametrize("case,method,path,kwargs,status,code", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_request_gets_stream_error(server, case, method, path, kwargs, status, code):
    before = server.set_hooks([hook()])
    kwargs = dict(kwargs)
    if kwargs.get("token") == "EXPIRED":
        kwargs["token"] = server_token(server.secret, {"server": True, "exp": 1000})
    if kwargs.get("token") == "USER":
        kwargs["token"] = server_token(server.secret, {"user_id": "alice"})
    r = server.request(method, path, **kwargs)
    body = r.json()
    assert (r.status_code, body.get("code")) == (status, code), body
    assert ERROR_FIELDS <= body.keys(), body
    assert body["StatusCode"] == status
    assert server.get_app()["event_hooks"] == before


def test_unknown_and_read_only_fields_are_tolerated(server):
    # What the Go SDK always sends, plus fields hookrelay has never heard of.
    r = server.request("PATCH", "/app", {
        "name": "renamed?", "organization": "", "suspended": False, "policies": None,
        "revoke_tokens_issued_before": None, "channel_configs": None, "some_future_field": {"x": 1},
        "event_hooks": [hook(id="", created_at="0001-01-01T00:00:00Z", updated_at=1704067200123456789,
                             callback={"mode": "CALLBACK_MODE_NONE"}, failover_config={})],
        "webhook_url": "https://example.com/legacy", "enable_hook_payload_compression": True,
    })
    assert r.status_code == 200, r.text
    app = server.get_app()
    assert app["name"] == "default", "read-only fields are ignored"
    assert app["webhook_url"] == "https://example.com/legacy"
    assert app["enable_hook_payload_compression"] is True
    assert len(app["event_hooks"]) == 1 and app["event_hooks"][0]["id"] != ""
    # event_hooks absent (or null) leaves the hooks alone.
    assert server.request("PATCH", "/app", {"event_hooks": None}).status_code == 200
    assert len(server.get_app()["event_hooks"]) == 1


def test_every_success_body_has_duration(server):
    for method, path, body in [("GET", "/app", None), ("PATCH", "/app", {}), ("GET", "/hook/events", None),
                               ("POST", "/check_sqs", {"sqs_url": "https://foo.com/bar"})]:
        r = server.request(method, path, body)
        assert r.status_code in (200, 201), r.text
        assert r.json()["duration"].endswith("ms")
    assert server.request("POST", "/check_sqs", {}).status_code == 201
