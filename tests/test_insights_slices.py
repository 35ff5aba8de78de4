"""Blind-spot slices on real datasets written to disk: planted failures are found and ranked high, a dataset
without one yields nothing, explanations are not repeated, and every finding's filter selects what it reports."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

import visionlens as vl
from tests.factories import coco_doc, image, write_coco
from visionlens.errors import VisionLensError
from visionlens.insights import load_findings, save_run
from visionlens.insights.slices import find_slices, fisher_greater, wilson
from visionlens.query import Filters

CAMERAS = [f"cam_{i}" for i in range(6)]
CAMERA_COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (230, 230, 40), (40, 220, 220), (220, 40, 220)]
W, H = 640, 480

MissFn = Callable[[dict[str, Any], str, tuple[float, float, float, float]], float]


def synthetic(
    root: Path,
    store: Any,
    *,
    n: int = 600,
    seed: int = 0,
    miss: MissFn | None = None,
    classes: tuple[str, ...] = ("car", "person", "bike"),
    fp_rate: Callable[[dict], float] | None = None,
    fp_label: str | None = None,
    images: bool = False,
    name: str = "syn",
    evaluate: bool = True,
    extra: Callable[[np.random.Generator, int], dict[str, Any]] | None = None,
    n_boxes: Callable[[np.random.Generator, dict], int] | None = None,
    look: Callable[[dict], int] | None = None,
) -> Any:
    """A COCO dataset with fields camera/hour/weather/road, 1–6 boxes per image of mixed sizes (``n_boxes``), and
    a model "m" whose predictions are the GT boxes (jittered) except where ``miss(image, label, box)`` says it
    misses them, plus background false positives at ``fp_rate(image)`` per image (of class ``fp_label`` if
    given). ``images``: write real JPEGs, coloured by camera or by ``look(image)`` (for embedding)."""
    rng = np.random.default_rng(seed)
    miss = miss or (lambda im, label, box: 0.15)
    fp_rate = fp_rate or (lambda im: 0.3)
    n_boxes = n_boxes or (lambda rng, im: int(rng.integers(1, 7)))
    imgs, anns, preds = [], [], []
    ann_id = 1
    for i in range(1, n + 1):
        im = {
            "id": i,
            "file_name": f"{i:05d}.jpg",
            "width": W,
            "height": H,
            "camera": CAMERAS[int(rng.integers(len(CAMERAS)))],
            "hour": int(rng.integers(0, 24)),
            "weather": str(rng.choice(["clear", "fog"])),
            "road": str(rng.choice(["dry", "wet"])),
        }
        if extra:
            im.update(extra(rng, i))
        imgs.append(im)
        for _ in range(n_boxes(rng, im)):
            label = classes[int(rng.integers(len(classes)))]
            area = float(np.exp(rng.uniform(np.log(12 * 12), np.log(200 * 200))))
            bw = min(W * 0.9, math.sqrt(area * rng.uniform(0.6, 1.6)))
            bh = min(H * 0.9, area / bw)
            x, y = float(rng.uniform(0, W - bw)), float(rng.uniform(0, H - bh))
            anns.append(
                {
                    "id": ann_id,
                    "image_id": i,
                    "category_id": classes.index(label) + 1,
                    "bbox": [round(x, 1), round(y, 1), round(bw, 1), round(bh, 1)],
                    "area": round(bw * bh, 2),
                    "iscrowd": 0,
                }
            )
            ann_id += 1
            if rng.random() >= miss(im, label, (x, y, bw, bh)):
                jx, jy = rng.normal(0, 0.03, 2) * (bw, bh)
                preds.append(
                    {
                        "image_id": i,
                        "category_id": classes.index(label) + 1,
                        "bbox": [round(x + jx, 2), round(y + jy, 2), round(bw, 2), round(bh, 2)],
                        "score": round(float(rng.uniform(0.5, 1.0)), 4),
                    }
                )
        for _ in range(int(rng.poisson(fp_rate(im)))):  # background boxes sized like the objects
            side = float(np.exp(rng.uniform(np.log(12), np.log(200))))
            bw, bh = side, side * float(rng.uniform(0.7, 1.4))
            label_id = classes.index(fp_label) + 1 if fp_label else int(rng.integers(1, len(classes) + 1))
            preds.append(
                {
                    "image_id": i,
                    "category_id": label_id,
                    "bbox": [
                        round(float(rng.uniform(0, W - bw)), 1),
                        round(float(rng.uniform(0, H - bh)), 1),
                        round(bw, 1),
                        round(bh, 1),
                    ],
                    "score": round(float(rng.uniform(0.05, 0.5)), 4),
                }
            )
    root.mkdir(parents=True, exist_ok=True)
    if images:
        for im in imgs:
            base = np.array(CAMERA_COLOURS[look(im) if look else CAMERAS.index(im["camera"])], float)
            colour = tuple(int(v) for v in np.clip(base + rng.normal(0, 12, 3), 0, 255))
            image(root / "images" / im["file_name"], (160, 120), colour)
    path = write_coco(root, coco_doc(imgs, anns, list(classes)), make_images=False)
    pred_path = root / "preds.json"
    pred_path.write_text(json.dumps(preds))
    ds = vl.ingest(path, name, predictions={"m": str(pred_path)}, store=store)
    if evaluate:
        ds.evaluate("m")
    return ds


def planted_miss(im: dict[str, Any], label: str, box: tuple[float, float, float, float]) -> float:
    """cam_3 misses most objects; after 8 pm many; fog on a wet road many, but fog or wet alone nothing."""
    if im["camera"] == "cam_3":
        return 0.7
    if im["hour"] >= 20:
        return 0.6
    if im["weather"] == "fog" and im["road"] == "wet":
        return 0.55
    return 0.1


def image_difficulty(seed: int) -> MissFn:
    """No field explains anything, but some images are hard: misses cluster by image (as in real data)."""
    rng = np.random.default_rng(seed + 1000)
    hardness: dict[int, float] = {}

    def miss(im: dict[str, Any], label: str, box: tuple[float, float, float, float]) -> float:
        if im["id"] not in hardness:
            hardness[im["id"]] = float(rng.beta(0.2, 0.8))
        return hardness[im["id"]]

    return miss


def titles(findings: list) -> list[str]:
    return [f.title for f in findings]


def assert_filters_select_support(ds: Any, findings: list) -> None:
    """The filter (or the members) of every finding selects exactly the images its evidence counts."""
    for f in findings:
        if f.filters is not None:
            assert ds.count(f.filters) == f.evidence["images"], f.title
            assert not f.sample_ids
        else:
            assert len(set(f.sample_ids)) == len(f.sample_ids) == f.evidence["images"], f.title


# -- statistics ----------------------------------------------------------------------------------------------------


def test_vectorised_fisher_equals_scipy_and_wilson_is_the_score_interval():
    tables = [(3, 20, 40, 200), (0, 10, 5, 100), (12, 15, 30, 300), (5, 5, 1, 50), (7, 40, 70, 400)]
    for y_in, n_in, y_out, n_out in tables:
        expected = stats.fisher_exact([[y_in, n_in - y_in], [y_out, n_out - y_out]], alternative="greater").pvalue
        got = fisher_greater(np.array([y_in]), np.array([n_in]), np.array([y_out]), np.array([n_out]))[0]
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-15)
    lo, hi = wilson(np.array([8, 0, 10]), np.array([10, 10, 10]))
    assert lo[0] == pytest.approx(0.4902, abs=1e-4) and hi[0] == pytest.approx(0.9433, abs=1e-4)
    assert lo[1] == 0 and hi[1] == pytest.approx(0.2775, abs=1e-4)
    assert hi[2] == pytest.approx(1)


# -- planted failures ----------------------------------------------------------------------------------------------


def test_planted_slices_are_found_at_the_top_and_filter_what_they_report(store, tmp_path):
    ds = synthetic(tmp_path / "planted", store, miss=planted_miss)
    findings = find_slices(store, ds.id, "m")
    top = titles(findings[:3])
    assert "Misses objects when camera is cam_3" in top
    hour = next(f for f in findings[:3] if "hour" in f.title)
    (cond,) = hour.filters.fields
    assert cond.field == "hour" and cond.range.max is None and 18 <= cond.range.min <= 21
    assert hour.title == f"Misses objects when hour ≥ {cond.range.min:g}"
    conj = next(f for f in findings[:3] if "fog" in f.title)
    assert conj.title in (
        "Misses objects when road is wet and weather is fog",
        "Misses objects when weather is fog and road is wet",
    )
    assert {(c.field, c.values) for c in conj.filters.fields} == {("weather", ("fog",)), ("road", ("wet",))}
    assert conj.evidence["p_beyond_parts"] < 0.05
    # the parts alone are not failures (the conjunction explains them), nor is cam_3 plus anything else
    assert not any(t.endswith(("when weather is fog", "when road is wet")) for t in titles(findings))
    assert not any("cam_3 and" in t or "and camera is cam_3" in t for t in titles(findings))
    assert len(findings) <= 5
    cam = findings[titles(findings).index("Misses objects when camera is cam_3")]
    ev = cam.evidence
    assert cam.kind == "slice" and cam.model == "m" and cam.definition == "camera is cam_3"
    assert ev["metric"] == "recall" and ev["slice"]["recall"] < 0.45 and ev["rest"]["recall"] > 0.7
    lo, hi = ev["slice"]["recall_ci"]
    assert lo < ev["slice"]["recall"] < hi and ev["rest"]["recall_ci"][1] < 1
    assert ev["p_value"] < ev["p_adjusted"] < 1e-6 and ev["tests"] > 100
    assert ev["gt_objects"] == ev["slice"]["found"] + ev["slice"]["missed"]
    assert 0 <= ev["slice"]["ap"] < ev["rest"]["ap"] <= 1  # AP of the slice's images against the others'
    assert cam.score == pytest.approx(
        (ev["rest"]["recall"] - ev["slice"]["recall"]) * math.sqrt(ev["gt_objects"]), rel=1e-5
    )
    assert [f.score for f in findings] == sorted((f.score for f in findings), reverse=True)
    assert_filters_select_support(ds, findings)


def test_false_positive_slices_per_image_and_per_kind(store, tmp_path):
    ds = synthetic(tmp_path / "fp", store, fp_label="bike", fp_rate=lambda im: 2.5 if im["camera"] == "cam_5" else 0.3)
    findings = find_slices(store, ds.id, "m")
    per_image = next(f for f in findings if f.title == "More false positives per image when camera is cam_5")
    ev = per_image.evidence
    assert ev["metric"] == "fp_per_image" and ev["slice"]["fp_per_image"] > 3 * ev["rest"]["fp_per_image"]
    assert ev["slice"]["fp_per_image_ci"][0] > ev["rest"]["fp_per_image_ci"][1]
    assert ev["images"] == ev["slice"]["images"] == ds.count({"camera": "cam_5"})
    share = next(f for f in findings if f.title == "More false positives when predicted class is bike")
    assert share.evidence["metric"] == "fp_share" and share.definition == "predicted class is bike"
    (label_filter,) = share.filters.annotations
    assert label_filter.source == "m" and label_filter.status == ("fp",) and label_filter.labels == ("bike",)
    assert_filters_select_support(ds, findings)


def test_box_position_slice_is_kept_by_its_members(store, tmp_path):
    def miss(im, label, box):
        x, _, w, _ = box
        return 0.8 if x <= 0.02 * W or x + w >= 0.98 * W else 0.1

    ds = synthetic(tmp_path / "border", store, miss=miss, n=500, seed=2)
    findings = find_slices(store, ds.id, "m", ap_top=0)
    border = next(f for f in findings if f.title == "Misses objects when box is near the image border")
    assert border.filters is None and border.definition == "GT box within 2% of an image edge"
    assert "ap" not in border.evidence["slice"]
    saved = save_run(store, ds.id, "slices:m", findings)
    stored = next(f for f in saved if f.title == border.title)
    assert ds.count(Filters(finding=stored.id)) == border.evidence["images"] == len(border.sample_ids)
    assert_filters_select_support(ds, findings)


# -- what must not be reported --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["independent", "clustered by image"])
def test_a_dataset_without_a_planted_failure_yields_nothing(store, tmp_path, case):
    miss = None if case == "independent" else image_difficulty(3)
    ds = synthetic(tmp_path / "null", store, miss=miss, seed=3)
    assert find_slices(store, ds.id, "m") == []


def test_per_object_fisher_alone_would_be_fooled_by_hard_images(store, tmp_path, monkeypatch):
    """Why p is the larger of Fisher's and an image-clustered test: misses cluster in hard images."""
    from visionlens.insights import slices

    ds = synthetic(tmp_path / "null", store, miss=image_difficulty(3), seed=3)
    monkeypatch.setattr(
        slices,
        "proportion_p",
        lambda n_in, y_in, n_out, y_out, deff, cluster=None: slices.fisher_greater(y_in, n_in, y_out, n_out),
    )
    assert len(find_slices(store, ds.id, "m", ap_top=0)) > 0


