"""The views' one background-job helper: failures logged and shown, results applied on the session's loop,
superseded results dropped, long jobs on their own lane; and the two shared structures jobs touch (the map's frame
cache, the sidebar's widgets) under concurrent use."""

from __future__ import annotations

import logging
import re
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import panel as pn
import param
import pytest
from panel.io.state import set_curdoc

from tests.browser_helpers import serve_panel, wait_until
from visionlens.errors import VisionLensError
from visionlens.ui import jobs as jobs_module
from visionlens.ui.jobs import Jobs, current_job
from visionlens.ui.map_view import FrameCache

UI = Path(__file__).resolve().parents[1] / "visionlens" / "ui"


class _State(param.Parameterized):
    error = param.String(default="")


class FakeDoc:
    """A served session's document as far as jobs sees it: a session context and a next-tick queue."""

    session_context = object()

    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def add_next_tick_callback(self, callback: Any) -> None:
        self.callbacks.append(callback)

    def run_ticks(self) -> None:
        while self.callbacks:
            self.callbacks.pop(0)()


def test_failing_job_is_logged_and_shown_to_the_user(caplog: pytest.LogCaptureFixture) -> None:
    state = _State()
    jobs = Jobs("test", state=state)
    done: list[Any] = []

    def boom() -> None:
        raise RuntimeError("disk on fire")

    with caplog.at_level(logging.INFO, logger="visionlens.ui.jobs"):
        jobs.submit(boom, done.append)
        jobs.wait()
    failure = [r for r in caplog.records if "failed" in r.getMessage()]
    assert failure and failure[0].levelno == logging.ERROR and failure[0].exc_info[1].args == ("disk on fire",)
    assert done == []  # no result to apply
    assert state.error == "RuntimeError: disk on fire"  # the sidebar's alert shows the session state's error
    with pytest.raises(RuntimeError, match="disk on fire"):
        jobs.wait(raise_errors=True)  # scripts and tests can still see it

    # a view's own on_error gets the exception (it shows it in its own alert); our errors are logged as warnings
    seen: list[BaseException] = []
    caplog.clear()
    state.error = ""

    def bad_filter() -> None:
        raise VisionLensError("unknown field 'x'")

    jobs.submit(bad_filter, done.append, seen.append)
    jobs.wait(raise_errors=True)
    assert [str(e) for e in seen] == ["unknown field 'x'"] and state.error == ""
    assert any(r.levelno == logging.WARNING and "unknown field" in r.getMessage() for r in caplog.records)

    # a result that cannot be applied is a failure too
    def apply(_: Any) -> None:
        raise KeyError("widget gone")

    jobs.submit(lambda: 1, apply)
    jobs.wait()
    assert "widget gone" in state.error and "applying" in caplog.text


def test_results_go_through_the_session_documents_next_tick() -> None:
    """With a server document, on_done runs from the document's next-tick callback (the session's loop, with the
    document lock), with that document current, and never on the worker thread."""
    doc = FakeDoc()
    threads: dict[str, int] = {}
    docs: list[Any] = []

    def work() -> int:
        threads["work"] = threading.get_ident()
        return 42

    def on_done(value: int) -> None:
        threads["done"] = threading.get_ident()
        docs.append(pn.state.curdoc)
        assert value == 42

    with set_curdoc(doc):  # what a view's callback sees while the session handles an event
        jobs = Jobs("test")
        job = jobs.submit(work, on_done)
    job.future.result(10)
    assert "done" not in threads and len(doc.callbacks) == 1  # queued on the loop, not applied by the worker
    doc.run_ticks()  # the event loop's turn
    assert threads["done"] == threading.get_ident() != threads["work"]
    assert docs == [doc]

    # progress posted from a worker goes the same way
    posted: list[int] = []
    jobs.submit(lambda: jobs.post(lambda: posted.append(threading.get_ident()))).future.result(10)
    assert posted == []
    doc.run_ticks()
    assert posted == [threading.get_ident()]


def test_results_are_applied_on_a_served_sessions_loop() -> None:
    """The same through a real Bokeh server: the session is created by the page request and its loop applies it."""
    seen: dict[str, Any] = {}

    def app() -> Any:
        doc = pn.state.curdoc
        seen["doc"] = doc
        pane = pn.pane.Markdown("waiting")
        jobs = Jobs("served")

        def work() -> str:
            seen["worker"] = threading.current_thread().name
            return "done"

        def on_done(value: str) -> None:
            seen["loop"] = threading.current_thread().name
            seen["curdoc"] = pn.state.curdoc
            pane.object = value

        jobs.submit(work, on_done)
        return pane

    with serve_panel(app) as url:
        urllib.request.urlopen(url, timeout=30).read()
        wait_until(lambda: "loop" in seen, timeout=20)
    assert seen["worker"].startswith("vl-quick") and not seen["loop"].startswith("vl-")
    assert seen["curdoc"] is seen["doc"]


