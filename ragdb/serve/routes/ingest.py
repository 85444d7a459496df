"""Getting documents in, as jobs: ``POST /v1/ingest`` (texts, server-side
paths under ``--allow-path``, or a plan a CLI made where its files are) and
``POST /v1/documents`` (a multipart upload). Both bodies are bounded by
``--max-upload-mb`` in the guard, before they are read."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from ragdb.errors import UnsupportedFormatError, UsageError
from ragdb.ingest.extract import unsupported_format
from ragdb.ingest.plan import IngestPlan, plan_paths, plan_text
from ragdb.ingest.web import WebOptions, check_url, is_url
from ragdb.serve.deps import KbDep, Service, ServiceDep, Worker
from ragdb.serve.errors import Problem
from ragdb.serve.jobs import Job
from ragdb.serve.schemas import JOB_OR_REPORT, IngestBody, errors_doc

router = APIRouter(tags=["ingest"], responses=errors_doc())


@router.post("/v1/ingest", status_code=202, responses=JOB_OR_REPORT, dependencies=[Worker])
async def ingest(body: IngestBody, request: Request, service: ServiceDep, kb: KbDep) -> Response:
    """Queue an ingest; 202 with the job, or with ``?wait=true`` its report."""
    # Plans are made before queuing, so that bad input is this request's 400,
    # and off the event loop (decoding uploads, walking directories).
    plans = await run_in_threadpool(plans_of, service, body)
    for plan in plans:
        await run_in_threadpool(kb.check_plan, plan)

    def work(job: Job) -> Any:
        return merge(
            [kb.ingest_plan(p, progress=job.progress, warn=job.warn).to_dict() for p in plans]
        )

    return await service.job_response(request, service.jobs.submit("ingest", work))


def plans_of(service: Service, body: IngestBody) -> list[IngestPlan]:
    """The ingest plans a ``POST /v1/ingest`` body asks for."""
    roots = service.config.allow_paths
    if body.inputs is not None:
        # A plan made where the files are (the CLI's own ingest, sent here).
        return [IngestPlan.from_wire(body.model_dump(exclude_none=True))]
    if not (body.texts or body.paths or body.urls):
        raise UsageError('give "texts": [{"name", "text"}], "paths", "urls" or "inputs"')
    # A text never silently replaces a stored file or record of its name.
    plans = [
        plan_text(t.name, t.text, replace=bool(body.replace), metadata=t.metadata)
        for t in body.texts or []
    ]
    # Web pages are fetched by this server for the client (who holds its key).
    urls = [*map(check_url, body.urls or ()), *(p for p in body.paths or () if is_url(p))]
    paths = [p for p in body.paths or () if not is_url(p)]
    if paths or urls:
        web = WebOptions(
            depth=body.depth or 0,
            max_pages=body.max_pages or 50,
            delay=1.0 if body.delay is None else body.delay,
        )
        allowed = [*(service.allowed(p) for p in paths), *urls]
        plan = plan_paths(
            allowed, prune=bool(body.prune), roots=roots, ocr=body.ocr or "on", web=web
        )
        plans.append(plan.select(body.include or (), body.exclude or ()))
    return plans


@router.post("/v1/documents", status_code=202, responses=JOB_OR_REPORT, dependencies=[Worker])
async def upload(request: Request, service: ServiceDep, kb: KbDep) -> Response:
    """Queue the ingest of one uploaded document (multipart field ``file``;
    optional ``name``, ``metadata`` and ``replace``)."""
    limit = service.config.max_upload_bytes
    form = await request.form(max_part_size=limit)
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise UsageError('send the document as the multipart field "file"')
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise Problem(413, f"the upload is over --max-upload-mb {limit // 2**20}", "too_large")
    name = str(form.get("name") or upload.filename or "").strip()
    if not name:
        raise UsageError('give the document a "name" (or a file name)')
    why = unsupported_format(name, data)
    if why is not None:
        raise UnsupportedFormatError(f"{name}: {why}")
    replace = str(form.get("replace") or "").lower() in ("1", "true", "yes")
    plan = plan_text(name, data, replace=replace, metadata=_metadata(form.get("metadata")))
    await run_in_threadpool(kb.check_plan, plan)

    def work(job: Job) -> Any:
        return kb.ingest_plan(plan, progress=job.progress, warn=job.warn)

    return await service.job_response(request, service.jobs.submit("ingest", work))


def _metadata(field: Any) -> dict[str, Any]:
    try:
        metadata = json.loads(str(field or "{}"))
    except ValueError:
        raise UsageError('"metadata" must be a JSON object') from None
    if not isinstance(metadata, dict):
        raise UsageError('"metadata" must be a JSON object')
    return metadata


def merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Ingest reports added up: counters summed, lists joined."""
    total: dict[str, Any] = {}
    for report in reports:
        for key, value in report.items():
            if isinstance(value, list):
                total[key] = [*total.get(key, []), *value]
            elif isinstance(value, (int, float)):
                total[key] = total.get(key, 0) + value
    return total
