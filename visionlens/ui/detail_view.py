"""The detail view: one sample large, its boxes, an annotation table, metadata, and paging through the result."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

from ..store.metadata import GROUND_TRUTH
from .detail_component import AnnotatedImage
from .html import el
from .overlays import boxes_for, url_prefix
from .routes import image_url
from .state import AppState


class DetailView(Viewer):
    """Opens over the grid when ``state.open_sample`` is set; arrows page, Esc closes."""

    state = param.ClassSelector(class_=AppState)
    thumbnails = param.Selector(default="route", objects=["route", "data"])
    top_offset = param.Integer(default=0, doc="Room to leave for a page header the overlay must not cover (px).")

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._prefix = url_prefix()
        self._image = AnnotatedImage(sizing_mode="stretch_both", min_height=420)
        self._image.param.watch(self._on_key, "key")
        self._title = pn.pane.HTML(sizing_mode="stretch_width")
        self._prev = pn.widgets.Button(name="◀ Prev", button_type="light", width=90)
        self._next = pn.widgets.Button(name="Next ▶", button_type="light", width=90)
        self._close = pn.widgets.Button(name="✕ Close", button_type="light", width=90, css_classes=["vl-detail-close"])
        self._similar = pn.widgets.Button(
            name="Find similar", button_type="primary", width=120, css_classes=["vl-find-similar"]
        )
        self._similar.on_click(lambda _: self.state.find_similar(sample_ids=[self.state.open_sample]))
        self._prev.on_click(lambda _: self.state.step(-1))
        self._next.on_click(lambda _: self.state.step(1))
        self._close.on_click(lambda _: setattr(self.state, "open_sample", None))
        self._show_gt = pn.widgets.Checkbox(name="ground truth", value=True)
        self._models = pn.widgets.CheckBoxGroup(options=[], value=[], inline=True)
        self._min_conf = pn.widgets.FloatSlider(name="min confidence", start=0, end=1, step=0.05, value=0.0, width=180)
        for w in (self._show_gt, self._models, self._min_conf):
            w.param.watch(self._render, "value")
        self._table = pn.widgets.Tabulator(
            pd.DataFrame(),
            show_index=False,
            disabled=True,
            height=260,
            sizing_mode="stretch_width",
            pagination=None,
            layout="fit_data_table",
        )
        self._meta = pn.widgets.Tabulator(
            pd.DataFrame(),
            show_index=False,
            disabled=True,
            height=560,
            sizing_mode="stretch_width",
            layout="fit_data_table",
        )
        side = pn.Column(
            pn.Row(self._show_gt, self._min_conf),
            self._models,
            # dynamic: a Tabulator laid out while its tab is hidden draws with a gap and rows scrolled away
            pn.Tabs(("Objects", self._table), ("Metadata", self._meta), sizing_mode="stretch_width", dynamic=True),
            width=420,
            sizing_mode="stretch_height",
        )
        self._layout = pn.Column(
            pn.Row(self._title, self._similar, self._prev, self._next, self._close, sizing_mode="stretch_width"),
            pn.Row(self._image, side, sizing_mode="stretch_both"),
            visible=False,
            sizing_mode="stretch_both",
            css_classes=["vl-detail"],
            margin=(self.top_offset, 10, 10, 10),
            styles={
                "position": "fixed",
                "inset": "0",
                "z-index": "1000",
                "background": "white",
                "box-shadow": "0 10px 40px rgba(0,0,0,.45)",
                "border-radius": "8px",
                "padding": "8px",
            },
        )
        self.state.param.watch(self._on_open, "open_sample")
        self.state.param.watch(self._render, "evaluation")
        self.state.param.watch(self._on_dataset, "dataset")
        self._on_dataset()
        self._on_open()

    def _on_dataset(self, *_: Any) -> None:
        ds = self.state.ds
        models = ds.models() if ds else []
        self._models.options = models
        self._models.value = list(models)

    def _on_key(self, event: Any) -> None:
        if event.new == "ArrowLeft":
            self.state.step(-1)
        elif event.new == "ArrowRight":
            self.state.step(1)
        elif event.new == "Escape":
            self.state.open_sample = None

    def _on_open(self, *_: Any) -> None:
        self._layout.visible = self.state.open_sample is not None
        if self.state.open_sample is not None:
            self._render()

    def _render(self, *_: Any) -> None:
        st = self.state
        ds = st.ds
        if ds is None or st.open_sample is None:
            return
        rows = ds.store.samples_by_id(ds.id, [st.open_sample]).to_pylist()
        if not rows:
            st.error = f"sample {st.open_sample} is not in dataset {ds.name!r}"
            st.open_sample = None
            return
        row = rows[0]
        sources = ([GROUND_TRUTH] if self._show_gt.value else []) + list(self._models.value)
        anns = (
            ds.store.annotations(ds.id, [row["id"]], sources=sources, evaluation=st.evaluation).to_pylist()
            if sources
            else []
        )
        overlay = _Overlay(self._min_conf.value)
        boxes = boxes_for(anns, overlay).get(row["id"], [])
        if self.thumbnails == "route":
            src = image_url(ds.id, row["id"], 1600, prefix=self._prefix)
        else:
            import base64

            from .. import media
            from ..thumbnails import full_image

            src = (
                "data:image/jpeg;base64,"
                + base64.b64encode(full_image(media.join(ds.root, row["filepath"]), 1600).data).decode()
            )
        self._image.param.update(src=src, image_width=row["width"] or 1, image_height=row["height"] or 1, boxes=boxes)
        pos = st.position()
        where = f"{pos + 1:,} of {st.count:,}" if pos is not None else "not in the current result"
        self._title.object = (
            el("b", posixpath.basename(row["filepath"]), class_="vl-detail-title")
            + " "
            + el("small", f"{where} · id {row['id']} · {row['width']}×{row['height']}")
        )
        self._prev.disabled = not pos
        self._next.disabled = pos is None or pos + 1 >= st.count
        table = pd.DataFrame(
            [
                {
                    "source": a["source"],
                    "label": a["label"],
                    "confidence": a["confidence"],
                    "x": round(a["x"], 1),
                    "y": round(a["y"], 1),
                    "w": round(a["w"], 1),
                    "h": round(a["h"], 1),
                    "crowd": bool(a["iscrowd"]),
                    "status": a.get("status"),
                    "error": a.get("error"),
                }
                for a in anns
                if a["source"] == GROUND_TRUTH or (a["confidence"] or 0) >= self._min_conf.value
            ]
        )
        self._table.value = table
        self._meta.value = pd.DataFrame({"field": list(row), "value": [str(v) for v in row.values()]})

    def __panel__(self) -> pn.Column:
        return self._layout


@dataclass
class _Overlay:
    """The detail view's own overlay toggles, in the shape ``boxes_for`` reads."""

    min_confidence: float
    labels: list[str] = field(default_factory=list)
    box_status: list[str] = field(default_factory=list)
