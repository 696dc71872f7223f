"""What happens when things break: crashes, destination outages, bad credentials, bad input
(issue 3). Nothing accepted may be lost, and nothing may be dead-lettered that a fix can cure."""

import json
import signal
import threading
import time

import requests

import pytest

from conftest import Producer, sqs_hook, start_moto, wait_until

FAST_RETRIES = """
[delivery]
retry_base = "50ms"
hook_backoff_cap = "300ms"
"""


def ids_in(messages):
    return {json.loads(m["Body"])["id"] for m in messages}


def test_kill_9_during_ingest_and_delivery_loses_nothing(server_factory, moto):
    server = server_factory(config=FAST_RETRIES)
    queue = moto.create_queue()
    server.set_hooks([sqs_hook(queue)])
    producer = Producer(server, "crash")
    acknowledged = producer.acknowledged
    wait_until(lambda: len(acknowledged) >= 600, what="events before the crash")
    assert server.kill() == -signal.SIGKILL
    killed_at = len(acknowledged)
    time.sleep(0.3)
    server.start()
    wait_until(lambda: len(acknowledged) >= killed_at + 400, what="events after the restart")
    producer.stop()

    received = moto.drain(queue, len(acknowledged), timeout=120, want=set(acknowledged))
    missing = set(acknowledged) - ids_in(received)
    assert not missing, f"{len(missing)} acknowledged events never arrived"
    duplicates = len(received) - len(ids_in(received))
    print(f"\n[figures] kill -9: {len(acknowledged)} acknowledged, all delivered, {duplicates} duplicates")


def hook_status(server, hook_id):
    return server.request("GET", f"/v1/hooks/{hook_id}").json()["hook"]


def hook_state(server, hook_id):
    return hook_status(server, hook_id)["state"]


def last_error_code(server, hook_id):
    error = hook_status(server, hook_id)["last_error"]
    return error["code"] if error else ""


def attempts(server, hook_id, outcome):
    r = requests.get(f"{server.url}/v1/hooks/{hook_id}/attempts",
                     params={"api_key": server.key, "outcome": outcome}, headers=server.headers(), timeout=10)
    return r.json()["attempts"]


def test_queue_created_later_gets_every_event(server_factory, moto):
    server = server_factory(config=FAST_RETRIES)
    name = f"late-{int(time.time() * 1000)}"
    [hook] = server.set_hooks([sqs_hook(name)])
    sent = server.send_events([{"id": f"late-{i}", "type": "message.new"} for i in range(50)])
    # The worker fails against the missing queue and backs off as a whole.
    wait_until(lambda: "NonExistentQueue" in last_error_code(server, hook["id"])
               or "QueueDoesNotExist" in last_error_code(server, hook["id"]),
               what="a failed delivery attempt")
    sent += server.send_events([{"id": f"late-{i}", "type": "message.new"} for i in range(50, 80)])
    moto.client("sqs").create_queue(QueueName=name)
    got = moto.drain(name, len(sent))
    assert ids_in(got) == set(sent)
    r = server.request("GET", f"/v1/hooks/{hook['id']}/dead_letters")
    assert r.json()["dead_letters"] == []


class TcpProxy:
    """A loopback TCP relay the test can cut and restore: an outage between hookrelay and AWS."""

    def __init__(self, target_port):
        import socket

        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.listener.listen(64)
        self.up = True
        self.connections = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.connections += [client, upstream]
            for a, b in [(client, upstream), (upstream, client)]:
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self):
        self.up = False
        for c in self.connections:
            try:
                c.close()
            except OSError:
                pass
        self.connections = []

    def restore(self):
        self.up = True


def test_network_outage_then_recovery(server_factory, moto):
    proxy = TcpProxy(int(moto.endpoint.rsplit(":", 1)[1]))
    server = server_factory(config=FAST_RETRIES, moto_endpoint=f"http://127.0.0.1:{proxy.port}")
    queue = moto.create_queue()
    [hook] = server.set_hooks([sqs_hook(queue)])
    sent = server.send_events([{"id": f"pre-{i}", "type": "a"} for i in range(20)])
    assert len(moto.drain(queue, 20)) == 20
    proxy.cut()
    outage = server.send_events([{"id": f"out-{i}", "type": "a"} for i in range(100)])
    wait_until(lambda: hook_state(server, hook["id"]) in ("backing_off", "open"), what="the hook to back off")
    # Several probes fail while the network is cut (the attempts log records them).
    wait_until(lambda: len(attempts(server, hook["id"], "destination_down")) >= 3, what="failed probes")
    proxy.restore()
    got = moto.drain(queue, len(outage))
    assert ids_in(got) >= set(outage), "every event sent during the outage arrives"
    assert server.request("GET", f"/v1/hooks/{hook['id']}/dead_letters").json()["dead_letters"] == []
    assert sent


@pytest.fixture
def moto_with_auth():
    """A moto that checks credentials, with one IAM user allowed everything."""
    m = start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": "3"})
    iam = m.client("iam")
    iam.create_user(UserName="hookrelay")
    key = iam.create_access_key(UserName="hookrelay")["AccessKey"]
    iam.put_user_policy(UserName="hookrelay", PolicyName="all", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    }))
    m.good_key = (key["AccessKeyId"], key["SecretAccessKey"])
    yield m
    m.proc.terminate()
    m.proc.wait(10)