# -- the demo ------------------------------------------------------------------------------------------------------


def test_the_demo_night_small_failure_is_found_and_saved(demo_ds):
    store = demo_ds.store
    demo_ds.evaluate("detector_a")
    findings = find_slices(store, demo_ds.id, "detector_a")
    night = next(f for f in findings if f.title == "Misses objects when time_of_day is night and size is small")
    assert night.definition == "time_of_day is night and GT box area ≤ 32²"
    assert findings.index(night) <= 2
    assert night.evidence["slice"]["recall"] < 0.3 and night.evidence["rest"]["recall"] > 0.8
    (label_filter,) = night.filters.annotations
    assert label_filter.source == "ground_truth" and label_filter.area.max == 32 * 32
    assert_filters_select_support(demo_ds, findings)
    saved = save_run(store, demo_ds.id, "slices:detector_a", findings)
    loaded = load_findings(store, demo_ds.id, run="slices:detector_a")
    assert [f.title for f in loaded] == [f.title for f in findings]
    back = next(f for f in loaded if f.title == night.title)
    assert back.filters == night.filters and back.evidence["images"] == night.evidence["images"]
    assert demo_ds.count(back.app_filters()) == night.evidence["images"] and saved[0].id is not None


# -- edges ---------------------------------------------------------------------------------------------------------


