"""The filter sidebar, generated from the dataset's field registry: every field a user can filter by shows up."""

from __future__ import annotations

from typing import Any

import panel as pn
import param
from panel.viewable import Viewer

from ..dataset import Dataset
from ..query import FieldFilter, Filters, LabelFilter, Range
from ..store.metadata import GROUND_TRUTH
from . import icons
from .field_controls import FieldControl, RangeControl, control_for
from .html import choices, el, md, text
from .jobs import Jobs
from .quiet import Quiet
from .state import AppState

_SKIP = {"id", "filepath"}


def _describe(flt: LabelFilter) -> str:
    """A one-line reading of an object filter the widgets above do not show (a second one, from a click)."""
    parts = [
        "none of" if flt.exclude else "has",
        ", ".join(flt.labels) if flt.labels else "any label",
        f"from {flt.source}",
    ]
    if flt.status:
        parts.append("/".join(s.upper() for s in flt.status))
    return text(" ".join(parts))


Counts = dict[str, Any]
"""Field -> what its control's ``query`` computed (value counts, a histogram): a counts refresh's result."""


def compute_counts(ds: Dataset, controls: dict[str, FieldControl], flt: Filters, numeric: bool = True) -> Counts:
    """Every control's store reads under ``flt``, without touching widgets, so it can run on a worker while the
    sidebar rebuilds (``controls`` is the dict of one build: a rebuild swaps in a new one, never mutates it)."""
    return {name: c.query(ds, flt) for name, c in controls.items() if numeric or not isinstance(c, RangeControl)}


