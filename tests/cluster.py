"""Several hookrelay nodes on one PostgreSQL database, for the multi-node tests.

The nodes are real `hookrelay serve` processes (store = "postgres") on a database of the test's
own (the `database` fixture in conftest). Each node logs every batch it delivered (target
hookrelay::deliveries: hook, lease epoch, start and end times); all nodes run on this machine,
so their clocks are one, and `assert_one_node_at_a_time` reads those lines.
"""

import json
import secrets
import signal
import socket
import subprocess
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from conftest import Producer, Server


def psql(url, sql):
    out = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-Atc", sql], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [line.split("|") for line in out.stdout.splitlines() if line]


class Cluster:
    """`n` nodes on one database, sharing the server key and the first app's credentials."""

    def __init__(self, tmp_path, moto, database, n, lease_ttl=None):
        self.database = database
        self.key, self.secret = "key" + secrets.token_hex(4), secrets.token_hex(24)
        shared = {
            "HOOKRELAY_STORE": "postgres",
            "HOOKRELAY_DATABASE_URL": database,
            "HOOKRELAY_SECRET_KEY": secrets.token_hex(32),
            "HOOKRELAY_API_KEY": self.key,
            "HOOKRELAY_API_SECRET": self.secret,
            "HOOKRELAY_LOG_JSON": "true",
        }
        if lease_ttl:
            shared["HOOKRELAY_POSTGRES__LEASE_TTL"] = lease_ttl
        self.tmp_path, self.moto, self.shared = tmp_path, moto, shared
        self.nodes = []
        for _ in range(n):
            self.add_node()

    def add_node(self):
        """Starts one more node (node0, node1, … in order of start)."""
        name = f"node{len(self.nodes)}"
        node = Server(self.tmp_path / name, self.moto.endpoint, env={**self.shared, "HOOKRELAY_POSTGRES__NODE_ID": name})
        node.key, node.secret, node.name = self.key, self.secret, name
        self.nodes.append(node)
        return node

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


class TcpLink:
    """A TCP relay between the nodes and PostgreSQL that a test can cut (every connection
    closed at once, new ones refused, as when the database restarts or the network fails) and
    restore on the same port."""

    def __init__(self, host, port):
        self.target = (host, port)
        self.lock = threading.Lock()
        self.sockets = []
        self.listener = None
        self.port = 0
        self.cuts = 0  # a connection accepted before a cut and set up after it is closed too
        self.restore()

    def url(self, database_url):
        """`database_url` with its host and port replaced by this link's."""
        scheme, rest = database_url.split("://", 1)
        user, rest = rest.split("@", 1)
        return f"{scheme}://{user}@127.0.0.1:{self.port}/{rest.split('/', 1)[1]}"

    def restore(self):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener, self.cuts), daemon=True).start()

    def cut(self):
        self.listener.close()
        with self.lock:
            self.cuts += 1
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.sockets.clear()

    def _accept(self, listener, generation):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                if self.cuts != generation:
                    client.close()
                    upstream.close()
                    return
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
