"""--chroma-header end to end: a Chroma server behind a proxy that wants a token."""

from __future__ import annotations

import http.server
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from .conftest import Ragdb, clear_server
from .relay import answer, read_body, relay
from .site import running


class TokenProxy(http.server.ThreadingHTTPServer):
    """Forwards to a Chroma server only requests that carry X-Token: sesame
    (what an authenticating reverse proxy does); counts the refusals."""

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = urlparse(upstream)
        self.refused = 0
        # Searches answered 429 before one goes through (-1: all of them).
        self.limit_next = 0
        self.limited = 0

    def throttle(self) -> bool:
        """Whether to answer this search 429, as a rate-limited server does."""
        if self.limit_next == 0:
            return False
        self.limit_next -= 1 if self.limit_next > 0 else 0
        self.limited += 1
        return True


class _Handler(http.server.BaseHTTPRequestHandler):
    server: TokenProxy

    def log_message(self, *args: object) -> None:
        pass

    def _forward(self) -> None:
        if self.path.endswith("/query") and self.server.throttle():
            self._refuse_as_rate_limited()
            return
        if self.headers.get("X-Token") != "sesame":
            self.server.refused += 1
            answer(self, 401, b'{"error": "missing or wrong token"}')
            return
        answer(self, *relay(self, self.server.upstream, read_body(self), drop=["x-token"]))

    def _refuse_as_rate_limited(self) -> None:
        # Alternately what chromadb knows (RateLimitError) and what it does not
        # (Chroma Cloud's Backoff, raised by the client as a plain Exception).
        known = self.server.limited % 2
        kind = b"RateLimitError" if known else b"Backoff"
        body = b'{"error": "' + kind + b'", "message": "quota exceeded, slow down"}'
        answer(self, 429, body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward


@pytest.fixture
def proxy(chroma_server: str) -> Iterator[TokenProxy]:
    clear_server(chroma_server)
    server = TokenProxy(chroma_server)
    with running(server):
        yield server


def test_chroma_header_reaches_the_server(proxy: TokenProxy, store: Path, facts_dir: Path) -> None:
    url = f"http://127.0.0.1:{proxy.server_address[1]}"
    bare = Ragdb(store, chroma_url=url)
    err = bare("ingest", str(facts_dir), code=1).stderr.strip()
    assert len(err.splitlines()) == 1 and "cannot reach the Chroma server" in err
    assert proxy.refused > 0
    with_token = Ragdb(store, extra=["--chroma-header", "X-Token: sesame"], chroma_url=url)
    assert with_token.json("ingest", str(facts_dir))["added"] == 4
    out = with_token.json("query", "octopus", "--retrieve-only")
    assert out["chunks"][0]["source"].endswith("fact3.txt")
    # The same header from the environment.
    refused = proxy.refused
    status = bare.json("status", env={"RAGDB_CHROMA_HEADERS": "X-Token: sesame"})
    assert status["chunks"] == 4 and proxy.refused == refused


def test_a_rate_limited_server_is_asked_again_then_given_up_on(
    proxy: TokenProxy, store: Path, facts_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ragdb.store import session

    url = f"http://127.0.0.1:{proxy.server_address[1]}"
    kb = Ragdb(store, extra=["--chroma-header", "X-Token: sesame"], chroma_url=url)
    kb("ingest", str(facts_dir))
    proxy.limit_next = 4  # 429s of both kinds, then an answer
    hits = kb.json("query", "octopus", "--retrieve-only", "--mode", "dense")["chunks"]
    assert hits[0]["source"].endswith("fact3.txt") and proxy.limited == 4
    monkeypatch.setattr(session, "RETRY_SECONDS", 1.0)
    proxy.limit_next = -1  # never an answer
    err = kb("query", "octopus", "--retrieve-only", "--mode", "dense", code=4).stderr.strip()
    assert len(err.splitlines()) == 1 and "kept refusing ragdb as rate limited for 1s" in err
