"""Ingest throughput (COCO files -> DuckDB) and filter+count+page latency at 1M samples / 10M boxes.

    .venv/bin/python benchmarks/bench_ingest_query.py [--images 100000] [--query-samples 1000000]

Targets: ingest of 100K images / ~1M GT / ~1M predictions under 20 s on 2 cores (FiftyOne imports ~200 samples/s);
p95 of count + one page under 50 ms over 50 varied filters at 1M samples / 10M annotations.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
from machine import machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from visionlens.formats.base import AnnotationRecords, ParsedDataset, ParsedPredictions, SampleRecords  # noqa: E402
from visionlens.ingestion import ingest  # noqa: E402
from visionlens.query import FieldFilter, Filters, LabelFilter, Range, Sort  # noqa: E402
from visionlens.store.metadata import MetadataStore  # noqa: E402

CLASSES = [f"class_{i}" for i in range(80)]


def write_coco(root: Path, n_images: int, boxes_per_image: float, seed: int = 0) -> tuple[Path, Path]:
    """Annotation files only: 80 classes, Poisson box counts, results with one prediction per GT on average."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(boxes_per_image, n_images)
    n = int(counts.sum())
    image_of = np.repeat(np.arange(1, n_images + 1), counts)
    xy = rng.uniform(0, 500, (n, 2)).round(1)
    wh = rng.uniform(4, 140, (n, 2)).round(1)
    cats = rng.integers(1, 81, n)
    images = [
        {
            "id": i,
            "file_name": f"{i:012d}.jpg",
            "width": 640,
            "height": 640,
            "weather": ["clear", "rain", "fog"][i % 3],
            "brightness": round(float(rng.random()), 3),
        }
        for i in range(1, n_images + 1)
    ]
    anns = [
        {
            "id": k + 1,
            "image_id": int(image_of[k]),
            "category_id": int(cats[k]),
            "bbox": [float(xy[k, 0]), float(xy[k, 1]), float(wh[k, 0]), float(wh[k, 1])],
            "area": float(wh[k, 0] * wh[k, 1]),
            "iscrowd": 0,
        }
        for k in range(n)
    ]
    doc = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)],
    }
    root.mkdir(parents=True, exist_ok=True)
    gt = root / "instances.json"
    gt.write_bytes(orjson.dumps(doc))
    jitter = rng.normal(0, 3, (n, 4)).round(2)
    preds = [
        {
            "image_id": int(image_of[k]),
            "category_id": int(cats[k]),
            "bbox": [float(xy[k, 0] + jitter[k, 0]), float(xy[k, 1] + jitter[k, 1]), float(wh[k, 0]), float(wh[k, 1])],
            "score": round(float(s), 3),
        }
        for k, s in zip(range(n), rng.random(n))
    ]
    pred = root / "preds.json"
    pred.write_bytes(orjson.dumps(preds))
    return gt, pred


def bench_ingest(n_images: int, tmp: Path) -> list[tuple[str, str]]:
    t0 = time.perf_counter()
    gt, pred = write_coco(tmp / "coco", n_images, 10.0)
    gen = time.perf_counter() - t0
    store = MetadataStore(tmp / "ingest.duckdb")
    t0 = time.perf_counter()
    report = ingest(store, gt, "bench", predictions={"model": pred})
    secs = time.perf_counter() - t0
    rows = report.samples + report.gt_boxes + sum(report.predictions.values())
    store.close()
    return [
        (
            "dataset",
            f"{report.samples:,} images, {report.gt_boxes:,} GT, {sum(report.predictions.values()):,} predictions",
        ),
        ("files", f"{(gt.stat().st_size + pred.stat().st_size) / 1e6:.0f} MB JSON (generated in {gen:.1f}s)"),
        ("ingest time", f"{secs:.2f} s (target < 20 s)"),
        ("rows/s", f"{rows / secs:,.0f}"),
        ("samples/s", f"{report.samples / secs:,.0f} (FiftyOne ~200)"),
    ]


def synthetic_large(
    n_samples: int, boxes_per_sample: int, rng: np.random.Generator
) -> tuple[ParsedDataset, ParsedPredictions]:
    """1M samples / 10M boxes built as columns directly (a 1.5 GB JSON file would only measure JSON parsing)."""
    n_gt = n_samples * boxes_per_sample // 2
    n_pred = n_samples * boxes_per_sample - n_gt
    samples = SampleRecords(
        filepath=[f"images/{i:08d}.jpg" for i in range(n_samples)],
        width=np.full(n_samples, 640, np.int32),
        height=rng.choice([480, 640], n_samples).astype(np.int32),
        split=list(rng.choice(["train", "val", "test"], n_samples, p=[0.7, 0.2, 0.1])),
        ext_id=[str(i) for i in range(n_samples)],
        missing=np.zeros(n_samples, bool),
        custom={
            "weather": list(rng.choice(["clear", "rain", "fog", "snow"], n_samples)),
            "brightness": list(rng.random(n_samples).round(3)),
            "camera": list(rng.choice([f"cam_{i}" for i in range(40)], n_samples)),
        },
    )

    def boxes(n: int, with_conf: bool) -> AnnotationRecords:
        wh = rng.uniform(4, 200, (n, 2))
        return AnnotationRecords(
            sample_index=np.sort(rng.integers(0, n_samples, n)),
            label_index=rng.integers(0, len(CLASSES), n).astype(np.int32),
            bbox=np.column_stack([rng.uniform(0, 400, (n, 2)), wh]),
            confidence=rng.random(n) if with_conf else None,
        )

    parsed = ParsedDataset(
        "coco", "/data/large", CLASSES, samples, boxes(n_gt, False), [], {"label_ext_ids": [str(i) for i in range(80)]}
    )
    return parsed, ParsedPredictions(boxes(n_pred, True), [])


