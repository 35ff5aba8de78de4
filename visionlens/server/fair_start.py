"""New sessions are built one at a time, and each one's answer goes out before the next is built.

When many pages open at once, Bokeh starts building each new session from its own callback on the server's event
loop. A session's answer (the websocket's ACK, the document) is written in several steps, each waiting for a later
turn of the loop, and a loop turn runs every callback that was ready when it began: every session queued behind is
built before any answer is finished. So all the users who arrived together waited for the last of them, e.g. 20
sessions of ~0.35 s each all answered after ~7 s. Taking sessions in turns, each built once the loop has had a
quiet moment (the previous sessions' answers, page requests, documents and thumbnails written first), serves them
first come, first served: the first user waits for one build, not for all of them.

This wraps Bokeh's ``ApplicationContext.create_session_if_needed`` (the one place every page request and websocket
goes through to get a new session) in a per-loop lock; a session that exists already is returned as before.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

_installed = False
_guard = threading.Lock()
QUIET_S = 0.01
"""A new session is built once the loop has had nothing else to do for this long: the sessions already started
(their answers, their pages' next requests, their documents) go first."""
MOST_S = 0.5
"""... but it never waits longer than this for a quiet moment: a busy server still lets new users in."""
TICK_S = 0.002  # how often the loop is looked at while waiting
BUSY_CPU_S = 0.001  # CPU time of the loop's thread during one tick above which it counts as busy


_in_flight = 0  # image requests being answered; read and written on the event loop only
_starting = 0  # sessions waiting for their turn or being built; written on the event loop, read anywhere
YIELD_MOST_S = 2.0
"""The longest a long job pauses at one progress report for sessions that are starting."""


def yield_to_new_sessions(most_s: float = YIELD_MOST_S) -> None:
    """Called by long jobs at each progress report, on their worker thread: while sessions are starting, the job
    waits (up to ``most_s``) instead of taking half the interpreter from the event loop that builds them. A job
    holds the GIL between its native calls; the loop needs it for every line of a session's build."""
    if not _starting:
        return
    try:
        asyncio.get_running_loop()
        return  # called on an event loop (a job run inline): sleeping there would stall the very sessions
    except RuntimeError:
        pass
    deadline = time.monotonic() + most_s
    while _starting and time.monotonic() < deadline:
        time.sleep(TICK_S * 10)


_last_image = [float("-inf")]  # time.monotonic() when the last image request was answered


@contextmanager
def answering() -> Iterator[None]:
    """Around an image request: while any is being answered (its work on a thread, its bytes still to write), the
    sessions they belong to are not made to wait for a new session's build; and spare-time work waits until the
    pages' images have stopped coming for a moment."""
    global _in_flight
    _in_flight += 1
    try:
        yield
    finally:
        _in_flight -= 1
        _last_image[0] = time.monotonic()


async def _quiet_moment(most_s: float = MOST_S) -> None:
    """Return once the loop has had no other work and no image request open for ``QUIET_S``."""
    loop = asyncio.get_running_loop()
    start = calm_since = loop.time()
    while loop.time() - start < most_s:
        # CPU time of the loop's thread across the sleep is the work other callbacks did meanwhile; wall time would
        # also count the OS not scheduling this process, which on a crowded machine would look busy forever
        before = time.thread_time()
        await asyncio.sleep(TICK_S)
        now = loop.time()
        if time.thread_time() - before > BUSY_CPU_S or _in_flight:
            calm_since = now
        elif now - calm_since >= QUIET_S:
            return


SETTLE_S = 0.5
"""Spare-time work also waits this long after the last session was built: that session's document and first
thumbnails, asked for right after, go first."""
_last_start = [float("-inf")]  # loop time the last session was built


async def spare_time(most_s: float = 5.0, cap_s: float = 60.0) -> None:
    """Wait for a moment when no session is starting or was built in the last ``SETTLE_S``, no image was answered
    in that time either and the loop is quiet: the time for work a page can do without at first (``ui/deferred.py``: the
    sidebar). After ``most_s`` a busy loop no longer holds it back, but a session waiting to start still does (a
    user with no page at all waits before one whose page lacks its sidebar); after ``cap_s`` it goes ahead anyway,
    so a server that is never quiet still fills its pages."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < cap_s:
        if loop.time() - start < most_s:
            await _quiet_moment(most_s)
            settled = loop.time() - _last_start[0] >= SETTLE_S and time.monotonic() - _last_image[0] >= SETTLE_S
            if not _starting and settled:
                return
        elif not _starting:
            return
        await asyncio.sleep(TICK_S * 10)


_spare_turns: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()  # one per event loop


@asynccontextmanager
async def spare_turn(most_s: float = 5.0, cap_s: float = 60.0) -> AsyncIterator[None]:
    """Spare-time work taken one piece at a time: each waits for ``spare_time`` on its own, so pages opened
    together get their sidebars one after another, and a session that starts meanwhile goes before the rest
    of them instead of after all of them."""
    turn = _spare_turns.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with turn:
        await spare_time(most_s, cap_s)
        yield


_frozen = [False]


def _freeze_once() -> None:
    """After the process's first session is built: what exists now (the imported modules, Panel's and Bokeh's
    model classes, the store, that first session) is left out of the cyclic garbage collector's full passes.
    Each of those walked the whole heap, ~0.5 s on the shared event loop, and ran twice while 20 sessions
    started; later sessions' objects are still collected as before (``gc.freeze``)."""
    if not _frozen[0]:
        _frozen[0] = True
        gc.freeze()


def install() -> None:
    """Once per process (the app calls it when its first session is built)."""
    global _installed
    with _guard:
        if _installed:
            return
        _installed = True
    from bokeh.server.contexts import ApplicationContext

    original = ApplicationContext.create_session_if_needed
    turns: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()  # one per event loop

    async def create_session_if_needed(self: Any, session_id: Any, request: Any = None, token: Any = None) -> Any:
        if session_id in self._sessions or session_id in self._pending_sessions:
            return await original(self, session_id, request, token)
        global _starting
        turn = turns.setdefault(asyncio.get_running_loop(), asyncio.Lock())
        _starting += 1
        try:
            async with turn:
                await _quiet_moment()
                session = await original(self, session_id, request, token)
                _freeze_once()
                return session
        finally:
            _starting -= 1
            _last_start[0] = asyncio.get_running_loop().time()

    create_session_if_needed.__doc__ = original.__doc__
    ApplicationContext.create_session_if_needed = create_session_if_needed  # type: ignore[method-assign]
