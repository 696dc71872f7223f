"""Several nodes behave as one: how hooks move between nodes, and what the database going away
does (issue 18). Real `hookrelay serve` nodes on the machine's PostgreSQL, with the default
lease settings, delivering to real HTTP receivers (one per hook) under a steady load.

What each test measures at the receivers:
* duplicates: requests for an event id a receiver had already been sent;
* silence: the longest time a receiver got nothing while events kept flowing in.
"""

import time
import uuid

import pytest
import requests

from cluster import Cluster, TcpLink, psql
from conftest import PG_SERVER_URL, Producer, webhook_hook, wait_until
from receiver import Receiver

HOOKS = 5


def producer(node):
    """~150 events/s through one node (15 every 100 ms)."""
    return Producer(node, f"{node.name}-{uuid.uuid4().hex[:6]}", per_batch=15, pause=0.1)


def start_hooks(cluster):
    """Five webhook hooks, one receiver each, spread over the nodes."""
    receivers = [Receiver().start() for _ in range(HOOKS)]
    cluster.nodes[0].set_hooks([webhook_hook(r.url) for r in receivers])
    wait_until(
        lambda: all(cluster.owners(cluster.nodes[0]).values()),
        timeout=30,
        what="every hook leased by a node",
    )
    return receivers


def duplicates(receivers):
    return sum(len(r.requests) - len(r.by_id()) for r in receivers)


def first_sent_of_repeated(receivers):
    """When each event that arrived more than once first arrived (monotonic)."""
    return [group[0].at for r in receivers for group in r.by_id().values() if len(group) > 1]


def repeats_explained(cluster, receivers, marks):
    """For a failed "no duplicates" check: each repeated event's arrivals (seconds from the
    first mark, attempt header, connection), the test's marks, and the nodes' warnings."""
    origin = marks[0][0]
    lines = [f"{at - origin:7.3f}s {what}" for at, what in marks]
    for r in receivers:
        for event_id, group in r.by_id().items():
            if len(group) > 1:
                arrivals = ", ".join(
                    f"{q.at - origin:.3f}s attempt {q.headers.get('x-webhook-attempt')} port {q.peer}" for q in group
                )
                lines.append(f"{r.url} {event_id}: {arrivals}")
    for node in cluster.nodes:
        lines += [f"{node.name}: {line}" for line in node.log().splitlines() if '"WARN"' in line or '"ERROR"' in line]
    return "\n".join(lines)


def silence(receiver, start, end):
    """The longest gap between requests the receiver got within [start, end] (monotonic)."""
    times = [start] + sorted(r.at for r in receiver.requests if start <= r.at <= end) + [end]
    return max(b - a for a, b in zip(times, times[1:]))


def leases_held(node):
    """The node's `hookrelay_hook_leases_held` gauge."""
    metrics = requests.get(f"{node.url}/metrics", timeout=5).text
    values = [line.split()[-1] for line in metrics.splitlines() if line.startswith("hookrelay_hook_leases_held")]
    return int(float(values[0])) if values else 0


def assert_all_delivered(receivers, acknowledged):
    wait_until(
        lambda: all(set(acknowledged) <= set(r.by_id()) for r in receivers),
        timeout=60,
        what="every acknowledged event at every receiver",
    )


def flowing(producers, more=100):
    before = [len(p.acknowledged) for p in producers]
    wait_until(
        lambda: all(len(p.acknowledged) >= n + more for p, n in zip(producers, before)),
        timeout=60,
        what=f"{more} more events through every producer",
    )


@pytest.fixture
def webhook_cluster(tmp_path, moto):
    """Starts `n` nodes on `database_url` with five webhook hooks spread over them; returns the
    cluster and the hooks' receivers, and stops both after the test."""
    started = []

    def start(database_url, n=3):
        cluster = Cluster(tmp_path, moto, database_url, n)
        started.append((cluster, []))
        started[-1][1].extend(start_hooks(cluster))
        return cluster, started[-1][1]

    yield start
    for cluster, receivers in started:
        cluster.stop()
        for r in receivers:
            r.stop()


