"""Long work that outlives a request: ingest, predictions, evaluation, embeddings, insights, deletion.

The HTTP API answers a long request with a job id at once; the job runs on the long lane of the one process-wide
executor (``ui.jobs.executor("long")``, shared with the app's own long work so both never fight for more than
its threads) and reports ``progress(step, done, total)`` here, where the API, the CLI polling it and the app's
jobs panel read it. Cancelling sets a flag that the next progress report turns into ``JobCancelled``, so work
stops where it reports and a transactional write (ingest) rolls back.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import JobCancelled, VisionLensError
from ..formats.base import ProgressCallback
from . import fair_start

__all__ = ["Job", "JobRegistry", "registry"]

log = logging.getLogger(__name__)

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
KEEP_FINISHED = 200
"""Finished jobs kept for their results; older ones are forgotten (their effects are in the store)."""


@dataclass
class Step:
    done: int = 0
    total: int = 0


@dataclass
class Job:
    kind: str
    title: str
    dataset: str | None = None
    user: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    state: JobState = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    step: str = ""
    steps: dict[str, Step] = field(default_factory=dict)
    result: Any = None
    error: str | None = None
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    def report(self, step: str, done: int, total: int) -> None:
        """The ``ProgressCallback`` handed to the work; raises ``JobCancelled`` once a cancel was asked."""
        if self._cancel.is_set():
            raise JobCancelled(f"job {self.id} ({self.title}) was cancelled")
        self.step = step
        self.steps[step] = Step(int(done), int(total))
        fair_start.yield_to_new_sessions()  # users opening the app go first (a pause only while sessions start)

    def cancel(self) -> bool:
        """Ask the job to stop; True when it had not finished yet."""
        if not self.active:
            return False
        self._cancel.set()
        if self.state == "queued":
            self.state, self.finished = "cancelled", time.time()
            self.error = "cancelled before it started"
        return True

    def fraction(self) -> float | None:
        s = self.steps.get(self.step)
        return None if s is None or not s.total else min(1.0, s.done / s.total)

    def to_json(self, with_result: bool = True) -> dict[str, Any]:
        out = {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "dataset": self.dataset,
            "user": self.user,
            "state": self.state,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "step": self.step,
            "steps": {k: {"done": v.done, "total": v.total} for k, v in self.steps.items()},
            "error": self.error,
        }
        if with_result:
            out["result"] = self.result
        return out


class JobRegistry:
    """The jobs of this process, newest last; thread-safe."""

    def __init__(self) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self.changed = threading.Condition(self._lock)

    def submit(
        self,
        kind: str,
        title: str,
        work: Callable[[ProgressCallback], Any],
        dataset: str | None = None,
        user: str | None = None,
    ) -> Job:
        from ..ui.jobs import executor

        job = self._add(Job(kind=kind, title=title, dataset=dataset, user=user))
        executor("long").submit(self._run, job, work)
        return job

    def _run(self, job: Job, work: Callable[[ProgressCallback], Any]) -> None:
        if job.state == "cancelled":
            return
        try:
            with self._running(job):
                job.result = work(job.report)
        except Exception:  # recorded in the job by _running; nobody else waits on this thread
            pass

    @contextmanager
    def _running(self, job: Job) -> Iterator[Job]:
        job.state, job.started = "running", time.time()
        try:
            yield job
            job.state = "done"
        except JobCancelled as e:
            job.state, job.error = "cancelled", str(e)
            raise
        except VisionLensError as e:
            job.state, job.error = "failed", str(e)
            raise
        except Exception as e:  # a bug: keep the traceback in the log, the message in the job
            log.exception("job %s (%s) failed", job.id, job.title)
            job.state, job.error = "failed", f"{type(e).__name__}: {e}"
            raise
        finally:
            job.finished = time.time()
            with self._lock:
                self.changed.notify_all()

    @contextmanager
    def track(self, kind: str, title: str, dataset: str | None = None, user: str | None = None) -> Iterator[Job]:
        """Record work that runs elsewhere (the app's own long jobs) so the API and every session see it, with
        its progress (report through ``job.report``) and a working cancel; exceptions pass through."""
        job = self._add(Job(kind=kind, title=title, dataset=dataset, user=user))
        with self._running(job):
            yield job

    def _add(self, job: Job) -> Job:
        with self._lock:
            self._jobs[job.id] = job
            self._trim()
        return job

    def _trim(self) -> None:
        finished = [j for j in self._jobs.values() if not j.active]
        for old in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            self._jobs.pop(old.id, None)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def list(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def wait(self, job_id: str, timeout: float) -> Job | None:
        """Block until the job finished or ``timeout`` passed (for a long-polling client)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                job = self._jobs.get(job_id)
                left = deadline - time.monotonic()
                if job is None or not job.active or left <= 0:
                    return job
                self.changed.wait(left)


_registry = JobRegistry()


def registry() -> JobRegistry:
    return _registry
