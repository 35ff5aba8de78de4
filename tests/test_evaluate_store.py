"""Evaluation through the store: COCO-exact against pycocotools on the demo, stored per-object results, filters,
and the planted failures of the demo found by the numbers."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def _oracle(demo_files, model: str, img_ids: list[int] | None = None) -> np.ndarray:
    """pycocotools on the demo's own files (train and val merged: image ids are unique across them)."""
    docs = [json.loads((demo_files.annotations / f"instances_{s}.json").read_text()) for s in ("train", "val")]
    merged = {
        "images": docs[0]["images"] + docs[1]["images"],
        "annotations": docs[0]["annotations"] + docs[1]["annotations"],
        "categories": docs[0]["categories"],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = merged
        gt.createIndex()
        dt = gt.loadRes(json.loads(demo_files.predictions[model].read_text()))
        ev = COCOeval(gt, dt, "bbox")
        if img_ids is not None:
            ev.params.imgIds = img_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


@pytest.mark.parametrize("model", ["detector_a", "detector_b"])
def test_evaluate_equals_pycocotools_on_the_demo(demo_ds, demo_files, model):
    m = demo_ds.evaluate(model)
    assert np.allclose(list(m.stats.values()), _oracle(demo_files, model), atol=1e-6)


def test_metrics_on_a_filtered_subset_equal_pycocotools(demo_ds, demo_files):
    flt = {"time_of_day": ["night", "dusk"]}
    m = demo_ds.metrics("detector_a", flt)
    ids = [int(p.split("/")[-1].split(".")[0]) for p in demo_ds.samples(flt, limit=1000)["filepath"]]
    assert m.samples == len(ids) > 0
    assert np.allclose(list(m.stats.values()), _oracle(demo_files, "detector_a", ids), atol=1e-6)


def test_per_object_results_are_stored_and_filterable(demo_ds):
    ds = demo_ds
    ds.evaluate("detector_a")
    fields = ds.fields()
    assert {"detector_a.tp", "detector_a.fp", "detector_a.fn"} <= set(fields)
    df = ds.samples(limit=1000)
    ann = ds.annotations(df["id"], evaluation="detector_a")
    preds = ann[ann["source"] == "detector_a"]
    gts = ann[ann["source"] == "ground_truth"]
    assert set(preds["status"].dropna()) <= {"tp", "fp", "ignored"} and set(gts["status"].dropna()) <= {
        "tp",
        "fn",
        "ignored",
    }
    assert (preds["status"] == "tp").sum() == (gts["status"] == "tp").sum() == df["detector_a.tp"].sum()
    assert (preds["status"] == "fp").sum() == df["detector_a.fp"].sum()
    with_fp = set(preds[preds["status"] == "fp"]["sample_id"])
    assert ds.count({"annotations": [{"source": "detector_a", "status": ["fp"]}]}) == len(with_fp)
    assert ds.count({"detector_a.fp": (1, None)}) == len(with_fp)
    missed = set(gts[gts["status"] == "fn"]["sample_id"])
    flt = {"annotations": [{"source": "ground_truth", "status": ["fn"], "evaluation": "detector_a"}]}
    assert ds.count(flt) == len(missed) > 0
    assert set(preds["error"].dropna()) <= {"localization", "confusion", "duplicate", "background"}
    assert preds[preds["status"] == "fp"]["error"].notna().all()


def test_reevaluating_and_replacing_predictions_keep_things_consistent(demo_ds, demo_files):
    ds = demo_ds
    ds.evaluate("detector_b")
    ds.evaluate("detector_b")  # replaces, does not duplicate
    with ds.store.cursor() as cur:
        n = cur.execute("SELECT count(*) FROM evaluations WHERE key = 'detector_b'").fetchall()[0][0]
    assert n == 1 and len([f for f in ds.fields() if f.startswith("detector_b.")]) == 3
    ds.add_predictions("detector_b", demo_files.predictions["detector_a"], replace=True)
    assert not [e for e in ds.evaluations() if e["model"] == "detector_b"]
    assert not [f for f in ds.fields() if f.startswith("detector_b.")]


def test_planted_failures_show_in_the_numbers(demo_ds, demo_files):
    ds = demo_ds
    planted = json.loads(demo_files.planted.read_text())
    ds.evaluate("detector_a")
    df = ds.samples(limit=1000)
    ann = ds.annotations(df["id"], evaluation="detector_a")
    gts = ann[ann["source"] == "ground_truth"].merge(df[["id", "time_of_day"]], left_on="sample_id", right_on="id")
    small = gts["area"] < 32 * 32
    night = gts["time_of_day"] == "night"
    miss = gts["status"] == "fn"
    assert miss[small & night].mean() > 0.6 > 2 * miss[~small & ~night].mean()
    # trucks called cars: the biggest off-diagonal cell of detector_a's confusion matrix
    m = ds.metrics("detector_a")
    cm = m.confusion[:-1, :-1].copy()
    np.fill_diagonal(cm, 0)
    gt_k, dt_k = np.unravel_index(cm.argmax(), cm.shape)
    assert (m.confusion_labels[gt_k], m.confusion_labels[dt_k]) == ("truck", "car")
    # dogs labelled cat in the ground truth: the detector says dog, so those GT boxes are misses...
    wrong = {r["gt_id"] for r in planted["wrong_gt_label"]}
    with ds.store.cursor() as cur:
        ext = dict(cur.execute("SELECT ext_id, id FROM annotations WHERE source_id = 0").fetchall())
    wrong_ids = {ext[i] for i in wrong}
    assert wrong_ids and (gts[gts["id_x"].isin(wrong_ids)]["status"] == "fn").mean() > 0.7
    # ...and the "dog" predictions on them are class-confusion false positives
    preds = ann[(ann["source"] == "detector_a") & (ann["status"] == "fp") & (ann["label"] == "dog")]
    assert (preds["error"] == "confusion").sum() >= 0.7 * len(wrong_ids)
