"""Error patterns (TIDE): each planted error type costs the most AP, fixes add up to a perfect AP, the demo's planted
failures come out on top, and the findings store and filter like any other."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import visionlens as vl
from tests.factories import coco_doc, write_coco
from visionlens.evaluation import Detections
from visionlens.insights import load_findings, save_run
from visionlens.insights.errors import (
    ERROR_NAMES,
    MissingEvaluationError,
    best_overlaps,
    find_error_patterns,
    tide,
)
from visionlens.query import Filters

CAR = [10.0, 10.0, 60.0, 40.0]
PERSON = [120.0, 60.0, 30.0, 80.0]
EMPTY = [150.0, 5.0, 30.0, 30.0]  # overlaps neither object
N_IMAGES = 12
N_PLANTED = 6


def _shift(box: list[float], dx: float) -> list[float]:
    return [box[0] + dx, *box[1:]]


def _scene(
    plant: str | None, classes: tuple[str, ...] = ("car", "person"), plants: dict[int, str] | None = None
) -> tuple[list[dict], list[dict]]:
    """GT: a car and a person per image (or only cars with one class); a perfect detector, then one error type on
    the first ``N_PLANTED`` images (or ``plants``: image index -> error type).

    Classification and localization replace a correct detection (the fix can then find the object); both,
    duplicate and background add a confident wrong box; missed drops detections.
    """
    two = len(classes) == 2
    if plants is None:
        plants = {i: plant for i in range(N_PLANTED)} if plant else {}
    anns, preds = [], []
    for i in range(N_IMAGES):
        img = i + 1
        objects = [(1, CAR)] + ([(2, PERSON)] if two else [(1, PERSON)])
        for k, (cat, box) in enumerate(objects):
            anns.append(
                {
                    "id": 100 + 10 * img + k,
                    "image_id": img,
                    "category_id": cat,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
        plant = plants.get(i)
        planted = plant is not None
        score = 0.5 + 0.03 * i
        preds.append({"image_id": img, "category_id": 1, "bbox": CAR, "score": score})
        person = {"image_id": img, "category_id": objects[1][0], "bbox": PERSON, "score": score - 0.01}
        if planted and plant == "classification":
            person["category_id"] = 1
        elif planted and plant == "localization":
            person["bbox"] = _shift(PERSON, 15)  # IoU 1/3 with the person
        elif planted and plant == "duplicate":
            person["score"] = 0.96  # the duplicate below it still outranks other images' detections
        if not (planted and plant == "missed"):
            preds.append(person)
        if planted and plant == "both":
            preds.append({"image_id": img, "category_id": 1, "bbox": _shift(PERSON, 15), "score": 0.95})
        elif planted and plant == "duplicate":
            preds.append({"image_id": img, "category_id": objects[1][0], "bbox": _shift(PERSON, 3), "score": 0.95})
        elif planted and plant == "background":
            preds.append({"image_id": img, "category_id": 1, "bbox": EMPTY, "score": 0.95})
    return anns, preds


def _ingest(
    root: Path,
    store: Any,
    name: str,
    anns: list[dict],
    preds: list[dict],
    classes: tuple[str, ...] = ("car", "person"),
    evaluate: bool = True,
) -> vl.Dataset:
    images = [{"id": i + 1, "file_name": f"{i + 1:03d}.jpg", "width": 200, "height": 160} for i in range(N_IMAGES)]
    write_coco(root, coco_doc(images, anns, list(classes)))
    (root / "predictions.json").write_text(json.dumps(preds))
    ds = vl.ingest(root, name, predictions={"m": root / "predictions.json"}, store=store)
    if evaluate:
        ds.evaluate("m")
    return ds


def _arrays(anns: list[dict], preds: list[dict]) -> tuple[Detections, Detections, np.ndarray]:
    gt = Detections(
        image_id=np.array([a["image_id"] for a in anns]),
        label=np.array([a["category_id"] for a in anns]),
        bbox=np.array([a["bbox"] for a in anns], float),
        ann_id=np.arange(len(anns)),
        iscrowd=np.zeros(len(anns), bool),
        area=np.array([a["area"] for a in anns], float),
    )
    dt = Detections(
        image_id=np.array([p["image_id"] for p in preds]),
        label=np.array([p["category_id"] for p in preds]),
        bbox=np.array([p["bbox"] for p in preds], float),
        ann_id=np.arange(len(preds)) + 10_000,
        score=np.array([p["score"] for p in preds], float),
    )
    return gt, dt, np.arange(1, N_IMAGES + 1)


@pytest.mark.parametrize("plant", [n for n in ERROR_NAMES.values()])
def test_the_planted_error_type_costs_the_most_ap(plant):
    res = tide(*_arrays(*_scene(plant)))
    daps = {ERROR_NAMES[c]: res.dap(c) for c in ERROR_NAMES}
    assert max(daps, key=daps.get) == plant and daps[plant] > 0.02
    assert res.counts[{v: k for k, v in ERROR_NAMES.items()}[plant]] == N_PLANTED
    assert sum(v > 1e-9 for v in daps.values()) == 1  # planted in isolation: nothing else moves
    assert res.ap < 1.0 and res.all_fixed_ap == pytest.approx(1.0)
    assert all(0 <= v <= 1 - res.ap + 1e-12 for v in daps.values())


def test_a_perfect_detector_has_no_errors():
    res = tide(*_arrays(*_scene(None)))
    assert res.ap == pytest.approx(1.0) and sum(res.counts.values()) == 0


def test_fixing_everything_moves_ap_towards_one_and_each_fix_helps():
    """Every error type at once (one image each): each fix alone helps, all together reach AP50 = 1."""
    kinds = list(ERROR_NAMES.values())
    res = tide(*_arrays(*_scene(None, plants=dict(enumerate(kinds)))))
    assert all(res.counts[c] == 1 for c in ERROR_NAMES)
    assert all(res.fixed_ap[c] >= res.ap for c in ERROR_NAMES)
    assert sum(res.dap(c) for c in ERROR_NAMES) > 0
    assert res.ap < max(res.fixed_ap.values()) <= res.all_fixed_ap == pytest.approx(1.0)


def test_best_overlaps_match_a_direct_computation():
    rng = np.random.default_rng(0)
    g = rng.uniform(0, 100, (40, 4))
    d = rng.uniform(0, 100, (60, 4))
    g_img, d_img = rng.integers(0, 4, 40), rng.integers(0, 4, 60)
    g_lbl, d_lbl = rng.integers(0, 3, 40), rng.integers(0, 3, 60)
    ov = best_overlaps(g_img, g_lbl, g, np.zeros(40, bool), d_img, d_lbl, d)

    def iou(a, b):
        w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
        h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
        return 0.0 if w <= 0 or h <= 0 else w * h / (a[2] * a[3] + b[2] * b[3] - w * h)

    for k in range(60):
        same = [(iou(d[k], g[j]), j) for j in range(40) if g_img[j] == d_img[k] and g_lbl[j] == d_lbl[k]]
        other = [(iou(d[k], g[j]), j) for j in range(40) if g_img[j] == d_img[k] and g_lbl[j] != d_lbl[k]]
        s = max(same, default=(0.0, -1))
        o = max(other, default=(0.0, -1))
        assert ov.same_iou[k] == pytest.approx(s[0]) and ov.other_iou[k] == pytest.approx(o[0])
        assert ov.same_gt[k] == (s[1] if s[0] > 0 else -1) and ov.other_gt[k] == (o[1] if o[0] > 0 else -1)


def test_findings_from_coco_files_store_and_filter(tmp_path, store):
    anns, preds = _scene("classification")
    ds = _ingest(tmp_path / "cls", store, "cls", anns, preds)
    found = find_error_patterns(store, ds.id, "m")
    assert all(f.kind == "error_pattern" and f.model == "m" for f in found)
    assert [f.score for f in found] == sorted((f.score for f in found), reverse=True)
    top = found[0]
    assert top.detail["error"] == "classification" and top.evidence["count"] == N_PLANTED
    assert top.evidence["dap"] == pytest.approx(top.score) and top.evidence["ap50_all_fixed"] == pytest.approx(1.0)
    pair = next(f for f in found if f.detail["error"] == "confusion")
    assert (pair.detail["gt_label"], pair.detail["predicted"], pair.evidence["count"]) == ("person", "car", N_PLANTED)
    # members: each wrong prediction and the person it covers, on the planted images
    assert len(pair.object_ids) == 2 * N_PLANTED and len(set(pair.sample_ids)) == N_PLANTED
    saved = save_run(store, ds.id, "errors:m", found)
    assert ds.count(saved[0].app_filters()) == N_PLANTED
    assert ds.count(Filters(finding=[f for f in saved if f.detail["error"] == "confusion"][0].id)) == N_PLANTED
    assert [f.title for f in load_findings(store, ds.id, kind="error_pattern")][0] == top.title


def test_one_class_works(tmp_path, store):
    anns, preds = _scene("background", classes=("car",))
    preds = [p for p in preds if not (p["image_id"] == 12 and p["bbox"] == PERSON)]  # one missed object too
    ds = _ingest(tmp_path / "one", store, "one", anns, preds, classes=("car",))
    found = find_error_patterns(store, ds.id, "m")
    kinds = {f.detail["error"]: f for f in found if "label" not in f.detail}
    assert set(kinds) == {"background", "missed"}
    assert kinds["background"].score > kinds["missed"].score > 0
    assert kinds["missed"].object_ids and kinds["missed"].member_scores is None


def test_no_evaluation_is_a_clear_error(tmp_path, store):
    anns, preds = _scene("missed")
    ds = _ingest(tmp_path / "noeval", store, "noeval", anns, preds, evaluate=False)
    with pytest.raises(MissingEvaluationError, match="evaluate"):
        find_error_patterns(store, ds.id, "m")
    with pytest.raises(MissingEvaluationError, match="not a model"):
        find_error_patterns(store, ds.id, "nope")


# -- the demo's planted failures ------------------------------------------------------------------------------


@pytest.fixture
def demo_errors(demo_ds):
    for m in demo_ds.models():
        demo_ds.evaluate(m)
    return {m: find_error_patterns(demo_ds.store, demo_ds.id, m) for m in demo_ds.models()}


def test_truck_as_car_is_detector_a_top_confusion(demo_errors):
    pairs = [f for f in demo_errors["detector_a"] if f.detail["error"] == "confusion"]
    assert (pairs[0].detail["gt_label"], pairs[0].detail["predicted"]) == ("truck", "car")
    assert pairs[0].evidence["count"] == max(f.evidence["count"] for f in pairs) >= 5


def test_duplicates_cost_detector_b_more(demo_errors):
    def dup(model: str) -> float:
        return next(
            (f.score for f in demo_errors[model] if f.detail["error"] == "duplicate" and "label" not in f.detail), 0.0
        )

    assert dup("detector_b") > dup("detector_a") >= 0
    assert dup("detector_b") > 0


def test_demo_breakdown_is_consistent(demo_errors):
    for found in demo_errors.values():
        overall = [f for f in found if f.detail["error"] in ERROR_NAMES.values() and "label" not in f.detail]
        ev = overall[0].evidence
        assert ev["ap50"] < ev["ap50_all_fixed"] == pytest.approx(1.0)
        assert all(ev["ap50"] <= f.evidence["ap50_fixed"] <= 1.0 for f in overall)
        assert all(len(f.sample_ids) == len(f.object_ids) > 0 for f in found)