def test_a_model_that_was_not_evaluated_is_a_clear_error(store, tmp_path):
    ds = synthetic(tmp_path / "raw", store, n=30, evaluate=False)
    with pytest.raises(VisionLensError, match=r"not been evaluated.*ds\.evaluate\('m'\)"):
        find_slices(store, ds.id, "m")
    with pytest.raises(VisionLensError, match="no model named 'yolo'"):
        find_slices(store, ds.id, "yolo")


def test_one_class_dataset(store, tmp_path):
    ds = synthetic(tmp_path / "one", store, classes=("car",), miss=planted_miss, n=400, seed=5)
    findings = find_slices(store, ds.id, "m", ap_top=0)
    assert "Misses objects when camera is cam_3" in titles(findings[:3])
    assert not any("class" in t for t in titles(findings))
    assert_filters_select_support(ds, findings)


def test_empty_images_constant_and_missing_fields_and_error_free_models(store, tmp_path):
    def extra(rng, i):
        # field names that are also our own words must stay data
        return {
            "blank": "yes" if i % 10 == 0 else "no",
            "gain": 1.0,
            "note": None if i % 2 else "seen",
            "lens": None,
            "cluster": f"c{i % 3}",
            "size": "{p}",
        }

    def n_boxes(rng, im):
        return 0 if im["blank"] == "yes" else int(rng.integers(1, 7))

    ds = synthetic(tmp_path / "empty", store, miss=planted_miss, n=400, extra=extra, n_boxes=n_boxes)
    findings = find_slices(store, ds.id, "m", ap_top=0)
    assert "Misses objects when camera is cam_3" in titles(findings)
    assert not any(word in f.definition for f in findings for word in ("blank", "gain", "lens"))
    assert_filters_select_support(ds, findings)
    perfect = synthetic(
        tmp_path / "perfect", store, miss=lambda im, label, box: 0.0, fp_rate=lambda im: 0.0, n=60, name="perfect"
    )
    assert find_slices(store, perfect.id, "m") == []
    blind = synthetic(tmp_path / "blind", store, miss=lambda im, label, box: 1.0, n=60, name="blind")
    assert find_slices(store, blind.id, "m") == []


