"""The sidebar builds one control per field from the field's kind, and each control round-trips its filter."""

from __future__ import annotations

from types import SimpleNamespace

from visionlens.query import FieldFilter, Filters, Range
from visionlens.store.kinds import BOOL, CATEGORICAL, NUMERIC, TAGS, TEXT
from visionlens.ui.field_controls import BoolControl, RangeControl, ValuesControl, control_for


def test_each_kind_gets_its_control_and_text_gets_none(demo_ds):
    seen: list = []
    on_change = lambda name, flt: seen.append((name, flt))  # noqa: E731
    for kind, cls, field in (
        (CATEGORICAL, ValuesControl, "split"),
        (TAGS, ValuesControl, "tags"),
        (BOOL, BoolControl, "missing"),
        (NUMERIC, RangeControl, "width"),
    ):
        assert type(control_for(field, kind, demo_ds, Filters(), on_change)) is cls
    assert control_for("filepath", TEXT, demo_ds, Filters(), on_change) is None


def test_controls_turn_widget_changes_into_filters_and_show_filters(demo_ds):
    seen: list = []
    on_change = lambda name, flt: seen.append(flt)  # noqa: E731
    values = control_for("split", CATEGORICAL, demo_ds, Filters(), on_change)
    values.apply(values.query(demo_ds, Filters()))
    assert any(label.startswith("val (") for label in values.widget.options)
    values.widget.value = ["val"]
    assert seen[-1] == FieldFilter(field="split", values=("val",))
    assert demo_ds.count(Filters(fields=(seen[-1],))) == demo_ds.count({"split": "val"})

    width = control_for("width", NUMERIC, demo_ds, Filters(), on_change)
    lo, hi = width.widget.start, width.widget.end
    width._changed(SimpleNamespace(new=(lo, (lo + hi) / 2)))
    assert seen[-1] == FieldFilter(field="width", range=Range(max=(lo + hi) / 2))
    width._changed(SimpleNamespace(new=(lo, hi)))
    assert seen[-1] is None  # the whole range is no filter
    width.show(FieldFilter(field="width", range=Range(min=lo + 1)))
    assert tuple(width.widget.value) == (lo + 1, hi)
    assert len(width.query(demo_ds, Filters())) == RangeControl.BINS

    flag = control_for("missing", BOOL, demo_ds, Filters(), on_change)
    flag.widget.value = "no"
    assert seen[-1] == FieldFilter(field="missing", values=(False,))
    flag.show(None)
    assert flag.widget.value == "any"
