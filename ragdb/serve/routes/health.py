"""``GET /healthz`` (no token needed) and ``GET /v1/status``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from ragdb.serve.cpu import cpu_seconds_by_thread
from ragdb.serve.deps import KbDep, ServiceDep
from ragdb.serve.schemas import errors_doc

router = APIRouter(tags=["status"], responses=errors_doc())


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Whether the server answers (the only route that needs no token)."""
    return {"status": "ok"}


@router.get("/v1/status")
async def status(service: ServiceDep, kb: KbDep) -> dict[str, Any]:
    """What `ragdb status --json` says, and the service's own state."""
    jobs, batcher = service.jobs, service.batcher
    return {
        **(await run_in_threadpool(kb.status)).to_dict(),
        "service": {
            "role": service.config.role,
            "queue": jobs.pending(),
            "running": [j.id for j in jobs.all() if j.state == "running"],
            "watches": [w.to_dict() for w in service.watcher.all()],
            "retrieval_batches": batcher.batches,
            "retrieval_queries": batcher.queries,
            "latency_ms": list(batcher.latencies),
            "chunks_kept": await run_in_threadpool(kb.kept_chunks),
            "cpu_seconds_by_thread": cpu_seconds_by_thread(),
        },
    }