def test_superseded_results_are_dropped() -> None:
    release, entered = threading.Event(), threading.Event()
    ran: list[str] = []
    applied: list[str] = []

    def slow(name: str) -> Any:
        def work() -> str:
            ran.append(name)
            if name == "first":
                entered.set()
                release.wait(10)
            return name

        return work

    jobs = Jobs("test", pool=ThreadPoolExecutor(max_workers=4))
    first = jobs.submit(slow("first"), applied.append, key="k")
    assert entered.wait(10)
    second = jobs.submit(slow("second"), applied.append, key="k")  # waits: one job per key at a time
    third = jobs.submit(slow("third"), applied.append, key="k")  # replaces the waiting one
    other = jobs.submit(slow("other"), applied.append, key="other")  # another key is not held up
    other.future.result(10)
    assert second.future.result(10) is None and second.dropped
    release.set()
    third.future.result(10)
    jobs.wait()
    assert ran == ["first", "other", "third"]  # the replaced job never ran
    assert applied == ["other", "third"]  # the first finished after being superseded: dropped
    assert first.dropped and not third.dropped

    # a result already waiting for the loop is dropped there if a newer job of its key came meanwhile
    doc = FakeDoc()
    applied.clear()
    with set_curdoc(doc):
        jobs = Jobs("test")
        jobs.submit(lambda: "old", applied.append, key="k").future.result(10)
        jobs.submit(lambda: "new", applied.append, key="k").future.result(10)
    doc.run_ticks()
    assert applied == ["new"]

    # a view that answers by itself (e.g. no dataset) supersedes what is in flight
    applied.clear()
    jobs = Jobs("test")
    gate, entered = threading.Event(), threading.Event()
    job = jobs.submit(lambda: entered.set() or (gate.wait(10) and "late"), applied.append, key="k")
    assert entered.wait(10)
    jobs.supersede("k")
    gate.set()
    job.future.result(10)
    assert applied == [] and job.dropped


def test_work_can_see_that_it_was_superseded() -> None:
    gate, entered = threading.Event(), threading.Event()
    seen: list[bool] = []

    def work() -> None:
        entered.set()
        gate.wait(10)
        job = current_job()
        seen.append(job is not None and job.superseded)

    jobs = Jobs("test")
    job = jobs.submit(work, key="k")
    assert entered.wait(10)
    jobs.supersede("k")
    gate.set()
    job.future.result(10)
    assert seen == [True]


def test_long_jobs_never_hold_up_quick_ones() -> None:
    gate = threading.Event()
    jobs = Jobs("test")
    long_jobs = [
        jobs.submit(lambda: gate.wait(20), key=f"ingest{i}", lane="long") for i in range(jobs_module.LONG_WORKERS + 2)
    ]  # more than the long lane has threads
    try:
        started = time.monotonic()
        quick = jobs.submit(lambda: "window", key="window")
        assert quick.future.result(5) == "window" and time.monotonic() - started < 5
        assert not any(j.future.done() for j in long_jobs)
    finally:
        gate.set()
    jobs.wait()


def test_map_frame_cache_never_exceeds_its_bound() -> None:
    def frame(n: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "sample_id": np.arange(n, dtype=np.int64),
                "x": np.zeros(n, np.float32),
                "y": np.zeros(n, np.float32),
                "color": pd.Categorical(["a"] * n),
            }
        )

    cache = FrameCache(max_items=5, max_bytes=10**9)
    for k in range(8):
        cache.put(("ds", k), frame(10))
        assert len(cache) <= 5
    assert cache.get(("ds", 0)) is None and cache.get(("ds", 7)) is not None  # least recently used went first
    cache.get(("ds", 3))  # touched: survives the next put
    cache.put(("ds", 8), frame(10))
    assert cache.get(("ds", 3)) is not None and cache.get(("ds", 4)) is None

    one = int(frame(1000).memory_usage(index=True).sum())
    by_bytes = FrameCache(max_items=100, max_bytes=3 * one)
    for k in range(10):
        by_bytes.put(k, frame(1000))
    assert len(by_bytes) == 3 and by_bytes.nbytes <= 3 * one

    # hammered from several threads (a notebook's jobs, the session's own calls): the bound always holds
    shared = FrameCache(max_items=6)
    worst: list[int] = []
    errors: list[BaseException] = []

    def hammer(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(400):
                key = int(rng.integers(0, 20))
                op = rng.integers(0, 4)
                if op == 0:
                    shared.put(key, frame(5))
                elif op == 1:
                    shared.get(key)
                elif op == 2:
                    shared.drop(lambda k, key=key: k == key)
                else:
                    worst.append(len(shared))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=hammer, args=(s,)) for s in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and max(worst, default=0) <= 6 and len(shared) <= 6


