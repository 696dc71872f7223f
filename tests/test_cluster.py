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
import secrets
import signal
import subprocess
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import BIN, Producer, Server, sqs_hook, wait_until

SERVER_URL = os.environ.get("HOOKRELAY_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")


def psql(url, sql):
    out = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-Atc", sql], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [line.split("|") for line in out.stdout.splitlines() if line]


@pytest.fixture
def database():
    name = f"hookrelay_e2e_{uuid.uuid4().hex[:12]}"
    psql(SERVER_URL, f"CREATE DATABASE {name}")
    yield SERVER_URL.rsplit("/", 1)[0] + "/" + name
    if not os.environ.get("KEEP_DB"):
        psql(SERVER_URL, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class Cluster:
    """`n` nodes on one database, sharing the server key and the first app's credentials."""

    def __init__(self, tmp_path, moto, database, n, lease_ttl="8s"):
        self.database = database
        self.key, self.secret = "key" + secrets.token_hex(4), secrets.token_hex(24)
        shared = {
            "HOOKRELAY_STORE": "postgres",
            "HOOKRELAY_DATABASE_URL": database,
            "HOOKRELAY_SECRET_KEY": secrets.token_hex(32),
            "HOOKRELAY_API_KEY": self.key,
            "HOOKRELAY_API_SECRET": self.secret,
            "HOOKRELAY_LOG_JSON": "true",
            "HOOKRELAY_POSTGRES__LEASE_TTL": lease_ttl,
        }
        self.nodes = []
        for i in range(n):
            node = Server(tmp_path / f"node{i}", moto.endpoint, env={**shared, "HOOKRELAY_POSTGRES__NODE_ID": f"node{i}"})
            node.key, node.secret, node.name = self.key, self.secret, f"node{i}"
            self.nodes.append(node)

    def owners(self, via):
        """hook id -> node holding its lease, as one node's API tells it."""
        r = via.request("GET", "/v1/hooks")
        assert r.status_code == 200, r.text
        return {h["id"]: h["node"] for h in r.json()["hooks"]}

    def deliveries(self):
        """(hook, node, epoch, started_ms, finished_ms) of every batch any node delivered."""
        out = []
        for node in self.nodes:
            for line in node.log().splitlines():
                if '"hookrelay::deliveries"' not in line:
                    continue
                f = json.loads(line)["fields"]
                out.append((f["hook_id"], node.name, f["epoch"], f["started_ms"], f["finished_ms"]))
        return out

    def stop(self):
        for node in self.nodes:
            if node.proc.poll() is None:
                node.proc.send_signal(signal.SIGCONT)
            node.kill()


def assert_one_node_at_a_time(deliveries):
    """Per hook, batches of different nodes never overlap in time, and an epoch (a lease
    period) belongs to one node."""
    by_hook = defaultdict(list)
    for hook, node, epoch, start, end in deliveries:
        by_hook[hook].append((start, end, node, epoch))
    handovers = 0
    for hook, batches in by_hook.items():
        epochs = defaultdict(set)
        for _, _, node, epoch in batches:
            epochs[epoch].add(node)
        assert all(len(nodes) == 1 for nodes in epochs.values()), (hook, dict(epochs))
        batches.sort()
        runs = []  # consecutive batches of one node: [node, first start, last end]
        for start, end, node, _ in batches:
            if runs and runs[-1][0] == node:
                runs[-1][2] = max(runs[-1][2], end)
            else:
                runs.append([node, start, end])
        for before, after in zip(runs, runs[1:]):
            assert before[2] <= after[1], f"hook {hook}: {before[0]} sent until {before[2]}, {after[0]} from {after[1]}"
            handovers += 1
    return handovers


def slow_producer(node, prefix, per_batch=5):
    """A producer at a pace moto can drain within the test: `per_batch` events every 100 ms."""
    return Producer(node, prefix, per_batch=per_batch, pause=0.1)


def drain_all(moto, queues, ids):
    with ThreadPoolExecutor(len(queues)) as pool:
        results = list(pool.map(lambda q: moto.drain(q, len(ids), timeout=120, want=set(ids)), queues))
    return [[json.loads(m["Body"])["id"] for m in messages] for messages in results]


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
        assert takeover < 15
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
