"""Folder sync: ``/v1/watches`` (folders under ``--allow-path`` roots)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from ragdb.errors import NotFoundError
from ragdb.serve.deps import ServiceDep, Worker
from ragdb.serve.schemas import WatchBody, errors_doc

router = APIRouter(tags=["watches"], responses=errors_doc())


@router.get("/v1/watches")
async def watches(service: ServiceDep) -> dict[str, Any]:
    """Every watch: its folder, reconciles, last job and last error."""
    return {"watches": [w.to_dict() for w in service.watcher.all()]}


@router.post("/v1/watches", status_code=201, dependencies=[Worker])
async def add_watch(body: WatchBody, service: ServiceDep) -> Response:
    """Watch a folder: reconcile now, then on every change."""
    path = service.allowed(body.path)
    watch = await run_in_threadpool(service.watcher.add, Path(path), bool(body.poll))
    return JSONResponse(watch.to_dict(), status_code=201)


@router.delete("/v1/watches", dependencies=[Worker])
async def remove_watch(path: str, service: ServiceDep) -> dict[str, Any]:
    """Stop watching a folder (its sources stay)."""
    watch = await run_in_threadpool(service.watcher.remove, Path(path))
    if watch is None:
        raise NotFoundError(f"{path} is not watched")
    return watch.to_dict()
