"""The tag and saved-view controls without a browser: buttons drive the store through the session state, and the
sidebar's tag options follow a tag write."""

from __future__ import annotations

import numpy as np
import pytest

from visionlens.query import FieldFilter, Filters


@pytest.fixture
def ui(demo_ds, store):
    """A session's state with the tag row, the saved views card and the sidebar; their background work has ended
    before the store closes."""
    from visionlens.ui.filters_view import FiltersView
    from visionlens.ui.state import AppState
    from visionlens.ui.tags_view import TagsView
    from visionlens.ui.views_view import SavedViewsView

    state = AppState(store, dataset="demo")
    parts = (state, TagsView(state=state), SavedViewsView(state=state), FiltersView(state=state))
    yield parts
    for view in parts[1:]:
        view.wait()


def test_tag_picked_then_filter_by_it_in_the_sidebar(demo_ds, ui):
    state, tags, _, sidebar = ui
    assert tags._picked.disabled and tags._lasso.disabled
    state.picked = [int(i) for i in demo_ds.sample_ids()[:2]]
    assert tags._picked.name == "Tag 2 picked" and not tags._picked.disabled
    tags._tag.value_input = "  <i>look</i> "
    tags._picked.clicks += 1
    tags.wait()
    sidebar.wait()
    assert demo_ds.count({"tags": "<i>look</i>"}) == 2
    assert "Tagged 2 samples" in tags._status.object and "&lt;i&gt;look&lt;/i&gt;" in tags._status.object
    assert tags._tag.options == ["<i>look</i>"]  # suggestions re-read
    control = sidebar._controls["tags"]
    assert "<i>look</i>" in control.widget.options.values()  # the sidebar's tag filter offers it, with its count
    control.widget.value = ["<i>look</i>"]
    assert state.count == 2


def test_whole_view_asks_first_and_lasso_tags_the_selection(demo_ds, ui):
    state, tags, _, _ = ui
    state.filters = Filters(fields=(FieldFilter(field="split", values=("val",)),))
    n_val = state.count
    tags._tag.value_input = "val"
    tags._view.clicks += 1
    assert tags._confirm.visible and demo_ds.count({"tags": "val"}) == 0  # nothing written before the answer
    tags._no.clicks += 1
    assert not tags._confirm.visible
    tags._view.clicks += 1
    tags._yes.clicks += 1
    tags.wait()
    assert demo_ds.count({"tags": "val"}) == n_val
    state.selection = demo_ds.sample_ids()[:4]
    assert tags._lasso.name == "Tag lasso (4)"
    tags._tag.value_input = "lasso"
    tags._lasso.clicks += 1
    tags.wait()
    assert demo_ds.count({"tags": "lasso"}) == 4
    # removing from the whole view asks too
    tags._tag.value_input = "val"
    state.selection = None
    tags._remove.clicked = "view"
    assert tags._confirm.visible
    tags._yes.clicks += 1
    tags.wait()
    assert demo_ds.count({"tags": "val"}) == 0
    tags._tag.value_input = "   "
    tags._picked.disabled = False
    tags._picked.clicks += 1
    assert "must not be empty" in tags._status.object


def test_save_open_rename_delete_from_the_sidebar(demo_ds, ui):
    state, _, views, _ = ui
    views.wait()
    assert views._open.disabled and views._views.value == ""
    val = Filters(fields=(FieldFilter(field="split", values=("val",)),))
    state.filters = val
    state.selection = demo_ds.sample_ids(val)[:3]
    views._name.value_input = "three val"
    views._save.clicks += 1
    views.wait()
    assert demo_ds.view("three val").selected == 3 and views._views.value == "three val"
    assert state.to_query()["view"] == "three val"
    # a second save under the same name asks before replacing
    state.selection = None
    views._name.value_input = "three val"
    views._save.clicks += 1
    assert views._confirm.visible and demo_ds.view("three val").selected == 3
    views._no.clicks += 1
    state.reset()
    assert state.count == 120
    views._open.clicks += 1
    assert state.count == 3 and np.array_equal(np.sort(state.selection), np.sort(demo_ds.view("three val").selection))
    views._name.value_input = "renamed"
    views._rename.clicks += 1
    views.wait()
    assert [v.name for v in demo_ds.views()] == ["renamed"] and state.to_query()["view"] == "renamed"
    views._delete.clicks += 1
    views._yes.clicks += 1
    views.wait()
    assert demo_ds.views() == [] and views._views.value == "" and views._open.disabled


def _gt_boxes(ds, label: str | None = None):
    """Ground-truth boxes (id, sample_id, label, tags) straight from the store: what the tests compare against."""
    table = ds.store.annotations(ds.id, ds.sample_ids(), sources=["ground_truth"]).to_pandas()
    return table if label is None else table[table["label"] == label]


