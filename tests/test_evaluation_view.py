"""The evaluation panel: live metrics follow the filters, and clicks on a class or a confusion cell filter the grid
to exactly the images that have those errors (checked against the stored per-object results)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.browser_helpers import serve_app
from tests.browser_helpers import shown_count as _count
from visionlens.metrics import eval_key, subset_metrics
from visionlens.query import FieldFilter, LabelFilter
from visionlens.store.metadata import GROUND_TRUTH

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"
MODEL = "detector_a"


def _until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.05)


def _view(store):
    from visionlens.ui.evaluation_view import EvaluationView
    from visionlens.ui.state import AppState

    state = AppState(store, dataset="demo")
    view = EvaluationView(state=state)
    _settled(view)
    return state, view


def _settled(view) -> None:
    """The pool has answered for the state's current version."""
    _until(lambda: view.computed_version == view.state.version)


def _samples_with(ds, key: str, *conditions: tuple[str, str, str]) -> set[int]:
    """Samples having, for every (source, label, status), at least one such box: from the stored objects."""
    ann = ds.annotations(ds.sample_ids(), evaluation=key)
    found = None
    for source, label, status in conditions:
        rows = ann[(ann["source"] == source) & (ann["label"] == label) & (ann["status"] == status)]
        ids = set(rows["sample_id"].tolist())
        found = ids if found is None else found & ids
    return found or set()


def test_live_metrics_equal_subset_metrics_and_follow_the_filters(demo_ds, store):
    import panel as pn

    state, view = _view(store)
    ds = demo_ds
    assert set(view.metrics) == set(ds.models()) == {"detector_a", "detector_b"}
    for model, m in view.metrics.items():
        ref = subset_metrics(store, ds.id, model, state.effective_filters())
        assert m.samples == ds.count() == 120
        assert m.stats == pytest.approx(ref.stats)
        row = view._summary.value.set_index("model").loc[model]
        assert row["mAP"] == pytest.approx(round(ref.stats["AP"], 3)) and row["images"] == 120
    table = view._classes.value.set_index("label")
    ref = subset_metrics(store, ds.id, MODEL)
    assert [c["label"] for c in ref.per_class] == list(table.index)
    assert table[f"AP50 {MODEL}"].tolist() == pytest.approx([round(c["AP50"], 3) for c in ref.per_class])

    before = dict(view.metrics)
    state.set_field_filter("split", FieldFilter(field="split", values=("val",)))
    state.set_field_filter("time_of_day", FieldFilter(field="time_of_day", values=("day",)))  # supersedes the first
    _settled(view)
    flt = state.effective_filters()
    assert view.metrics is not before
    for model, m in view.metrics.items():
        ref = subset_metrics(store, ds.id, model, flt)
        assert m.samples == ds.count(flt) == state.count < 120
        assert m.stats == pytest.approx(ref.stats)
        assert np.array_equal(m.confusion, ref.confusion)

    # renders without a server (notebooks): the confusion pane holds a bokeh figure with the heatmap's rects
    from bokeh.models import GlyphRenderer

    root = pn.panel(view).get_root()
    glyphs = {type(r.glyph).__name__ for r in root.select({"type": GlyphRenderer})}
    assert {"Rect", "Line", "Text"} <= glyphs


def test_class_buttons_evaluate_if_needed_and_filter_to_that_class_errors(demo_ds, store):
    state, view = _view(store)
    ds = demo_ds
    assert MODEL not in {e["key"] for e in ds.evaluations()}
    labels = view._classes.value["label"].tolist()
    # the class with the most images with FPs, so the filter really narrows the grid
    ds.evaluate(MODEL, iou=0.75)
    key75 = eval_key(MODEL, 0.75)
    fp_images = {lbl: _samples_with(ds, key75, (MODEL, lbl, "fp")) for lbl in labels}
    label = max(fp_images, key=lambda lbl: len(fp_images[lbl]))

    view._iou.value = 0.75
    _settled(view)
    view._on_class_click(SimpleNamespace(column="FPs", row=labels.index(label), value=None))
    view.wait()
    assert state.filters.annotations == (LabelFilter(source=MODEL, labels=(label,), status=("fp",), evaluation=key75),)
    assert state.evaluation == key75 and MODEL in state.models
    assert state.count == len(fp_images[label]) and 0 < state.count < 120
    assert set(state.result_ids.tolist()) == fp_images[label]

    # FNs at IoU .5: that evaluation is not stored yet, so the click runs it first (on the worker) and then filters
    view._iou.value = 0.5
    row = labels.index(label)
    view._on_class_click(SimpleNamespace(column="FNs", row=row, value=None))
    view.wait()
    _until(lambda: state.evaluation == MODEL)
    assert MODEL in {e["key"] for e in ds.evaluations()}
    missed = _samples_with(ds, MODEL, (GROUND_TRUTH, label, "fn"))
    assert state.filters.annotations == (
        LabelFilter(source=GROUND_TRUTH, labels=(label,), status=("fn",), evaluation=MODEL),
    )
    assert set(state.result_ids.tolist()) == missed and state.count == len(missed) > 0

    # a plain row click picks the class for the PR curves: one curve per model
    view._on_class_click(SimpleNamespace(column="label", row=row, value=label))
    assert view._pr_class.value == label
    assert sorted(c.label for c in view._pr.object) == sorted(m for m in view.metrics if view.metrics[m].per_class)

    # the box-status control marks the grid through the state, and follows the state back
    view._boxes.value = "only FPs"
    view.wait()
    assert state.box_status == ["fp"] and state.evaluation == MODEL
    state.box_status = []
    assert view._boxes.value == "all boxes"


