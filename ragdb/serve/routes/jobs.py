"""The job queue as seen from outside: ``/v1/jobs``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from ragdb.serve.deps import ServiceDep, Worker
from ragdb.serve.schemas import EVENTS, errors_doc
from ragdb.serve.sse import sse, sse_response

router = APIRouter(tags=["jobs"], responses=errors_doc())


@router.get("/v1/jobs")
async def list_jobs(service: ServiceDep) -> dict[str, Any]:
    """Every job kept, oldest first."""
    return {"jobs": [j.to_dict() for j in service.jobs.all()]}


@router.get("/v1/jobs/{job_id}")
async def get_job(job_id: str, service: ServiceDep) -> dict[str, Any]:
    """One job: its state, counters, per-source errors and report."""
    return service.job(job_id).to_dict()


@router.delete("/v1/jobs/{job_id}", dependencies=[Worker])
async def cancel_job(job_id: str, service: ServiceDep) -> dict[str, Any]:
    """Cancel a job (a running one stops between batches, or is abandoned)."""
    job = service.job(job_id)
    service.jobs.cancel(job_id)
    return job.to_dict()


@router.get("/v1/jobs/{job_id}/events", responses=EVENTS)
async def job_events(job_id: str, service: ServiceDep) -> Response:
    """The job's events as SSE: progress, source_error, done."""
    job = service.job(job_id)
    return sse_response(sse(e) for e in job.events())
