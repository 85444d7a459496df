"""The store's knowledge bases: ``/v1/kbs`` lists and creates them,
``/v1/kbs/{name}`` renames (PATCH) and deletes (DELETE, only with
``--allow-reset``) one. Every other route names the one it works on with ``?kb=``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from ragdb.errors import NotAllowedError
from ragdb.serve.deps import ServiceDep, Worker
from ragdb.serve.schemas import KbBody, errors_doc

router = APIRouter(tags=["knowledge bases"], responses=errors_doc())


@router.get("/v1/kbs")
async def list_kbs(service: ServiceDep) -> dict[str, Any]:
    """Every knowledge base, with its chunks and sources."""
    found = await run_in_threadpool(service.kb.knowledge_bases)
    return {"knowledge_bases": [info.to_dict() for info in found]}


@router.post("/v1/kbs", status_code=201, dependencies=[Worker])
async def create_kb(body: KbBody, service: ServiceDep) -> dict[str, Any]:
    """Make a knowledge base, empty (409 when the name is taken)."""
    # The job's report is the new knowledge base's record, as a dict.
    info = await service.write("create-kb", lambda: service.kb.create_kb(body.name))
    return dict(info)


@router.patch("/v1/kbs/{name}", dependencies=[Worker])
async def rename_kb(name: str, body: KbBody, service: ServiceDep) -> dict[str, Any]:
    """Rename a knowledge base (its chunks stay)."""
    await service.write("rename-kb", lambda: service.kb.rename_kb(name, body.name))
    return {"renamed": name, "name": body.name}


@router.delete("/v1/kbs/{name}", dependencies=[Worker])
async def delete_kb(name: str, service: ServiceDep) -> dict[str, Any]:
    """Delete a knowledge base and its chunks (only with ``--allow-reset``)."""
    if not service.config.allow_reset:
        raise NotAllowedError(
            "deleting a knowledge base over HTTP is off: start the server with --allow-reset"
        )
    chunks = await service.write("delete-kb", lambda: service.kb.delete_kb(name))
    return {"deleted": name, "chunks": chunks}
