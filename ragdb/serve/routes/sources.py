"""What the knowledge base holds, and removing from it: ``/v1/sources``,
``/v1/remove`` and ``/v1/reset``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from ragdb.errors import NotAllowedError, SourceNotFoundError
from ragdb.serve.deps import KbDep, Service, ServiceDep, Worker
from ragdb.serve.schemas import RemoveBody, errors_doc

if TYPE_CHECKING:
    from ragdb.knowledge_base import KnowledgeBase

router = APIRouter(tags=["sources"], responses=errors_doc())


@router.get("/v1/sources")
async def sources(
    kb: KbDep,
    prefix: str = "",
    offset: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """One page of the sources whose names start with ``prefix``."""
    found = [s for s in await run_in_threadpool(kb.sources) if s.source.startswith(prefix)]
    page = found[offset : offset + limit]
    return {"sources": [s.to_dict() for s in page], "total": len(found), "offset": offset}


@router.get("/v1/sources/{source:path}")
async def source(source: str, kb: KbDep) -> dict[str, Any]:
    """A source's chunks, in order."""
    chunks = await run_in_threadpool(kb.chunks, source)
    return {"source": source, "chunks": [c.to_dict() for c in chunks]}


@router.delete("/v1/sources/{source:path}", dependencies=[Worker])
async def delete_source(source: str, service: ServiceDep, kb: KbDep) -> dict[str, Any]:
    """Remove one source (404 when it is not stored)."""
    return await remove_exactly(service, kb, [source])


@router.post("/v1/remove", dependencies=[Worker])
async def remove(body: RemoveBody, service: ServiceDep, kb: KbDep) -> dict[str, Any]:
    """Remove the sources of exactly these names."""
    return await remove_exactly(service, kb, body.sources)


@router.post("/v1/reset", dependencies=[Worker])
async def reset(service: ServiceDep, kb: KbDep) -> dict[str, Any]:
    """Delete every chunk (only with ``--allow-reset``)."""
    if not service.config.allow_reset:
        raise NotAllowedError("reset over HTTP is off: start the server with --allow-reset")
    report = await service.write("reset", lambda: {"chunks": kb.reset()})
    return {"removed_chunks": report["chunks"]}


async def remove_exactly(service: Service, kb: KnowledgeBase, names: list[str]) -> dict[str, Any]:
    """Remove the sources of exactly these names (a 404 names the first
    unknown one), never a path's, directory's or pattern's matches."""

    def work() -> Any:
        known = {s.source for s in kb.sources()}
        missing = [n for n in names if n not in known]
        if missing:
            raise SourceNotFoundError(f"not in the knowledge base: {missing[0]}")
        return kb.remove(names)

    report = await service.write("remove", work)
    return {
        "removed_sources": len(report["removed"]),
        "removed_chunks": report["chunks_removed"],
        "removed": report["removed"],
    }
