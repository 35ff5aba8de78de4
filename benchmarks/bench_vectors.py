"""Embedded vector store at scale: upsert rate, HNSW recall against exact search, search latency.

Data is clustered (not uniform random: HNSW looks better on uniform data than on real embeddings), 512-d,
L2-normalised, with a ``split`` payload (80/10/10) and 1-3 ``labels`` per point drawn from 20 classes.

    .venv/bin/python benchmarks/bench_vectors.py              # 1M points (about 15 minutes on 2 cores)
    .venv/bin/python benchmarks/bench_vectors.py --n 200000   # quicker
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import machine

from visionlens.store.vectors import EdgeVectorStore, IndexParams

LABELS = [f"class{i:02d}" for i in range(20)]


def clustered(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs of varying spread around n/1000 centres, like embeddings of many object categories."""
    rng = np.random.default_rng(seed)
    k = max(n // 1000, 10)
    centers = rng.standard_normal((k, dim)).astype(np.float32)
    spread = rng.uniform(0.3, 1.2, k).astype(np.float32)
    assign = rng.integers(0, k, n)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        a = assign[start : start + 100_000]
        x = centers[a] + rng.standard_normal((len(a), dim)).astype(np.float32) * spread[a, None]
        out[start : start + len(a)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out, assign


def payloads_for(assign: np.ndarray, seed: int = 1) -> list[dict]:
    rng = np.random.default_rng(seed)
    split = rng.choice(["train", "val", "test"], len(assign), p=[0.8, 0.1, 0.1])
    extra = rng.integers(0, len(LABELS), (len(assign), 2))
    nlab = rng.integers(0, 3, len(assign))
    return [
        {"split": str(s), "labels": sorted({LABELS[c % len(LABELS)], *(LABELS[e] for e in ex[:m])})}
        for s, c, ex, m in zip(split, assign, extra, nlab, strict=True)
    ]


def exact_topk(x: np.ndarray, queries: np.ndarray, k: int, mask: np.ndarray | None = None) -> list[np.ndarray]:
    """Brute-force top-k row indices per query (chunked so 1M x 512 never needs a second copy)."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(x), 200_000):
        s = queries @ x[start : start + 200_000].T
        if mask is not None:
            s[:, ~mask[start : start + 200_000]] = -np.inf
        idx = np.argpartition(-s, min(k, s.shape[1] - 1), axis=1)[:, :k]
        best_s = np.concatenate([best_s, np.take_along_axis(s, idx, 1)], 1)
        best_i = np.concatenate([best_i, idx + start], 1)
    order = np.argsort(-best_s, axis=1)[:, :k]
    return [best_i[q, order[q]][np.isfinite(best_s[q, order[q]])] for q in range(len(queries))]


def timed(fn, reps) -> tuple[list, np.ndarray]:
    out, lat = [], []
    for args in reps:
        t = time.perf_counter()
        out.append(fn(*args))
        lat.append(time.perf_counter() - t)
    return out, np.asarray(lat) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--m", type=int, default=IndexParams.m)
    ap.add_argument("--ef-construct", type=int, default=IndexParams.ef_construct)
    ap.add_argument("--search-ef", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument(
        "--path",
        help="store directory, kept and reused by the next run with the same --n "
        "(default: a temporary one, removed afterwards)",
    )
    args = ap.parse_args()

    n, dim = args.n, args.dim
    rows: list[tuple[str, str]] = []
    print(f"generating {n:,} clustered {dim}-d vectors ...", flush=True)
    x, assign = clustered(n, dim)
    payloads = payloads_for(assign)
    ids = np.arange(1, n + 1, dtype=np.int64)
    rng = np.random.default_rng(7)
    qrows = rng.choice(n, args.queries, replace=False)
    queries = x[qrows] + 0.05 * rng.standard_normal((args.queries, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)

    path = Path(args.path) if args.path else Path(tempfile.mkdtemp(prefix="bench_vectors_"))
    index = IndexParams(m=args.m, ef_construct=args.ef_construct)
    store = EdgeVectorStore(path, index=index)
    try:
        store.ensure_collection("bench", dim)
        if args.path and store.count("bench") == n:
            print(f"reusing the {n:,} points already in {path}", flush=True)
        else:
            load(store, ids, x, payloads, index, rows)
        rows += query_rows(store, x, ids, payloads, queries, index, args.search_ef, rng)
    finally:
        store.close()
        if not args.path:
            shutil.rmtree(path, ignore_errors=True)

    print()
    print(f"bench_vectors: n={n:,} dim={dim} queries={args.queries} machine: {machine()}")
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


def load(
    store: EdgeVectorStore,
    ids: np.ndarray,
    x: np.ndarray,
    payloads: list[dict],
    index: IndexParams,
    rows: list[tuple[str, str]],
) -> None:
    """Bulk upsert, then build the HNSW graph; both timed."""
    n = len(ids)
    t = time.perf_counter()
    for start in range(0, n, 50_000):
        store.upsert("bench", ids[start : start + 50_000], x[start : start + 50_000], payloads[start : start + 50_000])
    up = time.perf_counter() - t
    rows.append(("upsert", f"{n / up:,.0f} vectors/s ({up:.0f} s)"))
    print(rows[-1], flush=True)
    t = time.perf_counter()
    store.optimize("bench")
    rows.append((f"HNSW build (m={index.m}, ef_construct={index.ef_construct})", f"{time.perf_counter() - t:.0f} s"))
    print(rows[-1], flush=True)


def same_as_exact(got_rows: np.ndarray, want_rows: np.ndarray, x: np.ndarray, q: np.ndarray) -> bool:
    """Exact up to float rounding: the returned points' true scores equal the true top-k scores.

    (Comparing ids alone calls a swap of two points whose scores differ in the 7th digit a miss.)"""
    if len(got_rows) != len(want_rows):
        return False
    return bool(np.allclose(np.sort(x[got_rows] @ q), np.sort(x[want_rows] @ q), atol=1e-5))


def query_rows(
    store: EdgeVectorStore,
    x: np.ndarray,
    ids: np.ndarray,
    payloads: list[dict],
    queries: np.ndarray,
    index: IndexParams,
    search_efs: list[int],
    rng: np.random.Generator,
) -> list[tuple[str, str]]:
    """Recall and latency of HNSW search per search ef; latency and exactness of every exact (filtered) path."""
    rows: list[tuple[str, str]] = []
    n = len(ids)
    truth = {k: exact_topk(x, queries, k) for k in (10, 50)}
    for q in queries[:10]:  # warm the page cache (a reused store starts cold) and the search thread pool
        store.search("bench", q, 50)
    for q in queries[:3]:
        store.search("bench", q, 50, exact=True)
    for ef in search_efs:
        store.index = dataclasses.replace(index, search_ef=ef)
        for k in (10, 50):
            res, lat = timed(lambda q, k=k: store.search("bench", q, k)[0], [(q,) for q in queries])
            recall = np.mean([len(np.intersect1d(r - 1, t)) / k for r, t in zip(res, truth[k], strict=True)])
            rows.append(
                (
                    f"HNSW top-{k}, search ef=max({ef}, 2k)",
                    f"recall {recall:.3f}, p50 {np.percentile(lat, 50):.1f} ms, p95 {np.percentile(lat, 95):.1f} ms",
                )
            )
            print(rows[-1], flush=True)
    store.index = index

    split = np.array([p["split"] for p in payloads])
    has_label = np.array([LABELS[3] in p["labels"] for p in payloads])
    cases = [
        ("exact top-50, no filter (full scan)", {}, None),
        ("exact top-50, payload split=val (10%)", {"payload_filter": {"split": "val"}}, split == "val"),
        (
            f"exact top-50, payload labels={LABELS[3]} ({has_label.mean():.0%})",
            {"payload_filter": {"labels": [LABELS[3]]}},
            has_label,
        ),
        ("exact top-50, payload split=train (80%)", {"payload_filter": {"split": "train"}}, split == "train"),
    ]
    for frac in (0.01, 0.10, 0.25, 0.50):
        allowed = np.sort(rng.choice(ids, int(n * frac), replace=False))
        cases.append(
            (f"exact top-50, id set {frac:.0%} ({len(allowed):,} ids)", {"allowed_ids": allowed}, np.isin(ids, allowed))
        )
    for label, kw, mask in cases:
        reps = [(q,) for q in queries[:30]]
        res, lat = timed(lambda q, kw=kw: store.search("bench", q, 50, exact=True, **kw)[0], reps)
        want = exact_topk(x, queries[:30], 50, mask)
        same = np.mean([same_as_exact(r - 1, w, x, q) for r, w, q in zip(res, want, queries, strict=False)])
        rows.append(
            (
                label,
                f"p50 {np.percentile(lat, 50):.1f} ms, p95 {np.percentile(lat, 95):.1f} ms, exact top-50 {same:.0%}",
            )
        )
        print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    main()