def test_a_killed_nodes_hooks_move_within_3s_and_only_in_flight_events_repeat(database, webhook_cluster):
    cluster, receivers = webhook_cluster(database)
    producers = [producer(node) for node in cluster.nodes]
    flowing(producers, 300)

    owners = cluster.owners(cluster.nodes[0])
    victim = max(cluster.nodes, key=lambda n: list(owners.values()).count(n.name))
    victim_hooks = [i for i, hook in enumerate(owners) if owners[hook] == victim.name]
    survivors = [n for n in cluster.nodes if n is not victim]
    victim.kill()
    killed_at = time.monotonic()
    acknowledged = producers[cluster.nodes.index(victim)].stop()
    live = [p for p in producers if p.server is not victim]
    flowing(live, 600)
    settled_at = time.monotonic()
    for p in live:
        acknowledged += p.stop()

    assert_all_delivered(receivers, acknowledged)
    assert set(cluster.owners(survivors[0]).values()) <= {n.name for n in survivors}
    silent = max(silence(receivers[i], killed_at - 0.5, settled_at) for i in victim_hooks)
    deliveries = sum(len(r.requests) for r in receivers)
    repeated = duplicates(receivers)
    print(
        f"\n{deliveries} deliveries; the killed node's hooks silent for {silent:.2f}s; "
        f"duplicates: {repeated} ({100 * repeated / deliveries:.2f}%)"
    )
    assert silent < 3.0, f"the killed node's hooks were silent for {silent:.2f}s"
    # Only what the killed node had sent but not yet recorded is sent again: its rounds'
    # calls in flight and those answered since their last checkpoint. How many that is moves
    # with the machine's speed (2 to 85 here at ~450 events/s); when they were first sent
    # does not: within a lease period (2 s) before the kill, never events recorded before.
    first_sent = first_sent_of_repeated(receivers)
    assert all(killed_at - 2.0 <= at for at in first_sent), (
        f"events first sent {killed_at - min(first_sent):.2f}s before the kill were sent again"
    )
    assert repeated <= 0.01 * deliveries, f"{repeated} duplicates of {deliveries} deliveries"


def test_a_node_leaving_and_one_joining_hand_hooks_over_without_duplicates(database, webhook_cluster):
    cluster, receivers = webhook_cluster(database)
    leaving = cluster.nodes[0]
    producers = [producer(node) for node in cluster.nodes[1:]]
    flowing(producers)

    start = time.monotonic()
    joined = cluster.add_node()
    # The newcomer takes a share of the hooks from the others (a rebalance).
    wait_until(
        lambda: joined.name in cluster.owners(joined).values(),
        timeout=30,
        what="the new node to take hooks",
    )
    flowing(producers)
    marks = [(start, "node joined"), (time.monotonic(), f"{leaving.name} told to stop")]
    assert leaving.stop() == 0
    marks.append((time.monotonic(), f"{leaving.name} stopped"))
    # Its hooks go to the others at once, not when the leases would have expired.
    wait_until(
        lambda: leaving.name not in cluster.owners(joined).values(),
        timeout=3,
        what="the leaving node's hooks to be taken over",
    )
    flowing(producers)
    end = time.monotonic()
    # Each node's gauge says how many hooks it holds; together, every hook once.
    wait_until(
        lambda: sum(leases_held(n) for n in cluster.nodes[1:]) == HOOKS,
        timeout=5,
        what="the nodes' hookrelay_hook_leases_held to add up to the hooks",
    )
    acknowledged = [i for p in producers for i in p.stop()]

    assert_all_delivered(receivers, acknowledged)
    repeated = duplicates(receivers)
    longest = max(silence(r, start, end) for r in receivers)
    print(f"\nhandovers: duplicates {repeated}, longest silence {longest:.2f}s")
    assert repeated == 0, repeats_explained(cluster, receivers, marks)
    assert longest <= 1.0, f"a hook was silent for {longest:.2f}s during the handovers"
    handed = psql(database, "SELECT count(*) FROM lease_log WHERE action = 'released'")
    assert int(handed[0][0]) >= 2


