"""Sign-in for the web page, as notebook servers do it: the startup line
prints a URL carrying a one-time login token; opening it (or giving the API
key) sets an HttpOnly, SameSite=Strict session cookie. The cookie and the
page's CSRF token are HMACs under the API key, so every replica sharing that
key accepts them and no session table is kept.

A request the cookie signs in may change state only when it carries the
page's CSRF token (a header a cross-site form cannot set) and, when the
browser names its Origin, comes from this server's own origin.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from http.cookies import CookieError, SimpleCookie

COOKIE = "ragdb_session"
CSRF_HEADER = "x-csrf-token"
# How long a session cookie lasts.
SESSION_SECONDS = 7 * 24 * 3600
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class SignIn:
    """The login token, session cookies and CSRF tokens of one service."""

    def __init__(self, api_key: str | None, login_token: str | None = None) -> None:
        self.api_key = api_key
        # One use: whoever opens the printed URL first gets the session.
        self._login = login_token if api_key else None

    @staticmethod
    def new_login_token() -> str:
        """A fresh login token for the startup line."""
        return secrets.token_urlsafe(24)

    def redeem(self, token: str) -> str | None:
        """A new session cookie's value for the login token (spent on use) or
        the API key; None for anything else."""
        if self.api_key is None:
            return None
        if self._login is not None and hmac.compare_digest(token.encode(), self._login.encode()):
            self._login = None
            return self._new_session()
        if hmac.compare_digest(token.encode(), self.api_key.encode()):
            return self._new_session()
        return None

    def _new_session(self) -> str:
        nonce = f"{int(time.time())}-{secrets.token_hex(12)}"
        return f"{nonce}.{self._mac('session', nonce)}"

    def session_of(self, cookie_header: str) -> str | None:
        """The valid, unexpired session in a request's Cookie header, if any."""
        if self.api_key is None or not cookie_header:
            return None
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(cookie_header)
        except CookieError:  # a malformed header signs no one in
            return None
        morsel = jar.get(COOKIE)
        if morsel is None:
            return None
        nonce, _, mac = morsel.value.rpartition(".")
        if not nonce or not hmac.compare_digest(mac, self._mac("session", nonce)):
            return None
        issued = nonce.split("-", 1)[0]
        if not issued.isdigit() or time.time() - int(issued) > SESSION_SECONDS:
            return None
        return morsel.value

    def csrf(self, session: str | None) -> str:
        """The CSRF token the page sends with every change (empty without a session)."""
        if session is None:
            return ""
        return self._mac("csrf", session.rpartition(".")[0])

    def _mac(self, purpose: str, value: str) -> str:
        key = (self.api_key or "").encode()
        return hmac.new(key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()[:40]


def cookie_header(value: str, secure: bool = False) -> str:
    """The Set-Cookie header that keeps session ``value`` (empty: signs out)."""
    age = SESSION_SECONDS if value else 0
    flags = "; Secure" if secure else ""
    return f"{COOKIE}={value}; Max-Age={age}; Path=/; HttpOnly; SameSite=Strict{flags}"


def cross_site(method: str, headers: dict[str, str], allowed: frozenset[str]) -> str | None:
    """Why a state-changing request from another site's page is refused (None
    when it is not one): its Origin is neither this server's nor in ``allowed``
    (--cors). Requests without an Origin (curl, SDKs) are not a browser's."""
    origin = headers.get("origin")
    if method not in UNSAFE_METHODS or origin is None:
        return None
    own = {f"http://{headers.get('host', '')}", f"https://{headers.get('host', '')}"}
    if origin in own or origin in allowed:
        return None
    return f"a cross-site request from {origin} is refused (--cors allows an origin)"
