"""The app settings API through the official Stream SDKs (issue 2).

Each SDK runs the seeds' snippet: get the current hooks, append an SQS hook and an SNS hook,
update, read back. The assertions are on what comes back and on what is stored.
"""

import datetime
import json
import os
import subprocess
import uuid

from conftest import ROOT, sns_hook, sqs_hook
from secrets_at_rest import database_bytes, stored_hook_secrets

MASK = "********"
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/MyQueue"
TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:sns-topic"


def is_uuid(value):
    return str(uuid.UUID(value)) == value


def test_getstream_seed_snippet_round_trips(server):
    from getstream import Stream
    from getstream.models import EventHook

    client = Stream(api_key=server.key, api_secret=server.secret, base_url=server.url)
    # STEP 1: current hooks (none yet, and an array, not null).
    response = client.get_app()
    existing_hooks = response.data.app.event_hooks or []
    assert existing_hooks == []
    # STEP 2 and 3: append an SQS and an SNS hook, exactly as the seeds do.
    new_sqs_hook = EventHook(
        enabled=True, hook_type="sqs", sqs_queue_url=QUEUE_URL, sqs_region="us-east-1",
        sqs_auth_type="keys", sqs_key="yourkey", sqs_secret="yoursecret", event_types=[],
    )
    client.update_app(event_hooks=existing_hooks + [new_sqs_hook])
    existing_hooks = client.get_app().data.app.event_hooks
    new_sns_hook = EventHook(
        enabled=True, hook_type="sns", sns_topic_arn=TOPIC_ARN, sns_region="us-east-1",
        sns_auth_type="keys", sns_key="yourkey", sns_secret="yoursecret2", event_types=[],
    )
    client.update_app(event_hooks=existing_hooks + [new_sns_hook])

    hooks = client.get_app().data.app.event_hooks
    assert [h.hook_type for h in hooks] == ["sqs", "sns"]
    sqs, sns = hooks
    assert is_uuid(sqs.id) and is_uuid(sns.id) and sqs.id != sns.id
    assert (sqs.sqs_queue_url, sqs.sqs_region, sqs.sqs_auth_type, sqs.sqs_key) == (QUEUE_URL, "us-east-1", "keys", "yourkey")
    assert (sns.sns_topic_arn, sns.sns_region, sns.sns_key) == (TOPIC_ARN, "us-east-1", "yourkey")
    assert sqs.sqs_secret == MASK and sns.sns_secret == MASK
    assert sqs.enabled and sqs.event_types == []
    # v2 timestamps are nanoseconds, which the SDK turns into datetimes.
    assert isinstance(sqs.created_at, datetime.datetime)
    # The masked secrets went back in the second update (the SDK sent created_at as a string):
    # the stored ones are intact.
    assert stored_hook_secrets(server.data_dir) == {sqs.id: "yoursecret", sns.id: "yoursecret2"}
    assert b"yoursecret" not in database_bytes(server.data_dir)

    # An updated hook keeps its id and created_at.
    raw_before = server.get_app()["event_hooks"]
    client.update_app(event_hooks=[hooks[0]])
    raw_after = server.get_app()["event_hooks"]
    assert len(raw_after) == 1
    assert raw_after[0]["id"] == raw_before[0]["id"]
    assert raw_after[0]["created_at"] == raw_before[0]["created_at"]

    # [] clears.
    client.update_app(event_hooks=[])
    assert client.get_app().data.app.event_hooks == []

    # check_sqs with a non-SQS URL: 201, status error, Stream's text.
    check = client.check_sqs(sqs_key="k", sqs_secret="s", sqs_url="https://foo.com/bar")
    assert check.data.status == "error"
    assert "invalid SQS url" in check.data.error


