"""Operating hookrelay (issue 5): hook status, pause and resume, replay, metrics, health, and
graceful shutdown."""

import datetime
import json
import signal
import time

import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import FAST_RETRIES as FAST
from conftest import Producer, sqs_hook, wait_until, webhook_hook
from receiver import Answer, Receiver


def status(server, hook_id):
    r = server.request("GET", f"/v1/hooks/{hook_id}")
    assert r.status_code == 200, r.text
    return r.json()["hook"]


def test_status_follows_the_destination_from_retrying_to_backing_off_to_healthy(server_factory):
    server = server_factory(config=FAST)
    mode = {"value": "one-bad"}

    def behaviour(r):
        if mode["value"] == "all-bad" or (mode["value"] == "one-bad" and json.loads(r.body)["id"] == "bad"):
            return Answer(503, body=b"receiver overloaded")
        return Answer(200)

    receiver = Receiver(behaviour).start()
    [hook] = server.set_hooks([webhook_hook(receiver.url)])
    assert status(server, hook["id"])["state"] == "healthy"

    server.send_events([{"id": "bad", "type": "a"}, {"id": "good", "type": "a"}])
    s = wait_until(lambda: (st := status(server, hook["id"]))["state"] == "retrying" and st, what="retrying")
    assert s["retry_backlog"] == 1 and s["delivered"] >= 1
    assert s["last_error"]["code"] == "HTTP 503" and "overloaded" in s["last_error"]["message"]

    mode["value"] = "all-bad"
    server.send_events([{"id": f"more-{i}", "type": "a"} for i in range(20)])
    # Every call fails: the hook backs off, and once enough calls failed its circuit opens.
    s = wait_until(lambda: (st := status(server, hook["id"]))["state"] in ("backing_off", "open") and st,
                   what="backing_off")
    assert s["lag"]["events"] > 0 or s["retry_backlog"] > 0
    assert s["failed"] >= 2

    mode["value"] = "all-good"
    s = wait_until(lambda: (st := status(server, hook["id"]))["state"] == "healthy"
                   and st["retry_backlog"] == 0 and st["lag"]["events"] == 0 and st,
                   timeout=30, what="healthy again")
    assert s["delivered"] >= 22 and s["last_success_at"]
    listed = server.request("GET", "/v1/hooks").json()["hooks"]
    assert [h["id"] for h in listed] == [hook["id"]]
    receiver.stop()


def test_dead_letter_replay_after_the_cause_is_fixed(server_factory):
    server = server_factory(config=FAST.replace('hook_backoff_cap = "300ms"', 'hook_backoff_cap = "300ms"\nretry_window = "1s"'))
    broken = {"value": True}
    receiver = Receiver(lambda r: Answer(500) if broken["value"] and json.loads(r.body)["id"] == "dl" else Answer(200)).start()
    [hook] = server.set_hooks([webhook_hook(receiver.url)])
    server.send_events([{"id": "dl", "type": "a"}, {"id": "ok", "type": "a"}])
    letters = wait_until(lambda: server.request("GET", f"/v1/hooks/{hook['id']}/dead_letters").json()["dead_letters"],
                         timeout=30, what="a retries_exhausted dead letter")
    assert letters[0]["event_id"] == "dl" and letters[0]["reason"] == "retries_exhausted"
    before = len(receiver.by_id()["dl"])
    broken["value"] = False
    r = server.request("POST", f"/v1/hooks/{hook['id']}/dead_letters/replay", {"event_ids": ["dl"]})
    assert r.json()["replayed"] == 1
    wait_until(lambda: len(receiver.by_id()["dl"]) > before, what="the replayed delivery")
    assert receiver.by_id()["dl"][-1].headers["x-webhook-id"] == "dl"
    assert server.request("GET", f"/v1/hooks/{hook['id']}/dead_letters").json()["dead_letters"] == []
    receiver.stop()


