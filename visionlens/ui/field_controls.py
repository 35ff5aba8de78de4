"""Sidebar controls for sample fields: one class per control a field kind asks for (``FieldKind.control``).

A control builds its widgets, turns a widget change into a ``FieldFilter``, shows a filter set elsewhere (a link,
Reset, a click in another view), and refreshes its counts in two halves: ``query`` (store reads, on a worker)
and ``apply`` (widget updates, on the session's loop). The sidebar only loops over controls; adding a kind with a
new control is a class here, not a branch in the view.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import panel as pn

from ..dataset import Dataset
from ..query import FieldFilter, Filters, Range
from .html import choices, el, text
from .range_component import RangeFilter

OnChange = Callable[[str, FieldFilter | None], None]
"""``on_change(field, filter or None)``: the sidebar's callback into the session state."""


def sparkline(counts: list[int], width: int = 250, height: int = 28) -> str:
    """A histogram as inline SVG: one per numeric field, cheap enough to redraw on every filter change."""
    if not counts or max(counts) == 0:
        return f'<svg width="{width}" height="{height}"></svg>'
    top = max(counts)
    bw = width / len(counts)
    bars = "".join(
        f'<rect x="{i * bw + 0.5:.1f}" y="{height - max(1.0, c / top * height):.1f}" width="{max(bw - 1, 1):.1f}" '
        f'height="{max(1.0, c / top * height) if c else 0:.1f}" fill="#5b7db1"/>'
        for i, c in enumerate(counts)
    )
    return f'<svg class="vl-hist" width="{width}" height="{height}">{bars}</svg>'


class FieldControl:
    """Base: one field's widgets in the sidebar."""

    control: ClassVar[str]

    def __init__(self, name: str, on_change: OnChange):
        self.name = name
        self.on_change = on_change

    @classmethod
    def build(cls, name: str, ds: Dataset, flt: Filters, on_change: OnChange) -> FieldControl | None:
        """The control, or None when the field has nothing to show (a numeric field with no values)."""
        return cls(name, on_change)

    def panel(self) -> pn.viewable.Viewable:
        raise NotImplementedError

    def show(self, flt: FieldFilter | None) -> None:
        """Make the widgets say ``flt`` (called with the view's quiet flag set, so nothing echoes back)."""

    def query(self, ds: Dataset, flt: Filters) -> Any:
        """Store reads for a counts refresh; runs on a worker and must not touch widgets."""
        return None

    def apply(self, data: Any) -> None:
        """Show what ``query`` computed; runs on the session's loop."""


class ValuesControl(FieldControl):
    """Categorical and tag fields: a multi-select whose options carry their counts under the other filters."""

    control = "values"

    def __init__(self, name: str, on_change: OnChange):
        super().__init__(name, on_change)
        self.widget = pn.widgets.MultiChoice(name=name, options=[], sizing_mode="stretch_width", placeholder="any")
        self.widget.param.watch(self._changed, "value")

    def _changed(self, event: Any) -> None:
        values = tuple(event.new)
        self.on_change(self.name, FieldFilter(field=self.name, values=values) if values else None)

    def panel(self) -> pn.viewable.Viewable:
        return self.widget

    def show(self, flt: FieldFilter | None) -> None:
        w = self.widget
        vals = list(flt.values or ()) if flt else []
        if vals == list(w.value):
            return
        known = list(w.options.values()) if isinstance(w.options, dict) else list(w.options)
        missing = [v for v in vals if v not in known]
        if missing:
            opts = dict(w.options) if isinstance(w.options, dict) else choices(w.options)
            opts.update(choices(missing))
            w.options = opts
        w.value = vals

    def query(self, ds: Dataset, flt: Filters) -> list[tuple[Any, int]]:
        return ds.store.value_counts(ds.id, self.name, flt, limit=200)

    def apply(self, data: list[tuple[Any, int]]) -> None:
        found = [(v, n) for v, n in data if v is not None]
        opts = choices([v for v, _ in found], [f"{v} ({n:,})" for v, n in found])
        for v in self.widget.value:
            if v not in opts.values():
                opts.update(choices([v], [f"{v} (0)"]))
        self.widget.options = opts


