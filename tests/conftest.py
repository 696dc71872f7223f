"""Shared fixtures: moto (the AWS emulator), and real `hookrelay serve` processes.

Every test gets its own server (own port, own data directory, own app credentials), so tests can
run in parallel and never see each other's state. moto is shared by the session; tests use unique
queue and topic names.
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("HOOKRELAY_BIN", ROOT / "target" / "debug" / "hookrelay"))
REGION = "us-east-1"
ACCOUNT = "123456789012"

# Nothing in the tests may leave this machine: the SDKs must never ask EC2 metadata, and the
# default credentials are moto's.
BASE_ENV = {
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": REGION,
    "NO_PROXY": "127.0.0.1,localhost",
}
os.environ.update(BASE_ENV)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout=30.0, interval=0.05, what="condition"):
    """Polls `condition` until it returns a truthy value; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def server_token(secret, claims=None):
    """An HS256 JWT signed with `secret`, built with the standard library only."""

    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps({"server": True} if claims is None else claims).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = b64(hmac.new(secret.encode(), signing_input, hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


class Moto:
    def __init__(self, endpoint, proc=None):
        self.endpoint = endpoint
        self.proc = proc

    def client(self, service, key="testing", secret="testing"):
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )

    def create_queue(self, fifo=False, **attributes):
        name = f"q-{uuid.uuid4().hex[:12]}" + (".fifo" if fifo else "")
        if fifo:
            attributes["FifoQueue"] = "true"
        self.client("sqs").create_queue(QueueName=name, Attributes=attributes)
        return name

    @staticmethod
    def aws_queue_url(name):
        """The queue URL as on AWS; hookrelay reaches moto through AWS_ENDPOINT_URL."""
        return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"

    def local_queue_url(self, name):
        return self.client("sqs").get_queue_url(QueueName=name)["QueueUrl"]

    def drain(self, name, expected, timeout=60.0, want=None):
        """Receives (and deletes) messages until `expected` distinct events (by the body's `id`)
        have arrived, or every id in `want` has, or `timeout` passes. Returns every message
        received, duplicates included."""
        sqs = self.client("sqs")
        url = self.local_queue_url(name)
        got = []
        distinct = set()
        deadline = time.monotonic() + timeout
        def done():
            return want <= distinct if want is not None else len(distinct) >= expected

        while not done() and time.monotonic() < deadline:
            resp = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                MessageAttributeNames=["All"],
                AttributeNames=["All"],
            )
            messages = resp.get("Messages", [])
            if messages:
                sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(messages)
                    ],
                )
            got.extend(messages)
            for m in messages:
                try:
                    distinct.add(json.loads(m["Body"]).get("id", m["MessageId"]))
                except (ValueError, AttributeError):
                    distinct.add(m["MessageId"])
        return got

    def queue_depth(self, name):
        attrs = self.client("sqs").get_queue_attributes(
            QueueUrl=self.local_queue_url(name),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def create_topic_with_queue(self, fifo=False, filter_policy=None):
        """A topic and a queue subscribed to it with raw delivery (so attributes carry over)."""
        sns = self.client("sns")
        name = f"t-{uuid.uuid4().hex[:12]}" + (".fifo" if fifo else "")
        attrs = {"FifoTopic": "true"} if fifo else {}
        arn = sns.create_topic(Name=name, Attributes=attrs)["TopicArn"]
        queue = self.create_queue(fifo=fifo)
        queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}"
        sub_attrs = {"RawMessageDelivery": "true"}
        if filter_policy is not None:
            sub_attrs["FilterPolicy"] = json.dumps(filter_policy)
        sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn, Attributes=sub_attrs)
        return arn, queue


def start_moto(extra_env=None):
    port = free_port()
    log = open(ROOT / "target" / f"moto-{port}.log", "w")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "support" / "moto_server.py"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(extra_env or {})},
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"

    def up():
        try:
            return requests.get(f"{endpoint}/moto-api/", timeout=1).status_code < 500
        except requests.RequestException:
            if proc.poll() is not None:
                raise AssertionError(f"moto exited; see {log.name}")
            return False

    wait_until(up, what="moto to start")
    return Moto(endpoint, proc)


@pytest.fixture(scope="session")
def moto():
    m = start_moto()
    yield m
    m.proc.terminate()
    m.proc.wait(10)