def test_a_rolling_restart_under_load_loses_nothing(database, webhook_cluster):
    cluster, receivers = webhook_cluster(database)
    producers = [producer(node) for node in cluster.nodes]
    flowing(producers)
    marks = [(time.monotonic(), "load flowing")]
    for node in cluster.nodes:
        marks.append((time.monotonic(), f"{node.name} told to stop"))
        assert node.stop() == 0
        marks.append((time.monotonic(), f"{node.name} stopped"))
        node.start()
        flowing(producers, 50)
    acknowledged = [i for p in producers for i in p.stop()]

    assert_all_delivered(receivers, acknowledged)
    repeated = duplicates(receivers)
    print(f"\nrolling restart: {len(acknowledged)} events, duplicates {repeated}")
    assert repeated == 0, repeats_explained(cluster, receivers, marks)


def test_the_database_going_away_answers_503_and_delivery_resumes(database, webhook_cluster):
    host_port = PG_SERVER_URL.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    link = TcpLink(host, int(port))
    cluster, receivers = webhook_cluster(link.url(database), 2)
    try:
        node = cluster.nodes[0]
        producers = [producer(n) for n in cluster.nodes]
        flowing(producers)

        # Every connection of every node killed by the database: survived without an error answer.
        name = database.rsplit("/", 1)[1]
        killed = psql(
            PG_SERVER_URL,
            f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{name}'",
        )
        assert int(killed[0][0]) >= 2
        flowing(producers)
        assert not [r for p in producers for r in p.refused], "an error answer while connections were re-made"

        # The database goes away (every connection cut, new ones refused) for a few seconds.
        link.cut()
        answers = []
        cut_until = time.monotonic() + 4
        while time.monotonic() < cut_until:
            answers.append(node.request("POST", "/v1/events", {"events": [{"id": uuid.uuid4().hex, "type": "message.new"}]}))
        refused = [r for r in answers if r.status_code == 503]
        assert refused, [r.status_code for r in answers]
        assert all(r.status_code in (201, 503) for r in answers), {r.status_code for r in answers}
        body = refused[-1].json()
        assert refused[-1].headers["Retry-After"].isdigit()
        assert body["StatusCode"] == 503 and "code" in body and "message" in body
        # (A requests Response is falsy for a 503, hence the list.)
        [ready] = wait_until(
            lambda: [r] if (r := node.request("GET", "/readyz")).status_code == 503 else None,
            timeout=5,
            what="/readyz to say not ready",
        )
        assert ready.json()["store"] == "error"

        link.restore()
        restored_at = time.monotonic()
        wait_until(lambda: node.request("GET", "/readyz").status_code == 200, timeout=10, what="ready again")
        # Every hook gets events sent after the database came back, within 5 s of it.
        count_before = [len(p.acknowledged) for p in producers]
        wait_until(
            lambda: all(len(p.acknowledged) > n for p, n in zip(producers, count_before)),
            timeout=10,
            what="ingest to take events again",
        )
        new_ids = {i for p, n in zip(producers, count_before) for i in p.acknowledged[n:]}
        wait_until(
            lambda: all(new_ids & set(r.by_id()) for r in receivers),
            timeout=10,
            what="every hook to deliver again",
        )
        resumed = time.monotonic() - restored_at
        acknowledged = [i for p in producers for i in p.stop()]
        accepted = [a.json()["events"][0]["id"] for a in answers if a.status_code == 201]
        assert_all_delivered(receivers, acknowledged + accepted)
        print(f"\ndatabase away 4s: {len(refused)} answers 503; delivery resumed {resumed:.2f}s after it came back")
        assert resumed < 5.0
    finally:
        link.cut()
