"""Overlay and sort controls above the grid."""

from __future__ import annotations

from typing import Any

import panel as pn
import param
from panel.viewable import Viewer

from ..query import Sort
from .html import choices
from .state import AppState


class ToolbarView(Viewer):
    state = param.ClassSelector(class_=AppState)

    @staticmethod
    def height_for(state: AppState) -> int:
        """Its height in the page at load (two rows; more once many models are picked), so a placeholder of this
        height keeps the grid below where it will be when the toolbar arrives (``builtin_plugin._browse``)."""
        return 147

    def __init__(self, **params: Any):
        super().__init__(**params)
        st = self.state
        self._gt = pn.widgets.Checkbox.from_param(st.param.show_gt, name="ground truth", margin=(18, 10, 0, 10))
        self._models = pn.widgets.MultiChoice(name="Predictions", options=[], value=[], width=260)
        self._conf = pn.widgets.FloatSlider.from_param(
            st.param.min_confidence, name="min confidence", step=0.05, width=170
        )
        self._labels = pn.widgets.MultiChoice(name="Show labels", options=[], placeholder="all", width=240)
        self._sort = pn.widgets.Select(name="Sort by", options=[], width=150)
        self._desc = pn.widgets.Checkbox(name="descending", margin=(18, 10, 0, 10))
        self._search = pn.widgets.TextInput(
            placeholder="Search images by text (CLIP embeddings)", width=330, css_classes=["vl-text-search"]
        )
        self._similar = pn.widgets.Button(
            name="Find similar to picked", button_type="default", disabled=True, css_classes=["vl-similar-picked"]
        )
        self._clear_similar = pn.widgets.Button(name="✕ similarity", button_type="light", visible=False)
        self._k = pn.widgets.IntInput.from_param(st.param.similar_k, name="", width=90)
        self._search.param.watch(lambda e: st.find_similar(text=e.new.strip()) if e.new.strip() else None, "value")
        self._similar.on_click(lambda _: st.find_similar(sample_ids=list(st.picked)))
        self._clear_similar.on_click(lambda _: st.param.update(similar=None, similar_label=""))
        st.param.watch(self._on_picked, "picked")
        st.param.watch(self._on_similar, ["similar", "similar_label"])
        self._models.param.watch(lambda e: setattr(st, "models", list(e.new)), "value")
        self._labels.param.watch(lambda e: setattr(st, "labels", list(e.new)), "value")
        self._sort.param.watch(self._on_sort, "value")
        self._desc.param.watch(self._on_sort, "value")
        st.param.watch(self._on_dataset, "dataset")
        st.param.watch(self._on_models, "models")
        st.param.watch(self._on_state_sort, "sort")
        self._on_dataset()
        self._on_picked()

    def _on_models(self, *_: Any) -> None:
        """Another view (the evaluation panel) may add a model to draw: show it here too."""
        if list(self._models.value) != list(self.state.models):
            self._models.value = [m for m in self.state.models if m in self._models.options.values()]

    def _on_picked(self, *_: Any) -> None:
        n = len(self.state.picked)
        self._similar.disabled = n == 0
        self._similar.name = f"Find similar to {n} picked" if n else "Find similar to picked (shift-click tiles)"

    def _on_similar(self, *_: Any) -> None:
        active = self.state.similar is not None
        self._clear_similar.visible = active
        self._clear_similar.name = f"✕ similar to {self.state.similar_label}" if active else "✕ similarity"

    def _on_dataset(self, *_: Any) -> None:
        ds = self.state.ds
        self._models.options = choices(ds.models() if ds else [])  # MultiChoice labels are HTML: escaped
        self._models.value = list(self.state.models)
        self._labels.options = choices(ds.labels() if ds else [])
        fields = [n for n, f in (ds.fields().items() if ds else []) if f.level == "sample" and f.kind == "numeric"]
        self._sort.options = ["random", *fields] if ds else []
        self._on_state_sort()

    def _on_state_sort(self, *_: Any) -> None:
        self._sort.value = self.state.sort.field if self.state.sort.field in self._sort.options else "id"
        self._desc.value = self.state.sort.descending

    def _on_sort(self, *_: Any) -> None:
        sort = Sort(field=self._sort.value, descending=self._desc.value) if self._sort.value else None
        if sort is not None and sort != self.state.sort:
            self.state.sort = sort

    def __panel__(self) -> pn.Row:
        return pn.Column(
            pn.Row(
                self._gt,
                self._models,
                self._conf,
                self._labels,
                self._sort,
                self._desc,
                sizing_mode="stretch_width",
                css_classes=["vl-toolbar-row"],
            ),
            pn.Row(
                self._search,
                self._similar,
                pn.pane.HTML("k", margin=(12, 2, 0, 10)),
                self._k,
                self._clear_similar,
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
            min_height=self.height_for(self.state),
            css_classes=["vl-browse-toolbar"],
        )
