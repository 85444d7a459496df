"""The guard in front of every route: Host allow-list (DNS rebinding), API key
or the page's session cookie (see :mod:`ragdb.serve.signin`), cross-site
request refusal, and a bound on every request body. Pure ASGI, so responses
and streams pass through untouched.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.responses import Response

from ragdb.serve.signin import CSRF_HEADER, UNSAFE_METHODS, SignIn, cross_site

# The routes that carry documents: bounded by --max-upload-mb. Every other
# request body is bounded by MAX_REQUEST_BYTES.
UPLOAD_ROUTES = ("/v1/ingest", "/v1/documents")
MAX_REQUEST_BYTES = 2 * 2**20
# What anyone may fetch: the page's shell decides itself whether to show the
# sign-in form, and its static files hold no data.
PUBLIC_PATHS = ("/healthz", "/", "/eval", "/signin", "/favicon.ico")
PUBLIC_PREFIX = "/static/"


class Guard:
    """Host allow-list (DNS rebinding), API key, and a bound on every request
    body, before any route runs. Pure ASGI: responses, streams included, pass
    through untouched, and a body over its bound is refused (413) as soon as
    its length is known, never held whole beyond the bound."""

    def __init__(
        self,
        app: Any,
        hosts: frozenset[str],
        signin: SignIn,
        cors: frozenset[str],
        limit_for: Any,
        reject: Any,
    ) -> None:
        self.app, self.hosts, self.signin, self.cors = app, hosts, signin, cors
        self.api_key = signin.api_key
        self.limit_for, self.reject = limit_for, reject

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope["path"]
        refusal = self._refusal(scope, path, headers) or self._nul(path, scope["query_string"])
        if refusal is None:
            receive, refusal = await self._bounded(path, headers, receive)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Any, path: str, headers: dict[str, str]) -> Response | None:
        host = headers.get("host", "").rsplit(":", 1)[0].strip("[]").lower()
        if host not in self.hosts:
            message = f"host {host!r} is not served here (--allowed-host adds one)"
            return self.reject(path, 403, message, "forbidden")
        method = scope["method"]
        why = cross_site(method, headers, self.cors)
        if why is not None:
            return self.reject(path, 403, why, "cross_site")
        # The page's routes read who signed in from here.
        state = scope.setdefault("state", {})
        state["session"] = session = self.signin.session_of(headers.get("cookie", ""))
        state["signed_in"] = self.api_key is None or session is not None
        public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIX)
        if public or self.api_key is None or self._key_given(headers):
            return None
        if session is not None:
            if method in UNSAFE_METHODS and not hmac.compare_digest(
                headers.get(CSRF_HEADER, "").encode(), self.signin.csrf(session).encode()
            ):
                message = f"a change from the page needs its CSRF token ({CSRF_HEADER})"
                return self.reject(path, 403, message, "csrf")
            return None
        message = "missing or wrong API key (Authorization: Bearer KEY, or X-API-Key)"
        return self.reject(path, 401, message, "invalid_api_key")

    def _key_given(self, headers: dict[str, str]) -> bool:
        given = headers.get("x-api-key", "")
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return hmac.compare_digest(given.encode(), (self.api_key or "").encode())

    def _nul(self, path: str, query: bytes) -> Response | None:
        """A NUL anywhere in the URL names no file, source or folder: refuse it
        here, once, rather than in every route that takes a path or a name."""
        if "\x00" in path or b"\x00" in unquote_to_bytes(query.replace(b"+", b" ")):
            return self.reject(path, 400, "the URL holds a NUL character", "bad_request")
        return None

    async def _bounded(
        self, path: str, headers: dict[str, str], receive: Any
    ) -> tuple[Any, Response | None]:
        """``receive`` bounded to the route's limit, or the 413 that refuses it."""
        limit, name = self.limit_for(path)
        too_large = self.reject(path, 413, f"the request body is over {name}", "too_large")
        if "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                return receive, self.reject(path, 400, "a bad Content-Length", "bad_request")
            return receive, too_large if length > limit else None
        if "transfer-encoding" not in headers:
            return receive, None
        # A chunked body of unknown length: read it here, up to the limit, then
        # hand it on (bounded memory whatever the client sends).
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return receive, None
            body += message.get("body", b"")
            if len(body) > limit:
                return receive, too_large
            if not message.get("more_body", False):
                break
        replay = [{"type": "http.request", "body": bytes(body), "more_body": False}]

        async def replayed() -> Any:
            return replay.pop() if replay else await receive()

        return replayed, None
