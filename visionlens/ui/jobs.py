"""Background work for the views: one process-wide executor, results applied on the session's own event loop.

Every view used to bring its own thread pool or raw thread and its own way back to the Bokeh event loop; some
wrote session state straight from a worker and some let exceptions die with their futures. This module is the one
way to do it:

* ``Jobs(name, state)`` belongs to one view of one session. ``jobs.submit(work, on_done, on_error, key=...)`` runs
  ``work()`` on a worker thread and then ``on_done(result)`` (or ``on_error(exception)``) **on the session's
  event loop**: the session's document is captured at submit time and the callback goes through its
  ``add_next_tick_callback``, with the document lock held and ``pn.state.curdoc`` set. In a notebook or plain
  Python (no server document) there is no loop to hop to and the callback runs right after ``work`` on the
  worker; Panel then syncs the changes itself.
* Every failure is logged (``logging``, with the traceback for unexpected ones) and shown to the user: by the
  view's ``on_error``, or else in the session state's ``error`` (the sidebar shows it) and a notification.
* Per ``key`` at most one job runs and at most one waits: a newer submit replaces the waiting one, and the result
  of a job a newer one of its key superseded is dropped, never applied. So a burst of scroll requests or filter
  changes costs one query, not twenty, and never paints an old answer over a new one.
* Two lanes of one executor: ``"quick"`` (grid windows, sidebar counts, metrics, map loads and hit tests) and
  ``"long"`` (ingest, evaluation, embeddings, thumbnails). A ten-minute ingest takes a long-lane thread, never one
  that other users' grid windows wait for.

Threads rather than ``async``: the work is ordinary blocking code (DuckDB, Pillow, numba) that releases the GIL.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, Literal

import panel as pn

from ..errors import VisionLensError

__all__ = ["Job", "Jobs", "Lane", "executor", "session_doc", "user_message"]

log = logging.getLogger(__name__)

Lane = Literal["quick", "long"]
QUICK_WORKERS = max(4, min(16, 2 * (os.cpu_count() or 2)))
"""Short queries: enough threads that one session's slow query does not queue everyone else's windows."""
LONG_WORKERS = 2
"""Minutes-long jobs of all sessions together: more would only fight over the same cores and disk."""

REPEAT_S = 30.0
"""The same failure again within this many seconds is not notified again (a retried request failing each time)."""

_pools_lock = threading.Lock()
_pools: dict[str, ThreadPoolExecutor] = {}


def executor(lane: Lane = "quick") -> ThreadPoolExecutor:
    """The process-wide pool of a lane, created on first use so importing the module starts no threads."""
    with _pools_lock:
        pool = _pools.get(lane)
        if pool is None:
            workers = QUICK_WORKERS if lane == "quick" else LONG_WORKERS
            pool = _pools[lane] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"vl-{lane}")
        return pool


def session_doc(doc: Any = None) -> Any:
    """The served session's document (``doc`` or the current one), or None outside a server session."""
    doc = pn.state.curdoc if doc is None else doc
    return doc if doc is not None and getattr(doc, "session_context", None) is not None else None


