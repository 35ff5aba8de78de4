"""The Insights tab without a browser: stored findings as ranked cards, clicks that filter every view to a finding's
images, the label-mistake review, computing insights through the long lane with progress, agent reports, and text
from a dataset kept from becoming markup."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

from visionlens.insights.finding import KINDS, Finding, save_run
from visionlens.insights.runner import MISTAKE_FIELD, run_insights
from visionlens.query import FieldFilter, Filters, Range, Sort

PAYLOAD = "<img src=x onerror=window.__xss=1>"
FAST_KINDS = ["slice", "error_pattern", "label_mistake", "near_duplicate"]  # near-duplicates by hashes: < 1 s here


def _until(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.02)


@pytest.fixture
def insights(demo_ds, store):
    """The demo with every kind of finding stored, as the CLI would leave it."""
    run_insights(store, demo_ds.id, kinds=FAST_KINDS)
    return demo_ds


@pytest.fixture
def make_view(store):
    """``make_view(dataset, **params)`` -> (state, insights view, sidebar); their background work has ended before
    the store closes (a sidebar count still reading would keep the connection busy)."""
    from visionlens.ui.filters_view import FiltersView
    from visionlens.ui.insights_view import InsightsView
    from visionlens.ui.state import AppState

    made: list[Any] = []

    def make(dataset: str = "demo", **params: Any) -> tuple[Any, Any, Any]:
        state = AppState(store, dataset=dataset)
        sidebar = FiltersView(state=state)
        view = InsightsView(state=state, **params)
        made.extend([view, sidebar])
        view.wait()
        return state, view, sidebar

    yield make
    for v in made:
        v._jobs.wait(120)


def _expected_count(row: dict[str, Any]) -> int:
    """The images of a finding: its stored members, or (a field condition) the images its evidence counted."""
    return int(row["n_samples"]) if row["n_samples"] else int(row["evidence"]["images"])


def test_lists_stored_findings_by_kind_best_first(insights, store, make_view):
    from visionlens.ui.insights_view import FIRST_PAGE, MORE

    _, view, _ = make_view()
    for kind in KINDS:
        stored = store.findings(insights.id, kind=kind)
        assert stored, kind
        section = view.sections[kind]
        cards = view._cards[kind].cards
        assert section.computed and section.total == len(stored)
        scores = [store.finding(insights.id, c["id"])["score"] for c in cards]
        assert scores == sorted(scores, reverse=True), kind
        assert [c["id"] for c in cards] == [r["id"] for r in stored][:FIRST_PAGE]
        assert [c["rank"] for c in cards] == list(range(1, len(cards) + 1))
        assert all(c["title"] and c["stats"] for c in cards)
    # the numbers a kind is judged by are on its cards, read from its evidence
    top = dict(view._cards["slice"].cards[0]["stats"])
    assert "rest" in top and ("recall" in top or "FP/image" in top)
    assert view._cards["slice"].cards[0]["chart"]["bars"][0]["label"] == "slice"
    assert "dAP50" in dict(view._cards["error_pattern"].cards[0]["stats"])
    assert "score" in dict(view._cards["label_mistake"].cards[0]["stats"])
    dup = view._cards["near_duplicate"].cards[0]
    assert len(dup["thumbs"]) >= 2 and all(t["src"].startswith("/vl/thumb/") for t in dup["thumbs"])
    assert {t["name"] for t in dup["thumbs"]} <= {
        f.rsplit("/", 1)[-1] for f in store.finding(insights.id, dup["id"])["detail"]["files"]
    }
    # "show more" pages on
    total = view.sections["error_pattern"].total
    assert total > FIRST_PAGE and view._more["error_pattern"].visible
    view.show_more("error_pattern")
    view.wait()
    assert len(view._cards["error_pattern"].cards) == min(total, FIRST_PAGE + MORE)
    # one model: its findings and the model-free kinds only
    view._model.value = "detector_a"
    view.wait()
    models = {store.finding(insights.id, c["id"])["model"] for k in KINDS for c in view._cards[k].cards}
    assert models <= {"detector_a", None}


def test_nothing_stored_says_so_and_offers_the_button(demo_ds, store, make_view):
    _, view, _ = make_view()
    assert view._message.visible and "No insights stored" in view._message.object
    assert not view._find.disabled
    assert all(not s.computed and s.total == 0 for s in view.sections.values())
    assert all(c.cards == [] and "Not computed" in c.empty for c in view._cards.values())


@pytest.mark.parametrize("kind", ["slice", "error_pattern", "near_duplicate"])
def test_clicking_a_card_filters_every_view_to_its_images(insights, store, make_view, kind):
    state, view, sidebar = make_view()
    state.active_view = "Insights"  # as in the app's tabs: a click brings Browse to the front
    card = view._cards[kind].cards[0]
    row = store.finding(insights.id, card["id"])
    view._cards[kind].click(card["id"])
    assert state.filters == (
        Filters.model_validate_json(row["filters"]) if row["filters"] else Filters(finding=row["id"])
    )
    assert state.count == _expected_count(row) > 0
    assert state.active_view == "Browse"
    if row["model"]:
        assert row["model"] in state.models and state.evaluation == row["model"]
    # the sidebar names the insight and takes it off again
    assert sidebar._finding_row.visible and row["title"].split(" ")[0] in sidebar._finding.object
    sidebar._finding_clear.clicks += 1
    assert state.filters == Filters() and state.count == 120 and not sidebar._finding_row.visible


def test_reset_clears_an_applied_finding(insights, store, make_view):
    state, view, sidebar = make_view()
    card = view._cards["near_duplicate"].cards[0]
    view._cards["near_duplicate"].click(card["id"])
    assert state.filters.finding == card["id"] and sidebar._finding_row.visible
    sidebar._reset.clicks += 1
    assert state.filters.finding is None and state.count == 120 and not sidebar._finding_row.visible


def test_a_finding_from_a_link_is_named_in_the_sidebar(insights, store):
    from visionlens.ui.filters_view import FiltersView
    from visionlens.ui.state import AppState

    row = store.findings(insights.id, kind="error_pattern")[0]
    state = AppState(store, dataset="demo")
    state.apply_query({"dataset": "demo", "filters": Filters(finding=row["id"]).to_url()})
    sidebar = FiltersView(state=state)
    assert state.count == row["n_samples"]
    assert sidebar._finding_row.visible and "missed objects" in sidebar._finding.object


def _scores(store, ds_id: int, ids: np.ndarray) -> list[float]:
    return store.samples_by_id(ds_id, ids)[MISTAKE_FIELD].to_pylist()


def test_label_mistake_card_opens_its_image_among_all_candidates_worst_first(insights, store, make_view):
    state, view, _ = make_view()
    card = view._cards["label_mistake"].cards[1]
    sample = store.finding_members(insights.id, card["id"])["sample_id"].to_pylist()[0]
    view._cards["label_mistake"].click(card["id"])
    assert state.open_sample == sample and sample in state.result_ids
    assert state.sort == Sort(field=MISTAKE_FIELD, descending=True)
    scores = _scores(store, insights.id, state.result_ids)
    assert scores == sorted(scores, reverse=True) and min(scores) > 0


def test_review_all_label_mistakes_filters_to_scored_images_sorted_by_score(insights, store, make_view):
    state, view, sidebar = make_view()
    view._review.clicks += 1
    everything = _scores(store, insights.id, insights.sample_ids())
    assert state.count == sum(1 for s in everything if s and s > 0) > 0
    assert state.filters == Filters(fields=(FieldFilter(field=MISTAKE_FIELD, range=Range(min=1e-9)),))
    assert state.sort == Sort(field=MISTAKE_FIELD, descending=True) and state.open_sample is None
    scores = _scores(store, insights.id, state.result_ids)
    assert scores == sorted(scores, reverse=True)
    assert "Label mistake candidates" in sidebar._finding.object


def test_find_insights_runs_on_the_long_lane_and_reports_progress(demo_ds, store, make_view, monkeypatch):
    from visionlens.ui import insights_view

    threads: list[str] = []
    real = insights_view.run_insights

    def spy(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(insights_view, "run_insights", spy)
    state, view, _ = make_view()
    view.kinds = ["slice", "label_mistake"]
    values: list[int] = []
    steps: list[str] = []
    view._progress.param.watch(lambda e: values.append(e.new), "value")
    view._step.param.watch(lambda e: steps.append(e.new), "object")
    view._find.clicks += 1
    assert view._find.disabled  # until it is done: one run per session at a time
    view.wait(300)
    assert threads and threads[0].startswith("vl-long")
    assert any(0 <= v <= 100 for v in values) and any(s for s in steps)
    assert not view._find.disabled and not view._progress.visible
    assert view._message.alert_type == "success" and "Found" in view._message.object
    assert view.sections["slice"].total > 0 and view.sections["label_mistake"].total > 0
    assert not view.sections["near_duplicate"].computed
    assert state.evaluation == "detector_a"  # the run evaluated the models: the grid can mark TP/FP/FN now


def test_a_failing_run_is_shown(demo_ds, store, make_view, monkeypatch):
    from visionlens.errors import VisionLensError
    from visionlens.ui import insights_view

    def broken(*_: Any, **__: Any) -> Any:
        raise VisionLensError("the disk is full")

    monkeypatch.setattr(insights_view, "run_insights", broken)
    _, view, _ = make_view()
    view.find()
    view.wait()
    assert view._message.alert_type == "danger" and "the disk is full" in view._message.object
    assert not view._find.disabled and not view._progress.visible


def test_report_shows_summary_citations_and_next_steps(insights, store, make_view):
    state, view, _ = make_view()
    view._report_buttons["error_patterns"].clicks += 1
    view.wait()
    report = view.reports["error_patterns"]
    shown = view._report_text["error_patterns"].object
    assert "written by template" in shown and "Next steps" in shown
    cites = view._report_cites["error_patterns"].cards
    assert [c["id"] for c in cites] == [c.finding_id for c in report.cited] and cites
    # a cited finding applies like its card
    first = store.finding(insights.id, cites[0]["id"])
    view._report_cites["error_patterns"].click(cites[0]["id"])
    if first["kind"] == "label_mistake":
        assert state.open_sample is not None and state.sort.field == MISTAKE_FIELD
    else:
        assert state.count == _expected_count(first)


def test_dataset_text_never_becomes_markup(demo_files, store, make_view):
    import visionlens as vl

    ds = vl.ingest(
        demo_files.root, PAYLOAD, predictions={m: str(p) for m, p in demo_files.predictions.items()}, store=store
    )
    state, view, sidebar = make_view(PAYLOAD)
    assert "&lt;img src=x" in view._message.object and "<img src=x" not in view._message.object
    run_insights(store, ds.id, kinds=["near_duplicate"])
    ids = ds.sample_ids()[:3]
    save_run(
        store,
        ds.id,
        "slices:" + "detector_a",
        [
            Finding(
                kind="slice",
                title=PAYLOAD,
                score=9.0,
                definition=PAYLOAD,
                description=PAYLOAD,
                model="detector_a",
                filters=Filters(sample_ids=tuple(int(i) for i in ids)),
                evidence={"images": 3, "metric": "recall"},
            )
        ],
    )
    state.active_view = "Insights"
    view.wait()
    card = view._cards["slice"].cards[0]
    assert card["title"] == PAYLOAD  # plain text: the component sets it with textContent
    view._cards["slice"].click(card["id"])
    assert state.count == 3
    assert "&lt;img src=x" in sidebar._finding.object and "<img src=x" not in sidebar._finding.object
    view.write_report("blind_spots")
    view.wait()
    report = view._report_text["blind_spots"].object
    assert PAYLOAD in view.reports["blind_spots"].summary
    assert "&lt;img src=x" in report and "<img src=x" not in report
    assert view._report_cites["blind_spots"].cards[0]["title"] == PAYLOAD


def test_notebook_cards_inline_their_thumbnails(insights, store, make_view):
    _, view, _ = make_view(thumbnails="data")
    thumbs = [t for c in view._cards["near_duplicate"].cards for t in c["thumbs"]]
    assert thumbs and all(t["src"].startswith("data:image/jpeg;base64,") for t in thumbs)


def test_the_app_has_the_tab_and_follows_a_click_to_browse(insights, store, monkeypatch):
    from visionlens.ui import app
    from visionlens.ui.insights_view import InsightsView

    built: list[InsightsView] = []

    class Recorded(InsightsView):
        def __init__(self, **params: Any) -> None:
            super().__init__(**params)
            built.append(self)

    sidebars: list[Any] = []

    class Sidebar(app.FiltersView):
        def __init__(self, **params: Any) -> None:
            super().__init__(**params)
            sidebars.append(self)

    monkeypatch.setattr(app, "InsightsView", Recorded)
    monkeypatch.setattr(app, "FiltersView", Sidebar)
    layout = app.build("demo", thumbnails="data", template=False)
    state = layout.state
    header = layout[1][0]
    names = list(header._names)
    assert "Insights" in names and not built  # built on first visit, like the other tabs
    header.active = names.index("Insights")
    assert state.active_view == "Insights" and len(built) == 1
    view = built[0]
    view.wait()
    card = view._cards["error_pattern"].cards[0]
    view._cards["error_pattern"].click(card["id"])
    assert header.active == names.index("Browse") and state.active_view == "Browse"
    assert state.count == store.finding(insights.id, card["id"])["n_samples"]
    sidebars[0].wait()  # the sidebar's counts, before the store closes
    view.wait()
