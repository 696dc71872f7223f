"""What the best peers each have (issue 17): per-hook rate limits, adaptation to 429s and a
circuit breaker; Standard Webhooks signatures with rotation; content filters; and an inlet that
takes Stream's own webhook. Real servers, a real receiver, moto, and the official
`standardwebhooks` verifier and Stream SDKs."""

import hashlib
import hmac
import json
import os
import subprocess
import threading
import time

import requests
from getstream import Stream
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from stream_chat import StreamChat

from conftest import BIN, FAST_RETRIES, server_token, sns_hook, sqs_hook, wait_until, webhook_hook
from receiver import Answer, Receiver


def events(prefix, n, **extra):
    return [{"id": f"{prefix}-{i}", "type": "message.new", "n": i, **extra} for i in range(n)]


def status(server, hook_id):
    r = server.request("GET", f"/v1/hooks/{hook_id}")
    assert r.status_code == 200, r.text
    return r.json()["hook"]


def verify_standard(secret, request):
    """The official Standard Webhooks verifier, on what the receiver got."""
    headers = {k: v for k, v in request.headers.items() if k.startswith("webhook-")}
    return Webhook(secret).verify(request.body, headers)


# --- 1. Rate limit, throttling, circuit breaker -------------------------------------------------


def test_a_rate_limited_hook_waits_while_an_unlimited_one_on_the_same_app_runs_free(server):
    slow, fast = Receiver().start(), Receiver().start()
    server.set_hooks([
        webhook_hook(slow.url, id="limited", rate_limit=40),
        webhook_hook(fast.url, id="free"),
    ])
    assert status(server, "limited")["rate_limit"] == 40
    sent = server.send_events(events("rl", 200))
    wait_until(lambda: len(fast.by_id()) == 200, what="the unlimited hook takes all 200")
    # At 40 a second the limited hook is far from done when the unlimited one is (a few
    # hundred milliseconds); it gets there without losing anything.
    assert len(slow.by_id()) < 150, len(slow.by_id())
    wait_until(lambda: set(slow.by_id()) == set(sent), timeout=30, what="the limited hook catches up")
    first, last = slow.requests[0].at, slow.requests[-1].at
    assert last - first >= 3.5, "200 events at 40/s take about 5 s"
    assert all(len(rs) == 1 for rs in slow.by_id().values())
    # The Python SDK's "get, append, update" round trip keeps the limit.
    client = Stream(api_key=server.key, api_secret=server.secret, base_url=server.url)
    client.update_app(event_hooks=client.get_app().data.app.event_hooks)
    assert status(server, "limited")["rate_limit"] == 40
    slow.stop(), fast.stop()


def test_429s_lower_the_rate_and_retry_after_is_honoured(server_factory):
    server = server_factory(config=FAST_RETRIES)
    throttled = {"left": 3}
    lock = threading.Lock()

    def behaviour(request):
        with lock:
            if throttled["left"] > 0:
                throttled["left"] -= 1
                return Answer(429, headers={"Retry-After": "1"}, body=b"slow down")
        return Answer(200)

    receiver = Receiver(behaviour).start()
    [hook] = server.set_hooks([webhook_hook(receiver.url, rate_limit=200)])
    sent = server.send_events(events("thr", 60))
    wait_until(lambda: receiver.delivered_ids(lambda r: r.index >= 3) >= set(sent), timeout=30,
               what="every event delivered after the 429s")
    s = status(server, hook["id"])
    assert s["current_rate"] is not None and s["current_rate"] < 200, s
    assert s["last_error"]["code"] == "HTTP 429"
    # The round that met the 429s finished its calls in flight, then nothing was sent during the
    # second the receiver asked for (at 200/s, 60 events otherwise flow without a gap).
    times = [r.at for r in receiver.requests]
    assert max(b - a for a, b in zip(times, times[1:])) >= 0.9
    # The rate recovers to the limit while events keep flowing without throttling.
    counter = iter(range(10**6))

    def recovered():
        server.send_events(events(f"more-{next(counter)}", 5))
        return status(server, hook["id"])["current_rate"] == 200.0

    wait_until(recovered, timeout=40, interval=0.2, what="the rate back at its limit")
    receiver.stop()


