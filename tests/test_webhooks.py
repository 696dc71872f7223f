"""Webhook hooks (issue 4): signed POSTs to a real HTTP receiver on loopback, retried through
failures, hangs and outages."""

import hashlib
import hmac
import json
import time

from stream_chat import StreamChat

from conftest import FAST_RETRIES as FAST
from conftest import free_port, wait_until, webhook_hook
from receiver import Answer, Receiver


def events(prefix, n, **extra):
    return [{"id": f"{prefix}-{i}", "type": "message.new", "n": i, **extra} for i in range(n)]


def dead_letters(server, hook_id):
    return server.request("GET", f"/v1/hooks/{hook_id}/dead_letters").json()["dead_letters"]


def test_signed_deliveries_verify_with_the_stream_sdk(server):
    receiver = Receiver().start()
    server.set_hooks([webhook_hook(receiver.url)])
    sent = events("sig", 30, message={"text": "héllo ✓"})
    server.send_events(sent)
    wait_until(lambda: len(receiver.by_id()) == 30, what="30 deliveries")
    verifier = StreamChat(api_key=server.key, api_secret=server.secret)
    by_id = {e["id"]: e for e in sent}
    for event_id, requests in receiver.by_id().items():
        assert len(requests) == 1
        r = requests[0]
        body = json.loads(r.body)
        assert {k: body[k] for k in by_id[event_id]} == by_id[event_id]
        assert r.headers["x-webhook-id"] == body["id"]
        assert r.headers["x-webhook-attempt"] == "1"
        assert r.headers["x-api-key"] == server.key
        assert r.headers["content-type"] == "application/json"
        assert r.headers["user-agent"].startswith("hookrelay/")
        assert verifier.verify_webhook(r.body, r.headers["x-signature"])
        assert r.headers["x-signature"] == hmac.new(server.secret.encode(), r.body, hashlib.sha256).hexdigest()
    receiver.stop()


def test_hooks_sharing_a_receiver_reuse_their_connections(server_factory):
    # Four hooks with 4 requests in flight each, on one host: after each burst their connections
    # wait in the pool for the next, rather than all but one hook's worth being closed.
    server = server_factory(config="[webhook]\nin_flight = 4\n")
    receiver = Receiver(lambda r: Answer(200, delay=0.02)).start()
    server.set_hooks([webhook_hook(f"{receiver.url}?h={i}") for i in range(4)])
    bursts, per_burst = 5, 40
    for burst in range(bursts):
        server.send_events(events(f"burst{burst}", per_burst))
        done = 4 * per_burst * (burst + 1)
        wait_until(lambda: len(receiver.requests) >= done, what=f"burst {burst} delivered")
    connections = len({r.peer for r in receiver.requests})
    # 16 in flight at most; a few more may open while a request waits for a busy connection.
    assert connections <= 2 * 16, f"{connections} connections for {len(receiver.requests)} requests"
    receiver.stop()


def test_failures_then_success_count_attempts(server_factory):
    server = server_factory(config=FAST)
    receiver = Receiver(lambda r: Answer(500, body=b"not yet") if r.index < 8 else Answer(200)).start()
    [hook] = server.set_hooks([webhook_hook(receiver.url)])
    sent = server.send_events(events("att", 10))
    wait_until(lambda: receiver.delivered_ids(lambda r: r.index >= 8) >= set(sent), what="every event delivered")
    for event_id, requests in receiver.by_id().items():
        attempts = [int(r.headers["x-webhook-attempt"]) for r in requests]
        assert attempts == list(range(1, len(attempts) + 1)), (event_id, attempts)
    assert sum(len(rs) for rs in receiver.by_id().values()) >= 18
    assert dead_letters(server, hook["id"]) == []
    receiver.stop()


def test_retry_after_is_honoured(server_factory):
    server = server_factory(config=FAST)
    receiver = Receiver(lambda r: Answer(429, {"Retry-After": "2"}) if r.index == 0 else Answer(200)).start()
    server.set_hooks([webhook_hook(receiver.url)])
    server.send_events(events("ra", 1))
    wait_until(lambda: len(receiver.requests) >= 2, timeout=30, what="the second attempt")
    first, second = receiver.requests[:2]
    assert second.at - first.at >= 2.0, second.at - first.at
    assert second.headers["x-webhook-attempt"] == "2"
    receiver.stop()


def test_a_backlog_read_in_small_windows_arrives_whole_and_once(server_factory):
    # Ten events per round: fifty rounds, each starting where the last one's cursor ended.
    server = server_factory(config="[delivery]\nread_batch = 10\n")
    receiver = Receiver().start()
    [hook] = server.set_hooks([webhook_hook(receiver.url)])
    server.request("POST", f"/v1/hooks/{hook['id']}/pause")
    sent = server.send_events(events("window", 500))
    server.request("POST", f"/v1/hooks/{hook['id']}/resume")
    wait_until(lambda: len(receiver.by_id()) == 500, what="500 deliveries")
    lag = lambda: server.request("GET", f"/v1/hooks/{hook['id']}").json()["hook"]["lag"]["events"]
    wait_until(lambda: lag() == 0, what="lag back to 0")
    by_id = receiver.by_id()
    assert set(by_id) == set(sent)
    assert [i for i, requests in by_id.items() if len(requests) > 1] == []


