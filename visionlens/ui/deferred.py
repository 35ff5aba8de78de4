"""Parts of a page that are built once it is up and the server has a moment: the sidebar.

A new session's document is built on the event loop every session shares, and when many users open the app at once
they wait in line for each other's builds (``server/fair_start.py``). What a user needs first is the grid and its
thumbnails; the filter sidebar, saved views and export come a moment later (the rows above the grid stay in the
first document: arriving later, they would move the tiles under a user's click).
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
        try:
            holder[:] = [factory()]
        except Exception as exc:  # noqa: BLE001 - the page says so rather than staying a placeholder
            log.exception("building part of a page failed")
            holder[:] = [pn.pane.Alert(f"This part of the page failed to load: {md(exc)}", alert_type="danger")]

    async def when_spare() -> None:
        await fair_start.spare_time()
        jobs.post(fill, slot="fill")  # under the document's lock, with this session as the current document

    def start() -> None:  # Panel may call onload callbacks on a worker thread (--num-threads)
        loop.call_soon_threadsafe(lambda: asyncio.ensure_future(when_spare()))

    pn.state.onload(start)
    return holder
