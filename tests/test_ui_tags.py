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
