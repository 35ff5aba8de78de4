"""Many sessions opened at once are served first come, first served (``visionlens/server/fair_start.py``).

The served app (``panel serve apps/browse.py``) is opened by bare websocket clients speaking Bokeh's protocol
(``tests/ws_clients.py``): each gets a new session, its document and its first thumbnails, and says "document
ready" as a browser does. The server logs "ServerConnection created" when a session's build is done; the clients
note when their documents arrive.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.browser_helpers import serve_app
from tests.ws_clients import open_many

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("fairhome")
    out = subprocess.run(
        [sys.executable, "-m", "visionlens.cli", "demo", "--n", "40", "--seed", "2"],
        env={**os.environ, "VISIONLENS_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    log = home / "server.log"
    proc, url = serve_app(home, log_file=log)
    yield url, log
    proc.terminate()
    proc.wait(10)


def _built_at(log: Path) -> list[float]:
    """Epoch seconds of each "ServerConnection created" line (a session built and answered) in the server log."""
    stamps = re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ServerConnection created", log.read_text(), re.M)
    return [datetime.strptime(s, "%Y-%m-%d %H:%M:%S,%f").timestamp() for s in stamps]


def test_sessions_opened_together_are_answered_in_turn(served):
    url, log = served
    (first,) = asyncio.run(open_many(url, 1, timeout=60))  # the process's first session: imports, store, mount
    assert first.error is None and first.tiles == 24
    before = len(_built_at(log))
    import time

    start = time.time()
    opened = asyncio.run(open_many(url, 6, visible=12, timeout=60))
    assert [o.error for o in opened] == [None] * 6 and all(o.tiles == 12 for o in opened)
    built = _built_at(log)[before:]
    assert len(built) == 6
    documents = sorted(start + o.document_ms / 1000 for o in opened)
    # The first user had a document (and thumbnails) before the last session was even built: sessions are
    # answered in turn. Before, every answer waited for every build queued with it, so none came before the last.
    assert documents[0] < built[-1] - 0.05, (documents, built)
    assert sorted(o.thumbnails_ms for o in opened)[0] / 1000 + start < built[-1]


def test_an_image_being_answered_goes_before_a_new_session():
    """While an image request is open (its file read on a thread, its bytes not yet written), a new session's build
    waits; once it is answered, the build goes ahead after a short quiet moment."""
    from visionlens.server import fair_start

    async def scenario() -> tuple[bool, float]:
        loop = asyncio.get_running_loop()
        with fair_start.answering():
            task = asyncio.ensure_future(fair_start._quiet_moment())
            await asyncio.sleep(0.2)
            waited = not task.done()
        released = loop.time()
        await asyncio.wait_for(task, 1)
        return waited, loop.time() - released

    waited, after = asyncio.run(scenario())
    assert waited and after < 0.2


def test_a_busy_loop_is_not_quiet():
    """Work done by other callbacks on the loop (CPU time on its thread) postpones the quiet moment."""
    import time

    from visionlens.server import fair_start

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        stop = loop.time() + 0.3

        def busy() -> None:  # a callback hogging the loop for 5 ms at a time, as a session build would
            t = time.perf_counter()
            while time.perf_counter() - t < 0.005:
                pass
            if loop.time() < stop:
                loop.call_soon(busy)

        loop.call_soon(busy)
        t0 = loop.time()
        await fair_start._quiet_moment()
        return loop.time() - t0

    waited = asyncio.run(scenario())
    assert 0.3 <= waited < fair_start.MOST_S + 0.2


def test_a_long_job_pauses_at_its_progress_reports_while_sessions_start():
    """A job's progress report waits while sessions are starting (and not at all otherwise), so the interpreter
    goes to the event loop building them; on an event loop itself it never waits."""
    import threading
    import time

    from visionlens.server import fair_start
    from visionlens.server.jobs import Job

    job = Job("test", "test job")
    t0 = time.monotonic()
    job.report("step", 1, 10)
    assert time.monotonic() - t0 < 0.05  # nobody starting: no pause

    fair_start._starting += 1
    try:
        done = threading.Event()
        worker = threading.Thread(target=lambda: (job.report("step", 2, 10), done.set()))
        worker.start()
        assert not done.wait(0.3)  # paused while a session starts

        async def on_loop() -> float:
            t = time.monotonic()
            job.report("step", 3, 10)
            return time.monotonic() - t

        assert asyncio.run(on_loop()) < 0.05  # never on the loop
    finally:
        fair_start._starting -= 1
    assert done.wait(1) and job.steps["step"].done >= 2


def test_spare_time_waits_while_sessions_start_and_just_after():
    """The sidebar of a page that just loaded is built in spare time: not while a session waits for its turn or is
    being built, nor in the ``SETTLE_S`` after one was (its document and thumbnails come first)."""
    from visionlens.server import fair_start

    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        seen: list[str] = []
        fair_start._starting += 1
        task = asyncio.ensure_future(fair_start.spare_time())
        try:
            await asyncio.sleep(0.2)
            seen.append("waited while a session starts" if not task.done() else "ran early")
        finally:
            fair_start._starting -= 1
        fair_start._last_start[0] = loop.time()
        await asyncio.sleep(fair_start.SETTLE_S / 2)
        seen.append("waited just after" if not task.done() else "ran right after a session")
        await asyncio.wait_for(task, 2)
        seen.append("ran once settled")
        return seen

    assert asyncio.run(scenario()) == ["waited while a session starts", "waited just after", "ran once settled"]


def test_past_its_patience_spare_time_still_lets_a_starting_session_go_first():
    """After ``most_s`` a busy loop no longer holds spare-time work back, but a session waiting for its turn does:
    its user has no page at all. Only ``cap_s`` lets the work go ahead of it."""
    from visionlens.server import fair_start

    async def busy(stop: asyncio.Event) -> None:
        while not stop.is_set():
            until = time.thread_time() + 0.003
            while time.thread_time() < until:  # work on the loop between its turns: never a quiet moment
                pass
            await asyncio.sleep(0)

    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        spinner = asyncio.ensure_future(busy(stop))
        seen: list[str] = []
        try:
            start = loop.time()
            await asyncio.wait_for(fair_start.spare_time(most_s=0.2, cap_s=5), 3)
            seen.append("busy loop: went after most_s" if loop.time() - start >= 0.2 else "went too early")
            fair_start._starting += 1
            try:
                task = asyncio.ensure_future(fair_start.spare_time(most_s=0.1, cap_s=5))
                await asyncio.sleep(0.5)
                seen.append("waited for the starting session" if not task.done() else "went before it")
            finally:
                fair_start._starting -= 1
            await asyncio.wait_for(task, 1)
            seen.append("went once it started")
            fair_start._starting += 1
            try:
                start = loop.time()
                await asyncio.wait_for(fair_start.spare_time(most_s=0.1, cap_s=0.4), 2)
                seen.append("went at cap_s" if loop.time() - start >= 0.4 else "went before cap_s")
            finally:
                fair_start._starting -= 1
        finally:
            stop.set()
            await spinner
        return seen

    assert asyncio.run(scenario()) == [
        "busy loop: went after most_s",
        "waited for the starting session",
        "went once it started",
        "went at cap_s",
    ]


def test_spare_time_work_is_taken_one_piece_at_a_time():
    """Pages opened together get their deferred parts one after another (each held until it is done), so a
    session that starts in between is not queued behind all of them."""
    from visionlens.server import fair_start

    async def scenario() -> list[str]:
        log: list[str] = []

        async def piece(name: str) -> None:
            async with fair_start.spare_turn(most_s=0.05, cap_s=1):
                log.append(f"{name} starts")
                await asyncio.sleep(0.1)  # the part being built, the loop free meanwhile
                log.append(f"{name} ends")

        await asyncio.gather(piece("a"), piece("b"), piece("c"))
        return log

    log = asyncio.run(scenario())
    assert log == [x for name in "abc" for x in (f"{name} starts", f"{name} ends")]


def test_spare_time_waits_until_images_stop_coming_for_a_moment():
    """A page's first thumbnails go before its sidebar: spare time starts ``SETTLE_S`` after the last image."""
    from visionlens.server import fair_start

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        fair_start._last_start[0] = float("-inf")
        with fair_start.answering():
            pass
        start = loop.time()
        await asyncio.wait_for(fair_start.spare_time(), 3)
        return loop.time() - start

    assert asyncio.run(scenario()) >= fair_start.SETTLE_S * 0.9


def test_an_embed_jobs_decoding_threads_wait_while_sessions_start(tmp_path: Path):
    """The job pauses at its progress reports; its decoding threads, which work batches ahead, pause too."""
    import threading

    import numpy as np
    from PIL import Image

    from visionlens.embeddings.runner import _decode
    from visionlens.server import fair_start

    path = tmp_path / "a.jpg"
    Image.new("RGB", (8, 6), (200, 10, 10)).save(path)

    def decode() -> tuple[float, object]:
        start = time.monotonic()
        row = _decode(7, str(path), lambda im: np.asarray(im), 8)
        return time.monotonic() - start, row[2]

    assert decode()[0] < 0.2  # nobody starting: no wait
    fair_start._starting += 1
    ended = threading.Timer(0.4, lambda: setattr(fair_start, "_starting", fair_start._starting - 1))
    ended.start()
    waited, pixels = decode()
    ended.join()
    assert waited >= 0.35 and getattr(pixels, "shape", None) == (6, 8, 3)
