"""Toasts in a served page, whose notification area is put into the page with a session's first toast.

Panel builds its notification area (a ReactiveHTML with ten stylesheets) into every new session's document when
notifications are on: a sixth of a session's start on a small machine, paid by every user who opens the app, for
the few sessions that ever see a toast. The app loads the area's scripts with the page (``pn.extension(
"notifications")``) and keeps an empty, zero-sized column in it (``toast_holder``); the area is built into that
column when the first toast is shown. Only a served page shows toasts: a notebook or a script has no area.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any, Literal

import panel as pn

from .jobs import session_doc

log = logging.getLogger(__name__)
_holders: weakref.WeakKeyDictionary[Any, pn.Column] = weakref.WeakKeyDictionary()  # session document -> column


def toast_holder() -> pn.Column:
    """The column the current session's notification area goes into; put it anywhere in the page (it takes no
    room, and the toasts are placed over the page)."""
    holder = pn.Column(width=0, height=0, margin=0, css_classes=["vl-toasts"])
    doc = session_doc()
    if doc is not None:
        _holders[doc] = holder
    return holder


def notify(message: str, level: Literal["error", "warning", "success", "info"] = "error", duration: int = 8000) -> None:
    """Show ``message`` (HTML: escape a dataset's text first) as a toast in the current served session. A page
    built with Panel's own area (``notifications=True``, no holder) uses that one. Never raises: a toast that
    cannot be shown must not hide what else reports the same message."""
    doc = session_doc()
    if doc is None:
        return
    try:
        holder = _holders.get(doc)
        if holder is None:
            area = pn.state.notifications if pn.config.notifications else None
        else:
            with pn.config.set(notifications=True):
                area = pn.state.notifications  # made once per session, then the same one
            if area is not None and not holder.objects:
                holder.append(area)
        if area is not None:
            getattr(area, level)(message, duration=duration)
    except Exception:  # noqa: BLE001
        log.debug("notification failed", exc_info=True)