def test_tag_fields_infinite_values_and_crowd_boxes(store):
    """Formats that carry list fields (tags) and numbers like inf: a tag is a candidate, inf sorts on top as in
    DuckDB, crowd boxes count for the filter but not for recall."""
    from visionlens.dataset import Dataset
    from visionlens.formats.base import (
        AnnotationRecords,
        ParsedDataset,
        ParsedPredictions,
        SampleRecords,
    )

    rng = np.random.default_rng(0)
    n = 800
    flags = [[t for t, p in (("rainy", 0.25), ("blurry", 0.3), ("glare", 0.2)) if rng.random() < p] for _ in range(n)]
    exposure = [None if i % 9 == 0 else math.inf if i % 13 == 0 else float(rng.normal()) for i in range(n)]
    samples = SampleRecords(
        filepath=[f"{i}.jpg" for i in range(n)],
        width=np.full(n, W, np.int32),
        height=np.full(n, H, np.int32),
        split=["val"] * n,
        ext_id=[str(i) for i in range(n)],
        missing=np.zeros(n, bool),
        custom={"flags": flags, "exposure": exposure},
    )
    image = np.repeat(np.arange(n), rng.integers(1, 6, n))
    wh = rng.uniform(10, 200, (len(image), 2))
    boxes = np.concatenate([rng.uniform(0, 1, (len(image), 2)) * (np.array([W, H]) - wh), wh], 1)
    labels = rng.integers(0, 3, len(image)).astype(np.int32)
    p_miss = np.where([("blurry" in flags[i]) for i in image], 0.6, 0.1)
    p_miss = np.where([exposure[i] == math.inf for i in image], 0.7, p_miss)
    found = rng.random(len(image)) >= p_miss
    gt = AnnotationRecords(
        sample_index=image,
        label_index=labels,
        bbox=boxes,
        area=wh[:, 0] * wh[:, 1],
        iscrowd=rng.random(len(image)) < 0.02,
    )
    preds = AnnotationRecords(
        sample_index=image[found],
        label_index=labels[found],
        bbox=boxes[found],
        confidence=rng.uniform(0.5, 1, int(found.sum())),
    )
    store.insert_dataset(
        "tags",
        ParsedDataset("coco", "/data", ["a", "b", "c"], samples, gt, [], {"label_ext_ids": ["1", "2", "3"]}),
        {"m": ParsedPredictions(preds, [])},
    )
    ds = Dataset(store, store.get_dataset("tags"))
    assert ds.fields()["flags"].kind == "tags"
    ds.evaluate("m")
    findings = find_slices(store, ds.id, "m")
    assert findings[0].title == "Misses objects when flags has blurry"
    high = next(f for f in findings if f.title.startswith("Misses objects when exposure ≥"))
    assert high.evidence["images"] == ds.count(high.filters) >= sum(v == math.inf for v in exposure)
    assert_filters_select_support(ds, findings)


