"""Delivery to SQS and SNS through the real AWS SDK, against moto, read back with boto3 (issue 3).
"""

import hashlib
import hmac
import json
import random
import time
from collections import Counter, defaultdict

from conftest import sns_hook, sqs_hook, wait_until

TYPES = ["message.new", "message.updated", "reaction.new", "member.added", "channel.created"]


def make_events(n, prefix):
    rnd = random.Random(7)
    return [
        {
            "id": f"{prefix}-{i}",
            "type": TYPES[i % len(TYPES)],
            "cid": f"messaging:room-{rnd.randrange(5)}",
            "seq_in_room": i,
            "message": {"text": f"hello {i}", "unicode": "héllo ✓"},
        }
        for i in range(n)
    ]


def dead_letters(server, hook_id):
    r = server.request("GET", f"/v1/hooks/{hook_id}/dead_letters")
    assert r.status_code == 200, r.text
    return r.json()["dead_letters"]


def test_mixed_events_reach_sqs_sns_and_fifo_as_sent(server, moto):
    plain = moto.create_queue()
    fifo = moto.create_queue(fifo=True)
    topic_arn, topic_queue = moto.create_topic_with_queue()
    hooks = server.set_hooks([
        sqs_hook(plain, event_types=["message.*", "reaction.new"]),
        sqs_hook(fifo, event_types=["message.new", "message.updated"]),
        sns_hook(topic_arn, event_types=["member.added"]),
    ])
    events = make_events(1000, "mix")
    big = {"id": "too-big", "type": "message.new", "cid": "messaging:room-0", "pad": "x" * 300_000}

    started = time.monotonic()
    for i in range(0, 1000, 100):
        server.send_events(events[i:i + 100])
    server.send_events([big])
    ingest_seconds = time.monotonic() - started

    wanted_plain = [e for e in events if e["type"].startswith("message.") or e["type"] == "reaction.new"]
    wanted_topic = [e for e in events if e["type"] == "member.added"]
    wait_until(lambda: moto.queue_depth(plain) >= len(wanted_plain), timeout=60, interval=0.1,
               what="delivery to the plain queue")
    delivered_seconds = time.monotonic() - started
    got_plain = moto.drain(plain, len(wanted_plain))
    got_topic = moto.drain(topic_queue, len(wanted_topic))
    wanted_fifo = [e for e in events if e["type"] in ("message.new", "message.updated")]
    got_fifo = moto.drain(fifo, len(wanted_fifo), timeout=120)
    print(f"\n[figures] ingested 1001 events in {ingest_seconds:.2f}s ({1001 / ingest_seconds:.0f}/s); "
          f"{len(wanted_plain)} delivered to one SQS queue within {delivered_seconds:.2f}s "
          f"({len(wanted_plain) / delivered_seconds:.0f}/s)")

    by_id = {e["id"]: e for e in events}
    for got, wanted in [(got_plain, wanted_plain), (got_topic, wanted_topic), (got_fifo, wanted_fifo)]:
        ids = [json.loads(m["Body"])["id"] for m in got]
        assert Counter(ids) == Counter(e["id"] for e in wanted), "each matching event, once, nothing else"
        for m in got:
            body = json.loads(m["Body"])
            sent = by_id[body["id"]]
            assert {k: body[k] for k in sent} == sent, "the event arrives exactly as sent"
            assert "created_at" in body
            attrs = m["MessageAttributes"]
            assert attrs["event_type"]["StringValue"] == sent["type"]
            assert attrs["event_id"]["StringValue"] == sent["id"]
            expected_sig = hmac.new(server.secret.encode(), m["Body"].encode(), hashlib.sha256).hexdigest()
            assert attrs["X-Signature"]["StringValue"] == expected_sig
    # FIFO: each channel's events in the order sent, grouped by cid.
    per_group = defaultdict(list)
    for m in got_fifo:
        assert m["Attributes"]["MessageGroupId"] == json.loads(m["Body"])["cid"]
        per_group[m["Attributes"]["MessageGroupId"]].append(json.loads(m["Body"])["seq_in_room"])
    for group, seqs in per_group.items():
        assert seqs == sorted(seqs), f"{group} out of order"

    # The 300 KB event: a too_large dead letter on the hooks it matched, in no queue.
    for hook in hooks[:2]:
        letters = wait_until(lambda: dead_letters(server, hook["id"]), what="the too_large dead letter")
        assert [(d["event_id"], d["reason"]) for d in letters] == [("too-big", "too_large")]
    assert dead_letters(server, hooks[2]["id"]) == [], "member.added hook never matched it"


def test_sns_filter_policy_on_event_type_attribute(server, moto):
    topic_arn, queue = moto.create_topic_with_queue(filter_policy={"event_type": ["reaction.new"]})
    server.set_hooks([sns_hook(topic_arn)])
    events = make_events(50, "flt")
    server.send_events(events)
    got = moto.drain(queue, 10)
    assert sorted(json.loads(m["Body"])["id"] for m in got) == sorted(
        e["id"] for e in events if e["type"] == "reaction.new")


