"""Insights end to end at 100K images: what a user waits for after `visionlens insights NAME`.

    .venv/bin/python benchmarks/bench_insights.py [--images 100000] [--boxes 10]

The dataset (planted failures as in ``bench_insights_slices.py``) is written to DuckDB as columns, its model
evaluated, 512-d image vectors put in the embedded vector store and 64-bit image hashes stored (the issue's
setting: "hashes and vectors already computed"). Then ``run_insights`` runs every analysis and stores the
findings, twice in one process: cold (numba kernels compiled on first use, nothing cached) and warm.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from bench_insights_slices import build
from machine import machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from visionlens.insights.runner import run_insights  # noqa: E402
from visionlens.metrics import evaluate_model  # noqa: E402
from visionlens.store.metadata import MetadataStore  # noqa: E402
from visionlens.store.vectors import EdgeVectorStore  # noqa: E402


def _vectors_and_hashes(store: MetadataStore, ds_id: int, vs: EdgeVectorStore, rng: np.random.Generator) -> None:
    """Clustered unit vectors and random hashes, with 1% of images near-copies of another (both signals)."""
    _, ids = store.sample_index(ds_id)
    n = len(ids)
    centres = rng.normal(size=(64, 512)).astype(np.float32)
    x = centres[rng.integers(0, 64, n)] + 0.8 * rng.normal(size=(n, 512)).astype(np.float32)
    hashes = rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64)
    copies = rng.choice(n, n // 100, replace=False)
    originals = rng.integers(0, n, len(copies))
    x[copies] = x[originals] + 0.05 * rng.normal(size=(len(copies), 512)).astype(np.float32)
    hashes[copies] = hashes[originals] ^ np.uint64(0b101)  # two bits differ
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    vs.ensure_collection("bench", 512)
    for start in range(0, n, 50_000):
        vs.upsert(
            "bench",
            ids[start : start + 50_000],
            x[start : start + 50_000],
            [{"dataset": ds_id}] * len(ids[start : start + 50_000]),
        )
    store.register_collection("bench", "bench", {}, 512)
    for method in ("phash", "dhash"):
        store.write_image_hashes(ds_id, ids, hashes, method)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--boxes", type=float, default=10.0)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp(prefix="vl-bench-insights-"))
    store = MetadataStore(tmp / "db.duckdb")
    parsed, preds, _ = build(args.images, args.boxes, rng)
    ds_id = store.insert_dataset("bench", parsed, {"model": preds})
    evaluate_model(store, ds_id, "model")
    vs = EdgeVectorStore(tmp / "qdrant")
    _vectors_and_hashes(store, ds_id, vs, rng)
    print(machine())
    print(
        f"dataset: {args.images:,} images, {len(parsed.annotations):,} GT, {len(preds.annotations):,} predictions, "
        "512-d vectors and hashes stored"
    )
    kinds = ("slice", "error_pattern", "label_mistake", "near_duplicate")
    print(f"{'run':<6} " + " ".join(f"{k:>15}" for k in kinds) + f" {'total s':>8}   findings")
    for run in ("cold", "warm"):
        seconds, found = [], Counter()
        for kind in kinds:  # one kind at a time, so each analysis (and storing its findings) is timed
            start = time.perf_counter()
            found.update(f.kind for f in run_insights(store, ds_id, kinds=[kind], vectors=vs, collection="bench"))
            seconds.append(time.perf_counter() - start)
        print(f"{run:<6} " + " ".join(f"{t:>15.1f}" for t in seconds) + f" {sum(seconds):>8.1f}   {dict(found)}")
    vs.close()
    store.close()


if __name__ == "__main__":
    main()
