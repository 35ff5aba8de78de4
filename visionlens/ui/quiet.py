"""Keeping state -> widget updates from echoing back into the state."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Quiet:
    """``with self._silently(): widget.value = ...`` marks the change as coming from the state.

    The mark is per thread: sidebar counts are refreshed on a worker while the user may change a widget on the
    session's thread, and a shared flag would swallow the user's change.
    """

    @property
    def _quiet(self) -> bool:
        local = self.__dict__.get("_quiet_local")
        return bool(local is not None and getattr(local, "on", False))

    @contextmanager
    def _silently(self) -> Iterator[None]:
        local = self.__dict__.setdefault("_quiet_local", threading.local())
        old = getattr(local, "on", False)
        local.on = True
        try:
            yield
        finally:
            local.on = old
