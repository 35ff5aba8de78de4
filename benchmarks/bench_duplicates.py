"""Near-duplicate search at scale: neighbour graph, hash candidates, decision and grouping, with planted pairs.

Synthetic input with vectors and hashes already computed (the state ``find_near_duplicates`` starts from):
clustered 512-d unit vectors (Gaussian blobs around n/1000 centres, as in ``bench_vectors.py``) and random 64-bit
hashes, with 1% of the images given a planted near-copy of one of three kinds, mimicking what the tests measure on
real images with the built-in embedder:

* re-encoded: cosine ~0.99, 0-3 hash bits flipped;
* shifted: cosine ~0.97-0.99, 4-10 bits flipped (and within the combined rule);
* brightened: cosine ~0.65-0.8, 0-4 bits flipped (and within the combined rule).

Recall is the share of planted pairs found by each candidate source and in the final groups; "false groups" are
groups holding no planted pair (unrelated images in a tight blob whose random hashes happen to be close).

    .venv/bin/python benchmarks/bench_duplicates.py                 # 100K and 1M
    .venv/bin/python benchmarks/bench_duplicates.py --n 100000      # one size
    .venv/bin/python benchmarks/bench_duplicates.py --load          # also time reading vectors from the store

Measured (2 shared cores, Xeon, 24 GiB, load average ~2 from other jobs; defaults cell_size 1024, nprobe 3):

       images   kNN s  hash s decide s group s findings s  total s   CPU s     pairs  groups  false  kNN rec hash rec  recall
      100,000     8.0     0.5      0.3     0.0        0.2      9.1       8   806,862   1,000      0    1.000    0.989   1.000
    1,000,000    60.0     4.1     10.4     0.0        0.8     75.3      97 8,209,335  10,001      1    1.000    0.964   1.000

Reading the vectors out of the embedded store first (``find_near_duplicates`` does, in batches of 8192) adds
about 4.5 s per 100K vectors (``--load``).
"""

from __future__ import annotations

import argparse
import resource
import time
from typing import Any

import numpy as np
import pyarrow as pa
from machine import machine

from visionlens.insights.duplicates import (
    FROM_HASHES,
    FROM_NEIGHBOURS,
    DuplicateParams,
    _findings,
    group_pairs,
    near_duplicate_pairs,
)

DIM = 512
KINDS = {  # name: (cosine low, cosine high, bits low, bits high)
    "re-encoded": (0.985, 0.995, 0, 3),
    "shifted": (0.97, 0.99, 4, 10),
    "brightened": (0.65, 0.8, 0, 4),
}


