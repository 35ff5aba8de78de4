"""ImageGrid: a virtualized image grid for results of up to a million samples.

The browser keeps only the visible tiles in the DOM and asks for windows of items through `request`;
Python answers by setting `items`. The whole id list never crosses the websocket.

Answering runs the provider on the process-wide quick lane of ``jobs`` (never on the Bokeh event loop, so a
slow provider, e.g. a DuckDB query over a million rows, never freezes other sessions); the answer is applied on
the session's own event loop. Requests share one job key: while a window is being read, a burst of scroll requests
leaves only the newest waiting, and an answer a newer request superseded is dropped.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import param
from panel.custom import JSComponent

from .jobs import Jobs

__all__ = ["ImageGrid", "Provider", "window_json", "window_rows"]

log = logging.getLogger(__name__)

Provider = Callable[[int, int], list[dict[str, Any]]]
"""provider(offset, limit) -> item dicts for rows offset..offset+limit-1 of the current result."""

# The grid's stylesheet as CSS text, not a file name: a template lists every component's ``*.css`` stylesheet in
# the page head as given, relative to the page, where ``panel serve`` has nothing (``/grid.css`` answered 404 on
# every load). Text travels with the component's model and is served by nobody.
_CSS = (Path(__file__).parent / "grid.css").read_text(encoding="utf-8")


def window_json(rows: list[dict[str, Any]]) -> str:
    """A window's item dicts as one JSON text, the form ``items`` carries them in: Bokeh encodes a nested value
    piece by piece in Python (48 tiles with their boxes were a tenth of a new session's start, and as much of each
    scroll's answer), a string as it is; the browser parses it natively. A value JSON cannot hold (NaN, an
    infinity) goes as null."""
    try:
        return json.dumps(rows, allow_nan=False, separators=(",", ":"))
    except ValueError:
        return json.dumps(_finite(rows), separators=(",", ":"))


def window_rows(items: dict[str, Any]) -> list[dict[str, Any]]:
    """The item dicts of an ``items`` answer (scripts and tests)."""
    text = (items or {}).get("items")
    return json.loads(text) if isinstance(text, str) else []


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class ImageGrid(JSComponent):
    """Virtualized grid of thumbnails with GT/prediction boxes.

    Item dicts: {"id", "thumb" (URL), "width", "height" (original pixels), "title", "badges": [str |
    {"text", "color"}], "boxes": [{"x", "y", "w", "h" (original pixels), "label", "color",
    "kind": "gt" | "pred", "score": float | None, "status": None | "tp" | "fp" | "fn"}]}.

    To show a new result set call `show_result(total)` (or bump `generation` and set `total`
    together): the browser drops its cache and asks for the windows it needs. The scroll position is
    kept; set `scroll_to=0` as well to start at the top.
    """

    total = param.Integer(default=0, bounds=(0, None), doc="Number of items in the current result.")
    generation = param.Integer(default=0, doc="Bumped when the result set changes; stale windows are dropped.")
    tile_size = param.Integer(default=180, bounds=(32, 1024), doc="Target tile width in px (user adjustable).")
    max_window = param.Integer(default=600, bounds=(1, 10_000), doc="Most items sent in one window.")
    show_boxes = param.Boolean(default=True)
    show_titles = param.Boolean(default=True)
    show_toolbar = param.Boolean(default=True, doc="Item count, selection count and tile-size slider.")
    scroll_to = param.Integer(default=-1, doc="Set to an index to jump there; the browser resets it to -1.")
    first_visible = param.Integer(default=0, doc="Index of the first visible item, reported by the browser.")
    clicked = param.Integer(default=None, allow_None=True, doc="Sample id of the last plain click.")
    click_seq = param.Integer(default=0, doc="Number of the last click taken; the browser re-sends one until then.")
    selected = param.List(default=[], item_type=int, doc="Sample ids picked with shift/ctrl/cmd-click.")
    request = param.Dict(default={}, doc="Set by the browser: {generation, offset, limit, seq}.")
    items = param.Dict(default={}, doc="Answer to `request`: {generation, offset, seq, items: window_json(rows)}.")
    provider = param.Callable(default=None, precedence=-1, doc="provider(offset, limit) -> list of item dicts.")

    _esm = "grid.js"
    _stylesheets = [_CSS]
    _rename = {"provider": None}

    def __init__(self, provider: Provider | None = None, executor: Executor | None = None, **params: Any) -> None:
        """executor: where the provider runs; defaults to the process-wide quick lane of ``jobs``."""
        params.setdefault("sizing_mode", "stretch_both")
        params.setdefault("min_height", 300)
        super().__init__(provider=provider, **params)
        self._jobs = Jobs("grid", pool=executor)
        self._last_future: Future[Any] | None = None
        self.param.watch(self._on_request, "request")

    def show_result(self, total: int, scroll_to_top: bool = False) -> None:
        """Switch to a new result set in one update, so the browser never mixes old and new windows."""
        update: dict[str, Any] = {"total": int(total), "generation": self.generation + 1, "items": {}}
        if scroll_to_top:
            update["scroll_to"] = 0
        self.param.update(**update)

    def _on_request(self, event: param.parameterized.Event) -> None:
        req = dict(event.new or {})
        if not req or req.get("generation") != self.generation or self.provider is None:
            return
        offset = max(0, int(req.get("offset", 0)))
        limit = min(int(req.get("limit", 0)), self.max_window, self.total - offset)
        if limit <= 0:
            return
        generation, seq, provider = req.get("generation"), req.get("seq"), self.provider

        def work() -> list[dict[str, Any]] | None:
            if generation != self.generation:
                return None  # a new result set came while this request waited
            return list(provider(offset, limit))[:limit]

        def on_done(rows: list[dict[str, Any]] | None) -> None:
            if rows is not None and generation == self.generation:  # else the result set changed meanwhile
                self.items = {"generation": generation, "offset": offset, "seq": seq, "items": window_json(rows)}

        # A failure is logged and notified by jobs; the browser asks again for a window that never came.
        job = self._jobs.submit(work, on_done, key="window", name=f"window {offset}+{limit}")
        self._last_future = job.future

    def _handle_msg(self, data: Any) -> None:
        if not isinstance(data, dict) or data.get("type") != "click":
            return
        seq = int(data.get("seq") or 0)
        if seq and seq <= self.click_seq:
            return  # a copy of a click already taken (re-sent before the browser saw click_seq)
        sample_id = int(data["id"])
        if self.clicked == sample_id:
            self.param.trigger("clicked")  # a second click on the same tile is still a click
        else:
            self.clicked = sample_id
        if seq:
            self.click_seq = seq