def test_tag_boxes_of_the_view_follow_the_objects_filter_and_filter_back(demo_ds, ui):
    from visionlens.query import LabelFilter

    state, tags, _, sidebar = ui
    label = _gt_boxes(demo_ds)["label"].value_counts().index[0]  # the demo's most common class, whatever it is
    assert not sidebar._obj_tags.visible  # no box carries a tag yet
    sidebar._obj_labels.value = [label]
    assert state.filters.annotations == (LabelFilter(labels=(label,)),)
    tags._tag.value_input = "check <box>"
    tags._boxes.clicked = "view"
    assert tags._confirm.visible and label in tags._question.object  # the whole view asks, naming the boxes
    tags._yes.clicks += 1
    tags.wait()
    sidebar.wait()
    expected = _gt_boxes(demo_ds, label)
    tagged = _gt_boxes(demo_ds)
    tagged = tagged[tagged["tags"].map(lambda t: "check <box>" in (t if t is not None else []))]
    assert sorted(tagged["id"]) == sorted(expected["id"])  # exactly the GT boxes of that label, no other
    assert demo_ds.tag_counts()["objects"] == {"check <box>": len(expected)}
    assert f"Tagged {len(expected):,} boxes" in tags._status.object and "&lt;box&gt;" in tags._status.object
    # the sidebar now offers the box tag; choosing it keeps only samples with such a box
    assert sidebar._obj_tags.visible and "check <box>" in sidebar._obj_tags.options.values()
    sidebar._obj_labels.value = []
    sidebar._obj_tags.value = ["check <box>"]
    assert state.filters.annotations[0].tags == ("check <box>",)
    assert state.count == expected["sample_id"].nunique()
    # untag the boxes of two picked samples only
    picked = sorted(expected["sample_id"].unique())[:2]
    state.picked = [int(i) for i in picked]
    tags._tag.value_input = "check <box>"
    tags._remove.clicked = "boxes:picked"
    tags.wait()
    left = demo_ds.tag_counts()["objects"]["check <box>"]
    assert left == len(expected) - int(expected["sample_id"].isin(picked).sum())
    # a 'has none' objects filter names images, not boxes: refused with a reason, nothing written
    state.filters = Filters(annotations=(LabelFilter(labels=(label,), exclude=True),))
    tags._tag.value_input = "other"
    tags._boxes.clicked = "view"
    assert "names images" in tags._status.object and not tags._confirm.visible
    assert "other" not in demo_ds.tag_counts()["objects"]


def test_sidebar_keeps_an_objects_status_it_does_not_show(demo_ds, ui):
    from visionlens.query import LabelFilter

    state, _, _, sidebar = ui
    model = demo_ds.models()[0]
    demo_ds.evaluate(model)
    state.filters = Filters(annotations=(LabelFilter(source=model, status=("fp",)),))
    label = demo_ds.labels()[0]
    sidebar._obj_labels.value = [label]
    assert state.filters.annotations == (LabelFilter(source=model, status=("fp",), labels=(label,)),)
    sidebar._obj_source.value = "ground_truth"  # another source: the model's status no longer applies
    assert state.filters.annotations == (LabelFilter(labels=(label,)),)


def test_detail_view_picks_boxes_by_click_or_row_and_tags_them(demo_ds, store):
    from visionlens.ui.detail_view import DetailView
    from visionlens.ui.state import AppState

    state = AppState(store, dataset="demo")
    detail = DetailView(state=state)
    boxes = _gt_boxes(demo_ds)
    sample = int(boxes["sample_id"].value_counts().index[0])  # a sample with several boxes
    mine = boxes[boxes["sample_id"] == sample]
    assert len(mine) >= 2
    state.open_sample = sample
    assert detail._box_tag_add.disabled and detail._image.selected == []
    first, second = int(mine["id"].iloc[0]), int(mine["id"].iloc[1])
    drawn = {b["id"] for b in detail._image.boxes}
    assert {first, second} <= drawn  # every drawn box carries its annotation id for the click
    detail._image._handle_msg({"type": "box", "id": first})  # what a click on the box sends
    assert detail._image.selected == [first]
    assert detail._table.value.iloc[detail._table.selection]["id"].tolist() == [first]
    detail._table.selection = detail._table.selection + [detail._ann_ids.index(second)]  # a checkbox in the table
    assert sorted(detail._image.selected) == sorted([first, second]) and detail._box_tag_add.name == "Tag 2 boxes"
    detail._box_tag.value_input = "occluded"
    detail._box_tag_add.clicks += 1
    detail.wait()
    tagged = _gt_boxes(demo_ds)
    tagged = tagged[tagged["tags"].map(lambda t: "occluded" in (t if t is not None else []))]
    assert sorted(tagged["id"]) == sorted([first, second])
    assert "Tagged 2 boxes" in detail._box_said.object
    # the view re-read the stored tags: the table, the drawn labels' data, and the picks survive the re-read
    rows = detail._table.value.set_index("id")
    assert rows.loc[first, "tags"] == "occluded" and rows.loc[second, "tags"] == "occluded"
    assert {b["id"]: b["tags"] for b in detail._image.boxes}[first] == ["occluded"]
    assert sorted(detail._image.selected) == sorted([first, second])
    detail._image._handle_msg({"type": "box", "id": second})  # a second click un-picks
    assert detail._image.selected == [first]
    detail._box_tag.value_input = "occluded"
    detail._box_tag_remove.clicks += 1
    detail.wait()
    assert demo_ds.tag_counts()["objects"] == {"occluded": 1}
    detail._image._handle_msg({"type": "box", "id": 10**9})  # an id not on this image is ignored
    assert detail._image.selected == [first]
