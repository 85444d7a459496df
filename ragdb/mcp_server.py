"""The knowledge base as an MCP server, for agents (desktop chat apps, coding
assistants): ``ragdb mcp`` speaks MCP over stdio, through the official
``mcp`` SDK. Its tools only parse, call the :class:`~ragdb.api.KnowledgeBaseAPI`
(the running ``ragdb serve`` of the store when there is one, else in-process,
as every CLI command does) and format; ragdb's errors come back as tool
errors carrying ragdb's one-line message, never a traceback. The write tools
(``ingest_text``, ``remove``) exist only when asked for (``--write``).

``ragdb serve`` offers the read tools too, over streamable HTTP at ``/mcp``,
behind its token and Host checks (see :func:`mount`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ragdb.errors import RagdbError

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from ragdb.api import KnowledgeBaseAPI

F = TypeVar("F", bound=Callable[..., Any])

INSTRUCTIONS = (
    "A local knowledge base of the user's own documents (notes, papers, mail, web pages). "
    "Call `search` to find passages about a question, with their sources and locations; "
    "call `ask` for an answer written from those passages with numbered citations. Use "
    "`list_sources` to see what it holds and `read_source` to read one source in order. "
    "It may hold several knowledge bases (`list_knowledge_bases`): search one, several or "
    "all ('*') of them by name."
)


def _tool_errors(fn: F) -> F:
    """A tool run off the event loop (the knowledge base's calls block: an
    encoder, a language model), ragdb's errors as MCP tool errors: the
    message, for the model to read."""
    import anyio.to_thread
    from mcp.server.mcpserver.exceptions import ToolError

    @functools.wraps(fn)
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))
        except RagdbError as exc:
            raise ToolError(str(exc)) from None

    return wrapped  # type: ignore[return-value]


def build_server(kb: KnowledgeBaseAPI, write: bool = False) -> MCPServer:
    """The MCP server over ``kb``; ``write`` adds the tools that change it."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.resources.templates import ResourceSecurity

    from ragdb.version import __version__

    # Warnings only on stderr: a refused call is the model's news, not the user's.
    server: MCPServer = MCPServer(
        "ragdb", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING"
    )

    @server.tool()
    @_tool_errors
    def search(
        question: str,
        k: int = 5,
        mode: str = "hybrid",
        where: list[str] | None = None,
        knowledge_bases: list[str] | None = None,
    ) -> dict[str, Any]:
        """Find the passages of the knowledge base nearest a question (no answer
        written). Returns chunks best first, each with its source, location
        (page, heading, slide...), similarity score, knowledge base and text.
        ``mode``: hybrid (default), dense or bm25; ``where``: filters such as
        "type=pdf", "year>=2020", "source~notes/**", "tags=ml";
        ``knowledge_bases``: names to search (["*"]: all; default: the server's own)."""
        found = kb.ask(
            question,
            k,
            mode=mode,
            retrieve_only=True,
            where=where or (),
            kbs=knowledge_bases or (),
        )
        return {"chunks": [_chunk(h.to_dict(), h.location) for h in found.hits]}

    @server.tool()
    @_tool_errors
    def ask(
        question: str,
        k: int = 4,
        mode: str = "hybrid",
        where: list[str] | None = None,
        knowledge_bases: list[str] | None = None,
    ) -> dict[str, Any]:
        """Answer a question from the knowledge base: the answer cites passages
        as [1], [2], which are returned with their sources. Says when the
        knowledge base holds too little to answer. ``where`` and
        ``knowledge_bases`` as for search."""
        answer = kb.ask(question, k, mode=mode, where=where or (), kbs=knowledge_bases or ())
        return {
            "answer": answer.answer,
            "chunks": [_chunk(h.to_dict(), h.location) for h in answer.hits],
            "truncated": answer.truncated,
        }

    @server.tool()
    @_tool_errors
    def list_sources(
        prefix: str = "", offset: int = 0, limit: int = 100, knowledge_base: str | None = None
    ) -> dict[str, Any]:
        """The sources the knowledge base holds (files, web pages, records),
        those whose names start with ``prefix``, a page at a time."""
        found = [s for s in _in(kb, knowledge_base).sources() if s.source.startswith(prefix)]
        page = found[max(offset, 0) : max(offset, 0) + max(1, min(limit, 1000))]
        return {
            "total": len(found),
            "sources": [
                {"source": s.source, "title": s.title, "kind": s.kind, "chunks": s.n_chunks}
                for s in page
            ],
        }

    @server.tool()
    @_tool_errors
    def read_source(
        source: str, offset: int = 0, limit: int = 20, knowledge_base: str | None = None
    ) -> dict[str, Any]:
        """One source's text, chunk by chunk in order (a page of them), with
        each chunk's location: to read what a search found in its context
        (``knowledge_base``: the one a search hit named)."""
        chunks = _in(kb, knowledge_base).chunks(source)
        page = chunks[max(offset, 0) : max(offset, 0) + max(1, min(limit, 200))]
        return {
            "source": source,
            "total_chunks": len(chunks),
            "chunks": [
                {"index": c.chunk_index, "text": c.text, "page": c.page, "heading": c.heading,
                 "section": c.section}
                for c in page
            ],
        }  # fmt: skip

    @server.tool()
    @_tool_errors
    def list_knowledge_bases() -> dict[str, Any]:
        """The knowledge bases this store holds, with their chunks and sources:
        names to pass to search, ask, list_sources and read_source."""
        return {"knowledge_bases": [info.to_dict() for info in kb.knowledge_bases()]}

    @server.resource(
        "ragdb://sources/{name}",
        name="source",
        description="A stored source's whole text, its chunks in order (name URL-encoded).",
        mime_type="text/plain",
        # A source's name is looked up among the stored ones, never opened as a
        # path: an absolute file path (as sources are named) is no escape.
        security=ResourceSecurity(exempt_params={"name"}),
    )
    @_tool_errors
    def source_text(name: str) -> str:
        return "\n\n".join(c.text for c in kb.chunks(name))

    if write:
        _write_tools(server, kb)
    return server