def test_the_circuit_opens_probes_one_call_at_a_time_and_closes(server_factory):
    server = server_factory(config=FAST_RETRIES.replace("[delivery]", "[delivery]\nbreaker_failures = 3"))
    down = {"value": True}
    concurrent = {"now": 0, "max_while_open": 0, "open": False}
    accepted = set()
    lock = threading.Lock()

    def behaviour(request):
        with lock:
            concurrent["now"] += 1
            if concurrent["open"]:
                concurrent["max_while_open"] = max(concurrent["max_while_open"], concurrent["now"])
        time.sleep(0.05)
        with lock:
            concurrent["now"] -= 1
            if down["value"]:
                return Answer(503, body=b"down")
            accepted.add(request.headers["x-webhook-id"])
            return Answer(200)

    receiver = Receiver(behaviour).start()
    healthy = Receiver().start()
    [hook, other] = server.set_hooks([webhook_hook(receiver.url), webhook_hook(healthy.url)])
    sent = server.send_events(events("cb", 40))
    wait_until(lambda: status(server, hook["id"])["state"] == "open", what="the circuit opens")
    concurrent["open"] = True
    metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    open_line = [l for l in metrics.splitlines()
                 if l.startswith("hookrelay_hook_circuit_open{") and l.endswith(" 1")]
    assert len(open_line) == 1, open_line
    env = {**os.environ, "HOOKRELAY_URL": server.url, "HOOKRELAY_API_KEY": server.key,
           "HOOKRELAY_API_SECRET": server.secret}
    listed = subprocess.run([str(BIN), "hooks", "list", "--json"], env=env, capture_output=True,
                            text=True, timeout=60, check=True)
    states = {h["id"]: h["state"] for h in json.loads(listed.stdout)["hooks"]}
    assert states[hook["id"]] == "open"
    # Another hook of the app is never slowed.
    wait_until(lambda: set(healthy.by_id()) == set(sent), what="the healthy hook gets everything")
    probes_before = len(receiver.requests)
    time.sleep(1.0)
    assert concurrent["max_while_open"] <= 1, "one probe at a time while open"
    assert len(receiver.requests) - probes_before <= 8, "probes are spaced by the back-off"
    down["value"] = False
    wait_until(lambda: status(server, hook["id"])["state"] == "healthy", timeout=30, what="the circuit closes")
    wait_until(lambda: accepted >= set(sent), timeout=30, what="the backlog delivered after closing")
    metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    assert not [l for l in metrics.splitlines() if l.startswith("hookrelay_hook_circuit_open{") and l.endswith(" 1")]
    receiver.stop(), healthy.stop()


# --- 2. Standard Webhooks, rotation ------------------------------------------------------------


def test_standard_webhooks_signatures_verify_with_the_official_library_and_rotate(server_factory):
    server = server_factory(config='[delivery]\nsecret_rotation_window = "3s"\n')
    receiver = Receiver().start()
    [hook] = server.set_hooks([webhook_hook(receiver.url, id="std", webhook_signature="standard")])
    assert hook["webhook_secret"] == "********", "masked on read"
    secret = server.request("GET", "/v1/hooks/std/signing_secret").json()["webhook_secret"]
    assert secret.startswith("whsec_")
    assert secret not in server.log()

    # The Python SDK's "get, append, update" drops fields it does not know: the hook keeps them.
    client = Stream(api_key=server.key, api_secret=server.secret, base_url=server.url)
    hooks = client.get_app().data.app.event_hooks
    client.update_app(event_hooks=hooks)
    [kept] = server.get_app()["event_hooks"]
    assert kept["webhook_signature"] == "standard"
    assert server.request("GET", "/v1/hooks/std/signing_secret").json()["webhook_secret"] == secret

    server.send_events(events("std", 5))
    wait_until(lambda: len(receiver.requests) == 5, what="5 deliveries")
    for r in receiver.requests:
        assert "x-signature" not in r.headers
        assert r.headers["webhook-id"] == r.headers["x-webhook-id"]
        assert verify_standard(secret, r)["id"] == r.headers["webhook-id"]
        try:
            verify_standard("whsec_" + "QUJD" * 8, r)
            raise AssertionError("a wrong secret verified")
        except WebhookVerificationError:
            pass

    # Rotation: both secrets sign during the window, then only the new one.
    new_secret = "whsec_" + "bmV3LXNlY3JldC1rZXktMTIzNDU2Nzg5MGFi"
    r = server.request("PATCH", "/app", {"event_hooks": [{**kept, "webhook_secret": new_secret}]})
    assert r.status_code == 200, r.text
    shown = server.request("GET", "/v1/hooks/std/signing_secret").json()
    assert shown["webhook_secret"] == new_secret and shown["previous"]["webhook_secret"] == secret
    server.send_events(events("rot", 1))
    wait_until(lambda: len(receiver.requests) == 6, what="a delivery during the window")
    during = receiver.requests[5]
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    verify_standard(secret, during)
    verify_standard(new_secret, during)
    wait_until(lambda: server.request("GET", "/v1/hooks/std/signing_secret").json()["previous"] is None,
               timeout=10, what="the window to end")
    server.send_events(events("after", 1))
    wait_until(lambda: len(receiver.requests) == 7, what="a delivery after the window")
    after = receiver.requests[6]
    verify_standard(new_secret, after)
    try:
        verify_standard(secret, after)
        raise AssertionError("the old secret still verifies after the window")
    except WebhookVerificationError:
        pass
    bad = server.request("PATCH", "/app", {"event_hooks": [{**kept, "webhook_secret": "hunter2"}]})
    assert bad.status_code == 400 and "event_hooks[0].webhook_secret" in bad.json()["exception_fields"]
    receiver.stop()