def test_stream_chat_legacy_sdk_round_trips(server):
    from stream_chat import StreamChat

    client = StreamChat(api_key=server.key, api_secret=server.secret, base_url=server.url)
    settings = client.get_app_settings()
    existing = settings["app"]["event_hooks"]
    assert existing == []
    client.update_app_settings(event_hooks=existing + [sqs_hook("MyQueue", sqs_key="yourkey", sqs_secret="yoursecret")])
    existing = client.get_app_settings()["app"]["event_hooks"]
    client.update_app_settings(event_hooks=existing + [sns_hook(TOPIC_ARN, sns_key="k2", sns_secret="s2")])

    hooks = client.get_app_settings()["app"]["event_hooks"]
    assert len(hooks) == 2
    assert all(is_uuid(h["id"]) for h in hooks)
    # Legacy paths give RFC 3339 timestamps.
    assert hooks[0]["created_at"].endswith("Z")
    assert hooks[0]["sqs_secret"] == MASK and hooks[1]["sns_secret"] == MASK
    assert stored_hook_secrets(server.data_dir) == {hooks[0]["id"]: "yoursecret", hooks[1]["id"]: "s2"}

    # Legacy app-level fields are stored and shown (masked), but create no delivery.
    client.update_app_settings(sqs_url=QUEUE_URL, sqs_key="legacykey", sqs_secret="legacysecret")
    app = client.get_app_settings()["app"]
    assert (app["sqs_url"], app["sqs_key"], app["sqs_secret"]) == (QUEUE_URL, "legacykey", MASK)
    assert len(app["event_hooks"]) == 2
    assert b"legacysecret" not in database_bytes(server.data_dir)

    client.update_app_settings(event_hooks=[])
    assert client.get_app_settings()["app"]["event_hooks"] == []
    check = client.check_sqs("k", "s", "https://foo.com/bar")
    assert check["status"] == "error" and "invalid SQS url" in check["error"]


def test_stream_chat_js_sdk_round_trips(server):
    script = ROOT / "tests" / "compat" / "js" / "seed.mjs"
    env = {**os.environ, "HR_URL": server.url, "HR_KEY": server.key, "HR_SECRET": server.secret,
           "HR_QUEUE_URL": QUEUE_URL, "HR_TOPIC_ARN": TOPIC_ARN}

    def run(step):
        out = subprocess.run(["node", str(script)], env={**env, "HR_STEP": step},
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr + out.stdout
        return json.loads(out.stdout)

    result = run("seed")
    hooks = result["hooks"]
    assert [h["hook_type"] for h in hooks] == ["sqs", "sns"]
    assert all(is_uuid(h["id"]) for h in hooks)
    assert hooks[0]["sqs_secret"] == MASK
    assert stored_hook_secrets(server.data_dir) == {hooks[0]["id"]: "yoursecret", hooks[1]["id"]: "yoursecret"}
    assert run("clear")["cleared"] == []
    assert result["check"]["status"] == "error" and "invalid SQS url" in result["check"]["error"]
    assert any(e["name"] == "message.new" for e in result["hook_events"])


def test_explicit_deletion_mode(server):
    hooks = server.set_hooks([sqs_hook("a"), sqs_hook("b")])
    a, b = hooks
    r = server.request("PATCH", "/app", {
        "explicit_event_hooks_deletion": True,
        "event_hooks": [{"id": a["id"], "delete": True}, sqs_hook("c", id="my-own-id")],
    })
    assert r.status_code == 200, r.text
    ids = [h["id"] for h in server.get_app()["event_hooks"]]
    assert ids == [b["id"], "my-own-id"], "only the marked hook is deleted; the untouched one stays"


def test_apps_and_hooks_survive_a_restart(server):
    server.set_hooks([sqs_hook("persist", event_types=["message.new"]), sns_hook(TOPIC_ARN, enabled=False)])
    before = server.get_app()
    server.restart()
    assert server.get_app() == before


def test_first_app_is_generated_and_cli_manages_apps(server_factory, tmp_path):
    from conftest import BIN

    data = tmp_path / "gen"
    env = {"HOOKRELAY_API_KEY": "", "HOOKRELAY_API_SECRET": ""}
    s = server_factory(env=env, data_dir=data)
    s.stop()
    printed = s.log()
    assert "api secret:" in printed
    secret = printed.split("api secret:")[1].split()[0]
    key = printed.split("api key:")[1].split()[0]
    created = subprocess.run([str(BIN), "apps", "create", "--name", "second", "--data-dir", str(data)],
                             capture_output=True, text=True, check=True).stdout
    listed = json.loads(subprocess.run([str(BIN), "apps", "list", "--json", "--data-dir", str(data)],
                                       capture_output=True, text=True, check=True).stdout)
    assert [a["name"] for a in listed] == ["default", "second"]
    assert listed[0]["api_key"] == key
    assert secret not in json.dumps(listed) and "secret" not in listed[0]
    # The generated credentials work against a restarted server.
    s.key, s.secret = key, secret
    s.start()
    assert s.get_app()["name"] == "default"
    assert "api secret:" in created
