"""The ASGI application of ``ragdb serve``, assembled: the guard, the error
handlers, and one router per resource (:mod:`ragdb.serve.routes`). It offers
two APIs over one :class:`~ragdb.KnowledgeBase`:

- ragdb's own, JSON under ``/v1`` (status, sources, ingest, jobs, watches,
  search, ask), errors as ``application/problem+json`` carrying ragdb's error
  type and the CLI's exit code;
- an OpenAI-compatible chat model (``/v1/models``, ``/v1/chat/completions``,
  both also without ``/v1``);
- a web page at ``/`` (:mod:`ragdb.serve.routes.page`), a client of the first.

Its OpenAPI schema is at ``/openapi.json``, behind the same token as the rest.
Safe by default: loopback, a token, a Host allow-list, no CORS unless asked,
server-side paths only under ``--allow-path`` roots, every request bounded,
and Chroma's own API never exposed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

from ragdb.serve import errors
from ragdb.serve.config import LOOPBACK, ServeConfig
from ragdb.serve.deps import Service
from ragdb.serve.guard import MAX_REQUEST_BYTES, UPLOAD_ROUTES, Guard
from ragdb.serve.routes import health, ingest, jobs, kbs, openai, page, search, sources, watches
from ragdb.version import __version__

if TYPE_CHECKING:
    from ragdb.knowledge_base import KnowledgeBase


def create_app(kb: KnowledgeBase, config: ServeConfig) -> FastAPI:
    """The ASGI application serving ``kb``."""
    service = Service.start(kb, config)
    app = FastAPI(
        title="ragdb",
        version=__version__,
        summary="A local knowledge base: ragdb's API and an OpenAI-compatible chat model.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=service.lifespan,
    )
    app.state.service = service
    app.state.jobs = service.jobs

    def limit_for(path: str) -> tuple[int, str]:
        """A route's bound on its request body, and what the 413 calls it."""
        if path in UPLOAD_ROUTES:
            return config.max_upload_bytes, f"--max-upload-mb {config.max_upload_bytes // 2**20}"
        return MAX_REQUEST_BYTES, f"its limit of {MAX_REQUEST_BYTES // 2**20} MB"

    app.add_middleware(
        Guard,
        hosts=frozenset(h.lower() for h in (*LOOPBACK, config.host, *config.allowed_hosts)),
        signin=service.signin,
        cors=frozenset(config.cors),
        limit_for=limit_for,
        reject=errors.reject,
    )
    if config.cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors),
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["authorization", "x-api-key", "content-type"],
        )
    if config.access_log:
        from ragdb.serve.access_log import AccessLog

        app.add_middleware(AccessLog)
    errors.install(app)
    for module in (health, sources, ingest, jobs, watches, search, kbs):
        app.include_router(module.router)
    # The chat model at both the OpenAI SDK's base URLs (with and without /v1).
    app.include_router(openai.router, prefix="/v1")
    app.include_router(openai.router, include_in_schema=False)
    # The web page: a client of the routes above, signed in by a cookie.
    from starlette.staticfiles import StaticFiles

    app.include_router(page.router)
    app.mount("/static/vendor", StaticFiles(directory=page.VENDOR), name="vendor")
    app.mount("/static", StaticFiles(directory=page.STATIC), name="static")
    # MCP's read tools for agents, at /mcp (see ragdb.mcp_server).
    from ragdb.mcp_server import mount

    service.mcp = mount(app, kb, write=config.mcp_write)
    return app