def test_sqs_and_sns_messages_carry_standard_webhooks_attributes(server, moto):
    queue = moto.create_queue()
    topic_arn, topic_queue = moto.create_topic_with_queue()
    server.set_hooks([sqs_hook(queue, id="q", webhook_signature="standard"),
                      sns_hook(topic_arn, id="t", webhook_signature="standard")])
    secrets_by_hook = {h: server.request("GET", f"/v1/hooks/{h}/signing_secret").json()["webhook_secret"]
                       for h in ("q", "t")}
    assert secrets_by_hook["q"] != secrets_by_hook["t"], "each hook has its own secret"
    sent = server.send_events(events("aws-std", 12, pad="x" * 100))
    for hook, name in (("q", queue), ("t", topic_queue)):
        messages = moto.drain(name, 12)
        assert {json.loads(m["Body"])["id"] for m in messages} == set(sent)
        for m in messages:
            attrs = {k: v["StringValue"] for k, v in m["MessageAttributes"].items()}
            assert "X-Signature" not in attrs and attrs["event_id"] == attrs["webhook-id"]
            headers = {k: v for k, v in attrs.items() if k.startswith("webhook-")}
            assert Webhook(secrets_by_hook[hook]).verify(m["Body"], headers)["id"] == attrs["webhook-id"]


