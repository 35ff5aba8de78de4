"""The detail view: one sample large, its boxes, an annotation table, metadata, and paging through the result."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

from ..errors import VisionLensError
from ..store.metadata import GROUND_TRUTH
from ..store.tags import clean_tags
from .detail_component import AnnotatedImage
from .html import el, text
from .jobs import Jobs
from .overlays import boxes_for, url_prefix
from .permissions import guarded, hide_unless
from .routes import image_url
from .state import AppState


class DetailView(Viewer):
    """Opens over the grid when ``state.open_sample`` is set; arrows page, Esc closes. Boxes are picked by a click
    on the image or a row of the objects table, and tagged from here (``Dataset.tag_objects`` by annotation id)."""

    state = param.ClassSelector(class_=AppState)
    thumbnails = param.Selector(default="route", objects=["route", "data"])
    top_offset = param.Integer(default=0, doc="Room to leave for a page header the overlay must not cover (px).")

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._prefix = url_prefix()
        self._image = AnnotatedImage(sizing_mode="stretch_both", min_height=420)
        self._image.param.watch(self._on_key, "key")
        self._image.param.watch(self._on_box_click, "clicked")
        self._ann_ids: list[int] = []  # annotation id of each row of the objects table
        self._jobs = Jobs("detail", state=self.state)
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
            selectable="checkbox",
            hidden_columns=["id"],
            css_classes=["vl-detail-objects"],
        )
        self._table.param.watch(self._on_rows_picked, "selection")
        self._box_tag = pn.widgets.AutocompleteInput(
            placeholder="box tag…",
            options=[],
            restrict=False,
            case_sensitive=False,
            min_characters=1,
            search_strategy="includes",
            width=150,
            css_classes=["vl-box-tag-input"],
        )
        self._box_tag_add = pn.widgets.Button(name="Tag boxes", disabled=True, css_classes=["vl-box-tag-add"])
        self._box_tag_remove = pn.widgets.Button(
            name="Remove", button_type="light", disabled=True, css_classes=["vl-box-tag-remove"]
        )
        self._box_tag_add.on_click(guarded(self.state, "tag", lambda _: self._tag_boxes(remove=False)))
        self._box_tag_remove.on_click(guarded(self.state, "tag", lambda _: self._tag_boxes(remove=True)))
        self._box_said = pn.pane.HTML("", css_classes=["vl-box-tag-said"], sizing_mode="stretch_width")
        self._box_tags_row = pn.Row(self._box_tag, self._box_tag_add, self._box_tag_remove, sizing_mode="stretch_width")
        hide_unless(self.state, "tag", self._box_tags_row)
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
            pn.Tabs(
                ("Objects", pn.Column(self._table, self._box_tags_row, self._box_said, sizing_mode="stretch_width")),
                ("Metadata", self._meta),
                sizing_mode="stretch_width",
                dynamic=True,
            ),
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
        self._box_said.object = ""
        if self.state.open_sample is not None:
            self._image.selected = []
            self._load_box_tags()
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
        boxes = boxes_for(anns, overlay, ids=True).get(row["id"], [])
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
        shown = [a for a in anns if a["source"] == GROUND_TRUTH or (a["confidence"] or 0) >= self._min_conf.value]
        measures = [f.name for f in ds.fields().values() if f.level == "annotation" and not f.builtin]
        table = pd.DataFrame(
            [
                {
                    "id": a["id"],
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
                    "tags": ", ".join(a.get("tags") or ()),
                    **{m: a.get(m) for m in measures},  # computed object fields (a plugin's box measures)
                }
                for a in shown
            ]
        )
        self._ann_ids = [a["id"] for a in shown]
        picked = [i for i in self._image.selected if i in self._ann_ids]  # still picked after a re-read
        self._table.value = table
        self._table.selection = [self._ann_ids.index(i) for i in picked]
        self._image.selected = picked
        self._show_picked()
        self._meta.value = pd.DataFrame({"field": list(row), "value": [str(v) for v in row.values()]})

    # -- picking and tagging boxes --------------------------------------------------------------------------------

    def _on_box_click(self, event: Any) -> None:
        """A click on a box toggles it among the picked ones (and its table row with it)."""
        ann = event.new
        if ann is None or ann not in self._ann_ids:
            return
        picked = list(self._image.selected)
        picked = [i for i in picked if i != ann] if ann in picked else [*picked, ann]
        self._table.selection = [self._ann_ids.index(i) for i in picked]

    def _on_rows_picked(self, event: Any) -> None:
        self._image.selected = [self._ann_ids[i] for i in event.new if 0 <= i < len(self._ann_ids)]
        self._show_picked()

    def _show_picked(self) -> None:
        n = len(self._image.selected)
        self._box_tag_add.param.update(
            name=f"Tag {n} box{'es' if n != 1 else ''}" if n else "Tag boxes", disabled=not n
        )
        self._box_tag_remove.disabled = not n

    def _load_box_tags(self) -> None:
        ds = self.state.ds
        if ds is not None and self._box_tags_row.visible:
            self._jobs.submit(
                lambda: list(ds.tag_counts()["objects"]),
                lambda names: setattr(self._box_tag, "options", names),
                key="box-tag-options",
                name="box tag suggestions",
            )

    def _tag_boxes(self, remove: bool) -> None:
        ds, ids = self.state.ds, list(self._image.selected)
        raw = self._box_tag.value_input or self._box_tag.value or ""
        try:
            tags = clean_tags(raw)
        except VisionLensError as e:
            self._box_say(str(e), error=True)
            return
        if ds is None or not ids:
            return
        write = ds.untag_objects if remove else ds.tag_objects
        self._box_tag_add.disabled = self._box_tag_remove.disabled = True
        self._jobs.submit(
            lambda: write(tags, ann_ids=ids),
            lambda changed: self._boxes_tagged(tags[0], len(ids), changed, remove),
            lambda exc: self._box_say(str(exc) if isinstance(exc, VisionLensError) else repr(exc), error=True),
            key="box-tag",
            lane="long",
            name="untag boxes" if remove else "tag boxes",
        )

    def _boxes_tagged(self, tag: str, n: int, changed: int, remove: bool) -> None:
        """Say what changed; then the grid, the sidebar's box tags and this view re-read the stored tags."""
        if remove:
            self._box_say(f"Removed {tag!r} from {changed} of {n} boxes")
        else:
            self._box_say(f"Tagged {n} boxes with {tag!r}" + (f" ({n - changed} had it)" if changed < n else ""))
        self.state.data_changed()
        self._load_box_tags()
        self._render()

    def _box_say(self, message: str, error: bool = False) -> None:
        style = "color:#b3261e" if error else "font-size:0.85em"
        self._box_said.object = f'<span style="{style}">{text(message)}</span>'
        self._show_picked()

    def wait(self, timeout: float = 30.0) -> None:
        """Block until this view's background work ended (scripts and tests)."""
        self._jobs.wait(timeout, raise_errors=True)

    def __panel__(self) -> pn.Column:
        return self._layout


@dataclass
class _Overlay:
    """The detail view's own overlay toggles, in the shape ``boxes_for`` reads."""

    min_confidence: float
    labels: list[str] = field(default_factory=list)
    box_status: list[str] = field(default_factory=list)
