"""One bad event, hook or app never holds back the rest (issue 12): refused entries, too-large
events, denied addresses."""

import json
import threading
import time

from conftest import FAST_RETRIES, sqs_hook, wait_until, webhook_hook
from receiver import Answer, Receiver


def dead_letters(server, hook_id):
    return server.request("GET", f"/v1/hooks/{hook_id}/dead_letters?limit=500").json()["dead_letters"]


def hook_status(server, hook_id):
    return server.request("GET", f"/v1/hooks/{hook_id}").json()["hook"]


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
    wait_until(lambda: hook_status(server, hook["id"])["state"] == "backing_off", what="the backoff")
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
    wait_until(lambda: hook_status(server, hook["id"])["state"] == "backing_off", what="the backoff")
    time.sleep(2)
    moto.client("sqs").create_queue(QueueName=name)
    got = moto.drain(name, 1)
    assert [json.loads(m["Body"])["id"] for m in got] == ["small-1"]
    letters = wait_until(lambda: len(dead_letters(server, hook["id"])) >= 2 and dead_letters(server, hook["id"]),
                         what="both dead letters")
    time.sleep(1)
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
