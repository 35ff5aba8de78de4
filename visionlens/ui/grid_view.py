"""The image grid view: binds the session state to the virtualized ImageGrid component."""

from __future__ import annotations

import base64
import posixpath
from typing import Any

import numpy as np
import param
from panel.viewable import Viewer

from .. import media
from . import resources
from .grid_component import ImageGrid, window_json
from .overlays import boxes_for, url_prefix
from .routes import thumb_url
from .state import AppState

PUSHED_TILES = 48  # about two screens of default-size tiles


class GridView(Viewer):
    """Thumbnails of the current result with GT (solid) and prediction (dashed) boxes."""

    state = param.ClassSelector(class_=AppState)
    thumbnails = param.Selector(
        default="route",
        objects=["route", "data"],
        doc="'route': URLs of the server's thumbnail route; 'data': inline data URIs (notebooks).",
    )

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._prefix = url_prefix()
        self._grid = ImageGrid(
            provider=self.window, tile_size=self.state.tile_size, sizing_mode="stretch_both", min_height=500
        )
        self._show(scroll_to_top=True)
        self._grid.param.watch(lambda e: setattr(self.state, "open_sample", e.new), "clicked")
        self._grid.param.watch(lambda e: setattr(self.state, "picked", list(e.new)), "selected")
        self._grid.param.watch(lambda e: setattr(self.state, "tile_size", e.new), "tile_size")
        self.state.param.watch(self._on_result, "version")
        self.state.param.watch(
            self._on_overlay, ["show_gt", "models", "min_confidence", "labels", "evaluation", "box_status"]
        )
        self.state.param.watch(lambda e: setattr(self._grid, "tile_size", e.new), "tile_size")

    def _on_result(self, *_: Any) -> None:
        self._show(scroll_to_top=True)

    def _on_overlay(self, *_: Any) -> None:  # one call per batch: param.update may change several
        self._show(scroll_to_top=False)

    def _show(self, scroll_to_top: bool) -> None:
        """New result: send its first tiles along with it, saving the browser a round trip before it can paint."""
        generation = self._grid.generation + 1
        first = self._grid.first_visible if not scroll_to_top else 0
        offset = max(0, min(first, self.state.count - 1))
        update: dict[str, Any] = {
            "total": self.state.count,
            "generation": generation,
            "items": {
                "generation": generation,
                "offset": offset,
                "seq": None,
                "items": window_json(self.window(offset, PUSHED_TILES)),
            },
        }
        if scroll_to_top:
            update["scroll_to"] = 0
        self._grid.param.update(**update)

    def _thumb(self, ds_id: int, root: str, row: dict[str, Any]) -> str:
        if self.thumbnails == "route":
            return thumb_url(ds_id, row["id"], prefix=self._prefix)
        result = resources.thumbnails().get(media.join(root, row["filepath"]), row["id"])
        return "data:image/jpeg;base64," + base64.b64encode(result.data).decode()

    def window(self, offset: int, limit: int) -> list[dict[str, Any]]:
        """Tiles for rows ``offset .. offset+limit`` of the current result: what the grid asks for as it scrolls."""
        state = self.state
        ds = state.ds
        ids = np.asarray(state.result_ids[offset : offset + limit], np.int64)
        if ds is None or not len(ids):
            return []
        generation = ds.store.generation  # read first: rows read while a write commits are not filed as current
        rows = ds.store.samples_by_id(ds.id, ids).to_pylist()
        # the browser asks the thumbnail route for these next: it finds their files in memory, not in the store
        resources.remember_sample_files(ds.store, generation, ds.id, ds.root, ((r["id"], r["filepath"]) for r in rows))
        sources = state.visible_sources()
        anns = (
            ds.store.annotations(ds.id, ids, sources=sources, evaluation=state.evaluation).to_pylist()
            if sources
            else []
        )
        boxes = boxes_for(anns, state)
        items = []
        for row in rows:
            badges = [b for b in (row.get("split"),) if b]
            if row.get("missing"):
                badges.append({"text": "missing", "color": "#b91c1c"})
            items.append(
                {
                    "id": row["id"],
                    "thumb": self._thumb(ds.id, ds.root, row),
                    "width": row["width"],
                    "height": row["height"],
                    "title": posixpath.basename(row["filepath"]),
                    "badges": badges,
                    "boxes": boxes.get(row["id"], []),
                }
            )
        return items

    def __panel__(self) -> ImageGrid:
        return self._grid
