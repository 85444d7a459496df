"""The service's state as one object, :class:`Service` (the knowledge base,
the configuration, the job queue, the query batcher, the watches), reaching
every handler as a FastAPI dependency instead of through closures; and what
handlers of several routers share about jobs and writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from ragdb.errors import InputError, NotFoundError, WrongReplicaError, http_status
from ragdb.ingest.inputs import under_roots
from ragdb.ingest.plan import plan_paths
from ragdb.serve.batching import QueryBatcher
from ragdb.serve.config import ServeConfig
from ragdb.serve.errors import Problem
from ragdb.serve.jobs import Job, JobQueue
from ragdb.serve.signin import SignIn
from ragdb.serve.watch import Watcher

if TYPE_CHECKING:
    from ragdb.knowledge_base import KnowledgeBase


@dataclasses.dataclass
class Service:
    """Everything the handlers share."""

    kb: KnowledgeBase
    config: ServeConfig
    jobs: JobQueue
    batcher: QueryBatcher
    watcher: Watcher = dataclasses.field(init=False)
    # MCP's session manager (ragdb.mcp_server.mount), run with the app.
    mcp: Any = None
    signin: SignIn = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.watcher = Watcher(self.sync)
        self.signin = SignIn(self.config.api_key, self.config.login_token)
        self._kbs: dict[str, KnowledgeBase] = {}

    def knowledge_base(self, name: str | None) -> KnowledgeBase:
        """Knowledge base ``name`` of the store served (the server's own when
        None), sharing its store and model."""
        if not name or name == self.kb.name:
            return self.kb
        if name not in self._kbs:
            self._kbs[name] = self.kb.using(name)
        return self._kbs[name]

    @classmethod
    def start(cls, kb: KnowledgeBase, config: ServeConfig) -> Service:
        """The service's machinery, started (the job worker, the batcher)."""
        return cls(kb, config, JobQueue(), QueryBatcher(kb))

    def sync(self, path: Path) -> Job:
        """A watched directory's reconcile: `ingest --prune DIR`, as a job. It
        reads only under the server's roots (the watched folders given at start
        are roots too), and a name stored as text or a record is skipped with a
        warning instead of stopping the folder's sync."""
        kb, config = self.kb, self.config

        def work(job: Job) -> Any:
            roots = (*config.allow_paths, *config.watch)
            plan = plan_paths([path], prune=True, roots=roots, warn=job.warn)
            plan = dataclasses.replace(plan, skip_clashes=True)
            return kb.ingest_plan(plan, progress=job.progress, warn=job.warn)

        return self.jobs.submit("sync", work)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        """Watches start with the app; at SIGTERM/SIGINT a running job stops
        between batches (or is abandoned) and the store stays whole."""
        for path in self.config.watch:
            self.watcher.add(path, self.config.poll)
        async with contextlib.AsyncExitStack() as stack:
            if self.mcp is not None:
                await stack.enter_async_context(self.mcp.run())
            yield
        await run_in_threadpool(self.watcher.stop)
        await run_in_threadpool(self.jobs.stop)
        await run_in_threadpool(self.batcher.stop)
        # Here, not after uvicorn returns: it re-raises SIGTERM/SIGINT once it has
        # shut down, and the process ends with the signal.
        if self.config.serve_file is not None:
            self.config.serve_file.unlink(missing_ok=True)

    async def write(self, kind: str, work: Callable[[], Any]) -> Any:
        """Run a short write through the job queue (every write goes through it,
        one at a time) and wait for it; its error is the request's."""
        job = self.jobs.submit(kind, lambda job: work())
        await run_in_threadpool(job.wait)
        if job.state != "succeeded":
            raise job.exception()
        return job.report

    async def job_response(self, request: Request, job: Job) -> Response:
        """202 with the job, or with ``?wait=true`` the finished report."""
        if request.query_params.get("wait") in ("1", "true", "yes"):
            await run_in_threadpool(job.wait)
            if job.state == "succeeded":
                return JSONResponse(job.report)
            # A failed job answers as its error would (503 for a store that is
            # down or busy: try again), a cancelled one 409.
            status = 409 if job.state == "cancelled" else http_status(job.exception())
            message = job.error or f"the job was {job.state}"
            raise Problem(status, message, "JobFailed", job.to_dict())
        return JSONResponse(
            job.to_dict(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"}
        )

    def job(self, job_id: str) -> Job:
        """The job ``job_id`` (404 when unknown)."""
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id}")
        return job

    def allowed(self, path: str) -> str:
        """``path`` (symlinks resolved) when it lies under an ``--allow-path`` root."""
        if "\x00" in path:
            raise InputError("a path cannot hold a NUL character")
        if not under_roots(path, self.config.allow_paths):
            raise InputError(f"{path} is not under an --allow-path root of this server")
        return os.path.realpath(path)


async def get_service(request: Request) -> Service:
    """The service of the app handling ``request``."""
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


async def get_kb(
    service: ServiceDep,
    kb: Annotated[
        str | None,
        Query(description="the knowledge base (`ragdb kb list`); the server's own when absent"),
    ] = None,
) -> KnowledgeBase:
    """The knowledge base a request names with ``?kb=`` (the server's own when it
    names none)."""
    return service.knowledge_base(kb)


KbDep = Annotated["KnowledgeBase", Depends(get_kb)]


async def require_worker(service: ServiceDep) -> None:
    """Writes, jobs and watches are the ingest worker's: a query replica
    refuses them (421), naming the worker."""
    if service.config.role == "query":
        where = service.config.ingest_url or "the replica started with --role ingest"
        raise WrongReplicaError(
            f"this replica answers queries only (--role query): send writes to {where}"
        )


Worker = Depends(require_worker)
"""On every route that writes: see :func:`require_worker`."""
