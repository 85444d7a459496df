"""How ``ragdb serve`` listens and whom it lets in: :class:`ServeConfig`, the
bind policy (loopback by default, never beyond it without a token) and the
generated token kept beside the store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from ragdb.errors import UsageError

if TYPE_CHECKING:
    from ragdb.knowledge_base import KnowledgeBase

LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    """How ``ragdb serve`` listens and whom it lets in."""

    host: str = "127.0.0.1"
    port: int = 7243
    api_key: str | None = None  # None: no token needed (loopback only)
    allowed_hosts: tuple[str, ...] = ()
    cors: tuple[str, ...] = ()
    allow_paths: tuple[Path, ...] = ()
    max_upload_bytes: int = 100 * 2**20
    allow_reset: bool = False
    watch: tuple[Path, ...] = ()
    poll: bool = False
    # How a chat answer's sources are sent (ragdb.serve.citations.FORMATS).
    sources_format: str = "annotations"
    # A line per request on stderr: method, path, status, duration.
    access_log: bool = False
    # /mcp offers the write tools (ingest_text, remove) too.
    mcp_write: bool = False
    # In a service tier: "query" (reads only), "ingest" (the one worker) or "all".
    role: str = "all"
    # The ingest worker's URL, named by a query replica's refusal of a write.
    ingest_url: str | None = None
    # The web page's one-time login token, printed in the startup line's URL.
    login_token: str | None = None
    # Written by `serve` for the store's CLI users; removed at shutdown.
    serve_file: Path | None = None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback name or address."""
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_role(role: str, ingest_url: str | None, watch: bool, mcp_write: bool) -> None:
    """Refuse what a replica of ``role`` cannot do."""
    if role != "query" and ingest_url:
        raise UsageError("--ingest-url is for --role query: it names the worker writes go to")
    if role == "query" and (watch or mcp_write):
        what = "--watch" if watch else "--mcp-write"
        raise UsageError(f"{what} needs the ingest worker: --role ingest (or all), not query")


def check_bind(host: str, api_key: str | None, no_auth: bool) -> None:
    """Refuse to listen beyond loopback without a token."""
    if no_auth and not is_loopback(host):
        raise UsageError(f"--no-auth is allowed only on a loopback address, not {host}")


def token_path(kb: KnowledgeBase) -> Path:
    """Where the generated token is kept: beside a local store, or for a Chroma
    server in the user's configuration directory."""
    settings = kb.settings
    if settings.chroma_url is None:
        return settings.store.resolve() / "serve.token"
    from platformdirs import user_config_path

    key = hashlib.sha256(str(settings.chroma_url).encode()).hexdigest()[:16]
    return user_config_path("ragdb", appauthor=False) / f"serve-{key}.token"


def load_or_make_token(path: Path) -> str:
    """The token kept at ``path``, made (mode 0600) if there is none."""
    try:
        token = path.read_text().strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    token = "rdb-" + secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def given_key(api_key: str | None, api_key_file: str | None) -> str | None:
    """The key given by ``--api-key`` or read from ``--api-key-file``, if any."""
    if api_key and api_key_file:
        raise UsageError("give --api-key or --api-key-file, not both")
    if not api_key_file:
        return api_key
    try:
        key = Path(api_key_file).read_text().strip()
    except OSError as exc:
        raise UsageError(f"cannot read --api-key-file {api_key_file}: {exc.strerror}") from None
    if not key:
        raise UsageError(f"--api-key-file {api_key_file} is empty")
    return key


def resolve_key(
    kb: KnowledgeBase, host: str, no_auth: bool, role: str = "all"
) -> tuple[str | None, Path | None]:
    """The API key the service wants (None with ``--no-auth``) and the file a
    generated one is kept in (None when the key was given). Replicas of a tier
    (``role`` other than "all") share one given key: each would generate its own."""
    key = given_key(kb.settings.api_key, kb.settings.api_key_file)
    if no_auth and key:
        raise UsageError("give --api-key or --no-auth, not both")
    check_bind(host, key, no_auth)
    if no_auth:
        return None, None
    if key is not None:
        return key, None
    if not is_loopback(host):
        raise UsageError(
            f"listening on {host} needs an API key: give --api-key KEY (or RAGDB_API_KEY)"
        )
    if role != "all":
        raise UsageError(
            f"--role {role} is one replica of several: give them all one key with "
            "--api-key-file FILE, --api-key KEY or RAGDB_API_KEY"
        )
    kb.store()  # the token lives beside the store: it must exist first
    path = token_path(kb)
    return load_or_make_token(path), path