def varied_filters(rng: np.random.Generator, n: int) -> list[Filters]:
    out = []
    for k in range(n):
        kind = k % 5
        if kind == 0:
            f = Filters(fields=(FieldFilter(field="split", values=(str(rng.choice(["train", "val", "test"])),)),))
        elif kind == 1:
            lo = float(rng.uniform(0, 0.8))
            f = Filters(
                fields=(
                    FieldFilter(field="brightness", range=Range(min=lo, max=lo + 0.1)),
                    FieldFilter(field="weather", values=("rain", "fog")),
                )
            )
        elif kind == 2:
            f = Filters(
                annotations=(
                    LabelFilter(source="model", labels=(str(rng.choice(CLASSES)),), confidence=Range(max=0.5)),
                )
            )
        elif kind == 3:
            f = Filters(
                fields=(FieldFilter(field="camera", values=tuple(f"cam_{i}" for i in rng.integers(0, 40, 3))),),
                annotations=(
                    LabelFilter(
                        labels=tuple(str(c) for c in rng.choice(CLASSES, 2)),
                    ),
                ),
            )
        else:
            f = Filters(
                fields=(
                    FieldFilter(field="num_gt", range=Range(min=int(rng.integers(3, 9)))),
                    FieldFilter(field="split", values=("val",)),
                )
            )
        out.append(f)
    return out


def bench_query(n_samples: int, tmp: Path) -> list[tuple[str, str]]:
    rng = np.random.default_rng(1)
    parsed, preds = synthetic_large(n_samples, 10, rng)
    store = MetadataStore(tmp / "query.duckdb")
    t0 = time.perf_counter()
    store.insert_dataset("large", parsed, {"model": preds})
    load = time.perf_counter() - t0
    ds_id = store.get_dataset("large").id
    filters = varied_filters(rng, 50)
    sorts = [Sort(), Sort(field="brightness", descending=True), Sort(field="num_gt")]
    for f in filters[:3]:  # warm caches the way a running server has them
        store.count(ds_id, f)
    expected = [store.count(ds_id, f) for f in filters]  # offsets anywhere in the result, half of them deep
    times, counts = [], []
    for k, f in enumerate(filters):
        offset = int(rng.integers(0, max(1, expected[k] - 60))) if k % 2 else 0
        t0 = time.perf_counter()
        rows, n = store.page_and_count(ds_id, f, sorts[k % 3], limit=60, offset=offset)
        times.append((time.perf_counter() - t0) * 1000)
        assert n == expected[k] and rows.num_rows == min(60, n - offset)
        counts.append(n)
    t0 = time.perf_counter()
    ids = store.matching_ids(ds_id, Filters(), Sort(field="brightness"))
    all_ids_ms = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    store.samples_by_id(ds_id, ids[500_000 % len(ids) : 500_000 % len(ids) + 60])
    window_ms = (time.perf_counter() - t0) * 1000
    total = store.table_counts()
    store.close()
    return [
        ("dataset", f"{n_samples:,} samples, {total['annotations']:,} annotations (GT + 1 model)"),
        ("bulk load (Arrow)", f"{load:.1f} s"),
        (
            "filters",
            f"50 varied (split, range+categorical, label+confidence, camera+labels, num_gt), 3 sort orders, "
            f"half at a random deep offset; matches {min(counts):,}–{max(counts):,}",
        ),
        ("count + page p50", f"{np.percentile(times, 50):.1f} ms"),
        ("count + page p95", f"{np.percentile(times, 95):.1f} ms (target < 50 ms)"),
        ("count + page max", f"{max(times):.1f} ms"),
        ("all ids sorted by a field", f"{all_ids_ms:.0f} ms"),
        ("window of 60 at row 500K", f"{window_ms:.1f} ms"),
    ]


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    print(f"\n{title}\n" + "-" * len(title))
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--query-samples", type=int, default=1_000_000)
    ap.add_argument("--skip-ingest", action="store_true")
    ap.add_argument("--skip-query", action="store_true")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as d:
        if not args.skip_ingest:
            print_table("COCO ingest (JSON files -> DuckDB, one transaction)", bench_ingest(args.images, Path(d)))
        if not args.skip_query:
            print_table("filter + count + page", bench_query(args.query_samples, Path(d)))


if __name__ == "__main__":
    main()