def clustered(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors in Gaussian blobs of varying spread around n/1000 centres (written in place, in chunks)."""
    k = max(n // 1000, 10)
    centres = rng.standard_normal((k, DIM)).astype(np.float32)
    spread = rng.uniform(0.3, 1.2, k).astype(np.float32)
    assign = rng.integers(0, k, n)
    out = np.empty((n, DIM), np.float32)
    for s in range(0, n, 100_000):
        a = assign[s : s + 100_000]
        x = centres[a] + rng.standard_normal((len(a), DIM)).astype(np.float32) * spread[a, None]
        out[s : s + len(a)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def with_cosine(x: np.ndarray, cos: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors at exactly cosine ``cos`` from the rows of ``x``: x cos + (unit noise orthogonal to x) sin."""
    noise = rng.standard_normal(x.shape).astype(np.float32)
    noise -= np.sum(noise * x, axis=1, keepdims=True) * x
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    return (x * cos[:, None] + noise * np.sqrt(1 - cos**2)[:, None]).astype(np.float32)


def flip_bits(h: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = h.copy()
    for i, c in enumerate(counts):
        for b in rng.choice(64, int(c), replace=False):
            out[i] ^= np.uint64(1) << np.uint64(int(b))
    return out


def dataset(n: int, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    x = clustered(n, rng)
    h = rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64) * np.uint64(2) + rng.integers(0, 2, n).astype(
        np.uint64
    )
    m = n // 100
    chosen = rng.choice(n, 2 * m, replace=False)
    src, dst = chosen[:m], chosen[m:]
    kind = rng.integers(0, len(KINDS), m)
    for k, (clo, chi, blo, bhi) in enumerate(KINDS.values()):
        sel = np.flatnonzero(kind == k)
        cos = rng.uniform(clo, chi, len(sel)).astype(np.float32)
        p = DuplicateParams()
        most = np.floor((cos - p.min_score) * p.bits_per_cosine).astype(int)  # stay inside the combined rule
        bits = np.minimum(rng.integers(blo, bhi + 1, len(sel)), most)
        x[dst[sel]] = with_cosine(x[src[sel]], cos, rng)
        h[dst[sel]] = flip_bits(h[src[sel]], bits, rng)
    return {"x": x, "h": h, "src": src, "dst": dst, "kind": kind}


class _Rows:
    """Stands in for the metadata store in ``_findings``: file paths and an 80/20 train/val split."""

    def __init__(self, n: int):
        self.split = np.where(np.random.default_rng(3).random(n) < 0.8, "train", "val")

    def samples_by_id(self, dataset_id: int, ids: np.ndarray) -> pa.Table:
        return pa.table(
            {
                "filepath": [f"images/{i:07d}.jpg" for i in ids.tolist()],
                "split": self.split[np.asarray(ids) - 1].tolist(),
            }
        )


def run(n: int, params: DuplicateParams) -> dict[str, Any]:
    t = time.perf_counter()
    data = dataset(n)
    made = time.perf_counter() - t
    x, h, src, dst = data["x"], data["h"], data["src"], data["dst"]
    planted = np.minimum(src, dst) * n + np.maximum(src, dst)
    rows = np.arange(n, dtype=np.int64)
    timings: dict[str, float] = {}
    start, cpu = time.perf_counter(), time.process_time()
    pairs = near_duplicate_pairs(n, rows, x, rows, h, params, timings=timings)
    t = time.perf_counter()
    dup = pairs.take(pairs.duplicate)
    labels, sizes = group_pairs(n, dup.a, dup.b)
    timings["group"] = time.perf_counter() - t
    t = time.perf_counter()
    nodes = np.arange(1, n + 1, dtype=np.int64)  # sample ids
    findings = _findings(_Rows(n), 1, nodes, dup, labels, sizes, {"signals": ["vectors", "phash"]}, params)
    timings["findings"] = time.perf_counter() - t
    total = time.perf_counter() - start
    cpu = time.process_time() - cpu
    keys = pairs.a * n + pairs.b
    knn_hit = np.isin(planted, keys[(pairs.source & FROM_NEIGHBOURS) > 0])
    hash_hit = np.isin(planted, keys[(pairs.source & FROM_HASHES) > 0])
    final_hit = labels[src] == labels[dst]
    planted_groups = set(labels[src[final_hit]].tolist())
    false_groups = sum(1 for g in np.flatnonzero(sizes >= 2) if g not in planted_groups)
    by_kind = {name: float(final_hit[data["kind"] == k].mean()) for k, name in enumerate(KINDS)}
    return {
        "n": n,
        "made": made,
        **timings,
        "total": total,
        "cpu": cpu,
        "pairs": len(pairs),
        "accepted": len(dup),
        "groups": len(findings),
        "false_groups": false_groups,
        "knn_recall": float(knn_hit.mean()),
        "hash_recall": float(hash_hit.mean()),
        "recall": float(final_hit.mean()),
        "by_kind": by_kind,
        "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def load_seconds(n: int) -> float:
    """Seconds to read n 512-d vectors back out of an embedded store, the way ``find_near_duplicates`` does."""
    import tempfile

    from visionlens.insights.duplicates import _dataset_vectors
    from visionlens.store.vectors import EdgeVectorStore

    x = clustered(n, np.random.default_rng(5))
    with tempfile.TemporaryDirectory() as folder, EdgeVectorStore(folder) as vs:
        vs.ensure_collection("bench", DIM)
        for s in range(0, n, 20_000):
            vs.upsert("bench", np.arange(s + 1, min(s + 20_000, n) + 1), x[s : s + 20_000])
        start = time.perf_counter()
        _dataset_vectors(None, 1, np.arange(1, n + 1), vs, "bench", lambda *a: None)
        return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, nargs="*", default=[100_000, 1_000_000])
    ap.add_argument("--cell-size", type=int, default=DuplicateParams.cell_size)
    ap.add_argument("--nprobe", type=int, default=DuplicateParams.nprobe)
    ap.add_argument("--load", action="store_true", help="also time reading the vectors from an embedded store")
    args = ap.parse_args()
    params = DuplicateParams(cell_size=args.cell_size, nprobe=args.nprobe)
    print(f"machine: {machine()}")
    print(
        f"params: cell_size={params.cell_size} nprobe={params.nprobe} k={params.k} "
        f"hash_orders={params.hash_orders} hash_window={params.hash_window}"
    )
    head = (
        f"{'images':>9} {'kNN s':>7} {'hash s':>7} {'decide s':>8} {'group s':>7} {'findings s':>10} "
        f"{'total s':>8} {'CPU s':>7} {'pairs':>9} {'groups':>7} {'false':>6} {'kNN rec':>8} {'hash rec':>8} {'recall':>7} "
        f"{'peak GiB':>8}"
    )
    print(head)
    for n in args.n:
        r = run(n, params)
        print(
            f"{n:>9,} {r['knn']:>7.1f} {r['hash']:>7.1f} {r['decide']:>8.1f} {r['group']:>7.1f} "
            f"{r['findings']:>10.1f} {r['total']:>8.1f} {r['cpu']:>7.0f} {r['pairs']:>9,} {r['groups']:>7,} {r['false_groups']:>6} "
            f"{r['knn_recall']:>8.3f} {r['hash_recall']:>8.3f} {r['recall']:>7.3f} {r['peak_gib']:>8.1f}",
            flush=True,
        )
        print(
            "          recall by kind: "
            + ", ".join(f"{k} {v:.3f}" for k, v in r["by_kind"].items())
            + f"; synthetic data made in {r['made']:.0f} s (not counted)",
            flush=True,
        )
        if args.load:
            print(f"          reading {n:,} vectors from the embedded store: {load_seconds(n):.1f} s", flush=True)


if __name__ == "__main__":
    main()
