"""Several hookrelay nodes on one PostgreSQL database (store = "postgres").

Each test gets a database of its own on the local server (HOOKRELAY_TEST_DATABASE_URL, default
the project machine's trust-auth server), created with psql and dropped afterwards (kept when
KEEP_DB is set, to look inside). The nodes are real
`hookrelay serve` processes, the destinations real SQS queues in moto.

"No hook is ever delivered by two nodes at once" is checked from the nodes' own delivery logs:
each delivered batch is logged (target hookrelay::deliveries) with its hook, lease epoch, and
start and end times; all nodes run on this machine, so their clocks are one.
"""

import json
import os
import signal
import subprocess
import time
import uuid

from cluster import Cluster, assert_one_node_at_a_time, drain_all, psql, slow_producer
from conftest import BIN, sqs_hook, wait_until, webhook_hook
from receiver import Answer, Receiver


def test_three_nodes_share_hooks_and_survive_a_kill(tmp_path, moto, database):
    cluster = Cluster(tmp_path, moto, database, 3)
    try:
        queues = [moto.create_queue() for _ in range(5)]
        cluster.nodes[0].set_hooks([sqs_hook(q) for q in queues])
        # The five hooks spread over the three nodes (2 + 2 + 1).
        spread = wait_until(
            lambda: (o := cluster.owners(cluster.nodes[1]))
            and sorted(list(o.values()).count(n.name) for n in cluster.nodes) == [1, 2, 2]
            and o,
            timeout=30,
            what="hooks spread over the three nodes",
        )
        producers = [slow_producer(node, f"{node.name}-{uuid.uuid4().hex[:6]}") for node in cluster.nodes]
        wait_until(lambda: all(len(p.acknowledged) >= 100 for p in producers), what="events flowing through every node")

        # Kill -9 the node delivering the most hooks, mid-stream.
        victim = max(cluster.nodes, key=lambda n: list(spread.values()).count(n.name))
        survivors = [n for n in cluster.nodes if n is not victim]
        victim.kill()
        killed_at = time.monotonic()
        acknowledged = producers[cluster.nodes.index(victim)].stop()
        wait_until(
            lambda: set(cluster.owners(survivors[0]).values()) <= {n.name for n in survivors},
            timeout=20,
            what="the victim's hooks to move to the survivors",
        )
        takeover = time.monotonic() - killed_at
        # The survivors keep taking events after the takeover.
        after = [len(p.acknowledged) for p in producers]
        wait_until(lambda: all(len(p.acknowledged) >= n + 100 for p, n in zip(producers, after) if p.server is not victim),
                   what="events after the takeover")
        for p in producers:
            if p.server is not victim:
                acknowledged += p.stop()

        received = drain_all(moto, queues, acknowledged)
        for queue, ids in zip(queues, received):
            missing = set(acknowledged) - set(ids)
            assert not missing, f"{queue}: {len(missing)} acknowledged events never arrived, e.g. {sorted(missing)[:3]}"
        duplicates = sum(len(ids) - len(set(ids)) for ids in received)
        handovers = assert_one_node_at_a_time(cluster.deliveries())
        assert handovers >= 2, "the victim's hooks were delivered by another node afterwards"
        claims = psql(database, f"SELECT count(*) FROM lease_log WHERE action = 'claimed' AND node_id <> '{victim.name}'")
        assert int(claims[0][0]) >= 5
        print(
            f"\n{len(acknowledged)} events x 5 hooks delivered; takeover after kill -9: {takeover:.1f}s; "
            f"duplicates: {duplicates}; handovers: {handovers}"
        )
        assert takeover < 3, f"takeover took {takeover:.1f}s"
    finally:
        cluster.stop()