def test_bad_credentials_are_reported_then_fixed_keys_let_events_flow(server_factory, moto_with_auth):
    m = moto_with_auth
    key, secret = m.good_key
    sqs = m.client("sqs", key, secret)
    queue = f"auth-{int(time.time() * 1000)}"
    sqs.create_queue(QueueName=queue)
    sns = m.client("sns", key, secret)
    topic_arn = sns.create_topic(Name=queue)["TopicArn"]
    server = server_factory(config=FAST_RETRIES, moto_endpoint=m.endpoint)

    bad_sqs = server.request("POST", "/check_sqs", {
        "sqs_key": "AKIABADBADBADBADBAD0", "sqs_secret": "nope", "sqs_url": sqs_hook(queue)["sqs_queue_url"]})
    assert bad_sqs.status_code == 201
    assert bad_sqs.json()["status"] == "error"
    assert "InvalidClientTokenId" in bad_sqs.json()["error"], bad_sqs.json()
    bad_sns = server.request("POST", "/check_sns", {"sns_key": key, "sns_secret": "wrong", "sns_topic_arn": topic_arn})
    assert bad_sns.json()["status"] == "error"
    assert "publishing the message failed." in bad_sns.json()["error"]
    assert "SignatureDoesNotMatch" in bad_sns.json()["error"], bad_sns.json()
    good = server.request("POST", "/check_sqs", {"sqs_key": key, "sqs_secret": secret,
                                                 "sqs_url": sqs_hook(queue)["sqs_queue_url"]})
    assert good.json() == {"status": "ok", "duration": good.json()["duration"]}

    [hook] = server.set_hooks([sqs_hook(queue, sqs_key=key, sqs_secret="wrong")])
    no_args = server.request("POST", "/check_sqs", {}).json()
    assert no_args["status"] == "error" and "SignatureDoesNotMatch" in no_args["error"]
    sent = server.send_events([{"id": f"auth-{i}", "type": "a"} for i in range(30)])
    wait_until(lambda: "SignatureDoesNotMatch" in last_error_code(server, hook["id"]), what="a refused delivery")
    hook["sqs_secret"] = secret
    server.set_hooks([hook])
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    got = []
    deadline = time.monotonic() + 60
    while not set(sent) <= ids_in(got) and time.monotonic() < deadline:
        resp = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for msg in resp.get("Messages", []):
            sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])
            got.append(msg)
    # The successful check_sqs above left its health.check message too.
    assert {i for i in ids_in(got) if not i.startswith("health-check-")} == set(sent)
    assert server.request("GET", f"/v1/hooks/{hook['id']}/dead_letters").json()["dead_letters"] == []


INGEST_CASES = [
    # A valid event is put in front of each 400 batch (it must not be stored), hence the indexes.
    ("no type", {"events": [{"text": "hi"}]}, 400, "events[1]: type is required"),
    ("type not a string", {"type": 5}, 400, "type must be a string"),
    ("bad type characters", {"type": "Message New"}, 400, "not valid"),
    ("non-object event", {"events": [{"type": "a"}, "b"]}, 400, "events[2]: must be a JSON object"),
    ("empty batch", {"events": []}, 400, "1 to 1000"),
    ("1001 events", {"events": [{"type": "a"}] * 1001}, 400, "not 1001"),
    ("id not a string", {"type": "a", "id": 7}, 400, "id must be"),
    ("id too long", {"type": "a", "id": "x" * 129}, 400, "id must be"),
    ("duplicate key", None, 400, "duplicate field"),
    ("event over 1 MiB", {"type": "a", "pad": "x" * (1024 * 1024)}, 400, "bytes allowed per event"),
    ("body over 4 MiB", {"events": [{"type": "a", "pad": "x" * 900_000}] * 5}, 413, "larger than"),
    ("not JSON", "nope", 400, "not valid JSON"),
]


@pytest.mark.parametrize("case,body,status,text", INGEST_CASES, ids=[c[0] for c in INGEST_CASES])
def test_ingest_refuses_bad_input_and_stores_nothing(server, moto, case, body, status, text):
    queue = moto.create_queue()
    server.set_hooks([sqs_hook(queue)])
    if case == "duplicate key":
        r = server.request("POST", "/v1/events", raw='{"events":[{"type":"a","type":"b"}]}')
    elif isinstance(body, str):
        r = server.request("POST", "/v1/events", raw=body)
    else:
        # A valid event first: it must not be stored either.
        if "events" in body and body["events"] and isinstance(body["events"][0], dict) and case != "1001 events":
            body = {"events": [{"id": "must-not-exist", "type": "ok"}] + body["events"][:]} if status == 400 else body
        r = server.request("POST", "/v1/events", body)
    assert r.status_code == status, r.text
    payload = r.json()
    assert text in payload["message"], payload["message"]
    assert payload["code"] == (22 if status == 413 else 4)
    # A marker sent afterwards is the only thing that arrives.
    server.send_events([{"id": "marker", "type": "ok"}])
    got = moto.drain(queue, 1, timeout=10)
    assert ids_in(got) == {"marker"}
    assert moto.drain(queue, 1, timeout=1) == []
