"""The grid follows overlay changes however they arrive (one param.update may change several at once)."""

from __future__ import annotations

from visionlens.ui.grid_component import window_rows
from visionlens.ui.grid_view import GridView
from visionlens.ui.state import AppState


def test_several_overlay_changes_in_one_update_redraw_once_without_error(demo_ds, store):
    demo_ds.evaluate("detector_b")
    state = AppState(store, dataset="demo")
    view = GridView(state=state)
    assert state.models == ["detector_a"] and state.evaluation is None
    before = view._grid.generation
    state.param.update(models=["detector_b"], evaluation="detector_b", min_confidence=0.5)
    assert view._grid.generation == before + 1  # one redraw for the batch
    tiles = window_rows(view._grid.items)
    boxes = [b for t in tiles for b in t.get("boxes", [])]
    preds = [b for b in boxes if b.get("kind") == "pred"]
    assert preds and all(b["score"] >= 0.5 for b in preds)
    assert any(b.get("status") for b in boxes)  # the evaluation's TP/FP/FN marks came with the same redraw
