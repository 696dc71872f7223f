"""A real HTTP webhook receiver for the tests: Python's ThreadingHTTPServer on loopback.

It records every request (time, headers, body as received and decompressed) and answers with
whatever `behaviour(request)` says: a status, optional headers and body, or a delay first.
It can be stopped (its port closed) and started again on the same port.
"""

import gzip
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    at: float
    headers: dict
    raw: bytes
    body: bytes
    index: int
    peer: int  # the client's port: one per connection


@dataclass
class Answer:
    status: int = 200
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0


class Receiver:
    def __init__(self, behaviour=None, port=0):
        self.behaviour = behaviour or (lambda request: Answer())
        self.requests = []
        self.lock = threading.Lock()
        self.port = port
        self.server = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                body = gzip.decompress(raw) if headers.get("content-encoding") == "gzip" else raw
                with receiver.lock:
                    request = Request(
                        time.monotonic(), headers, raw, body, len(receiver.requests), self.client_address[1]
                    )
                    receiver.requests.append(request)
                answer = receiver.behaviour(request)
                if answer.delay:
                    time.sleep(answer.delay)
                try:
                    self.send_response(answer.status)
                    for k, v in answer.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:
                    pass  # the client gave up (timeout): nothing to answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def by_id(self):
        """Requests grouped by X-Webhook-Id, in arrival order."""
        groups = {}
        with self.lock:
            for r in self.requests:
                groups.setdefault(r.headers.get("x-webhook-id"), []).append(r)
        return groups

    def delivered_ids(self, ok=lambda r: True):
        """Ids that got at least one 2xx answer (as far as `behaviour` decided)."""
        return {i for i, rs in self.by_id().items() if any(ok(r) for r in rs)}