def test_a_node_paused_past_its_lease_sends_nothing_stale(tmp_path, moto, database):
    cluster = Cluster(tmp_path, moto, database, 2, lease_ttl="3s")
    try:
        queues = [moto.create_queue() for _ in range(2)]
        a, b = cluster.nodes
        a.set_hooks([sqs_hook(q) for q in queues])
        wait_until(
            # A hook not leased yet has no owner (None) for a moment: leave those out.
            lambda: sorted(o for o in cluster.owners(b).values() if o) == ["node0", "node1"],
            timeout=30,
            what="one hook per node",
        )
        producer = slow_producer(b, "e")
        wait_until(lambda: len(producer.acknowledged) >= 100, what="events flowing")

        # Node a stops (as if its VM stalled) for three lease lengths; node b takes its hook.
        a.proc.send_signal(signal.SIGSTOP)
        paused_ms = time.time() * 1000
        wait_until(
            lambda: set(cluster.owners(b).values()) == {"node1"},
            timeout=15,
            what="node b to take node a's hook",
        )
        # Node b delivers on while node a is stopped.
        before = len(producer.acknowledged)
        wait_until(lambda: len(producer.acknowledged) >= before + 200, what="events while node a is stopped")
        a.proc.send_signal(signal.SIGCONT)
        resumed_ms = time.time() * 1000
        # Node a lives on: it may get a hook back, under a new lease.
        wait_until(lambda: a.request("GET", "/healthz").status_code == 200, what="node a to answer again")
        before = len(producer.acknowledged)
        wait_until(lambda: len(producer.acknowledged) >= before + 200, what="events after node a resumed")
        acknowledged = producer.stop()

        received = drain_all(moto, queues, acknowledged)
        for ids in received:
            assert set(acknowledged) <= set(ids)
        deliveries = cluster.deliveries()
        assert_one_node_at_a_time(deliveries)
        # Whatever node a delivered after it resumed was under a lease it took after resuming.
        claims = psql(
            database,
            "SELECT hook_id, epoch, extract(epoch from at) * 1000 FROM lease_log "
            "WHERE node_id = 'node0' AND action = 'claimed'",
        )
        fresh = {(hook, int(epoch)) for hook, epoch, at in claims if float(at) >= resumed_ms}
        late = [d for d in deliveries if d[1] == "node0" and d[3] >= paused_ms]
        stale = [d for d in late if (d[0], d[2]) not in fresh]
        assert not stale, f"node a delivered under a lease it had lost: {stale[:3]}"
        # And it did notice: its workers stopped for want of the lease.
        assert "hook lease not held" in a.log() or "hook worker stopped" in a.log()
    finally:
        cluster.stop()


def test_a_receiver_slower_than_a_lease_renewal_gets_each_event_once(tmp_path, moto, database):
    # Leases of 2 s are renewed every 0.5 s; a send began under one renewal must not be cut off
    # (and sent again) when that renewal's deadline passes while later ones hold the hook.
    cluster = Cluster(tmp_path, moto, database, 1, lease_ttl="2s")
    receiver = Receiver(lambda r: Answer(200, delay=3.0)).start()
    try:
        [node] = cluster.nodes
        node.set_hooks([webhook_hook(receiver.url)])
        wait_until(lambda: all(cluster.owners(node).values()), timeout=30, what="the hook leased")
        node.send_events([{"id": f"slow-{i}", "type": "message.new"} for i in range(2)])
        wait_until(lambda: len(receiver.requests) >= 2, timeout=30, what="both events at the receiver")
        # Long enough for a send cut short to have been retried (backoff 1 s) and arrive again.
        time.sleep(4.5)
        ids = [r.headers.get("x-webhook-id") for r in receiver.requests]
        assert sorted(ids) == ["slow-0", "slow-1"], ids
        assert "lease lapsed during a send" not in node.log()
    finally:
        cluster.stop()
        receiver.stop()


def test_a_change_through_one_node_reaches_the_owner_within_a_second(tmp_path, moto, database):
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    cluster = Cluster(tmp_path, moto, database, 2)
    try:
        a, b = cluster.nodes
        queue = moto.create_queue()
        hooks = a.set_hooks([sqs_hook(queue)])
        # Send through the node that does not deliver the hook.
        owner = wait_until(lambda: cluster.owners(a)[hooks[0]["id"]], what="a lease on the hook")
        other = a if owner == b.name else b
        other.set_hooks([{**hooks[0], "event_types": ["reaction.new"]}])
        time.sleep(1)
        other.send_events([{"id": "m1", "type": "message.new"}, {"id": "r1", "type": "reaction.new"}])
        got = moto.drain(queue, 1, timeout=20)
        time.sleep(1)
        got += moto.drain(queue, 1, timeout=1)
        assert [json.loads(m["Body"])["id"] for m in got] == ["r1"]
        # A replay asked of the other node wakes the owner's idle worker at once (not at its
        # 60 s idle re-check).
        r = other.request("POST", f"/v1/hooks/{hooks[0]['id']}/replay", {"since": since})
        assert r.status_code == 200, r.text
        again = moto.drain(queue, 1, timeout=10)
        assert [json.loads(m["Body"])["id"] for m in again] == ["r1"]
    finally:
        cluster.stop()


def test_migrate_runs_the_schema_migrations_alone(database):
    env = {**os.environ, "HOOKRELAY_STORE": "postgres", "HOOKRELAY_DATABASE_URL": database}
    first = subprocess.run([str(BIN), "migrate"], capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr
    assert "4 migration(s) applied" in first.stdout
    again = subprocess.run([str(BIN), "migrate"], capture_output=True, text=True, env=env)
    assert "0 migration(s) applied" in again.stdout
    assert psql(database, "SELECT version FROM hookrelay_schema") == [["4"]]
    # Without a database URL the command says what is missing.
    env.pop("HOOKRELAY_DATABASE_URL")
    bad = subprocess.run([str(BIN), "migrate"], capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "HOOKRELAY_DATABASE_URL" in bad.stderr
