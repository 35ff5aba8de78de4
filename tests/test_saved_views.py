"""Saved views: save, list, get, rename (refusing a clash), delete, the replace flag, every filter kind through a
round trip, names that are data, and a link that names a saved view (``?view=<name>``)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from visionlens.errors import DatasetExistsError, DatasetNotFoundError, FilterError
from visionlens.query import FieldFilter, Filters, LabelFilter, Range, SavedView, Sort
from visionlens.store.tags import TagError, ViewExistsError, ViewNotFoundError

EVERY_KIND = Filters(
    fields=(
        FieldFilter(field="split", values=("val", None)),
        FieldFilter(field="width", range=Range(min=10, max=5000)),
        FieldFilter(field="missing", values=(False,)),
        FieldFilter(field="tags", values=("keep",)),
        FieldFilter(field="weather", values=("rain",), exclude=True),
    ),
    annotations=(
        LabelFilter(labels=("car", "person"), area=Range(min=1.0), min_count=1, tags=("box tag",)),
        LabelFilter(source="detector_a", confidence=Range(min=0.3, max=0.9), status=("fp",), evaluation="detector_a"),
        LabelFilter(labels=("dog",), exclude=True, min_count=2),
    ),
    finding=7,
)


def test_save_list_get_rename_delete(demo_ds):
    assert demo_ds.views() == []
    val = {"split": "val"}
    saved = demo_ds.save_view("val by width", val, sort="-width", sources=["ground_truth", "detector_a"])
    assert saved.name == "val by width" and saved.filters == Filters(
        fields=(FieldFilter(field="split", values=("val",)),)
    )
    assert saved.sort == Sort(field="width", descending=True) and saved.sources == ("ground_truth", "detector_a")
    assert saved.selection is None and saved.created_at is not None and saved.created_at.tzinfo is not None
    ids = demo_ds.sample_ids()[:5]
    demo_ds.save_view("five", selection=ids)
    assert [v.name for v in demo_ds.views()] == ["five", "val by width"]
    listed = {v.name: v for v in demo_ds.views()}
    assert listed["five"].selection is None and listed["five"].selected == 5  # the ids are left out of a listing
    got = demo_ds.view("five")
    assert got.selection == tuple(ids.tolist()) and got.selected == 5
    assert demo_ds.count(got.effective_filters()) == 5
    assert demo_ds.count(demo_ds.view("val by width").effective_filters()) == demo_ds.count(val)

    renamed = demo_ds.rename_view("five", "first five")
    assert renamed.name == "first five" and renamed.selection == got.selection
    assert renamed.created_at == got.created_at and renamed.updated_at >= got.updated_at
    with pytest.raises(ViewExistsError, match="val by width"):
        demo_ds.rename_view("first five", "val by width")
    with pytest.raises(ViewNotFoundError, match="five"):
        demo_ds.view("five")
    with pytest.raises(DatasetNotFoundError):  # a missing view is a "not found" for the API too (404)
        demo_ds.rename_view("nope", "other")
    demo_ds.delete_view("first five")
    assert [v.name for v in demo_ds.views()] == ["val by width"]
    with pytest.raises(ViewNotFoundError):
        demo_ds.delete_view("first five")


def test_replace_only_when_asked(demo_ds):
    first = demo_ds.save_view("v", {"split": "val"})
    with pytest.raises(DatasetExistsError, match="replace=True"):
        demo_ds.save_view("v", {"split": "train"})
    assert demo_ds.view("v").filters == first.filters
    time.sleep(0.01)
    second = demo_ds.save_view("v", {"split": "train"}, replace=True)
    assert second.filters.fields[0].values == ("train",)
    assert second.created_at == first.created_at and second.updated_at > first.updated_at
    assert len(demo_ds.views()) == 1


def test_every_filter_kind_round_trips(demo_ds):
    selection = demo_ds.sample_ids()[::7]
    sort = Sort(field="height", descending=True)
    demo_ds.save_view("everything", EVERY_KIND, selection=selection, sort=sort, sources=["detector_b"])
    got = demo_ds.view("everything")
    assert got.filters == EVERY_KIND
    assert got.selection == tuple(selection.tolist()) and got.sort == sort and got.sources == ("detector_b",)
    # through the JSON the API and the client carry
    assert SavedView.model_validate_json(got.model_dump_json()) == got
    # ids inside the filters are the selection; both given: the ids in both
    some = selection[:3].tolist()
    demo_ds.save_view("ids in filters", Filters(sample_ids=some))
    got = demo_ds.view("ids in filters")
    assert got.filters.sample_ids is None and got.selection == tuple(some)
    demo_ds.save_view("both", Filters(sample_ids=some), selection=selection[1:].tolist())
    assert demo_ds.view("both").selection == tuple(some[1:])
    # an empty selection is a selection of nothing, not "no selection"
    demo_ds.save_view("nothing", selection=[])
    assert demo_ds.view("nothing").selection == () and demo_ds.count(demo_ds.view("nothing").effective_filters()) == 0


def test_a_view_that_would_not_open_is_refused(demo_ds):
    with pytest.raises(FilterError, match="nope"):
        demo_ds.save_view("bad", {"nope": "x"})
    with pytest.raises(FilterError, match="unknown source"):
        demo_ds.save_view("bad", sources=["no model"])
    with pytest.raises(FilterError):
        demo_ds.save_view("bad", sort="-nope")
    for name in ("", "   ", "x" * 201):
        with pytest.raises(TagError):
            demo_ds.save_view(name)
    assert demo_ds.views() == []


@pytest.mark.parametrize(
    "name", ["it's mine", "'; DROP TABLE saved_views; --", "<img src=x onerror=alert(1)>", "a/b?c"]
)
def test_view_names_are_data(demo_ds, name):
    demo_ds.save_view(name, {"split": "val"})
    assert [v.name for v in demo_ds.views()] == [name]
    assert demo_ds.view(name).name == name
    demo_ds.rename_view(name, name + " 2")
    demo_ds.delete_view(name + " 2")
    assert demo_ds.views() == []


def test_views_belong_to_their_dataset_and_go_with_it(demo_ds, demo_files, store):
    import visionlens as vl
    from visionlens.store.orphans import rows_without_dataset

    other = vl.ingest(demo_files.root, "other", store=store)
    demo_ds.save_view("mine", {"split": "val"})
    assert other.views() == []
    with pytest.raises(ViewNotFoundError):
        other.view("mine")
    vl.delete_dataset("demo", store=store)
    assert rows_without_dataset(store) == []


# --- links -------------------------------------------------------------------------------------------------------


def test_a_link_names_a_saved_view(demo_ds, store):
    from visionlens.ui.state import AppState

    val = Filters(fields=(FieldFilter(field="split", values=("val",)),))
    picked = demo_ds.sample_ids(val)[:6]
    demo_ds.save_view("night shift", val, selection=picked, sort="-width", sources=["detector_b"])

    state = AppState(store, dataset="demo")
    state.apply_query({"dataset": "demo", "view": "night shift"})
    assert state.error == ""
    assert state.filters == val and np.array_equal(state.selection, picked)
    assert state.sort == Sort(field="width", descending=True)
    assert state.models == ["detector_b"] and state.show_gt is False
    assert state.count == 6 and set(state.result_ids.tolist()) == set(picked.tolist())
    # the link names the view while the state shows it, so the lasso selection travels with it
    q = state.to_query()
    assert q["view"] == "night shift" and q["dataset"] == "demo"
    again = AppState(store, dataset="demo")
    again.apply_query(q)
    assert again.count == 6 and again.shown_view() == "night shift"
    # once the user changes what is shown, the link no longer names the view
    state.selection = None
    assert "view" not in state.to_query()


def test_a_link_to_a_missing_view_says_so(demo_ds, store):
    from visionlens.ui.state import AppState

    state = AppState(store, dataset="demo")
    state.apply_query({"dataset": "demo", "view": "<b>gone</b>"})
    assert "saved view was left out" in state.error and "gone" in state.error
    assert state.filters == Filters() and state.count == 120
