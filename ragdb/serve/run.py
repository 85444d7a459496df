"""Running the service: bind the port first (a busy port is one line, not a
server that announces itself and dies), refuse a store another live server
serves, warm the model, say where the server is, and serve until SIGTERM.
"""

from __future__ import annotations

import dataclasses
import errno
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragdb.errors import StoreError
from ragdb.serve.app import create_app
from ragdb.serve.config import ServeConfig
from ragdb.serve.signin import SignIn

if TYPE_CHECKING:
    from ragdb.knowledge_base import KnowledgeBase


def bind(host: str, port: int) -> Any:
    """The listening socket, bound before anything is printed: a busy port is a
    one-line error, not a server that announces itself and dies."""
    import socket

    from ragdb.errors import AddressInUseError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUseError(
                f"port {port} on {host} is in use: stop what listens there, or choose "
                "another with --port"
            ) from None
        raise AddressInUseError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def check_not_served(kb: KnowledgeBase) -> None:
    """Refuse to serve a local store that another live ``ragdb serve`` serves
    (its serve.json would be overwritten, and its CLI users sent here)."""
    from ragdb.remote import running_server

    if kb.settings.chroma_url is not None:
        return
    other = running_server(kb.settings.store.resolve())
    if other is not None:
        url, pid = other
        raise StoreError(
            f"another ragdb serve (pid {pid}) already serves this store at {url}: "
            "stop it first, or use that one"
        )


def serve(kb: KnowledgeBase, config: ServeConfig, token_file: Path | None) -> None:
    """Load the model, then serve until SIGINT/SIGTERM (uvicorn stops cleanly:
    requests in flight finish, and every write is a whole session)."""
    import uvicorn

    kb.store()
    check_not_served(kb)
    sock = bind(config.host, config.port)
    kb.embedder.load()  # warm before the first request, not during it
    url = f"http://{config.host if ':' not in config.host else f'[{config.host}]'}:{config.port}"
    where = f"in {token_file}" if token_file else "given (--api-key or --api-key-file)"
    lines = [f"ragdb: serving {kb.store().location} at {url}"]
    if config.role != "all":
        writes = f"; writes go to {config.ingest_url}" if config.ingest_url else ""
        lines.append(f"ragdb: role {config.role}{writes}")
    if config.api_key is None:
        lines.append("ragdb: no API key needed (--no-auth, loopback only)")
    else:
        lines.append(f"ragdb: API key {where}")
    lines.append(
        f"ragdb: OpenAI-compatible settings: base URL {url}/v1, model ragdb, API key "
        + ("any" if config.api_key is None else f"$(cat {token_file})" if token_file else "yours")
    )
    if config.api_key is not None:
        config = dataclasses.replace(config, login_token=SignIn.new_login_token())
        lines.append(f"ragdb: web page {url}/?token={config.login_token} (one sign-in)")
    else:
        lines.append(f"ragdb: web page {url}/")
    print("\n".join(lines), file=sys.stderr, flush=True)
    serve_file = None
    if kb.settings.chroma_url is None:
        from ragdb.remote import write_serve_file

        # The store's CLI users find this server here (removed on the way out).
        reach = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(config.host)
        local_url = f"http://{reach}:{config.port}" if reach else url
        serve_file = write_serve_file(
            kb.settings.store.resolve(),
            local_url,
            token_file,
            needs_key=config.api_key is not None and token_file is None,
        )
    config = dataclasses.replace(config, serve_file=serve_file)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(kb, config),
            log_level="warning",
            access_log=False,
            # Open streams (a job's events, an answer) get this long at SIGTERM.
            timeout_graceful_shutdown=5,
        )
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        if serve_file is not None:
            serve_file.unlink(missing_ok=True)