class BoolControl(FieldControl):
    """True/false fields: any / yes / no."""

    control = "bool"
    OPTIONS: ClassVar[list[str]] = ["any", "yes", "no"]

    def __init__(self, name: str, on_change: OnChange):
        super().__init__(name, on_change)
        self.widget = pn.widgets.RadioButtonGroup(
            name=text(name), options=self.OPTIONS, value="any", button_type="light", sizing_mode="stretch_width"
        )
        self.widget.param.watch(self._changed, "value")

    def _changed(self, event: Any) -> None:
        flt = None if event.new == "any" else FieldFilter(field=self.name, values=(event.new == "yes",))
        self.on_change(self.name, flt)

    def panel(self) -> pn.viewable.Viewable:
        return pn.Column(pn.pane.HTML(el("small", self.name), margin=(0, 5)), self.widget, sizing_mode="stretch_width")

    def show(self, flt: FieldFilter | None) -> None:
        self.widget.value = "any" if not flt or not flt.values else ("yes" if flt.values[0] else "no")


class RangeControl(FieldControl):
    """Numeric fields: a range slider over the field's finite range, with a histogram under the other filters."""

    control = "range"
    BINS: ClassVar[int] = 24

    def __init__(self, name: str, on_change: OnChange, lo: float, hi: float, counts: list[int]):
        super().__init__(name, on_change)
        # whole-number bounds with room for a few steps (counts, pixels): whole steps; else a hundredth of the span
        step = 1 if float(lo).is_integer() and float(hi).is_integer() and hi - lo >= 5 else (hi - lo) / 100
        # one model (label, typed bounds, slider, histogram): see range_component for why not EditableRangeSlider
        self.widget = RangeFilter(
            label=name,
            start=lo,
            end=hi,
            value=(lo, hi),
            value_throttled=(lo, hi),
            step=step,
            hist=sparkline(counts),
            sizing_mode="stretch_width",
            height=74,
            css_classes=["vl-range-filter"],
        )
        self.widget.param.watch(self._changed, "value_throttled")

    @classmethod
    def build(cls, name: str, ds: Dataset, flt: Filters, on_change: OnChange) -> RangeControl | None:
        stats = ds.store.numeric_stats(ds.id, name, flt, bins=cls.BINS)
        if stats["min"] is None:
            return None
        lo, hi = float(stats["min"]), float(stats["max"])
        return cls(name, on_change, lo, hi if hi > lo else lo + 1, stats["counts"])

    def _changed(self, event: Any) -> None:
        w = self.widget
        lo = None if event.new[0] <= w.start else float(event.new[0])
        hi = None if event.new[1] >= w.end else float(event.new[1])
        flt = None if lo is None and hi is None else FieldFilter(field=self.name, range=Range(min=lo, max=hi))
        self.on_change(self.name, flt)

    def panel(self) -> pn.viewable.Viewable:
        return self.widget

    def show(self, flt: FieldFilter | None) -> None:
        w = self.widget
        lo = flt.range.min if flt and flt.range and flt.range.min is not None else w.start
        hi = flt.range.max if flt and flt.range and flt.range.max is not None else w.end
        if (lo, hi) != tuple(w.value):
            w.param.update(value=(lo, hi), value_throttled=(lo, hi))

    def query(self, ds: Dataset, flt: Filters) -> list[int]:
        return ds.store.numeric_stats(ds.id, self.name, flt, bins=self.BINS)["counts"]

    def apply(self, data: list[int]) -> None:
        self.widget.hist = sparkline(data)


CONTROLS: dict[str, type[FieldControl]] = {c.control: c for c in (ValuesControl, BoolControl, RangeControl)}
"""Control classes by the name a field kind gives (``FieldKind.control``); a kind whose control is not here (free
text: ``none``) gets no sidebar widget."""


def control_for(name: str, kind: Any, ds: Dataset, flt: Filters, on_change: OnChange) -> FieldControl | None:
    cls = CONTROLS.get(getattr(kind, "control", "none"))
    return cls.build(name, ds, flt, on_change) if cls is not None else None
