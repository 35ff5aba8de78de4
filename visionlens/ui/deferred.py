"""Parts of a page that are built once it is up and the server has a moment: the sidebar, the controls.

A new session's document is built on the event loop every session shares, and when many users open the app at once
they wait in line for each other's builds (``server/fair_start.py``). What a user needs first is the grid and its
thumbnails; the filter sidebar, saved views and export, and the rows of controls above the grid, come a moment later
(the rows in a placeholder of their height: arriving, they do not move the tiles under a user's click). Parts of
pages opened together are filled one at a time (``fair_start.spare_turn``), after the images stopped coming.
So, in a served session, ``later`` returns a holder showing a placeholder and fills it after the page has loaded
(Panel's ``onload``), at a time when no other session is waiting to start. In a notebook or a script the part is
built at once: there is no queue of users to let go first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import panel as pn

from ..server import fair_start
from .html import md
from .jobs import Jobs, session_doc

log = logging.getLogger(__name__)
FILL_MOST_S = 5.0
"""The longest one page's part holds the spare-time turn (a closed session's fill never runs)."""


def later(factory: Callable[[], Any], placeholder: Any = None, **layout: Any) -> pn.Column:
    """A column holding ``factory()``: built at once outside a server, else after the page loaded, in spare time."""
    holder = pn.Column(placeholder if placeholder is not None else pn.Spacer(height=0), **layout)
    doc = session_doc()
    if doc is None:
        holder[:] = [factory()]
        return holder
    loop = asyncio.get_event_loop()  # the server's: sessions are built on it
    jobs = Jobs("deferred", state=None)  # made on the session: its posts run on this session's loop

    def fill() -> None:
        if not _page_open(doc):
            return  # closed before this part came: building it would only send it to a socket going away
        try:
            holder[:] = [factory()]
        except Exception as exc:  # noqa: BLE001 - the page says so rather than staying a placeholder
            log.exception("building part of a page failed")
            holder[:] = [pn.pane.Alert(f"This part of the page failed to load: {md(exc)}", alert_type="danger")]

    async def when_spare() -> None:
        async with fair_start.spare_turn():
            if not _page_open(doc):
                return  # closed while waiting: its part is never built, and the turn is not held for it
            filled = asyncio.Event()

            def fill_then_say() -> None:
                try:
                    fill()
                finally:
                    loop.call_soon_threadsafe(filled.set)

            jobs.post(fill_then_say, slot="fill")  # under the document's lock, this session the current document
            try:  # the turn is held until the part is in the page (its models made, its patch on the way)
                await asyncio.wait_for(filled.wait(), FILL_MOST_S)
            except asyncio.TimeoutError:
                log.debug("a deferred part took over %ss (or its session closed)", FILL_MOST_S)

    def start() -> None:  # Panel may call onload callbacks on a worker thread (--num-threads)
        loop.call_soon_threadsafe(lambda: asyncio.ensure_future(when_spare()))

    pn.state.onload(start)
    return holder


def _page_open(doc: Any) -> bool:
    """Whether a browser still shows this session's page (Bokeh keeps a closed page's session for a while)."""
    session = getattr(doc.session_context, "session", None)
    return session is None or (not session.destroyed and session.connection_count > 0)
