"""What a session's role may do, applied to widgets: hidden when not allowed, and refused if clicked anyway.

A hidden button cannot be clicked in the page, but a crafted websocket message can still reach its callback, so
each guarded callback asks the state again before running.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .state import AppState

__all__ = ["hide_unless", "guarded"]


def hide_unless(state: AppState, action: str, *widgets: Any) -> bool:
    """Hide ``widgets`` when the session may not take ``action``; returns whether it may."""
    allowed = state.can(action)
    if not allowed:
        for widget in widgets:
            widget.visible = False
    return allowed


def guarded(state: AppState, action: str, callback: Callable[..., Any]) -> Callable[..., Any]:
    """``callback`` that runs only when the session may take ``action`` (else the state's error says why)."""

    def run(*args: Any, **kwargs: Any) -> Any:
        if state.allow(action):
            return callback(*args, **kwargs)
        return None

    return run