def test_replay_since_redelivers_exactly_the_retained_matching_events(server, moto):
    queue = moto.create_queue()
    [hook] = server.set_hooks([sqs_hook(queue, event_types=["message.new"])])
    server.send_events([{"id": f"old-{i}", "type": t} for i, t in enumerate(["message.new", "reaction.new"] * 5)])
    # "Since" is just after the last old event was created, as the server recorded it.
    # (The log keeps creation times to the millisecond.)
    last_old = server.request("GET", "/v1/events/old-9").json()["event"]["created_at"]
    created = datetime.datetime.fromisoformat(last_old.replace("Z", "+00:00"))
    since = (created + datetime.timedelta(milliseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    wait_until(lambda: datetime.datetime.now(datetime.timezone.utc) > created + datetime.timedelta(milliseconds=2),
               what="a new millisecond")
    new = [{"id": f"new-{i}", "type": t} for i, t in enumerate(["message.new", "reaction.new"] * 5)]
    server.send_events(new)
    first = moto.drain(queue, 10)
    assert len({json.loads(m["Body"])["id"] for m in first}) == 10
    r = server.request("POST", f"/v1/hooks/{hook['id']}/replay", {"since": since})
    assert r.status_code == 200, r.text
    assert r.json()["events_after_cursor"] == 10
    again = moto.drain(queue, 5)
    assert sorted(json.loads(m["Body"])["id"] for m in again) == sorted(
        e["id"] for e in new if e["type"] == "message.new")
    assert moto.drain(queue, 1, timeout=2) == []
    bad = server.request("POST", f"/v1/hooks/{hook['id']}/replay", {"since": "yesterday"})
    assert bad.status_code == 400 and bad.json()["code"] == 4


def test_pause_keeps_the_backlog_and_resume_delivers_it(server, moto):
    queue = moto.create_queue()
    [hook] = server.set_hooks([sqs_hook(queue)])
    r = server.request("POST", f"/v1/hooks/{hook['id']}/pause")
    assert r.json()["hook"]["state"] == "paused"
    sent = server.send_events([{"id": f"p-{i}", "type": "a"} for i in range(10)])
    assert moto.drain(queue, 1, timeout=2) == []
    assert status(server, hook["id"])["lag"]["events"] == 10
    # Editing the hook through PATCH /app keeps it paused.
    server.set_hooks([server.get_app()["event_hooks"][0]])
    assert status(server, hook["id"])["paused"] is True
    server.request("POST", f"/v1/hooks/{hook['id']}/resume")
    got = moto.drain(queue, 10)
    assert {json.loads(m["Body"])["id"] for m in got} == set(sent)
    wait_until(lambda: status(server, hook["id"])["lag"]["events"] == 0, what="lag back to 0")


def test_metrics_parse_and_match_what_happened(server, moto):
    queue = moto.create_queue()
    [hook] = server.set_hooks([sqs_hook(queue)])
    server.send_events([{"id": f"m-{i}", "type": "a"} for i in range(25)])
    server.send_events([{"id": "big", "type": "a", "pad": "z" * 300_000}])
    moto.drain(queue, 25)

    def scrape():
        text = requests.get(f"{server.url}/metrics", timeout=10).text
        samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return samples

    def value(samples, name, **labels):
        return sum(v for (n, ls), v in samples.items()
                   if n == name and all(dict(ls).get(k) == v2 for k, v2 in labels.items()))

    samples = wait_until(lambda: (s := scrape()) and value(s, "hookrelay_delivered_total", hook_id=hook["id"]) == 25
                         and value(s, "hookrelay_dropped_total", hook_id=hook["id"]) == 1 and s,
                         what="the delivery counters")
    assert value(samples, "hookrelay_ingested_events_total", app_id="1") == 26
    assert value(samples, "hookrelay_dead_lettered_total", hook_id=hook["id"], reason="too_large") == 1
    assert value(samples, "hookrelay_delivery_latency_seconds_count", hook_type="sqs") == 25
    assert value(samples, "hookrelay_hook_lag_events", hook_id=hook["id"]) == 0
    assert value(samples, "hookrelay_store_commit_seconds_count") >= 2
    assert value(samples, "hookrelay_ingest_request_seconds_count") >= 2


def test_health_and_readiness(server):
    assert requests.get(f"{server.url}/healthz", timeout=5).json() == {"status": "ok"}
    ready = requests.get(f"{server.url}/readyz", timeout=5)
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "store": "ok", "dispatcher": "running"}


def test_sigterm_under_load_exits_cleanly_and_loses_nothing(server_factory, moto):
    server = server_factory(config='shutdown_grace = "10s"\n' + FAST)
    queue = moto.create_queue()
    server.set_hooks([sqs_hook(queue)])
    producer = Producer(server, "term")
    acknowledged = producer.acknowledged
    wait_until(lambda: len(acknowledged) >= 400, what="load")
    started = time.monotonic()
    code = server.stop(signal.SIGTERM, timeout=15)
    elapsed = time.monotonic() - started
    assert code == 0, server.log()[-2000:]
    assert elapsed < 10, elapsed
    server.start()
    wait_until(lambda: len(acknowledged) >= 600, what="load after the restart")
    producer.stop()
    got = moto.drain(queue, len(acknowledged), timeout=120, want=set(acknowledged))
    assert set(acknowledged) <= {json.loads(m["Body"])["id"] for m in got}
    print(f"\n[figures] SIGTERM under load: exited 0 in {elapsed:.2f}s; {len(acknowledged)} acknowledged, all delivered")
