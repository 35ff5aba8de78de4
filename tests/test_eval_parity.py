"""Evaluation through the store equals pycocotools run on the very files that were ingested.

The boxes here are what real exports contain and what once made us differ: boxes past the image border (they used
to be clipped at ingest), zero-size and sub-pixel boxes, coordinates and scores with more digits than a 32-bit float
holds (boxes used to be stored as FLOAT), and tied scores across and within images.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import visionlens as vl
from tests.factories import image
from visionlens.evaluation import STAT_NAMES

W, H = 96, 72


def _files(root: Path, seed: int, shuffle_images: bool) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    n_images, cats = 40, ["car", "person", "bike"]
    ids = list(range(1, n_images + 1))
    if shuffle_images:
        rng.shuffle(ids)
    images, anns, preds = [], [], []
    for img_id in ids:
        name = f"im{img_id:03d}.jpg"
        image(root / "images" / name, (W, H))
        images.append({"id": int(img_id), "file_name": name, "width": W, "height": H})
        for _ in range(int(rng.integers(0, 6))):
            x, y = rng.uniform(-15, W - 5), rng.uniform(-15, H - 5)
            w, h = rng.uniform(0.3, 60), rng.uniform(0.3, 50)
            kind = rng.random()
            if kind < 0.08:
                w = 0.0  # zero width: pycocotools keeps it (IoU 0 with everything)
            elif kind < 0.16:
                w, h = rng.uniform(0.01, 0.9), rng.uniform(0.01, 0.9)  # sub-pixel
            box = [float(x), float(y), float(w), float(h)]
            cat = int(rng.integers(1, len(cats) + 1))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": int(img_id),
                    "category_id": cat,
                    "bbox": box,
                    "area": float(w * h * rng.uniform(0.6, 1.0)),
                    "iscrowd": int(rng.random() < 0.05),
                }
            )
            for _ in range(int(rng.integers(0, 3))):  # detections near the object, some past the border
                jitter = rng.normal(0, 4, 4) * [1, 1, 0.5, 0.5]
                pb = [
                    box[0] + jitter[0],
                    box[1] + jitter[1],
                    max(box[2] + jitter[2], 0.0),
                    max(box[3] + jitter[3], 0.0),
                ]
                pcat = cat if rng.random() < 0.8 else int(rng.integers(1, len(cats) + 1))
                preds.append(
                    {
                        "image_id": int(img_id),
                        "category_id": pcat,
                        "bbox": [float(v) for v in pb],
                        "score": float(rng.choice([0.5, 0.75, rng.uniform(0.05, 1.0)])),
                    }
                )  # many exact ties
        for _ in range(int(rng.integers(0, 3))):  # background detections, some with a score tied to others
            preds.append(
                {
                    "image_id": int(img_id),
                    "category_id": int(rng.integers(1, len(cats) + 1)),
                    "bbox": [
                        float(rng.uniform(-20, W)),
                        float(rng.uniform(-20, H)),
                        float(rng.uniform(0, 40)),
                        float(rng.uniform(0, 40)),
                    ],
                    "score": float(rng.choice([0.5, rng.uniform(0.0, 1.0)])),
                }
            )
    doc = {"images": images, "annotations": anns, "categories": [{"id": i + 1, "name": c} for i, c in enumerate(cats)]}
    gt_path = root / "annotations.json"
    gt_path.write_text(json.dumps(doc))
    pred_path = root.parent / "preds.json"  # beside, not inside: the folder must hold one COCO file
    pred_path.write_text(json.dumps(preds))
    return gt_path, pred_path


def _pycocotools(gt_path: Path, pred_path: Path) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        dt = gt.loadRes(str(pred_path))
        e = COCOeval(gt, dt, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return np.asarray(e.stats)


@pytest.mark.parametrize("seed,shuffle_images", [(0, False), (1, False), (2, True), (3, True)])
def test_stored_evaluation_equals_pycocotools_on_the_files(store, tmp_path, seed, shuffle_images):
    gt_path, pred_path = _files(tmp_path / "ds", seed, shuffle_images)
    ds = vl.ingest(tmp_path / "ds", "parity", predictions={"m": str(pred_path)}, store=store)
    expected = _pycocotools(gt_path, pred_path)
    ours = ds.evaluate("m")
    got = np.array([ours.stats[name] for name in STAT_NAMES])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    # the live subset metrics read the same stored boxes
    live = ds.metrics("m")
    np.testing.assert_allclose([live.stats[name] for name in STAT_NAMES], expected, rtol=0, atol=1e-9)


def test_boxes_are_stored_as_given(store, tmp_path):
    """Coordinates past the border and with more digits than float32 come back bit for bit."""
    gt_path, pred_path = _files(tmp_path / "ds", 5, False)
    ds = vl.ingest(tmp_path / "ds", "asgiven", predictions={"m": str(pred_path)}, store=store)
    doc = json.loads(gt_path.read_text())
    stored = ds.annotations(ds.sample_ids(), sources=["ground_truth"])
    want = sorted(tuple(a["bbox"]) for a in doc["annotations"])
    got = sorted(zip(stored["x"], stored["y"], stored["w"], stored["h"]))
    assert got == want
    assert any(b[0] < 0 or b[0] + b[2] > W for b in want)  # the case is really exercised
    scores = sorted(p["score"] for p in json.loads(pred_path.read_text()))
    assert sorted(ds.annotations(ds.sample_ids(), sources=["m"])["confidence"]) == scores
    assert any(i.kind == "boxes_past_border" for i in ds.issues())  # the ingest note stays