def test_max_findings_and_progress(store, tmp_path):
    ds = synthetic(tmp_path / "cap", store, miss=planted_miss, n=400, seed=1)
    steps: list[str] = []
    findings = find_slices(store, ds.id, "m", max_findings=1, ap_top=0, progress=lambda s, d, t: steps.append(s))
    assert len(findings) == 1 and findings[0].title == "Misses objects when camera is cam_3"
    assert "slices: count candidates" in steps


# -- clusters of the image embeddings ------------------------------------------------------------------------------


def hidden_look(im: dict[str, Any]) -> int:
    """What an image looks like, recorded in no field: only the embeddings can tell."""
    return (im["id"] * 7 + im["id"] // 5) % 6


def test_a_cluster_of_look_alike_images_is_a_finding_by_members(store, tmp_path):
    from visionlens.embedding_jobs import (
        close_vector_stores,
        embed_dataset,
        vector_store,
    )

    ds = synthetic(
        tmp_path / "look",
        store,
        images=True,
        n=720,
        seed=4,
        look=hidden_look,
        miss=lambda im, label, box: 0.75 if hidden_look(im) == 3 else 0.1,
    )
    try:
        embed_dataset(store, ds.id, "builtin", num_workers=0)
        findings = find_slices(store, ds.id, "m", vectors=vector_store(), collection="builtin-colorstats-v1")
        cluster = findings[0]
        assert cluster.title.startswith("Misses objects in image cluster ")
        assert cluster.detail["collection"] == "builtin-colorstats-v1" and cluster.detail["k"] == 6
        assert cluster.definition.startswith("images in cluster ") and cluster.definition.endswith(
            "of 6 (k-means on builtin-colorstats-v1)"
        )
        assert cluster.filters is None and cluster.evidence["images"] == len(cluster.sample_ids)
        rows = ds.samples(limit=1000)
        dark = {int(r.id) for r in rows.itertuples() if hidden_look({"id": int(r.filepath[-9:-4])}) == 3}
        assert len(dark & set(cluster.sample_ids)) >= 0.9 * max(len(dark), len(cluster.sample_ids))
        assert cluster.evidence["slice"]["ap"] < cluster.evidence["rest"]["ap"]
        saved = save_run(store, ds.id, "slices:m", findings)
        assert ds.count(Filters(finding=saved[0].id)) == cluster.evidence["images"]
        assert ds.count(saved[0].app_filters()) == len(cluster.sample_ids)
        assert_filters_select_support(ds, findings)
        # by default the collection DuckDB registered when embedding is used
        assert cluster.title in titles(find_slices(store, ds.id, "m", ap_top=0))
        with pytest.raises(VisionLensError, match="holds no vectors of this dataset"):
            find_slices(store, ds.id, "m", vectors=vector_store(), collection="nothing-here")
    finally:
        close_vector_stores()