def test_receiver_down_then_up_loses_nothing(server_factory):
    server = server_factory(config=FAST)
    port = free_port()
    receiver = Receiver(port=port)
    [hook] = server.set_hooks([webhook_hook(receiver.url)])
    sent = server.send_events(events("down", 40))
    state = lambda: server.request("GET", f"/v1/hooks/{hook['id']}").json()["hook"]["state"]  # noqa: E731
    wait_until(lambda: state() in ("backing_off", "open"), what="the hook to back off")
    sent += server.send_events(events("down2", 20))
    # The receiver stays down through several failed probes before it comes back.
    wait_until(lambda: server.request("GET", f"/v1/hooks/{hook['id']}").json()["hook"]["failed"] >= 20,
               what="failed attempts while down")
    receiver.start()
    wait_until(lambda: receiver.delivered_ids() >= set(sent), timeout=60, what="every event after the outage")
    assert dead_letters(server, hook["id"]) == []
    receiver.stop()


def test_a_receiver_slower_than_the_timeout_is_retried(server_factory):
    server = server_factory(config=FAST)
    receiver = Receiver(lambda r: Answer(200, delay=3) if r.index == 0 else Answer(200)).start()
    server.set_hooks([webhook_hook(receiver.url)])
    server.send_events(events("slow", 1))
    wait_until(lambda: len(receiver.requests) >= 2, timeout=30, what="a retry after the timeout")
    assert [r.headers["x-webhook-attempt"] for r in receiver.requests[:2]] == ["1", "2"]
    receiver.stop()


def test_a_hanging_receiver_does_not_slow_another_hook(server_factory):
    server = server_factory(config=FAST.replace('timeout = "1s"', 'timeout = "30s"'))
    hanging = Receiver(lambda r: Answer(200, delay=60)).start()
    fast = Receiver().start()
    server.set_hooks([webhook_hook(hanging.url), webhook_hook(fast.url)])
    sent = []
    for i in range(5):
        sent += server.send_events(events(f"par{i}", 100))
    started = time.monotonic()
    wait_until(lambda: fast.delivered_ids() >= set(sent), timeout=30, what="the fast hook's deliveries")
    elapsed = time.monotonic() - started
    print(f"\n[figures] fast hook got 500 events in {elapsed:.2f}s while the other hook's receiver hung")
    assert len(hanging.requests) <= 16, "the hanging hook stays within its in-flight limit"
    fast.stop()


def test_gzip_bodies_verify_on_the_uncompressed_json(server):
    receiver = Receiver().start()
    # Settings apply to running hooks within a second; set first so every delivery is gzipped.
    r = server.request("PATCH", "/app", {"enable_hook_payload_compression": True})
    assert r.status_code == 200
    server.set_hooks([webhook_hook(receiver.url)])
    sent = server.send_events(events("gz", 5, pad="abc" * 200))
    wait_until(lambda: receiver.delivered_ids() >= set(sent), what="gzip deliveries")
    verifier = StreamChat(api_key=server.key, api_secret=server.secret)
    for request in receiver.requests:
        assert request.headers["content-encoding"] == "gzip"
        assert len(request.raw) < len(request.body)
        assert verifier.verify_webhook(request.body, request.headers["x-signature"])
    receiver.stop()


def test_refused_event_is_a_dead_letter_after_three_attempts(server_factory):
    server = server_factory(config=FAST)

    def behaviour(r):
        if json.loads(r.body)["id"] == "refused":
            return Answer(400, body=b'{"error": "unknown event shape"}' + b"x" * 5000)
        return Answer(200)

    receiver = Receiver(behaviour).start()
    [hook] = server.set_hooks([webhook_hook(receiver.url)])
    server.send_events([{"id": "refused", "type": "a"}, {"id": "fine", "type": "a"}])
    letters = wait_until(lambda: dead_letters(server, hook["id"]), timeout=30, what="the dead letter")
    assert [(d["event_id"], d["reason"], d["attempts"]) for d in letters] == [("refused", "rejected", 3)]
    assert letters[0]["last_error"].startswith("HTTP 400: {\"error\": \"unknown event shape\"}")
    assert len(letters[0]["last_error"]) < 1100, "only the first 1 KB of the answer is kept"
    assert [int(r.headers["x-webhook-attempt"]) for r in receiver.by_id()["refused"]] == [1, 2, 3]
    assert len(receiver.by_id()["fine"]) == 1
    receiver.stop()


def test_redirects_are_not_followed(server_factory):
    server = server_factory(config=FAST)
    target = Receiver().start()
    redirector = Receiver(lambda r: Answer(307, {"Location": target.url})).start()
    [hook] = server.set_hooks([webhook_hook(redirector.url)])
    server.send_events([{"id": "redir", "type": "a"}])
    letters = wait_until(lambda: dead_letters(server, hook["id"]), timeout=30, what="the dead letter")
    assert letters[0]["last_error"].startswith("HTTP 307")
    assert target.requests == []
    redirector.stop()
    target.stop()


def test_deny_list_refuses_receivers_in_denied_ranges(server_factory):
    server = server_factory(config=FAST + 'deny_cidrs = ["127.0.0.0/8"]\n')
    receiver = Receiver().start()
    hooks = server.set_hooks([webhook_hook(receiver.url), webhook_hook(f"http://localhost:{receiver.port}/hook")])
    server.send_events([{"id": "deny", "type": "a"}])
    wait_until(lambda: all([d["reason"] for d in dead_letters(server, h["id"])] == ["denied"] for h in hooks),
               what="both hooks refused")
    assert receiver.requests == []
    receiver.stop()
