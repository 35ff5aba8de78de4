"""ImageGrid: a virtualized image grid for results of up to a million samples.

The browser keeps only the visible tiles in the DOM and asks for windows of items through `request`;
Python answers by setting `items`. The whole id list never crosses the websocket.

Answering runs the provider on a small thread pool shared by all sessions of the process, not on the
Bokeh event loop: a slow provider (a DuckDB query over a million rows) then never freezes other
sessions, and the answer is pushed back through Panel, which schedules model updates made from other
threads onto the session's event loop. Threads rather than `async`: providers are ordinary blocking
functions (DuckDB, Pillow), and the pool also works outside a server (notebooks, tests).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

import param
from panel.custom import JSComponent

__all__ = ["ImageGrid", "Provider"]

log = logging.getLogger(__name__)

Provider = Callable[[int, int], list[dict[str, Any]]]
"""provider(offset, limit) -> item dicts for rows offset..offset+limit-1 of the current result."""

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    """One pool per process, created on first use so importing the module starts no threads."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="imagegrid")
        return _pool


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
    selected = param.List(default=[], item_type=int, doc="Sample ids picked with shift/ctrl/cmd-click.")
    request = param.Dict(default={}, doc="Set by the browser: {generation, offset, limit, seq}.")
    items = param.Dict(default={}, doc="Answer to `request`: {generation, offset, seq, items}.")
    provider = param.Callable(default=None, precedence=-1, doc="provider(offset, limit) -> list of item dicts.")

    _esm = "grid.js"
    _stylesheets = ["grid.css"]
    _rename = {"provider": None}

    def __init__(self, provider: Provider | None = None, executor: Executor | None = None, **params: Any) -> None:
        """executor: where the provider runs; defaults to a pool shared by every grid in the process."""
        params.setdefault("sizing_mode", "stretch_both")
        params.setdefault("min_height", 300)
        super().__init__(provider=provider, **params)
        self._executor = executor
        self._latest_seq: Any = None
        self._last_future: Future[None] | None = None
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
        self._latest_seq = req.get("seq")
        pool = self._executor or _executor()
        self._last_future = pool.submit(self._answer, req.get("generation"), req.get("seq"), offset, limit)

    def _answer(self, generation: int, seq: Any, offset: int, limit: int) -> None:
        # Scrolling produces a burst of requests; only the newest one is worth the provider's time.
        if seq != self._latest_seq or generation != self.generation:
            return
        try:
            rows = list(self.provider(offset, limit))  # type: ignore[misc]
        except Exception:
            log.exception("ImageGrid provider failed for offset=%s limit=%s", offset, limit)
            return
        if generation != self.generation:  # the result set changed while the provider ran
            return
        self.items = {"generation": generation, "offset": offset, "seq": seq, "items": rows[:limit]}

    def _handle_msg(self, data: Any) -> None:
        if not isinstance(data, dict) or data.get("type") != "click":
            return
        sample_id = int(data["id"])
        if self.clicked == sample_id:
            self.param.trigger("clicked")  # a second click on the same tile is still a click
        else:
            self.clicked = sample_id
