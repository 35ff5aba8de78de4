"""Blind-spot slice discovery speed at 100K images / ~1M GT / ~1M predictions, with planted failures checked.

    .venv/bin/python benchmarks/bench_insights_slices.py [--images 100000] [--boxes 10] [--no-ap] [--vectors]

The dataset is built as columns (no JSON), evaluated with the project's evaluator, then ``find_slices`` runs on
it. Planted: camera cam_7 misses most objects, hour ≥ 20 misses many, fog ∧ wet road only in combination, small
trucks. Reported: the whole run and its stages, and where each planted failure ranks. ``--vectors`` adds 64-d
image vectors (cam_7 images apart) in an embedded vector store, so the clustering step is timed too.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from visionlens.formats.base import (
    AnnotationRecords,
    ParsedDataset,
    ParsedPredictions,
    SampleRecords,
)
from visionlens.insights import slices
from visionlens.metrics import evaluate_model
from visionlens.store.metadata import MetadataStore

CLASSES = [f"class_{i}" for i in range(20)] + ["truck"]


def build(n_images: int, boxes: float, rng: np.random.Generator) -> tuple[ParsedDataset, ParsedPredictions, dict]:
    cameras = rng.integers(0, 12, n_images)
    hour = rng.integers(0, 24, n_images)
    weather = rng.choice(["clear", "fog"], n_images)
    road = rng.choice(["dry", "wet"], n_images)
    counts = rng.poisson(boxes, n_images)
    image = np.repeat(np.arange(n_images), counts)
    n = len(image)
    side = np.exp(rng.uniform(np.log(10), np.log(300), n))
    wh = np.stack([side * rng.uniform(0.7, 1.3, n), side], 1)
    xy = rng.uniform(0, 1, (n, 2)) * (np.array([640, 480]) - wh).clip(1)
    label = rng.integers(0, len(CLASSES), n)
    p_miss = np.full(n, 0.1)
    p_miss[hour[image] >= 20] = 0.45
    p_miss[(weather[image] == "fog") & (road[image] == "wet")] = 0.4
    p_miss[cameras[image] == 7] = 0.7
    p_miss[(label == len(CLASSES) - 1) & (side * side < 32 * 32)] = 0.8
    found = rng.random(n) >= p_miss
    samples = SampleRecords(
        filepath=[f"images/{i:08d}.jpg" for i in range(n_images)],
        width=np.full(n_images, 640, np.int32),
        height=np.full(n_images, 480, np.int32),
        split=list(rng.choice(["train", "val"], n_images)),
        ext_id=[str(i) for i in range(n_images)],
        missing=np.zeros(n_images, bool),
        custom={
            "camera": [f"cam_{c}" for c in cameras],
            "hour": hour.tolist(),
            "weather": weather.tolist(),
            "road": road.tolist(),
            "brightness": rng.random(n_images).round(3).tolist(),
        },
    )
    bbox = np.concatenate([xy, wh], 1)
    gt = AnnotationRecords(sample_index=image, label_index=label.astype(np.int32), bbox=bbox, area=wh[:, 0] * wh[:, 1])
    fp_n = rng.poisson(0.5, n_images)
    fp_image = np.repeat(np.arange(n_images), fp_n)
    fp_side = np.exp(rng.uniform(np.log(10), np.log(300), len(fp_image)))
    fp_box = np.stack([rng.uniform(0, 400, len(fp_image)), rng.uniform(0, 300, len(fp_image)), fp_side, fp_side], 1)
    jitter = rng.normal(0, 0.03, (int(found.sum()), 2)) * wh[found]
    pred_box = np.concatenate([np.concatenate([xy[found] + jitter, wh[found]], 1), fp_box])
    order = np.argsort(np.concatenate([image[found], fp_image]), kind="stable")
    preds = AnnotationRecords(
        sample_index=np.concatenate([image[found], fp_image])[order],
        label_index=np.concatenate([label[found], rng.integers(0, len(CLASSES), len(fp_image))]).astype(np.int32)[
            order
        ],
        bbox=pred_box[order],
        confidence=np.concatenate([rng.uniform(0.5, 1, int(found.sum())), rng.uniform(0.05, 0.5, len(fp_image))])[
            order
        ],
    )
    parsed = ParsedDataset(
        "coco", "/data/bench", CLASSES, samples, gt, [], {"label_ext_ids": [str(i) for i in range(len(CLASSES))]}
    )
    return parsed, ParsedPredictions(preds, []), {"cameras": cameras}


def rank_of(findings: list, test) -> str:
    for k, f in enumerate(findings, 1):
        if test(f):
            return f"#{k}: {f.title}"
    return "not found"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--boxes", type=float, default=10.0)
    ap.add_argument("--no-ap", action="store_true")
    ap.add_argument("--vectors", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        parsed, preds, extra = build(args.images, args.boxes, rng)
        store = MetadataStore(Path(tmp) / "bench.duckdb")
        store.insert_dataset("bench", parsed, {"m": preds})
        ds_id = store.get_dataset("bench").id
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        evaluate_model(store, ds_id, "m")
        eval_s = time.perf_counter() - t0
        vectors = None
        if args.vectors:
            from visionlens.store.vectors import open_vector_store

            vectors = open_vector_store(path=Path(tmp) / "vectors")
            ids = store.matching_ids(ds_id, slices.Filters())
            vecs = rng.normal(0, 1, (len(ids), 64)).astype(np.float32)
            vecs[extra["cameras"] == 7, :8] += 4.0
            vectors.ensure_collection("bench-vectors", 64)
            vectors.upsert("bench-vectors", ids, vecs)
        stages: dict[str, float] = {}
        last = [time.perf_counter()]

        def progress(step: str, done: int, total: int) -> None:
            now = time.perf_counter()
            stages[step] = stages.get(step, 0.0) + now - last[0]
            last[0] = now

        t0 = time.perf_counter()
        findings = slices.find_slices(
            store,
            ds_id,
            "m",
            progress=progress,
            ap_top=0 if args.no_ap else 10,
            vectors=vectors,
            collection="bench-vectors" if vectors else None,
        )
        total_s = time.perf_counter() - t0
        counts = store.table_counts()
        print(f"machine: {machine()}")
        print(
            f"dataset: {counts['samples']:,} images, {counts['annotations']:,} boxes (GT + predictions); "
            f"built in {build_s:.1f} s, evaluated in {eval_s:.1f} s"
        )
        print(
            f"find_slices: {total_s:.1f} s for {len(findings)} findings (AP {'off' if args.no_ap else 'on the top 10'}, "
            f"clusters {'on' if vectors else 'off'})"
        )
        for step, secs in stages.items():
            print(f"  {step} (time up to its last report): {secs:.1f} s")
        print("planted:")
        print("  camera cam_7:", rank_of(findings, lambda f: "camera is cam_7" in f.title and " and " not in f.title))
        print("  hour ≥ 20:", rank_of(findings, lambda f: "hour ≥" in f.title and " and " not in f.title))
        print("  fog ∧ wet:", rank_of(findings, lambda f: "fog" in f.title and "wet" in f.title))
        print("  small trucks:", rank_of(findings, lambda f: "truck" in f.title and "small" in f.title))
        for f in findings[:12]:
            print(
                f"  {f.score:8.2f}  {f.title}  [{f.evidence['images']:,} images, p_adj {f.evidence['p_adjusted']:.2g}]"
            )
        store.close()


if __name__ == "__main__":
    main()