def _in(kb: KnowledgeBaseAPI, name: str | None) -> KnowledgeBaseAPI:
    """Knowledge base ``name`` of ``kb``'s store (``kb`` itself when None)."""
    return kb.using(name) if name else kb


def _write_tools(server: MCPServer, kb: KnowledgeBaseAPI) -> None:
    @server.tool()
    @_tool_errors
    def ingest_text(name: str, text: str) -> dict[str, Any]:
        """Store a text in the knowledge base under ``name`` (a new version
        replaces an earlier text of that name; files are never overwritten)."""
        from ragdb.ingest.plan import plan_text

        return kb.ingest_plan(plan_text(name, text)).to_dict()

    @server.tool()
    @_tool_errors
    def remove(sources: list[str]) -> dict[str, Any]:
        """Remove the named sources (exact names, as list_sources gives them)."""
        return kb.remove(sources).to_dict()


def mount(app: Any, kb: KnowledgeBaseAPI, write: bool = False) -> Any:
    """Serve the read tools (and with ``write`` the write tools) over ``kb``
    at ``/mcp`` of the Starlette/FastAPI ``app`` (stateless, JSON answers);
    returns the session manager, which the app's lifespan must run. The app's
    own guard checks the token and Host."""
    from mcp.server.transport_security import TransportSecuritySettings
    from starlette.routing import Route

    server = build_server(kb, write)
    sub = server.streamable_http_app(
        streamable_http_path="/mcp",
        stateless_http=True,
        json_response=True,
        # Host and Origin are the service's guard's to check, by its allow-list.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    for route in sub.routes:
        if isinstance(route, Route) and route.path == "/mcp":
            app.router.routes.append(route)
    return server.session_manager


def _chunk(hit: dict[str, Any], location: str) -> dict[str, Any]:
    return {
        "rank": hit["rank"],
        "source": hit["source"],
        "location": location,
        "score": round(float(hit["score"]), 4),
        "knowledge_base": hit.get("kb"),
        "text": hit["text"],
    }