class FiltersView(Quiet, Viewer):
    """Sidebar: live count, per-field filters with counts/histograms, object (annotation-level) filter, reset."""

    state = param.ClassSelector(class_=AppState)

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._count = pn.pane.HTML(sizing_mode="stretch_width", css_classes=["vl-result-count"])
        self._spinner = pn.indicators.LoadingSpinner(value=False, size=20, width=20)
        self._error = pn.pane.Alert("", alert_type="danger", visible=False, sizing_mode="stretch_width")
        self._reset = pn.widgets.Button(name="Reset filters", button_type="light", icon=icons.FILTER_OFF)
        self._reset.on_click(lambda _: self.state.reset())
        self._finding = pn.pane.HTML(
            "", sizing_mode="stretch_width", css_classes=["vl-active-finding"], margin=(5, 0, 0, 5)
        )
        self._finding_clear = pn.widgets.Button(
            label="✕",
            color="light",
            width=34,
            margin=(5, 5, 0, 0),
            description="Clear this insight's filter",
            css_classes=["vl-clear-finding"],
        )
        self._finding_clear.on_click(lambda _: self.state.clear_finding())
        self._finding_row = pn.Row(
            self._finding,
            self._finding_clear,
            visible=False,
            sizing_mode="stretch_width",
            styles={"background": "#eef3fb", "border-radius": "6px"},
        )
        self._dataset = pn.widgets.Select.from_param(
            self.state.param.dataset, name="Dataset", sizing_mode="stretch_width"
        )
        self._fields = pn.Column(sizing_mode="stretch_width")
        self._objects = pn.Column(sizing_mode="stretch_width")
        self._more_objects = pn.pane.HTML("", visible=False, sizing_mode="stretch_width")
        self._controls: dict[str, FieldControl] = {}  # replaced, never mutated, by a rebuild
        self._build = 0  # bumped by every rebuild: counts computed for older widgets are not applied
        self._jobs = Jobs("sidebar", state=self.state)
        self._layout = pn.Column(
            self._dataset,
            pn.Row(self._count, self._spinner, sizing_mode="stretch_width"),
            self._error,
            self._finding_row,
            self._reset,
            pn.pane.HTML("<b>Objects</b>", margin=(10, 5, 0, 5)),
            self._objects,
            self._more_objects,
            pn.pane.HTML("<b>Sample fields</b>", margin=(10, 5, 0, 5)),
            self._fields,
            sizing_mode="stretch_width",
        )
        self.state.param.watch(self._rebuild, "dataset")
        self.state.param.watch(self._on_fields_changed, "evaluation")
        self.state.param.watch(self._refresh_counts, "version")
        self.state.param.watch(self._load_box_tags, "data_version")
        self.state.param.watch(self._on_filters, "filters")
        self.state.param.watch(lambda e: setattr(self._spinner, "value", e.new), "busy")
        self.state.param.watch(self._show_error, "error")
        self._rebuild()
        self._on_filters()  # filters restored from a link before this view existed
        self._show_error()  # ... and so may an error about that link

    def _on_fields_changed(self, *_: Any) -> None:
        """An evaluation adds fields (``<key>.tp/.fp/.fn``): rebuild when the registry grew."""
        ds = self.state.ds
        if ds is not None and set(ds.fields()) != getattr(self, "_built_fields", set()):
            self._rebuild()

    def _show_error(self, *_: Any) -> None:
        self._error.param.update(object=md(self.state.error), visible=bool(self.state.error))

    # -- building ------------------------------------------------------------------------------------------------

    def _rebuild(self, *_: Any) -> None:
        ds = self.state.ds
        self._built_for = self.state.dataset
        self._built_fields = set(ds.fields()) if ds is not None else set()
        self._build += 1
        controls: dict[str, FieldControl] = {}
        if ds is None:
            self._controls = controls
            self._fields.objects = [pn.pane.Markdown("No dataset yet: add one on the **Datasets** tab.")]
            self._objects.objects = []
            return
        flt = self.state.effective_filters()
        for name, info in ds.fields().items():
            if info.level != "sample" or name in _SKIP:
                continue
            control = control_for(name, info.kind, ds, flt, self._on_field)
            if control is not None:
                controls[name] = control
        self._controls = controls  # swapped in whole: a refresh iterating the old dict never sees it change
        self._fields.objects = [c.panel() for c in controls.values()]
        self._build_objects()
        # the histograms were just drawn with the current filters; the value counts are computed right here
        self._show_count()
        self._apply_counts(self._build, compute_counts(ds, controls, flt, numeric=False))

    def _build_objects(self) -> None:
        ds = self.state.ds
        sources = [GROUND_TRUTH, *ds.models()] if ds else [GROUND_TRUTH]
        self._obj_source = pn.widgets.Select(
            name="Source", options=sources, value=GROUND_TRUTH, sizing_mode="stretch_width"
        )
        self._obj_labels = pn.widgets.MultiChoice(
            name="Labels",
            options=choices(ds.labels() if ds else []),
            placeholder="any label",
            sizing_mode="stretch_width",
        )
        self._obj_conf = pn.widgets.RangeSlider(
            name="Confidence", start=0, end=1, value=(0, 1), step=0.01, disabled=True, sizing_mode="stretch_width"
        )
        self._obj_mode = pn.widgets.RadioButtonGroup(
            options=["has", "has none"], value="has", button_type="light", sizing_mode="stretch_width"
        )
        self._obj_min = pn.widgets.IntInput(name="At least", value=1, start=1, end=1000, sizing_mode="stretch_width")
        # shown once the dataset has tagged boxes (the detail view or "Tag boxes" writes them)
        self._obj_tags = pn.widgets.MultiChoice(
            name="Box tags",
            options=[],
            placeholder="any tag",
            visible=False,
            sizing_mode="stretch_width",
            css_classes=["vl-box-tags"],
        )
        for w in (self._obj_source, self._obj_labels, self._obj_mode, self._obj_min, self._obj_tags):
            w.param.watch(self._on_objects, "value")
        self._obj_conf.param.watch(self._on_objects, "value_throttled")
        self._obj_fields = self._object_field_widgets(ds)
        self._objects.objects = [
            self._obj_source,
            self._obj_labels,
            self._obj_conf,
            self._obj_tags,
            *self._obj_fields.values(),
            pn.Row(self._obj_mode, self._obj_min, sizing_mode="stretch_width"),
        ]
        self._load_box_tags()

    def _object_field_widgets(self, ds: Dataset | None) -> dict[str, Any]:
        """A control per computed object field (a plugin's box measures): a range slider over the values the boxes
        have, or a multi-select of the most common values."""
        out: dict[str, Any] = {}
        if ds is None:
            return out
        for info in ds.fields().values():
            if info.level != "annotation" or info.builtin:
                continue
            summary = ds.store.object_field_summary(ds.id, info.name)
            if "min" in summary:
                lo, hi = summary["min"], summary["max"]
                if lo is None or hi is None:
                    continue  # nothing measured yet
                hi = hi if hi > lo else lo + 1
                widget = pn.widgets.RangeSlider(
                    name=info.name, start=lo, end=hi, value=(lo, hi), step=(hi - lo) / 200, sizing_mode="stretch_width"
                )
                widget.param.watch(self._on_objects, "value_throttled")
            else:
                widget = pn.widgets.MultiChoice(
                    name=info.name, options=choices(summary["values"]), placeholder="any", sizing_mode="stretch_width"
                )
                widget.param.watch(self._on_objects, "value")
            out[info.name] = widget
        return out

    def _object_field_filters(self) -> tuple[FieldFilter, ...]:
        """The object-field controls as ``LabelFilter.fields``: a slider at its full span filters nothing."""
        out = []
        for name, widget in self._obj_fields.items():
            if isinstance(widget, pn.widgets.RangeSlider):
                lo, hi = widget.value
                if lo > widget.start or hi < widget.end:
                    rng = Range(min=lo if lo > widget.start else None, max=hi if hi < widget.end else None)
                    out.append(FieldFilter(field=name, range=rng))
            elif widget.value:
                out.append(FieldFilter(field=name, values=tuple(widget.value)))
        return tuple(out)

    def _show_object_fields(self, flts: tuple[FieldFilter, ...]) -> None:
        by_name = {f.field: f for f in flts}
        for name, widget in self._obj_fields.items():
            flt = by_name.get(name)
            if isinstance(widget, pn.widgets.RangeSlider):
                rng = flt.range if flt is not None else None
                lo = rng.min if rng is not None and rng.min is not None else widget.start
                hi = rng.max if rng is not None and rng.max is not None else widget.end
                widget.value = (max(widget.start, lo), min(widget.end, hi))
            else:
                widget.value = list(flt.values or ()) if flt is not None else []

    def _load_box_tags(self, *_: Any) -> None:
        """The dataset's box tags as options, read off the loop; the widget stays hidden while there are none."""
        ds = self.state.ds
        if ds is None or not hasattr(self, "_obj_tags"):
            return
        self._jobs.submit(
            lambda: list(ds.tag_counts()["objects"]),
            self._show_box_tags,
            key="box-tags",
            name="box tags",
        )

    def _show_box_tags(self, names: list[str]) -> None:
        chosen = [t for t in self._obj_tags.value if t not in names]  # a tag from a link, on no box now
        with self._silently():
            self._obj_tags.options = choices(sorted(names) + chosen)
        self._obj_tags.visible = bool(names or self._obj_tags.value)

    # -- widget -> state -----------------------------------------------------------------------------------------

    def _on_field(self, name: str, flt: FieldFilter | None) -> None:
        if not self._quiet:
            self.state.set_field_filter(name, flt)

    def _on_objects(self, *_: Any) -> None:
        self._obj_conf.disabled = self._obj_source.value == GROUND_TRUTH
        if self._quiet:
            return
        labels = tuple(self._obj_labels.value) or None
        conf = self._obj_conf.value if not self._obj_conf.disabled else (0, 1)
        rng = (
            None
            if conf == (0, 1)
            else Range(min=conf[0] if conf[0] > 0 else None, max=conf[1] if conf[1] < 1 else None)
        )
        exclude = self._obj_mode.value == "has none"
        tags = tuple(self._obj_tags.value) or None
        shown_fields = self._object_field_filters()
        # conditions the widgets do not show (a status from the evaluation panel, an area from a link) are kept
        # while the source stays the same
        old = self.state.filters.annotations[0] if self.state.filters.annotations else None
        kept = old if old is not None and old.source == self._obj_source.value else LabelFilter()
        fields = shown_fields + tuple(f for f in kept.fields if f.field not in self._obj_fields)
        active = (
            fields
            or labels
            or rng
            or exclude
            or tags
            or self._obj_min.value > 1
            or self._obj_source.value != GROUND_TRUTH
            or kept.status
            or kept.area
        )
        flt = (
            kept.model_copy(
                update={
                    "source": self._obj_source.value,
                    "labels": labels,
                    "confidence": rng,
                    "exclude": exclude,
                    "min_count": max(1, int(self._obj_min.value or 1)),
                    "tags": tags,
                    "fields": fields,
                }
            )
            if active
            else None
        )
        self.state.set_label_filters((flt,) if flt else ())

    # -- state -> widgets ----------------------------------------------------------------------------------------

    def _on_filters(self, *_: Any) -> None:
        """Filters set elsewhere (a shared link, Reset, a click in the evaluation panel) show in the widgets."""
        by_field = {f.field: f for f in self.state.filters.fields}
        self._show_finding()
        with self._silently():
            for name, control in self._controls.items():
                control.show(by_field.get(name))
            extra = self.state.filters.annotations[1:]
            self._more_objects.object = (
                "<small>+ " + "; ".join(_describe(f) for f in extra) + "</small>" if extra else ""
            )
            self._more_objects.visible = bool(extra)
            obj = self.state.filters.annotations[0] if self.state.filters.annotations else None
            if hasattr(self, "_obj_source"):
                self._obj_source.value = obj.source if obj else GROUND_TRUTH
                self._obj_labels.value = list(obj.labels or ()) if obj else []
                conf = obj.confidence if obj else None
                self._obj_conf.value = (
                    (conf.min or 0.0, conf.max if conf and conf.max is not None else 1.0) if conf else (0.0, 1.0)
                )
                self._obj_mode.value = "has none" if obj and obj.exclude else "has"
                self._obj_min.value = obj.min_count if obj else 1
                tags = list(obj.tags or ()) if obj else []
                known = list(self._obj_tags.options.values()) if self._obj_tags.options else []
                if not set(tags) <= set(known):
                    self._obj_tags.options = choices(sorted({*known, *tags}))
                self._obj_tags.value = tags
                self._obj_tags.visible = bool(known or tags)
                self._show_object_fields(obj.fields if obj else ())
                self._obj_conf.disabled = self._obj_source.value == GROUND_TRUTH

    def _show_finding(self) -> None:
        """An applied insight (a card's filter, or ``Filters.finding`` from a link) named, with a way to clear it."""
        title = self.state.active_finding()
        self._finding.object = f"<small>Insight</small><br>{el('b', title, class_='vl-finding-title')}" if title else ""
        self._finding_row.visible = title is not None

    def _refresh_counts(self, *_: Any) -> None:
        """Counts and histograms update after the grid: they are computed on a worker so the new tiles go out
        first, and applied on the session's loop unless a newer result or a rebuild came meanwhile."""
        if self.state.ds is not None and getattr(self, "_built_for", None) != self.state.dataset:
            self._rebuild()  # the result of a new dataset arrived before _rebuild ran
            return
        self._show_count()
        ds = self.state.ds
        if ds is None:
            return
        build, controls, flt = self._build, self._controls, self.state.effective_filters()
        self._jobs.submit(
            lambda: compute_counts(ds, controls, flt),
            lambda counts: self._apply_counts(build, counts),
            key="counts",
            name="sidebar counts",
        )

    def _show_count(self) -> None:
        st = self.state
        sel = f" · {len(st.selection):,} selected on map" if st.selection is not None else ""
        sim = f" · similar to {text(st.similar_label)}" if st.similar is not None else ""
        self._count.object = (
            f'<span class="vl-count-n" style="font-size:1.3em;font-weight:600">{st.count:,}</span> '
            f'of {st.total:,} samples<br><small><span class="vl-query-ms">{st.query_ms:.0f}</span> ms{sel}{sim}</small>'
        )

    def _apply_counts(self, build: int, counts: Counts) -> None:
        """On the session's loop: new options (with counts) and histograms for the widgets they were computed for."""
        if build != self._build:
            return  # the widgets were rebuilt meanwhile; the rebuild computed its own counts
        controls = self._controls
        with self._silently():
            for name, data in counts.items():
                if name in controls:
                    controls[name].apply(data)

    def wait(self, timeout: float = 30.0) -> None:
        """Block until the sidebar's background counts are applied (scripts and tests)."""
        self._jobs.wait(timeout, raise_errors=True)

    def __panel__(self) -> pn.Column:
        return self._layout
