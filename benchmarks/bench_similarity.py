"""The app's similarity search at scale: ``similar_to_sample`` with a DuckDB store and the embedded vector store.

    .venv/bin/python benchmarks/bench_similarity.py                 # 1M samples in one dataset (~20 min on 2 cores)
    .venv/bin/python benchmarks/bench_similarity.py --n 100000      # quicker
    .venv/bin/python benchmarks/bench_similarity.py --path /tmp/sim # keep the stores; a rerun with the same --n reuses them

``bench_vectors.py`` times the vector store alone; this times what the app runs when a user clicks "find similar":
the dataset filter always travels with the query, so before the HNSW path for a dataset alone in its collection the
unfiltered search was an exact scan of every point. Rows: the unfiltered app path (now the graph) against that old
exact path, with recall@k of the first against the second; a payload filter (split, GT label); a field only DuckDB
knows (``weather``, sent as an id set); and what the first search after a write pays to count the dataset's points.
Vectors are ``bench_vectors.clustered`` (512-d Gaussian blobs); each sample has one GT box labelled by its blob.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from bench_ingest_query import print_table
from bench_vectors import LABELS, clustered
from machine import machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from visionlens.formats.base import AnnotationRecords, ParsedDataset, SampleRecords  # noqa: E402
from visionlens.query import FieldFilter, Filters, LabelFilter  # noqa: E402
from visionlens.similarity import similar_to_sample  # noqa: E402
from visionlens.store.metadata import MetadataStore  # noqa: E402
from visionlens.store.vectors import EdgeVectorStore  # noqa: E402

COLL = "bench"
NAME = "bench"
CHUNK = 50_000


def parsed_dataset(n: int, assign: np.ndarray, seed: int = 1) -> ParsedDataset:
    """n samples with split 80/10/10, a ``weather`` field of 4 values and one GT box labelled by the blob."""
    rng = np.random.default_rng(seed)
    samples = SampleRecords(
        filepath=[f"images/{i:08d}.jpg" for i in range(n)],
        width=np.full(n, 640, np.int32),
        height=np.full(n, 480, np.int32),
        split=list(rng.choice(["train", "val", "test"], n, p=[0.8, 0.1, 0.1])),
        ext_id=[str(i) for i in range(n)],
        missing=np.zeros(n, bool),
        custom={"weather": list(rng.choice(["clear", "rain", "fog", "snow"], n, p=[0.55, 0.25, 0.1, 0.1]))},
    )
    boxes = AnnotationRecords(
        sample_index=np.arange(n),
        label_index=(assign % len(LABELS)).astype(np.int32),
        bbox=np.tile([10.0, 10.0, 100.0, 80.0], (n, 1)),
    )
    return ParsedDataset("coco", "/data/bench", LABELS, samples, boxes)


def build(store: MetadataStore, vs: EdgeVectorStore, n: int, dim: int) -> tuple[int, list[tuple[str, str]]]:
    """Insert the dataset, then embed it the way ``embed_dataset`` does (payloads from ``store.payloads``)."""
    x, assign = clustered(n, dim)
    t = time.perf_counter()
    ds_id = store.insert_dataset(NAME, parsed_dataset(n, assign), replace=True)
    rows = [("DuckDB insert", f"{time.perf_counter() - t:.1f} s")]
    ids = store.sample_index(ds_id)[1]
    vs.drop(COLL)
    vs.ensure_collection(COLL, dim)
    t = time.perf_counter()
    for start in range(0, n, CHUNK):
        part = ids[start : start + CHUNK]
        vs.upsert(COLL, part, x[start : start + CHUNK], store.payloads(ds_id, part))
    rows.append(("upsert with app payloads", f"{time.perf_counter() - t:.0f} s"))
    print(rows[-1], flush=True)
    t = time.perf_counter()
    vs.optimize(COLL)
    rows.append(("HNSW build", f"{time.perf_counter() - t:.0f} s"))
    print(rows[-1], flush=True)
    return ds_id, rows


def open_or_build(path: Path, n: int, dim: int) -> tuple[MetadataStore, EdgeVectorStore, int, list[tuple[str, str]]]:
    store = MetadataStore(path / "meta.duckdb")
    vs = EdgeVectorStore(path / "vectors")
    try:
        ds_id = store.get_dataset(NAME).id
        if COLL in vs.collections() and vs.count(COLL) == n == store.count(ds_id, Filters()):
            print(f"reusing the {n:,} samples and vectors in {path}", flush=True)
            return store, vs, ds_id, [("stores", f"reused from {path}")]
    except Exception:  # noqa: BLE001 - no dataset yet: build it
        pass
    ds_id, rows = build(store, vs, n, dim)
    return store, vs, ds_id, rows


def latencies(fn: Callable[[int], np.ndarray], queries: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    for q in queries[:5]:  # warm the page cache and the search threads
        fn(int(q))
    out, lat = [], []
    for q in queries:
        t = time.perf_counter()
        out.append(fn(int(q)))
        lat.append(time.perf_counter() - t)
    return out, np.asarray(lat) * 1000


def ms(lat: np.ndarray) -> str:
    return f"p50 {np.percentile(lat, 50):7.1f} ms, p95 {np.percentile(lat, 95):7.1f} ms"


def query_rows(store: MetadataStore, vs: EdgeVectorStore, ds_id: int, queries: np.ndarray, k: int) -> list:
    """Each case runs the app's own call; the old unfiltered path is the dataset-filtered exact search it made."""
    t = time.perf_counter()
    alone = vs.count_matching(COLL, {"dataset": [ds_id]}) == vs.count(COLL)
    rows = [
        (
            "first search after a write: count dataset points",
            f"{(time.perf_counter() - t) * 1000:.0f} ms once (then remembered), dataset alone: {alone}",
        )
    ]

    def app(flt: Filters) -> Callable[[int], np.ndarray]:
        return lambda sid: similar_to_sample(store, ds_id, COLL, sid, k=k, filters=flt, vectors=vs)[0]

    def old_exact(sid: int) -> np.ndarray:
        query = vs.get_vectors(COLL, np.asarray([sid], np.int64))[0]
        return vs.search(COLL, query, k, payload_filter={"dataset": [ds_id]})[0]

    graph, lat = latencies(app(Filters()), queries)
    exact, lat_exact = latencies(old_exact, queries)
    recall = np.mean([len(np.intersect1d(g, e)) / k for g, e in zip(graph, exact, strict=True)])
    full = np.mean([len(g) == k for g in graph])
    rows.append((f"no filter, HNSW graph (app now), top-{k}", f"{ms(lat)}, recall@{k} {recall:.3f}, full {full:.0%}"))
    rows.append((f"no filter, exact scan (app before), top-{k}", ms(lat_exact)))
    cases = [
        ("split=val (payload, 10%)", Filters(fields=(FieldFilter(field="split", values=("val",)),))),
        (f"GT label {LABELS[3]} (payload, 5%)", Filters(annotations=(LabelFilter(labels=(LABELS[3],)),))),
        ("weather=rain (DuckDB id set, 25%)", Filters(fields=(FieldFilter(field="weather", values=("rain",)),))),
        (
            "weather=snow + split=val (id set, 1%)",
            Filters(
                fields=(
                    FieldFilter(field="weather", values=("snow",)),
                    FieldFilter(field="split", values=("val",)),
                )
            ),
        ),
    ]
    for label, flt in cases:
        _, lat = latencies(app(flt), queries)
        rows.append((f"{label}, exact, top-{k}", ms(lat)))
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="samples (and vectors) in the one dataset")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=50, help="query samples per case")
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--path", type=Path, help="keep the stores here and reuse them (default: a temporary folder)")
    args = ap.parse_args()
    box = machine()  # the load average before this run's own work
    print(f"machine: {box}", flush=True)
    path = args.path or Path(tempfile.mkdtemp(prefix="bench_similarity_"))
    store, vs, ds_id, rows = open_or_build(path, args.n, args.dim)
    try:
        ids = store.sample_index(ds_id)[1]
        queries = np.random.default_rng(7).choice(ids, args.queries, replace=False)
        rows += query_rows(store, vs, ds_id, queries, args.k)
    finally:
        vs.close()
        store.close()
        if args.path is None:
            shutil.rmtree(path, ignore_errors=True)
    title = f"bench_similarity: app path, {args.n:,} samples x {args.dim}-d in one dataset, {args.queries} queries"
    print_table(title, [("machine", box), *rows])


if __name__ == "__main__":
    main()
