"""What the suite's small HTTP proxies share (tests/cloudproxy.py, the token and
stopping proxies of the tests, scripts/replicas): relaying a request to the
server behind them and answering it; and a launcher for a ragdb process whose
wall clock is off (an injected clock)."""

from __future__ import annotations

import http.client
import http.server
from collections.abc import Sequence
from urllib.parse import ParseResult

# `python -c SKEWED SKEW ARGS...`: `ragdb ARGS...` with time.time() SKEW seconds off.
SKEWED = """
import sys, time
_real, _skew = time.time, float(sys.argv[1])
time.time = lambda: _real() + _skew
from ragdb.cli import main
sys.argv = ["ragdb", *sys.argv[2:]]
main()
"""


# Headers a relay sets itself rather than passing on.
_HOP = ("transfer-encoding", "connection", "content-length")


def relay(
    handler: http.server.BaseHTTPRequestHandler,
    upstream: ParseResult,
    data: bytes | None,
    drop: Sequence[str] = (),
) -> tuple[int, bytes, list[tuple[str, str]]]:
    """Send the request ``handler`` holds (its body ``data``) to ``upstream``,
    leaving out the Host header and those named in ``drop``; the answer's
    status, body and headers."""
    conn = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port, timeout=120)
    skip = {"host", *(d.lower() for d in drop)}
    try:
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in skip}
        conn.request(handler.command, handler.path, body=data or None, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.getheaders()
    finally:
        conn.close()


def answer(
    handler: http.server.BaseHTTPRequestHandler,
    status: int,
    payload: bytes,
    headers: Sequence[tuple[str, str]] = (("Content-Type", "application/json"),),
) -> None:
    """Answer the request ``handler`` holds."""
    handler.send_response(status)
    for key, value in headers:
        if key.lower() not in _HOP:
            handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


def read_body(handler: http.server.BaseHTTPRequestHandler) -> bytes:
    """The request's body (empty when it has none)."""
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""