def user_message(exc: BaseException) -> str:
    """What a user reads about a failure: our own errors as they are, anything else with its type."""
    if isinstance(exc, VisionLensError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class Job:
    """One submitted piece of work; ``future`` completes once its result was applied (or dropped)."""

    def __init__(
        self,
        owner: Jobs,
        key: Hashable | None,
        ticket: int,
        work: Callable[[], Any],
        on_done: Callable[[Any], None] | None,
        on_error: Callable[[BaseException], None] | None,
        lane: Lane,
        doc: Any,
        name: str,
    ) -> None:
        self.owner, self.key, self.ticket, self.lane, self.doc, self.name = owner, key, ticket, lane, doc, name
        self.work, self.on_done, self.on_error = work, on_done, on_error
        self.future: Future[Any] = Future()
        self.dropped = False

    @property
    def superseded(self) -> bool:
        """A newer job of the same key was submitted: this one's result must not be applied."""
        return self.key is not None and self.owner.latest(self.key) != self.ticket

    def __repr__(self) -> str:
        return f"<Job {self.owner.name}:{self.name} key={self.key!r} #{self.ticket}>"


_local = threading.local()


def current_job() -> Job | None:
    """The job the calling worker thread is running (None elsewhere)."""
    return getattr(_local, "job", None)


class Jobs:
    """The background jobs of one view of one session.

    ``state``: the session's ``AppState``; failures without an ``on_error`` of their own are shown in its
    ``error``. ``pool``: run everything on this executor instead of the lanes (tests pin a single worker).
    """

    def __init__(self, name: str, state: Any = None, pool: Executor | None = None) -> None:
        self.name = name
        self._state = state
        self._pool = pool
        self._doc = session_doc()  # views are built on their session: later posts from workers go here
        self._lock = threading.Lock()
        self._tickets = itertools.count(1)
        self._latest: dict[Hashable, int] = {}
        self._running: dict[Hashable, Job] = {}
        self._waiting: dict[Hashable, Job] = {}
        self._pending: set[Job] = set()
        self._errors: list[BaseException] = []
        self._last_post: dict[Hashable, float] = {}
        self._last_report: tuple[str, float] = ("", -1e9)

    # -- submitting ----------------------------------------------------------------------------------------------

    def submit(
        self,
        work: Callable[[], Any],
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        *,
        key: Hashable | None = None,
        lane: Lane = "quick",
        name: str | None = None,
    ) -> Job:
        """Run ``work()`` off the event loop, then ``on_done(result)`` / ``on_error(exc)`` on the session's loop.

        With a ``key``, this job supersedes every earlier one of that key: a waiting one is dropped unrun, a
        running one finishes but its result is dropped.
        """
        doc = session_doc() or self._doc
        if doc is not None:
            self._doc = doc
        job = Job(
            self, key, next(self._tickets), work, on_done, on_error, lane, doc, name or getattr(work, "__name__", "job")
        )
        dropped: Job | None = None
        start = True
        with self._lock:
            self._pending.add(job)
            if key is not None:
                self._latest[key] = job.ticket
                if key in self._running:  # runs when the running one ends
                    dropped, self._waiting[key], start = self._waiting.get(key), job, False
                else:
                    self._running[key] = job
        if dropped is not None:
            self._finish(dropped, None, dropped=True)
        if start:
            self._dispatch(job)
        return job

    def _dispatch(self, job: Job) -> None:
        pool = self._pool or executor(job.lane)
        try:
            pool.submit(self._run, job)
        except RuntimeError:  # the interpreter is shutting down: nothing left to update
            log.debug("%r not started: executor shut down", job)
            self._finish(job, None, dropped=True)

    def supersede(self, key: Hashable) -> None:
        """Drop whatever jobs of ``key`` are waiting or running: the caller applied a newer answer itself."""
        with self._lock:
            self._latest[key] = next(self._tickets)
            dropped = self._waiting.pop(key, None)
        if dropped is not None:
            self._finish(dropped, None, dropped=True)

    def latest(self, key: Hashable) -> int | None:
        with self._lock:
            return self._latest.get(key)

    def running(self, key: Hashable) -> bool:
        """A job of this key is running or waiting (e.g. "an evaluation of this session is still running")."""
        with self._lock:
            return key in self._running or key in self._waiting

    # -- on the worker -------------------------------------------------------------------------------------------

    def _run(self, job: Job) -> None:
        _local.job = job
        try:
            if job.superseded:  # replaced while it waited for a thread: not worth running
                self._finish(job, None, dropped=True)
                return
            error: Exception | None = None
            result: Any = None
            try:
                result = job.work()
            except Exception as exc:  # noqa: BLE001 - every failure is logged and shown, never lost with a future
                error = exc
                self._log_failure(job, exc)
            if job.superseded:
                log.debug("%r superseded: result dropped", job)
                self._finish(job, None, dropped=True)
                return
            if error is not None:
                self._deliver(job, lambda: self._fail(job, error))
            elif job.on_done is not None:
                self._deliver(job, lambda: job.on_done(result))  # type: ignore[misc]
            self._finish(job, result)
        finally:
            _local.job = None

    def _finish(self, job: Job, result: Any, dropped: bool = False) -> None:
        nxt: Job | None = None
        with self._lock:
            self._pending.discard(job)
            if job.key is not None and self._running.get(job.key) is job:
                del self._running[job.key]
                nxt = self._waiting.pop(job.key, None)
                if nxt is not None:
                    self._running[job.key] = nxt
        job.dropped = dropped
        if not job.future.done():
            job.future.set_result(result)
        if nxt is not None:
            self._dispatch(nxt)

    def _log_failure(self, job: Job, exc: BaseException) -> None:
        if isinstance(exc, VisionLensError):
            log.warning("%s: %s failed: %s", self.name, job.name, exc)
        else:
            log.error("%s: %s failed", self.name, job.name, exc_info=exc)
            with self._lock:
                self._errors = [*self._errors[-9:], exc]

    # -- back on the session ---------------------------------------------------------------------------------

    def _deliver(self, job: Job, apply: Callable[[], None]) -> None:
        """``apply`` on the job's session loop; dropped there too if a newer job of the key came meanwhile."""

        def guarded() -> None:
            if job.superseded:
                log.debug("%r superseded before it was applied: dropped", job)
                return
            try:
                apply()
            except Exception as exc:  # noqa: BLE001 - a failing callback is a failure of the job
                log.error("%s: applying %s failed", self.name, job.name, exc_info=exc)
                with self._lock:
                    self._errors = [*self._errors[-9:], exc]
                self.report(user_message(exc))

        self._on_loop(job.doc, guarded)

    def _fail(self, job: Job, exc: BaseException) -> None:
        if job.on_error is not None:
            job.on_error(exc)
        else:
            self.report(user_message(exc))

    def _on_loop(self, doc: Any, fn: Callable[[], None]) -> None:
        if doc is None:
            fn()
            return
        from panel.io.state import set_curdoc

        def tick() -> None:
            with set_curdoc(doc):
                fn()

        try:
            doc.add_next_tick_callback(tick)
        except Exception:  # noqa: BLE001 - the session closed while the job ran: nothing left to update
            log.debug("%s: session gone, update dropped", self.name)

    def post(self, fn: Callable[[], None], every: float = 0.0, slot: Hashable = "progress") -> None:
        """Run ``fn`` on the session's loop from any thread (progress bars); with ``every``, at most once per
        ``every`` seconds per ``slot`` (later calls in between are skipped: a progress bar needs no 10 000 ticks).
        """
        if every:
            now = time.monotonic()
            with self._lock:
                if now - self._last_post.get(slot, -1e9) < every:
                    return
                self._last_post[slot] = now
        job = current_job()
        doc = job.doc if job is not None and job.owner is self else self._doc
        if doc is None and session_doc() is not None:
            doc = session_doc()

        def safe() -> None:
            try:
                fn()
            except Exception:  # noqa: BLE001 - a progress update must not kill the job
                log.exception("%s: update failed", self.name)

        self._on_loop(doc, safe)

    def report(self, message: str) -> None:
        """Show a failure to the user: the session state's ``error`` (the sidebar's alert) and a notification.

        Called on the session's loop (or directly without a server).
        """
        if self._state is not None and "error" in self._state.param:
            self._state.error = message
        now = time.monotonic()
        repeated = self._last_report[0] == message and now - self._last_report[1] < REPEAT_S
        self._last_report = (message, now)
        if not repeated:
            from .html import text
            from .notify import notify

            notify(text(message))

    # -- for scripts and tests -----------------------------------------------------------------------------------

    def wait(self, timeout: float = 60.0, raise_errors: bool = False) -> None:
        """Block until every job submitted so far (and those they submitted) ended; optionally re-raise the first
        unexpected failure since the last wait. Results are applied by then unless a server loop applies them."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                futures = [j.future for j in self._pending]
            if not futures:
                break
            for fut in futures:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.name}: background work still running")
                try:
                    fut.result(left)
                except TimeoutError:
                    raise TimeoutError(f"{self.name}: background work still running") from None
        if raise_errors:
            with self._lock:
                errors, self._errors = self._errors, []
            if errors:
                raise errors[0]