def test_sidebar_refresh_while_widgets_are_rebuilt_does_not_raise(demo_ds, store) -> None:
    from visionlens.query import FieldFilter
    from visionlens.ui.filters_view import FiltersView
    from visionlens.ui.state import AppState

    state = AppState(store, dataset="demo")
    view = FiltersView(state=state)
    view.wait()
    errors: list[BaseException] = []
    stop = threading.Event()

    def rebuild() -> None:
        try:
            while not stop.is_set():
                view._rebuild()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    rebuilder = threading.Thread(target=rebuild)
    rebuilder.start()
    try:
        for k in range(30):  # results arrive (counts refresh on a worker) while the widgets are rebuilt
            state.set_field_filter("split", FieldFilter(field="split", values=("val",)) if k % 2 else None)
            view._refresh_counts()
            for _ in view._controls.items():  # the session thread reading the widgets meanwhile
                pass
    finally:
        stop.set()
        rebuilder.join(60)
    view.wait()  # re-raises any failure of a counts job
    assert not errors
    # and the sidebar still ends up right: counts for the current filters
    state.set_field_filter("split", FieldFilter(field="split", values=("val",)))
    view.wait()
    split = view._controls["split"].widget
    assert any(re.fullmatch(r"val \(\d+\)", label) for label in split.options)


def test_views_have_no_threads_or_pools_of_their_own() -> None:
    """Every view goes through jobs: no pools, raw threads or hand-made hops back to the loop elsewhere."""
    offenders = []
    for path in UI.glob("*.py"):
        if path.name == "jobs.py":
            continue
        source = path.read_text()
        for pattern in (
            "ThreadPoolExecutor",
            "threading.Thread(",
            "add_next_tick_callback",
            "pn.state.execute",
            "run_in_executor",
        ):
            if pattern in source and not (path.name == "routes.py" and pattern == "run_in_executor"):
                offenders.append(f"{path.name}: {pattern}")
    assert offenders == []


@pytest.mark.browser
def test_a_failure_in_a_served_session_is_notified_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    """In the browser: a job without its own error handler raises; the user sees a notification, escaped."""
    from tests.browser_helpers import chromium

    def app() -> Any:
        pn.extension(notifications=True)
        state = _State()
        alert = pn.pane.Alert("", alert_type="danger")
        state.param.watch(lambda e: setattr(alert, "object", e.new), "error")
        jobs = Jobs("served", state=state)
        button = pn.widgets.Button(name="Run")

        def boom() -> None:
            raise RuntimeError("<b>disk</b> on fire")

        button.on_click(lambda _: jobs.submit(boom))
        return pn.template.FastListTemplate(title="jobs", main=[button, alert])

    with caplog.at_level(logging.ERROR, logger="visionlens.ui.jobs"), serve_panel(app) as url, chromium() as browser:
        page = browser.new_page()
        page.goto(url, timeout=60000)
        page.get_by_role("button", name="Run").click()
        toast = page.locator(".notyf__toast", has_text="RuntimeError").first
        toast.wait_for(timeout=20000)
        assert "<b>disk</b> on fire" in toast.inner_text()  # shown as text, not markup
        assert page.locator(".notyf__toast b").count() == 0
    assert "disk" in caplog.text


@pytest.mark.browser
def test_the_toast_area_comes_with_a_sessions_first_toast() -> None:
    """As the app does it (``ui/notify.py``): no notification area in a new session's document, only an empty
    holder; the first failure puts the area there and shows its toast, escaped; a second one reuses it."""
    from tests.browser_helpers import chromium
    from visionlens.ui.notify import toast_holder

    holders: list[pn.Column] = []

    def app() -> Any:
        pn.extension("notifications", notifications=False)
        jobs = Jobs("served", state=_State())
        holders.append(toast_holder())
        button = pn.widgets.Button(name="Run")

        def boom() -> None:
            raise RuntimeError(f"<b>disk</b> on fire {len(holders[-1].objects)}")

        button.on_click(lambda _: jobs.submit(boom))
        return pn.template.FastListTemplate(title="jobs", main=[button, holders[-1]])

    with serve_panel(app) as url, chromium() as browser:
        page = browser.new_page()
        page.goto(url, timeout=60000)
        page.get_by_role("button", name="Run").wait_for(timeout=30000)
        assert holders[-1].objects == []  # nothing built for toasts until one is shown
        page.get_by_role("button", name="Run").click()
        toast = page.locator(".notyf__toast", has_text="on fire 0").first
        toast.wait_for(timeout=20000)
        assert "<b>disk</b> on fire" in toast.inner_text() and page.locator(".notyf__toast b").count() == 0
        assert len(holders[-1].objects) == 1
        page.get_by_role("button", name="Run").click()
        page.locator(".notyf__toast", has_text="on fire 1").first.wait_for(timeout=20000)
        assert len(holders[-1].objects) == 1  # the same area
