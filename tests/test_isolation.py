"""One bad event, hook or app never holds back the rest (issue 12): refused entries, too-large
events, denied addresses."""

import copy
import json
import os
import select
import socket
import subprocess
import threading
import time

import pytest
import requests

from conftest import BIN, FAST_RETRIES, server_token, sqs_hook, wait_until, webhook_hook
from receiver import Answer, Receiver


def dead_letters(server, hook_id):
    return server.request("GET", f"/v1/hooks/{hook_id}/dead_letters?limit=500").json()["dead_letters"]


def hook_status(server, hook_id):
    return server.request("GET", f"/v1/hooks/{hook_id}").json()["hook"]


def attempts_of(server, hook_id, outcome):
    r = requests.get(f"{server.url}/v1/hooks/{hook_id}/attempts",
                     params={"api_key": server.key, "outcome": outcome}, headers=server.headers(), timeout=10)
    return r.json()["attempts"]


def test_refused_events_do_not_hold_back_the_good_ones_behind_them(server):
    # Default retry settings, as an operator has them.
    receiver = Receiver(lambda r: Answer(400) if json.loads(r.body)["id"].startswith("bad-") else Answer(200)).start()
    [hook] = server.set_hooks([webhook_hook(receiver.url)])
    server.send_events([{"id": f"bad-{i}", "type": "message.new"} for i in range(100)])

    sent_at = {}
    stop = threading.Event()

    def good_events():
        n = 0
        while not stop.is_set() and n < 20:
            sent_at[f"good-{n}"] = time.monotonic()
            server.send_events([{"id": f"good-{n}", "type": "message.new"}])
            n += 1
            time.sleep(0.5)

    producer = threading.Thread(target=good_events)
    producer.start()
    try:
        first = wait_until(lambda: next((r for r in receiver.requests if r.headers["x-webhook-id"] == "good-0"), None),
                           timeout=30, what="the first good event")
        assert first.at - sent_at["good-0"] < 5.0, "the first good event arrives within 5 s"
        letters = wait_until(lambda: len(dead_letters(server, hook["id"])) == 100 and dead_letters(server, hook["id"]),
                             timeout=60, what="every refused event to be a dead letter")
    finally:
        stop.set()
        producer.join()
    assert {d["reason"] for d in letters} == {"rejected"}
    assert {d["attempts"] for d in letters} == {3}
    wait_until(lambda: all(i in receiver.by_id() for i in sent_at), what="every good event")
    status = hook_status(server, hook["id"])
    assert status["state"] == "healthy" and status["retry_backlog"] == 0, status
    receiver.stop()


def test_a_receiver_down_still_backs_off_as_a_whole(server_factory):
    server = server_factory(config=FAST_RETRIES)
    receiver = Receiver(lambda r: Answer(503)).start()
    [hook] = server.set_hooks([webhook_hook(receiver.url)])
    server.send_events([{"id": f"e-{i}", "type": "message.new"} for i in range(20)])
    # 16 calls in flight all fail: the hook backs off, and its circuit opens (one probe at a time).
    wait_until(lambda: hook_status(server, hook["id"])["state"] in ("backing_off", "open"), what="the backoff")
    assert dead_letters(server, hook["id"]) == [], "an outage is not a refusal"
    receiver.behaviour = lambda r: Answer(200)
    wait_until(lambda: len(receiver.delivered_ids(lambda r: r.index >= 0)) >= 20
               and hook_status(server, hook["id"])["retry_backlog"] == 0, what="recovery")
    receiver.stop()