def test_duplicate_ids_are_delivered_once(server, moto):
    queue = moto.create_queue()
    server.set_hooks([sqs_hook(queue)])
    r = server.request("POST", "/v1/events", {"events": [{"id": "same", "type": "a"}, {"id": "same", "type": "a"}]})
    assert r.status_code == 201
    assert r.json()["events"] == [{"id": "same"}, {"id": "same", "duplicate": True}]
    again = server.request("POST", "/v1/events", {"id": "same", "type": "a"})
    assert again.json()["events"] == [{"id": "same", "duplicate": True}]
    server.send_events([{"id": "after", "type": "a"}])
    got = moto.drain(queue, 2, timeout=10)
    assert sorted(json.loads(m["Body"])["id"] for m in got) == ["after", "same"]


def test_hook_changes_apply_live(server, moto):
    q1, q2 = moto.create_queue(), moto.create_queue()
    [hook] = server.set_hooks([sqs_hook(q1)])
    server.send_events([{"id": "one", "type": "a"}])
    assert [json.loads(m["Body"])["id"] for m in moto.drain(q1, 1)] == ["one"]
    # Repoint the same hook (same id) at another queue: no restart, cursor kept.
    hook.update(sqs_queue_url=sqs_hook(q2)["sqs_queue_url"])
    server.set_hooks([hook])
    server.send_events([{"id": "two", "type": "a"}])
    assert [json.loads(m["Body"])["id"] for m in moto.drain(q2, 1)] == ["two"]
    # Disable: nothing is delivered.
    hook["enabled"] = False
    server.set_hooks([hook])
    server.send_events([{"id": "three", "type": "a"}])
    assert moto.drain(q2, 1, timeout=3) == []


def test_message_the_queue_refuses_is_dead_lettered_and_the_rest_flow(server, moto):
    # A queue that takes at most 1 KiB: moto (like SQS) fails the whole batch for one entry.
    queue = moto.create_queue(MaximumMessageSize="1024")
    [hook] = server.set_hooks([sqs_hook(queue)])
    small = [{"id": f"small-{i}", "type": "a"} for i in range(5)]
    big = {"id": "big", "type": "a", "pad": "y" * 2000}
    server.send_events(small[:2] + [big] + small[2:])
    got = moto.drain(queue, len(small))
    assert sorted(json.loads(m["Body"])["id"] for m in got) == sorted(e["id"] for e in small)
    letters = wait_until(lambda: dead_letters(server, hook["id"]), what="the rejected dead letter")
    assert [(d["event_id"], d["reason"]) for d in letters] == [("big", "rejected")]
    assert "InvalidParameterValue" in letters[0]["last_error"]


def test_resource_and_role_auth_use_the_servers_identity(server, moto):
    """resource: the server's own credentials (AWS_ACCESS_KEY_ID in its environment). role: those
    credentials assume a role through STS. moto maps assumed-role credentials to the role's
    account, so a queue in account 111111111111 is reachable only if the role was assumed."""
    q1 = moto.create_queue()
    role_account = "111111111111"
    role_arn = f"arn:aws:iam::{role_account}:role/hookrelay-delivery"
    creds = moto.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="setup")["Credentials"]
    import boto3

    other = boto3.client("sqs", endpoint_url=moto.endpoint, region_name="us-east-1",
                         aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                         aws_session_token=creds["SessionToken"])
    q2 = f"role-{int(time.time() * 1000)}"
    q2_url = other.create_queue(QueueName=q2)["QueueUrl"]
    assert f"/{role_account}/" in q2_url
    server.set_hooks([
        sqs_hook(q1, sqs_auth_type="resource", sqs_key=None, sqs_secret=None),
        sqs_hook(q2, sqs_auth_type="role", sqs_key=None, sqs_secret=None, sqs_role_arn=role_arn,
                 sqs_queue_url=f"https://sqs.us-east-1.amazonaws.com/{role_account}/{q2}"),
    ])
    hooks = server.get_app()["event_hooks"]
    assert [h["sqs_auth_type"] for h in hooks] == ["resource", "role"]
    assert "sqs_secret" not in hooks[0] and hooks[1]["sqs_role_arn"] == role_arn
    server.send_events([{"id": "who", "type": "a"}])
    assert [json.loads(m["Body"])["id"] for m in moto.drain(q1, 1)] == ["who"]
    got = []
    deadline = time.monotonic() + 30
    while not got and time.monotonic() < deadline:
        got = other.receive_message(QueueUrl=q2_url, WaitTimeSeconds=1).get("Messages", [])
    assert [json.loads(m["Body"])["id"] for m in got] == ["who"]
