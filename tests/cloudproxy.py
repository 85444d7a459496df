"""A Chroma-Cloud-shaped proxy in front of a real `chroma run`: it enforces the
limits Chroma Cloud publishes, and injects the faults a hosted service gives,
on the requests that carry ``X-Cloud-Check`` (ragdb's, given that header with
--chroma-header); a test's own inspecting client passes unchecked.

- 300 records a write or delete (Cloud reports 1,000 in its pre-flight check,
  as it does, but refuses more than 300: chroma-core/chroma #5453);
- 300 results a read, and no ``get`` without ``ids`` or a ``limit``;
- 256 bytes a collection metadata value, 8,182 bytes a record metadata value;
- 10 requests at once per collection (more get 429 "Backoff");
- a fraction of requests answered 429 Backoff or 503 without being forwarded.

Run it alone (``python -m tests.cloudproxy UPSTREAM [PORT]``) or as the
``chroma_server`` fixture's front with RAGDB_TEST_CLOUD_PROXY=1.
"""

from __future__ import annotations

import collections
import http.server
import json
import random
import re
import sys
import threading
from typing import Any
from urllib.parse import urlparse

from .relay import answer, read_body, relay

WRITE_LIMIT = 300  # records a write, delete or read
COLLECTION_VALUE_BYTES = 256
RECORD_VALUE_BYTES = 8182
CONCURRENT = 10
HEADER = "X-Cloud-Check"

_COLLECTION = re.compile(r"/collections/([0-9a-f-]{36})(?:/(\w+))?$")


class CloudProxy(http.server.ThreadingHTTPServer):
    """The proxy; :attr:`refused` counts limit violations (a test asserts 0)."""

    daemon_threads = True

    def __init__(
        self,
        upstream: str,
        port: int = 0,
        faults: float = 0.02,
        seed: int = 7,
        limit: int = WRITE_LIMIT,
    ):
        super().__init__(("127.0.0.1", port), _Handler)
        self.upstream = urlparse(upstream)
        # Records a write, a delete or a read may carry (Cloud's 300; a test
        # may ask for fewer, to cross the limit with fewer chunks).
        self.limit = limit
        self.faults = faults
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.in_flight: collections.Counter[str] = collections.Counter()
        self.refused: list[str] = []
        self.injected = 0
        self.throttled = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def violation(self, body: dict[str, Any], path: str, method: str) -> str | None:
        """What in a request breaks Cloud's limits, if anything."""
        match = _COLLECTION.search(path.split("?")[0])
        op = match.group(2) if match else None
        ids = body.get("ids") or []
        if op in ("add", "upsert", "update", "delete") and len(ids) > self.limit:
            return f"{op} of {len(ids)} records (limit {self.limit})"
        if op in ("add", "upsert", "update"):
            for meta in body.get("metadatas") or []:
                for key, value in (meta or {}).items():
                    if isinstance(value, str) and len(value.encode()) > RECORD_VALUE_BYTES:
                        return f"record metadata {key!r} of {len(value.encode())} bytes"
        if op == "get":
            if body.get("ids") is None and body.get("limit") is None:
                return "a get without ids or a limit"
            if len(ids) > self.limit or int(body.get("limit") or 0) > self.limit:
                return f"a get of {max(len(ids), int(body.get('limit') or 0))} records"
        if op == "query" and int(body.get("n_results") or 0) > self.limit:
            return f"a query of {body['n_results']} results"
        metadata = body.get("metadata") if op is None else None
        if method == "PUT":
            metadata = body.get("new_metadata")
        for key, value in (metadata or {}).items():
            if isinstance(value, str) and len(value.encode()) > COLLECTION_VALUE_BYTES:
                return f"collection metadata {key!r} of {len(value.encode())} bytes"
        return None


class _Handler(http.server.BaseHTTPRequestHandler):
    server: CloudProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _error(self, status: int, name: str, message: str) -> None:
        answer(self, status, json.dumps({"error": name, "message": message}).encode())

    def _forward(self) -> None:
        data = read_body(self)
        checked = self.headers.get(HEADER) is not None
        match = _COLLECTION.search(self.path.split("?")[0])
        key = match.group(1) if match else ""
        server = self.server
        if checked:
            try:
                body = json.loads(data) if data else {}
            except ValueError:
                body = {}
            problem = server.violation(
                body if isinstance(body, dict) else {}, self.path, self.command
            )
            if problem:
                with server.lock:
                    server.refused.append(f"{self.command} {self.path}: {problem}")
                self._error(422, "InvalidArgumentError", f"quota: {problem}")
                return
            with server.lock:
                roll = server.random.random()
                busy = key and server.in_flight[key] >= CONCURRENT
                if busy:
                    server.throttled += 1
                elif roll < server.faults and "heartbeat" not in self.path:
                    server.injected += 1
            if busy or (roll < server.faults and "heartbeat" not in self.path):
                if busy or roll < server.faults / 2:
                    self._error(429, "Backoff", "rate limit exceeded: back off and try again")
                else:
                    self._error(503, "ServiceUnavailable", "503 Service Unavailable")
                return
        with server.lock:
            server.in_flight[key] += 1
        try:
            status, payload, headers = relay(self, server.upstream, data, drop=[HEADER])
        finally:
            with server.lock:
                server.in_flight[key] -= 1
        if checked and self.path.endswith("/pre-flight-checks"):
            reported = max(1000, self.server.limit)  # more than it takes, as Cloud does
            payload = json.dumps({**json.loads(payload), "max_batch_size": reported}).encode()
        answer(self, status, payload, headers)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward


def main() -> None:
    """Serve until interrupted: ``python -m tests.cloudproxy UPSTREAM [PORT]``."""
    proxy = CloudProxy(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    print(proxy.url, flush=True)
    proxy.serve_forever()


if __name__ == "__main__":
    main()