def test_too_large_events_are_one_dead_letter_each_while_the_queue_is_missing(server_factory, moto):
    server = server_factory(config=FAST_RETRIES)
    name = f"late-big-{int(time.time() * 1000)}"
    [hook] = server.set_hooks([sqs_hook(name)])
    big = "x" * (300 * 1024)
    server.send_events([{"id": "big-1", "type": "message.new", "blob": big},
                        {"id": "small-1", "type": "message.new"},
                        {"id": "big-2", "type": "message.new", "blob": big}])
    # The queue is missing: the hook backs off for a while, through many rounds.
    wait_until(lambda: hook_status(server, hook["id"])["state"] in ("backing_off", "open"), what="the backoff")
    wait_until(lambda: len(attempts_of(server, hook["id"], "destination_down")) >= 4, what="several failed rounds")
    moto.client("sqs").create_queue(QueueName=name)
    got = moto.drain(name, 1)
    assert [json.loads(m["Body"])["id"] for m in got] == ["small-1"]
    # Once the cursor has passed all three, each big event is exactly one dead letter.
    wait_until(lambda: hook_status(server, hook["id"])["lag"]["events"] == 0, what="the cursor past every event")
    letters = dead_letters(server, hook["id"])
    assert sorted((d["event_id"], d["reason"]) for d in letters) == [("big-1", "too_large"), ("big-2", "too_large")]
    assert hook_status(server, hook["id"])["dropped"] == 2

    # A replay checks the size again: it is a dead letter again, not a delivery.
    r = server.request("POST", f"/v1/hooks/{hook['id']}/dead_letters/replay", {"event_ids": ["big-1"]})
    assert r.json()["replayed"] == 1
    wait_until(lambda: len(dead_letters(server, hook["id"])) == 2 and hook_status(server, hook["id"])["dropped"] == 3,
               what="the replayed event back among the dead letters")
    status = hook_status(server, hook["id"])
    assert status["delivered"] == 1 and status["retry_backlog"] == 0, status


def test_denied_receivers_are_dead_letters_at_once_whatever_the_address_form(server_factory):
    server = server_factory(config=FAST_RETRIES + 'deny_cidrs = ["internal"]\n')
    receiver = Receiver().start()
    urls = [
        receiver.url,
        f"http://localhost:{receiver.port}/hook",
        f"http://[::ffff:127.0.0.1]:{receiver.port}/hook",
        f"http://[::ffff:7f00:1]:{receiver.port}/hook",
        f"http://[0:0:0:0:0:ffff:127.0.0.1]:{receiver.port}/hook",
    ]
    hooks = server.set_hooks([webhook_hook(u) for u in urls])
    server.send_events([{"id": "deny", "type": "a"}])
    for hook in hooks:
        letters = wait_until(lambda: dead_letters(server, hook["id"]), timeout=20, what=f"a denied dead letter ({hook['webhook_url']})")
        assert [(d["event_id"], d["reason"], d["attempts"]) for d in letters] == [("deny", "denied", 1)]
    assert receiver.requests == []
    receiver.stop()


def test_jwt_time_claims_must_be_numbers(server):
    for claims in ({"server": True, "exp": "2000-01-01"}, {"server": True, "exp": True},
                   {"server": True, "nbf": "now"}, {"server": True, "iat": [1]}):
        r = server.request("GET", "/app", token=server_token(server.secret, claims))
        assert r.status_code == 401 and r.json()["code"] == 5, (claims, r.text)
        assert "must be a number" in r.json()["message"]
    ok = server.request("GET", "/app", token=server_token(server.secret, {"server": True, "exp": 4102444800}))
    assert ok.status_code == 200