def test_confusion_cells_filter_to_samples_with_that_confusion(demo_ds, store):
    state, view = _view(store)
    ds = demo_ds
    view.evaluate_selected()
    view.wait()
    _until(lambda: state.evaluation == MODEL)
    assert {MODEL, "detector_b"} <= {e["key"] for e in ds.evaluations()}
    m = view.metrics[MODEL]
    names, cm = m.confusion_labels, m.confusion.copy()
    k = len(names) - 1
    np.fill_diagonal(cm, 0)
    i, j = np.unravel_index(np.argmax(cm[:k, :k]), (k, k))  # the most frequent class confusion
    gt, pred = names[i], names[j]
    cases = [
        ((gt, pred), [(GROUND_TRUTH, gt, "fn"), (MODEL, pred, "fp")]),
        ((gt, "background"), [(GROUND_TRUTH, gt, "fn")]),
        (("background", pred), [(MODEL, pred, "fp")]),
        ((gt, gt), [(MODEL, gt, "tp")]),
    ]
    for (y, x), conditions in cases:
        state.reset()
        view.on_tap(x, y)  # what the Tap stream on the heatmap calls: x predicted, y ground truth
        expected = _samples_with(ds, MODEL, *conditions)
        assert len(state.filters.annotations) == len(conditions)
        assert [(f.source, f.labels[0], f.status[0], f.evaluation) for f in state.filters.annotations] == [
            (*c, MODEL) for c in conditions
        ]
        assert state.count == len(expected) > 0, (y, x)
        assert set(state.result_ids.tolist()) == expected
    # the composed cell is stricter than either of its halves
    assert len(_samples_with(ds, MODEL, *cases[0][1])) < len(_samples_with(ds, MODEL, cases[0][1][0]))


# -- the served app ----------------------------------------------------------------------------------------------


def _wait_count(page, expected: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            n = _count(page)
            if n == expected:
                return n
        except Exception:  # noqa: BLE001 - the element may not be there yet
            n = None
        if time.monotonic() > deadline:
            raise AssertionError(f"count stayed {n}, expected {expected}")
        time.sleep(0.2)


@pytest.mark.browser
def test_served_evaluation_tab_renders_and_a_class_fp_click_filters_browse(home, demo_ds):
    from playwright.sync_api import sync_playwright

    ds = demo_ds
    ds.evaluate(MODEL)  # stored before the server takes the database, so the expected counts can be computed here
    fp_images = {lbl: _samples_with(ds, MODEL, (MODEL, lbl, "fp")) for lbl in ds.labels()}
    label = max(fp_images, key=lambda lbl: len(fp_images[lbl]))
    expected = len(fp_images[label])
    assert 0 < expected < 120
    ds.store.close()  # one process per DuckDB file: the server needs it
    proc, base = serve_app(home)
    url = base + "/browse"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1500, "height": 1450})
            page.goto(url)
            page.wait_for_selector(".vl-tile", timeout=30000)
            _wait_count(page, 120)
            page.locator(".bk-tab:text-is('Evaluation')").click()
            rows = page.locator(".vl-eval-classes .tabulator-row")
            row = rows.filter(has=page.locator(".tabulator-cell", has_text=re.compile(f"^{label}$"))).first
            row.wait_for(timeout=30000)
            assert rows.count() == len(ds.labels())
            summary = page.locator(".vl-eval-summary .tabulator-row")
            assert summary.count() == 2 and MODEL in summary.first.inner_text()
            # the heatmap and the PR curves are drawn on canvases
            for pane in (".vl-eval-confusion", ".vl-eval-pr"):
                page.locator(f"{pane} canvas").first.wait_for(timeout=20000)
            time.sleep(1.5)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "evaluation.png"))

            row.locator(".vl-fp-button").click()
            page.get_by_text("false positive").first.wait_for(timeout=20000)
            page.locator(".bk-tab:text-is('Browse')").click()
            assert _wait_count(page, expected) == expected
            page.locator(".vl-tile").first.wait_for(timeout=20000)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)
