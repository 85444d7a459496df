"""A small web site on a free loopback port, for tests that fetch and crawl:
the standard library's HTTP server, serving pages the test sets (and changes)
with ETags and conditional requests as real servers do, plus the failures a
crawler meets (5xx, a stall, an endless page, a redirect loop)."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import socketserver
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Site:
    """What the server serves (path -> (content type, body)), how it misbehaves,
    and what it was asked (path and If-None-Match of each request)."""

    pages: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)  # path -> forced status
    redirects: dict[str, str] = field(default_factory=dict)
    stall: dict[str, float] = field(default_factory=dict)  # path -> seconds before answering
    endless: set[str] = field(default_factory=set)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    url: str = ""

    def html(self, path: str, title: str, body: str) -> None:
        """Serve an HTML page at ``path`` with navigation and a footer around ``body``."""
        page = (
            f"<!doctype html><html><head><title>{title}</title></head><body>"
            '<nav><a href="/">Home</a> | <a href="/about.html">About the harbour club</a>'
            " | <a href='/contact.html'>Contact us</a></nav>"
            f"<main><article><h1>{title}</h1>{body}</article></main>"
            "<footer>Copyright 2026 Harbour Club. All rights reserved. Privacy policy."
            "</footer></body></html>"
        )
        self.pages[path] = ("text/html; charset=utf-8", page.encode())

    def asked(self, path: str) -> list[str | None]:
        """The If-None-Match of each request for ``path``, in order."""
        return [etag for p, etag in self.requests if p == path]


def _handler(site: Site) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            site.requests.append((path, self.headers.get("If-None-Match")))
            time.sleep(site.stall.get(path, 0))
            if path in site.redirects:
                return self._send(301, b"", {"Location": site.redirects[path]})
            if path in site.endless:
                return self._endless()
            if path in site.status:
                return self._send(site.status[path], b"failing", {})
            if path not in site.pages:
                return self._send(404, b"not found", {})
            ctype, body = site.pages[path]
            etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
            if self.headers.get("If-None-Match") == etag:
                return self._send(304, b"", {"ETag": etag})
            self._send(200, body, {"Content-Type": ctype, "ETag": etag})

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):  # a client that gave up
                self.wfile.write(body)

        def _endless(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            block = b"<p>" + b"more " * 2000 + b"</p>"
            with contextlib.suppress(OSError):  # the client hangs up
                for _ in range(100_000):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hung up on a kept-alive connection is no news


@contextlib.contextmanager
def running(server: socketserver.BaseServer) -> Iterator[None]:
    """``server`` serving in a thread until the block ends, then closed."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def serve_site(site: Site) -> Iterator[Site]:
    """``site`` served on a free loopback port (its ``url`` set) until the block ends."""
    server = _Server(("127.0.0.1", 0), _handler(site))
    site.url = f"http://127.0.0.1:{server.server_address[1]}"
    with running(server):
        yield site