def test_the_app_secret_rotates_with_a_window_for_api_calls(server):
    receiver = Receiver().start()
    server.set_hooks([webhook_hook(receiver.url)])
    old, new = server.secret, "n3w-secret-" + "x" * 24
    r = server.request("POST", "/v1/app/secret", {"api_secret": new, "keep_previous_seconds": 60})
    assert r.status_code == 200 and r.json()["previous_secret_valid_until"], r.text
    # Both authenticate during the window; deliveries are signed with the new one.
    assert server.request("GET", "/app", token=server_token(old)).status_code == 200
    assert server.request("GET", "/app", token=server_token(new)).status_code == 200
    verifier = StreamChat(api_key=server.key, api_secret=new)

    def next_delivery_signed_with_new():
        n = len(receiver.requests)
        r = server.request("POST", "/v1/events", {"type": "message.new"}, token=server_token(new))
        assert r.status_code == 201, r.text
        wait_until(lambda: len(receiver.requests) > n, what="a delivery")
        last = receiver.requests[-1]
        return verifier.verify_webhook(last.body, last.headers["x-signature"])

    # The hook's worker restarts with the new secret within moments of the rotation.
    wait_until(next_delivery_signed_with_new, timeout=10, what="deliveries signed with the new secret")
    # Without a window the replaced secret stops at once.
    r = server.request("POST", "/v1/app/secret", {"api_secret": old}, token=server_token(new))
    assert r.status_code == 200
    assert server.request("GET", "/app", token=server_token(new)).status_code == 401
    bad = server.request("POST", "/v1/app/secret", {"api_secret": new, "keep_previous_seconds": -5})
    assert bad.status_code == 400 and "keep_previous_seconds" in bad.json()["exception_fields"]
    # The CLI's rotation with a window.
    env = {**os.environ, "HOOKRELAY_URL": server.url, "HOOKRELAY_API_KEY": server.key,
           "HOOKRELAY_API_SECRET": old}
    out = subprocess.run([str(BIN), "apps", "rotate-secret", "--keep-previous", "1h"], env=env,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "the old secret keeps working until" in out, out
    assert server.request("GET", "/app", token=server_token(old)).status_code == 200
    receiver.stop()


# --- 3. Content filters ------------------------------------------------------------------------


def test_content_filters_select_events_and_refuse_bad_expressions_by_field(server):
    receiver = Receiver().start()
    filt = {"channel_type": ["messaging"], "message.user.role": ["admin", "moderator"],
            "message.reply_count": [{"numeric": [">=", 1]}], "cid": [{"prefix": "messaging:"}],
            "message.silent": [{"not": [True]}]}
    server.set_hooks([webhook_hook(receiver.url, id="admins", filter=filt)])
    shown = server.get_app()["event_hooks"][0]
    assert shown["filter"] == filt
    sample = [
        ("yes-1", "messaging", "admin", 2, False),
        ("no-role", "messaging", "user", 2, False),
        ("no-type", "livestream", "admin", 2, False),
        ("no-replies", "messaging", "moderator", 0, False),
        ("no-silent", "messaging", "admin", 2, True),
        ("yes-2", "messaging", "moderator", 5, False),
    ]
    server.send_events([
        {"id": i, "type": "message.new", "channel_type": ct, "cid": f"{ct}:general",
         "message": {"user": {"role": role}, "reply_count": replies, "silent": silent}}
        for i, ct, role, replies, silent in sample
    ])
    # Once the cursor has passed all six (lag 0), exactly the two matching ones were delivered.
    wait_until(lambda: status(server, "admins")["lag"]["events"] == 0 and len(receiver.requests) >= 2,
               what="the cursor past every event")
    assert set(receiver.by_id()) == {"yes-1", "yes-2"}

    # The Python SDK's round trip keeps the filter.
    client = Stream(api_key=server.key, api_secret=server.secret, base_url=server.url)
    client.update_app(event_hooks=client.get_app().data.app.event_hooks)
    assert server.get_app()["event_hooks"][0]["filter"] == filt

    bad = server.request("PATCH", "/app", {"event_hooks": [
        webhook_hook(receiver.url, filter={"message.user.role": ["admin", {"regex": ".*"}]})]})
    assert bad.status_code == 400
    body = bad.json()
    assert body["code"] == 4 and 'event_hooks[0].filter["message.user.role"][1].regex' in body["exception_fields"], body
    receiver.stop()


# --- 4. Stream webhook inlet -------------------------------------------------------------------


def test_the_stream_inlet_stores_signed_webhooks_once_and_delivers_them(server):
    receiver = Receiver().start()
    server.set_hooks([webhook_hook(receiver.url, id="out")])
    body = json.dumps({"type": "message.new", "cid": "messaging:general",
                       "message": {"id": "m1", "text": "from Stream"}}).encode()
    # Signed as Stream signs it; the stream-chat SDK's own helper agrees with the signature.
    signature = hmac.new(server.secret.encode(), body, hashlib.sha256).hexdigest()
    assert StreamChat(api_key=server.key, api_secret=server.secret).verify_webhook(body, signature)
    headers = {"X-Api-Key": server.key, "X-Signature": signature, "X-Webhook-Id": "wh-0001",
               "X-Webhook-Attempt": "1", "Content-Type": "application/json"}
    inlet = f"{server.url}/v1/inlets/stream"
    first = requests.post(inlet, data=body, headers=headers, timeout=10)
    assert first.status_code == 200, first.text
    assert first.json()["id"] == "wh-0001" and first.json()["duplicate"] is False
    assert first.elapsed.total_seconds() < 1
    # Stream's retry of the same delivery is not stored twice.
    retry = requests.post(inlet, data=body, headers={**headers, "X-Webhook-Attempt": "2"}, timeout=10)
    assert retry.status_code == 200 and retry.json()["duplicate"] is True
    wait_until(lambda: status(server, "out")["lag"]["events"] == 0 and receiver.requests,
               what="the event delivered onwards")
    assert len(receiver.requests) == 1 and status(server, "out")["delivered"] == 1
    assert receiver.requests[0].headers["x-webhook-id"] == "wh-0001"
    assert json.loads(receiver.requests[0].body)["message"]["text"] == "from Stream"

    for bad_headers, code in [
        ({**headers, "X-Signature": "0" * 64}, 43),
        ({k: v for k, v in headers.items() if k != "X-Signature"}, 5),
        ({**headers, "X-Api-Key": "nope"}, 2),
    ]:
        r = requests.post(inlet, data=body, headers=bad_headers, timeout=10)
        assert r.status_code == 401, r.text
        assert r.json()["code"] == code and r.json()["StatusCode"] == 401
    not_json = b"{nope"
    r = requests.post(inlet, data=not_json, headers={**headers, "X-Signature": hmac.new(
        server.secret.encode(), not_json, hashlib.sha256).hexdigest()}, timeout=10)
    assert r.status_code == 400 and r.json()["code"] == 4
    receiver.stop()