class Server:
    """A `hookrelay serve` process on its own port and data directory."""

    def __init__(self, data_dir, moto_endpoint, config=None, env=None):
        self.data_dir = Path(data_dir)
        # The first start listens on port 0 and reports the port it got (no race with other
        # tests for a "free" port); restarts take the same port again.
        self.port = None
        self.url = None
        self.key = "key" + secrets.token_hex(4)
        self.secret = secrets.token_hex(24)
        self.config = config
        self.env = {
            **os.environ,
            "HOOKRELAY_API_KEY": self.key,
            "HOOKRELAY_API_SECRET": self.secret,
            "HOOKRELAY_LOG": "info,hookrelay=debug",
            **({"AWS_ENDPOINT_URL": moto_endpoint} if moto_endpoint else {}),
            **(env or {}),
        }
        self.proc = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        self.start()

    def start(self):
        address_file = self.data_dir.parent / f"{self.data_dir.name}.address"
        address_file.unlink(missing_ok=True)
        args = [str(BIN), "serve", "--data-dir", str(self.data_dir), "--listen", f"127.0.0.1:{self.port or 0}",
                "--address-file", str(address_file)]
        if self.config:
            path = self.data_dir.parent / f"{self.data_dir.name}.toml"
            path.write_text(self.config)
            args += ["--config", str(path)]
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env)

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError(f"hookrelay exited with {self.proc.returncode}:\n{self.log()}")
            return address_file.exists() and address_file.read_text()

        address = wait_until(listening, what=f"hookrelay to listen (log: {self.log_path})")
        self.port = int(address.rsplit(":", 1)[1])
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until(self._answers, what=f"hookrelay on {self.url} (log: {self.log_path})")

    def _answers(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"hookrelay exited with {self.proc.returncode}:\n{self.log()}")
        try:
            requests.get(f"{self.url}/app", timeout=1)
            return True
        except requests.RequestException:
            return False

    def log(self):
        return self.log_path.read_text()

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout)
        return self.proc.returncode

    def kill(self):
        return self.stop(signal.SIGKILL)

    def restart(self):
        self.stop()
        self.start()

    def headers(self, token=None):
        return {
            "Authorization": token if token is not None else server_token(self.secret),
            "stream-auth-type": "jwt",
            "Content-Type": "application/json",
        }

    def request(self, method, path, body=None, token=None, headers=None, raw=None, api_key=None):
        h = self.headers(token)
        h.update(headers or {})
        params = {"api_key": self.key if api_key is None else api_key}
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        return requests.request(method, f"{self.url}{path}", params=params, headers=h, data=data, timeout=30)

    def get_app(self):
        r = self.request("GET", "/app")
        assert r.status_code == 200, r.text
        return r.json()["app"]

    def set_hooks(self, hooks):
        r = self.request("PATCH", "/app", {"event_hooks": hooks})
        assert r.status_code == 200, r.text
        return self.get_app()["event_hooks"]

    def send_events(self, events):
        r = self.request("POST", "/v1/events", {"events": events})
        assert r.status_code == 201, r.text
        return [e["id"] for e in r.json()["events"]]


@pytest.fixture
def server_factory(tmp_path, moto):
    servers = []

    def make(config=None, env=None, moto_endpoint=None, data_dir=None):
        s = Server(
            data_dir or tmp_path / f"data{len(servers)}",
            moto_endpoint or moto.endpoint,
            config=config,
            env=env,
        )
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.kill()


@pytest.fixture
def server(server_factory):
    return server_factory()


def sqs_hook(queue_name, **fields):
    hook = {
        "enabled": True,
        "hook_type": "sqs",
        "sqs_queue_url": Moto.aws_queue_url(queue_name),
        "sqs_region": REGION,
        "sqs_auth_type": "keys",
        "sqs_key": "testing",
        "sqs_secret": "testing",
        "event_types": [],
    }
    hook.update(fields)
    return hook


def sns_hook(topic_arn, **fields):
    hook = {
        "enabled": True,
        "hook_type": "sns",
        "sns_topic_arn": topic_arn,
        "sns_region": REGION,
        "sns_auth_type": "keys",
        "sns_key": "testing",
        "sns_secret": "testing",
        "event_types": [],
    }
    hook.update(fields)
    return hook


# Delivery settings that make retries and backoff fast enough for tests.
FAST_RETRIES = """
[delivery]
retry_base = "50ms"
hook_backoff_cap = "300ms"
[webhook]
timeout = "1s"
"""


def webhook_hook(url, **fields):
    return {"enabled": True, "hook_type": "webhook", "webhook_url": url, "event_types": [], **fields}


class Producer:
    """Streams batches of events to a server from a thread (by default ~1,000 events/s: 20 per
    batch, 10 ms apart) and keeps the ids the server acknowledged (201). Survives the server
    going away and coming back. One a failed test left running is stopped after that test
    (`stop_producers`): a running producer would keep pytest from ever exiting."""

    running = set()

    def __init__(self, server, prefix, per_batch=20, pause=0.01):
        import threading

        self.server, self.prefix = server, prefix
        self.per_batch, self.pause = per_batch, pause
        self.acknowledged = []
        self.refused = []  # (time, status) of every answer that was not 201
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        Producer.running.add(self)
        self.thread.start()

    def _run(self):
        n = 0
        while not self.stop_flag.is_set():
            batch = [{"id": f"{self.prefix}-{n + i}", "type": "message.new", "n": n + i} for i in range(self.per_batch)]
            n += self.per_batch
            try:
                r = self.server.request("POST", "/v1/events", {"events": batch})
                if r.status_code == 201:
                    self.acknowledged.extend(e["id"] for e in r.json()["events"])
                else:
                    self.refused.append((time.monotonic(), r.status_code))
            except requests.RequestException:
                pass  # the server is down: these were never acknowledged
            time.sleep(self.pause)  # moto's pace, so the tests stay short

    def stop(self):
        self.stop_flag.set()
        self.thread.join()
        Producer.running.discard(self)
        return self.acknowledged


@pytest.fixture(autouse=True)
def stop_producers():
    yield
    for producer in list(Producer.running):
        producer.stop()


# The PostgreSQL server the multi-node tests use; each test gets a database of its own there,
# dropped afterwards (kept when KEEP_DB is set, to look inside).
PG_SERVER_URL = os.environ.get("HOOKRELAY_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")


@pytest.fixture
def database():
    from cluster import psql

    name = f"hookrelay_e2e_{uuid.uuid4().hex[:12]}"
    psql(PG_SERVER_URL, f"CREATE DATABASE {name}")
    yield PG_SERVER_URL.rsplit("/", 1)[0] + "/" + name
    if not os.environ.get("KEEP_DB"):
        psql(PG_SERVER_URL, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
