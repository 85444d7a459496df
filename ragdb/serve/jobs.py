"""The service's ingest jobs: one queue, one worker, visible progress.

Every write the service makes goes through this queue, one job at a time (the
store's own locks keep CLI processes writing the same store safe beside it). A
job's state, counters, per-source errors and final report are kept for
``GET /v1/jobs/{id}``; its events (``progress``, ``source_error``, ``done``) are
kept in order for any number of SSE readers. Cancelling stops a running job
between batches: what was embedded before is written, the rest is not.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from ragdb.errors import RagdbError
from ragdb.ingest.inputs import Note

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
# Finished jobs kept for their readers, newest last.
KEEP = 200
# Seconds a cancelled job (or, at shutdown, any running job) has to stop before
# it is abandoned: marked finished, its thread left to end by itself (a write
# in flight is a whole session, settled by the store's own recovery) while the
# queue goes on with a fresh worker.
CANCEL_GRACE = 10.0

Work = Callable[["Job"], Any]  # runs the job; returns its report (with to_dict())


class Cancelled(KeyboardInterrupt):
    """Raised inside a running job (from its progress callback) to stop it; an
    ingest treats it as its Ctrl-C (what was embedded before is written, and
    the job's report says how much)."""


@dataclasses.dataclass
class Job:
    """One queued piece of work and all that is known of it."""

    id: str
    kind: str
    state: str = "queued"
    created_at: float = dataclasses.field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    chunks_done: int = 0
    chunks_total: int = 0
    errors: list[dict[str, str]] = dataclasses.field(default_factory=list)
    report: dict[str, Any] | None = None
    error: str | None = None
    # A failed job's ragdb error: its class name and the CLI's exit code for it.
    error_type: str | None = None
    exit_code: int | None = None
    cancel_requested: bool = False
    _failure: RagdbError | None = dataclasses.field(default=None, repr=False)
    _events: list[dict[str, Any]] = dataclasses.field(default_factory=list, repr=False)
    _changed: threading.Condition = dataclasses.field(
        default_factory=threading.Condition, repr=False
    )

    @property
    def finished(self) -> bool:
        return self.state in ("succeeded", "failed", "cancelled")

    def to_dict(self) -> dict[str, Any]:
        """What ``GET /v1/jobs/{id}`` answers."""
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "chunks_done": self.chunks_done,
            "chunks_total": self.chunks_total,
            "errors": list(self.errors),
            "report": self.report,
            "error": self.error,
            "error_type": self.error_type,
            "exit_code": self.exit_code,
        }

    def failed(self, exc: RagdbError) -> None:
        """Record the error that ended the job."""
        self.error, self.error_type, self.exit_code = str(exc), type(exc).__name__, exc.exit_code
        self._failure = exc

    def exception(self) -> RagdbError:
        """Why the job did not succeed, as the error to raise."""
        if self._failure is not None:
            return self._failure
        return RagdbError(self.error or f"the job was {self.state}")

    def wait(self, stop: threading.Event | None = None, step: float = 0.5) -> bool:
        """Wait until the job is finished (True) or ``stop`` is set (False)."""
        while not self.finished:
            if stop is not None and stop.is_set():
                return False
            with self._changed:
                if not self.finished:
                    self._changed.wait(step)
        return True

    def emit(self, event: dict[str, Any]) -> None:
        """Record an event and wake its readers."""
        with self._changed:
            self._events.append(event)
            self._changed.notify_all()

    def progress(self, done: int, total: int) -> None:
        """The ingest's progress callback: counts, and the point where a
        cancellation stops the job (between batches)."""
        if self.cancel_requested:
            raise Cancelled()
        if (done, total) != (self.chunks_done, self.chunks_total):
            self.chunks_done, self.chunks_total = done, total
            self.emit({"event": "progress", "chunks_done": done, "chunks_total": total})

    def warn(self, message: str) -> None:
        """The ingest's warnings (a source that could not be read), and its
        notes of how it goes (OCR's pages), which are no error."""
        if isinstance(message, Note):
            self.emit({"event": "note", "message": str(message)})
            return
        source, _, reason = message.removeprefix("skipped ").partition(": ")
        self.errors.append({"source": source, "reason": reason or message})
        self.emit(
            {
                "event": "source_error",
                "source": source,
                "reason": reason or message,
                "message": message,
            }
        )

    def events(self, timeout: float = 15.0) -> Iterator[dict[str, Any]]:
        """Every event, from the first, until ``done``; a ``ping`` after
        ``timeout`` seconds without one (keeps proxies from closing the stream)."""
        seen = 0
        while True:
            with self._changed:
                if seen >= len(self._events):
                    self._changed.wait(timeout)
                fresh = self._events[seen:]
            if not fresh:
                yield {"event": "ping"}
                continue
            for event in fresh:
                yield event
                seen += 1
                if event["event"] == "done":
                    return


