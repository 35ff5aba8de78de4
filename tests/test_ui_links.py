"""Input from outside the page: the image routes' query string and shared links. A bad value is answered with a
clear message (HTTP 400, an alert) instead of a server error or a blank page."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.browser_helpers import serve_panel
from visionlens.query import FieldFilter, Filters, Sort


@pytest.fixture
def routes_url(demo_ds):
    import panel as pn

    from visionlens.ui.routes import ROUTES

    with serve_panel(lambda: pn.pane.Markdown("routes"), extra_patterns=ROUTES) as url:
        yield url.rsplit("/", 1)[0]


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def test_image_routes_answer_400_for_a_max_that_is_not_a_number(routes_url, demo_ds):
    sample = int(demo_ds.sample_ids()[0])
    for route in ("image", "thumb"):
        for bad in ("abc", "1e3", "", "12px"):
            status, ctype, body = _get(f"{routes_url}/vl/{route}/{demo_ds.id}/{sample}?max={bad}")
            assert status == 400, (route, bad, status)
            assert ctype.startswith("text/plain") and b"max must be a whole number of pixels" in body
    status, ctype, body = _get(f"{routes_url}/vl/image/{demo_ds.id}/{sample}?max=800")
    assert status == 200 and ctype == "image/jpeg" and body[:2] == b"\xff\xd8"
    assert _get(f"{routes_url}/vl/image/{demo_ds.id}/{sample}?max=99999999999999999999")[0] == 200  # clamped
    assert _get(f"{routes_url}/vl/image/{demo_ds.id}/{sample}")[0] == 200
    assert _get(f"{routes_url}/vl/image/{demo_ds.id}/999999?max=800")[0] == 404


BROKEN = {
    "invalid JSON": ({"filters": '{"fields": ['}, "Invalid JSON"),
    "not filters": ({"filters": "[1, 2]"}, "filters were left out"),
    "unknown field": ({"filters": '{"fields": [{"field": "nope", "values": ["a"]}]}'}, "unknown field 'nope'"),
    "wrong value type": ({"filters": '{"fields": [{"field": "width", "values": ["abc"]}]}'}, "'abc' is not a number"),
    "wrong range type": (
        {"filters": '{"fields": [{"field": "width", "range": {"min": "wide"}}]}'},
        "fields.0.range.min",
    ),
    "range on a category": ({"filters": '{"fields": [{"field": "split", "range": {"min": 1}}]}'}, "split"),
    "unknown model": ({"filters": '{"annotations": [{"source": "nomodel"}]}'}, "unknown source 'nomodel'"),
    "unknown sort": ({"sort": "-nope"}, "sort order was left out"),
    "bad sample": ({"sample": "abc"}, "'abc' is not a sample id"),
    "unknown dataset": ({"dataset": "nope"}, "no dataset named 'nope'"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_link_says_why_and_shows_the_whole_dataset(demo_ds, store, case):
    from visionlens.ui.state import AppState

    query, why = BROKEN[case]
    state = AppState(store, dataset="demo")
    state.apply_query({"dataset": "demo", **query} if "dataset" not in query else query)
    assert state.error.startswith("Could not restore all of the link") and why in state.error
    assert len(state.error) < 400  # one readable line, not pydantic's report or every field of the dataset
    assert state.filters == Filters() and state.sort == Sort()
    assert state.count == state.total == 120 and state.dataset == "demo"


def test_the_good_parts_of_a_link_still_apply(demo_ds, store):
    from visionlens.ui.state import AppState

    state = AppState(store, dataset="demo")
    good = Filters(fields=(FieldFilter(field="split", values=("val",)),))
    state.apply_query({"filters": good.to_url(), "sort": "-nope", "sample": "3"})
    assert state.filters == good and state.count == demo_ds.count(good) < 120
    assert state.open_sample == 3 and "sort order was left out" in state.error
    state.apply_query({"filters": good.to_url(), "sort": "-width"})
    assert state.error == "" and state.sort == Sort(field="width", descending=True)


def test_the_sidebar_shows_a_link_error_set_before_it_existed(demo_ds, store):
    """The URL is restored before the views exist: the sidebar must show what went wrong, escaped."""
    from visionlens.ui.filters_view import FiltersView
    from visionlens.ui.state import AppState

    state = AppState(store, dataset="demo")
    bad = json.dumps({"fields": [{"field": "<b>x</b>", "values": ["a"]}]})
    state.apply_query({"filters": bad})
    view = FiltersView(state=state)
    assert view._error.visible
    shown = view._error.object
    assert "Could not restore" in shown and "<b>" not in shown and "&lt;b&gt;x&lt;/b&gt;" in shown