def test_an_encoding_the_server_does_not_decode_is_named(server):
    import gzip as gz
    body = gz.compress(json.dumps({"type": "message.new"}).encode())
    r = server.request("POST", "/v1/events", raw=body, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 415 and "gzip" in r.json()["message"], r.text
    assert r.json()["code"] == 4


def test_an_oversize_content_length_is_refused_before_the_body_arrives(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall((f"POST /v1/events?api_key={server.key} HTTP/1.1\r\nHost: x\r\n"
                   f"Authorization: {server_token(server.secret)}\r\nstream-auth-type: jwt\r\n"
                   "Content-Type: application/json\r\nContent-Length: 4294967296\r\n\r\n").encode())
        answer = s.recv(65536).decode(errors="replace")  # no body was sent: this answers at once
    assert answer.startswith("HTTP/1.1 413"), answer


def test_a_huge_hook_list_is_refused_quickly(server):
    hooks = [{"hook_type": "webhook", "webhook_url": f"http://a/{i}"} for i in range(60_000)]
    body = json.dumps({"event_hooks": hooks}, separators=(",", ":"))
    assert len(body) < 4 * 1024 * 1024
    started = time.monotonic()
    r = server.request("PATCH", "/app", raw=body)
    elapsed = time.monotonic() - started
    assert r.status_code == 400 and "at most 100 hooks" in r.json()["message"], r.text[:300]
    # Not a timing test of the server (that is the benchmark's job): a bound far above what it
    # takes, far below the seconds the quadratic version took.
    assert elapsed < 2.0, elapsed


def test_the_data_directory_is_private(server_factory, tmp_path):
    (tmp_path / "private").mkdir()
    server = server_factory(data_dir=tmp_path / "private" / "data")
    server.send_events([{"id": "x", "type": "a"}])
    assert oct((tmp_path / "private" / "data").stat().st_mode & 0o777) == "0o700"
    for name in ("hookrelay.db", "hookrelay.db-wal", "secret.key"):
        path = tmp_path / "private" / "data" / name
        if path.exists():
            assert oct(path.stat().st_mode & 0o777) == "0o600", name
    # A database an older version left readable is made private at start.
    server.stop()
    db = tmp_path / "private" / "data" / "hookrelay.db"
    db.chmod(0o644)
    server.start()
    assert oct(db.stat().st_mode & 0o777) == "0o600"


def second_app(server):
    """Another app on the same server, made with the CLI on its data directory."""
    out = subprocess.run([str(BIN), "apps", "create", "--name", "b", "--data-dir", str(server.data_dir)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    fields = dict(line.split(":", 1) for line in out.stdout.splitlines() if line.startswith("api "))
    other = copy.copy(server)
    other.key, other.secret = fields["api key"].strip(), fields["api secret"].strip()
    return other


def test_a_slow_receiver_of_one_app_does_not_delay_changes_of_another(server_factory):
    server = server_factory(config='[webhook]\ntimeout = "30s"\n')
    app_b = second_app(server)
    slow = Receiver(lambda r: Answer(200, delay=10)).start()
    fast = Receiver().start()
    [hook_a] = server.set_hooks([webhook_hook(slow.url)])
    server.send_events([{"id": f"a-{i}", "type": "message.new"} for i in range(40)])
    wait_until(lambda: len(slow.requests) >= 16, what="A's requests in flight")

    paused_at = time.monotonic()
    r = server.request("POST", f"/v1/hooks/{hook_a['id']}/pause", {})
    assert r.status_code == 200 and r.json()["hook"]["state"] == "paused"

    # B's changes take effect at once, although A's worker is stuck on its receiver.
    [b1, b2] = app_b.set_hooks([webhook_hook(fast.url), webhook_hook(fast.url + "/second")])
    started = time.monotonic()
    app_b.send_events([{"id": "b-first", "type": "message.new"}])
    wait_until(lambda: len(fast.by_id().get("b-first", [])) == 2, timeout=10, what="B's first deliveries")
    assert time.monotonic() - started < 3.0
    assert app_b.request("POST", f"/v1/hooks/{b2['id']}/pause", {}).status_code == 200
    app_b.send_events([{"id": "b-after-pause", "type": "message.new"}])
    wait_until(lambda: "b-after-pause" in fast.by_id(), what="B's unpaused hook")
    b2_status = app_b.request("GET", f"/v1/hooks/{b2['id']}").json()["hook"]
    assert b2_status["state"] == "paused" and b2_status["lag"]["events"] >= 1, "it waits in the log"
    assert len(fast.by_id()["b-after-pause"]) == 1, "the paused hook gets nothing"

    # Nothing started after A's pause reached A's receiver.
    assert all(r.at <= paused_at + 0.5 for r in slow.requests), "a request started after the pause"
    # Resuming delivers what was cut short; nothing is lost.
    assert server.request("POST", f"/v1/hooks/{hook_a['id']}/resume", {}).status_code == 200
    slow.behaviour = lambda r: Answer(200)
    wait_until(lambda: len(slow.by_id()) == 40, timeout=60, what="every event of A")
    slow.stop()
    fast.stop()


def scrape(server, headers=None):
    from prometheus_client.parser import text_string_to_metric_families
    r = requests.get(f"{server.url}/metrics", headers=headers or {}, timeout=10)
    return r, ([s for f in text_string_to_metric_families(r.text) for s in f.samples] if r.ok else [])


def test_metrics_forget_deleted_hooks_and_never_name_an_api_key(server):
    for round_ in range(5):
        server.set_hooks([webhook_hook(f"http://127.0.0.1:9/{round_}/{i}", enabled=False) for i in range(20)])
    r, samples = scrape(server)
    hook_ids = {s.labels["hook_id"] for s in samples if "hook_id" in s.labels}
    assert hook_ids == {h["id"] for h in server.get_app()["event_hooks"]}, "only the hooks that exist"
    assert server.key not in r.text and "app_key" not in r.text
    assert {s.labels.get("app_id") for s in samples if "hook_id" in s.labels} == {"1"}


def test_metrics_can_require_a_bearer_token(server_factory):
    server = server_factory(config='[metrics]\nbearer_token = "s3cret-scrape-token"\n')
    server.set_hooks([webhook_hook("http://127.0.0.1:9/x", enabled=False)])
    assert requests.get(f"{server.url}/metrics", timeout=10).status_code == 401
    r, _ = scrape(server, {"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json()["code"] == 5
    r, samples = scrape(server, {"Authorization": "Bearer s3cret-scrape-token"})
    assert r.status_code == 200 and samples
    assert "s3cret-scrape-token" not in server.log()


def test_a_scrape_does_not_count_a_large_backlog(server):
    hooks = server.set_hooks([webhook_hook("http://127.0.0.1:9/x") for _ in range(5)])
    for h in hooks:
        server.request("POST", f"/v1/hooks/{h['id']}/pause", {})
    for n in range(12):
        server.send_events([{"id": f"b-{n}-{i}", "type": "a"} for i in range(1000)])
    _, samples = scrape(server)
    lags = {s.labels["hook_id"]: s.value for s in samples if s.name == "hookrelay_hook_lag_events"}
    assert set(lags.values()) == {10_000}, "counted up to the bound"
    exact = server.request("GET", f"/v1/hooks/{hooks[0]['id']}").json()["hook"]["lag"]["events"]
    assert exact == 12_000, "the status API counts further"


def raw_request(server, head, body=b""):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.sendall(head.encode() + body)
    return s


def read_all(s, timeout=10):
    s.settimeout(timeout)
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return data


HTTP_LIMITS = '[http]\nmax_connections = 20\nheader_timeout = "1s"\nbody_timeout = "1s"\ndrain_timeout = "1s"\n'


def test_idle_and_slow_clients_are_disconnected(server_factory):
    server = server_factory(config=HTTP_LIMITS)
    idle = socket.create_connection(("127.0.0.1", server.port))
    slowloris = raw_request(server, "GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never end
    started = time.monotonic()
    assert read_all(idle, 5) == b"" and read_all(slowloris, 5) == b""
    assert time.monotonic() - started < 4, "closed after the header timeout"

    # A body that never arrives: 408 after the body timeout.
    stalled = raw_request(server, f"POST /v1/events?api_key={server.key} HTTP/1.1\r\nHost: x\r\n"
                          f"Authorization: {server_token(server.secret)}\r\nstream-auth-type: jwt\r\n"
                          "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n", b'{"type":')
    answer = read_all(stalled, 5).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 408"), answer
    assert "connection: close" in answer.lower()


def test_an_answer_before_the_body_closes_the_connection(server):
    s = raw_request(server, "POST /v1/events?api_key=wrong HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    "Content-Length: 1000\r\n\r\n")
    answer = read_all(s, 5).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 401") and "connection: close" in answer.lower(), answer


def first_closed_by_server(socks, within):
    """The first of `socks` the server closes (end of stream, nothing sent) within `within`
    seconds, or None."""
    deadline = time.monotonic() + within
    pending = list(socks)
    while pending and time.monotonic() < deadline:
        readable, _, _ = select.select(pending, [], [], max(0.0, deadline - time.monotonic()))
        for s in readable:
            try:
                data = s.recv(1)
            except ConnectionResetError:
                data = b""
            if data == b"":
                return s
            pending.remove(s)
    return None


def test_connections_past_the_limit_are_closed_and_the_server_stays_up(server_factory):
    # Held connections would be closed by the header timeout after 60 s; one past the limit must
    # be closed long before (at once; the margin is for a slow machine). Which one is past the
    # limit depends on the order the server accepts them in, and on when it notices that the
    # readiness probe's connection closed: any of the 21 may be the one.
    server = server_factory(config=HTTP_LIMITS.replace('header_timeout = "1s"', 'header_timeout = "60s"'))
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(21)]
    started = time.monotonic()
    refused = first_closed_by_server(held, 20)
    assert refused is not None, f"none closed; server log:\n{server.log()}"
    assert time.monotonic() - started < 15, f"not closed at once; server log:\n{server.log()}"
    for s in held:
        s.close()
    wait_until(lambda: _answers(server), what="the server to answer again")
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    refused = [l for l in text.splitlines() if l.startswith("hookrelay_http_connections_refused_total")]
    assert refused and float(refused[0].split()[-1]) >= 1, refused
    assert "connection limit reached" in server.log(), "and it is logged"


def _answers(server):
    try:
        return requests.get(f"{server.url}/healthz", timeout=1).ok
    except requests.RequestException:
        return False


def test_sigterm_with_stalled_clients_exits_cleanly(server_factory):
    server = server_factory(config=HTTP_LIMITS.replace('body_timeout = "1s"', 'body_timeout = "60s"'))
    stalled = raw_request(server, f"POST /v1/events?api_key={server.key} HTTP/1.1\r\nHost: x\r\n"
                          f"Authorization: {server_token(server.secret)}\r\nstream-auth-type: jwt\r\n"
                          "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n", b'{"type":')
    idle = socket.create_connection(("127.0.0.1", server.port))
    time.sleep(0.3)
    started = time.monotonic()
    assert server.stop(timeout=15) == 0
    assert time.monotonic() - started < 5
    stalled.close()
    idle.close()


class SmallDisk:
    """A 16 MiB tmpfs the test can fill up and free again (needs root, as the test machines run)."""

    def __init__(self, path):
        self.path = path
        path.mkdir()
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(path)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
        self.filler = path / "filler"

    def fill(self):
        # Unbuffered writes, smaller and smaller at the end, until not one more byte fits (a
        # buffered file would raise ENOSPC again when it is closed).
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            chunk = 65536
            while chunk:
                try:
                    os.write(fd, b"\0" * chunk)
                except OSError:
                    chunk //= 2
        finally:
            os.close(fd)

    def free(self):
        self.filler.unlink()

    def unmount(self):
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


def test_a_full_disk_answers_503_holds_progress_and_recovers(server_factory, tmp_path):
    disk = SmallDisk(tmp_path / "disk")
    try:
        server = server_factory(data_dir=disk.path / "data", config=FAST_RETRIES)
        receiver = Receiver().start()
        server.set_hooks([webhook_hook(receiver.url)])
        before = server.send_events([{"id": f"before-{i}", "type": "a", "pad": "x" * 500} for i in range(200)])
        wait_until(lambda: set(before) <= set(receiver.by_id()), what="delivery before the fault")

        disk.fill()
        # Ingest refuses with 503 and Retry-After once the store cannot write; nothing is lost.
        accepted, refused = [], None
        for n in range(200):
            batch = [{"id": f"during-{n}-{i}", "type": "a", "pad": "x" * 2000} for i in range(50)]
            r = server.request("POST", "/v1/events", {"events": batch})
            if r.status_code == 201:
                accepted += [e["id"] for e in r.json()["events"]]
                continue
            refused = r
            break
        assert refused is not None and refused.status_code == 503, refused and refused.text
        body = refused.json()
        assert refused.headers["Retry-After"] == "1" and body["StatusCode"] == 503 and "code" in body
        ready = requests.get(f"{server.url}/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["store"] == "error"
        time.sleep(2)  # workers that cannot record hold their progress instead of resending

        disk.free()
        wait_until(lambda: requests.get(f"{server.url}/readyz", timeout=10).status_code == 200,
                   what="readiness once space is back")
        after = server.send_events([{"id": "after", "type": "a"}])
        wanted = set(before) | set(accepted) | set(after)
        wait_until(lambda: wanted <= set(receiver.by_id()), timeout=60, what="every acknowledged event")
        copies = {i: len(rs) for i, rs in receiver.by_id().items()}
        assert max(copies.values()) <= 2, "at most one extra delivery per event"
        for rs in receiver.by_id().values():
            attempts = [int(r.headers["x-webhook-attempt"]) for r in rs]
            assert attempts == sorted(attempts), "attempt numbers never go back"
        receiver.stop()
        server.kill()
    finally:
        disk.unmount()


def test_a_full_disk_while_a_backlog_drains_loses_nothing(server_factory, tmp_path):
    # Rounds of 20 events: each round's progress is still being written while the next one
    # sends; the disk fills while that goes on.
    disk = SmallDisk(tmp_path / "disk")
    try:
        config = FAST_RETRIES.replace("[delivery]\n", "[delivery]\nread_batch = 20\n").replace(
            "[webhook]\n", "[webhook]\nin_flight = 4\n")
        server = server_factory(data_dir=disk.path / "data", config=config)
        receiver = Receiver(lambda request: Answer(delay=0.005)).start()
        [hook] = server.set_hooks([webhook_hook(receiver.url)])
        server.request("POST", f"/v1/hooks/{hook['id']}/pause")
        sent = [i for n in range(2) for i in server.send_events(
            [{"id": f"backlog-{n}-{i}", "type": "a"} for i in range(1000)])]
        server.request("POST", f"/v1/hooks/{hook['id']}/resume")
        wait_until(lambda: len(receiver.by_id()) >= 300, what="the drain under way")
        disk.fill()
        time.sleep(1)
        disk.free()
        wait_until(lambda: set(sent) <= set(receiver.by_id()), timeout=60, what="the whole backlog")
        copies = {i: len(rs) for i, rs in receiver.by_id().items()}
        assert max(copies.values()) <= 2, "at most one extra delivery per event"
        print(f"\n[figures] full disk mid-drain: {sum(copies.values()) - len(copies)} extra deliveries")
        receiver.stop()
        server.kill()
    finally:
        disk.unmount()


def test_hook_ids_are_per_app(server):
    app_b = second_app(server)
    receiver_a, receiver_b = Receiver().start(), Receiver().start()
    [a] = server.set_hooks([webhook_hook(receiver_a.url, id="orders")])
    # B uses the same id: no error, nothing learned about A, nothing taken from A.
    [b] = app_b.set_hooks([webhook_hook(receiver_b.url, id="orders")])
    assert a["id"] == b["id"] == "orders"
    assert server.get_app()["event_hooks"][0]["webhook_url"] == receiver_a.url
    server.send_events([{"id": "for-a", "type": "a"}])
    app_b.send_events([{"id": "for-b", "type": "a"}])
    wait_until(lambda: "for-a" in receiver_a.by_id() and "for-b" in receiver_b.by_id(), what="both deliveries")
    assert "for-b" not in receiver_a.by_id() and "for-a" not in receiver_b.by_id()
    assert server.request("GET", "/v1/hooks/orders").json()["hook"]["id"] == "orders"
    assert app_b.request("POST", "/v1/hooks/orders/pause", {}).json()["hook"]["state"] == "paused"
    assert server.request("GET", "/v1/hooks/orders").json()["hook"]["state"] == "healthy"
    # B deleting its hook leaves A's.
    app_b.set_hooks([])
    assert [h["id"] for h in server.get_app()["event_hooks"]] == ["orders"]
    receiver_a.stop()
    receiver_b.stop()