class JobQueue:
    """A queue of jobs and the single worker thread that runs them in order."""

    def __init__(self, grace: float = CANCEL_GRACE) -> None:
        self._jobs: dict[str, Job] = {}
        self._queue: queue.Queue[tuple[Job, Work] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._grace = grace
        self._running: Job | None = None
        self._worker = self._start_worker()

    def _start_worker(self) -> threading.Thread:
        worker = threading.Thread(target=self._run, name="ragdb-jobs", daemon=True)
        self._worker = worker
        worker.start()
        return worker

    def submit(self, kind: str, work: Work) -> Job:
        """Queue ``work``; the job is returned at once."""
        job = Job(id=uuid.uuid4().hex[:16], kind=kind)
        with self._lock:
            self._jobs[job.id] = job
            finished = [j for j in self._jobs.values() if j.finished]
            for old in finished[: max(0, len(finished) - KEEP)]:
                del self._jobs[old.id]
        self._queue.put((job, work))
        return job

    def get(self, job_id: str) -> Job | None:
        """The job ``job_id``, if known."""
        return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        """Every job kept, oldest first."""
        return list(self._jobs.values())

    def pending(self) -> int:
        """Jobs queued or running."""
        return sum(1 for j in self._jobs.values() if not j.finished)

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued job now, a running one between its batches."""
        job = self._jobs.get(job_id)
        if job is None or job.finished:
            return job
        job.cancel_requested = True
        if job.state == "running":
            timer = threading.Timer(self._grace, self._abandon, (job, "cancelled"))
            timer.daemon = True
            timer.start()
        return job

    def stop(self) -> None:
        """Cancel what runs, drop what waits, and let the worker end; a job that
        does not stop within the grace period is abandoned."""
        for job in self._jobs.values():
            if not job.finished:
                job.cancel_requested = True
        self._queue.put(None)
        self._worker.join(timeout=self._grace)
        running = self._running
        if running is not None:
            self._abandon(running, "failed", "the server stopped")
        for job in list(self._jobs.values()):
            if not job.finished:
                self._finish(job, "cancelled")

    def _abandon(self, job: Job, state: str, why: str = "it was cancelled") -> None:
        """Give up on a running job that did not stop: report it, and let a new
        worker carry on with the queue."""
        with self._lock:
            if job.finished or self._running is not job:
                return
            self._running = None
            job.error = (
                f"abandoned: {why} and it did not stop within {self._grace:g}s "
                "(what it wrote is whole; the rest was not stored)"
            )
            self._finish(job, state)
            self._start_worker()

    def _run(self) -> None:
        me = threading.current_thread()
        while self._worker is me and (item := self._queue.get()) is not None:
            job, work = item
            if job.cancel_requested:
                self._finish(job, "cancelled")
                continue
            with self._lock:
                self._running = job
            job.state, job.started_at = "running", time.time()
            job.emit({"event": "state", "state": "running"})
            state, report = self._execute(job, work)
            with self._lock:
                if job.finished:  # abandoned meanwhile: a new worker has the queue
                    return
                self._running = None
                job.report = report
                self._finish(job, state)

    @staticmethod
    def _execute(job: Job, work: Work) -> tuple[str, dict[str, Any] | None]:
        """Run ``work``: the job's final state and report."""
        try:
            report = work(job)
        except KeyboardInterrupt as exc:
            # Cancelled, seen by an ingest as its own interruption (IngestInterrupted).
            saved = getattr(exc, "sources", None)
            if saved is None:
                return "cancelled", {"cancelled": True}
            return "cancelled", {
                "cancelled": True,
                "sources_saved": saved,
                "chunks_saved": getattr(exc, "chunks", 0),
            }
        except RagdbError as exc:
            job.failed(exc)
            return "failed", None
        except Exception as exc:  # a bug: the job says so, the service lives on
            job.error = f"{type(exc).__name__}: {exc}"
            return "failed", None
        return "succeeded", report.to_dict() if hasattr(report, "to_dict") else report

    def _finish(self, job: Job, state: str) -> None:
        job.state, job.finished_at = state, time.time()
        job.emit({"event": "done", **job.to_dict()})
