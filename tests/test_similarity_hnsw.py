"""The app's similarity path on a real embedded collection: the HNSW graph answers an unfiltered search when the
dataset is alone in its collection, and the exact filtered search takes over as soon as another dataset shares it.

The path taken is observed at the engine boundary (the ``exact`` flag each engine query runs with), recorded by a
thin wrapper that still runs the real query; everything else is checked on results against brute force.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from visionlens.formats.base import AnnotationRecords, ParsedDataset, SampleRecords
from visionlens.query import FieldFilter, Filters, LabelFilter
from visionlens.similarity import search_vector, similar_to_sample
from visionlens.store.vectors import ClientVectorStore, EdgeVectorStore, IndexParams

DIM = 48
N = 4000
K = 20
COLL = "emb"
LABELS = ["car", "person", "dog"]
# Small segments get a graph too, so 4K points are served the way 1M are.
SMALL = IndexParams(full_scan_threshold_kb=10, indexing_threshold_kb=10)


def clustered(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((40, DIM)).astype(np.float32)
    x = centers[rng.integers(0, 40, n)] + 0.5 * rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def add_dataset(store: Any, name: str, n: int, seed: int) -> tuple[int, np.ndarray]:
    """A dataset with a split, a custom field and one GT box per sample; returns (id, sample ids)."""
    rng = np.random.default_rng(seed)
    samples = SampleRecords(
        filepath=[f"{i}.jpg" for i in range(n)],
        width=np.full(n, 64, np.int32),
        height=np.full(n, 64, np.int32),
        split=list(rng.choice(["train", "val"], n, p=[0.8, 0.2])),
        ext_id=[str(i) for i in range(n)],
        missing=np.zeros(n, bool),
        custom={"weather": list(rng.choice(["clear", "rain"], n))},
    )
    boxes = AnnotationRecords(
        sample_index=np.arange(n),
        label_index=rng.integers(0, len(LABELS), n).astype(np.int32),
        bbox=np.tile([1.0, 1.0, 10.0, 10.0], (n, 1)),
    )
    ds_id = store.insert_dataset(name, ParsedDataset("coco", "/data", LABELS, samples, boxes))
    return ds_id, store.sample_index(ds_id)[1]


def embed(store: Any, vs: Any, ds_id: int, ids: np.ndarray, vectors: np.ndarray) -> None:
    """What embed_dataset writes: one point per sample with the dataset/split/labels payload."""
    vs.ensure_collection(COLL, DIM)
    vs.upsert(COLL, ids, vectors, store.payloads(ds_id, ids))
    vs.optimize(COLL)


def record_paths(vs: Any, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The ``exact`` flag of every engine query from now on (the real query still runs)."""
    seen: list[bool] = []
    real = vs._query

    def query(name, q, limit, terms, allowed, exact):  # noqa: ANN001, ANN202 - same signature as the engine's
        seen.append(exact)
        return real(name, q, limit, terms, allowed, exact)

    monkeypatch.setattr(vs, "_query", query)
    return seen


def brute(ids: np.ndarray, vectors: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    return ids[np.argsort(-(vectors @ q), kind="stable")[:k]]


@pytest.fixture
def alone(store, tmp_path):
    """Dataset A embedded alone into an indexed Edge collection."""
    a_id, a_ids = add_dataset(store, "a", N, seed=1)
    a_vec = clustered(N, seed=2)
    with EdgeVectorStore(tmp_path / "vec", index=SMALL) as vs:
        embed(store, vs, a_id, a_ids, a_vec)
        assert vs._shard(COLL).info().indexed_vectors_count == N  # a graph exists to be walked
        yield store, vs, a_id, a_ids, a_vec


def test_whole_dataset_alone_walks_the_graph_with_recall(alone, monkeypatch):
    store, vs, a_id, a_ids, a_vec = alone
    seen = record_paths(vs, monkeypatch)
    rows = np.random.default_rng(5).choice(N, 60, replace=False)
    recalls = []
    for r in rows:
        sample = int(a_ids[r])
        ids, scores = similar_to_sample(store, a_id, COLL, sample, k=K, vectors=vs, include_self=False)
        assert len(ids) == K and sample not in ids.tolist()
        assert np.all(np.diff(scores) <= 1e-6)
        truth = brute(a_ids, a_vec, a_vec[r], K + 1)
        recalls.append(len(set(ids.tolist()) & set(truth[truth != sample].tolist())) / K)
    assert seen == [False] * len(rows)  # every query walked the graph
    assert np.mean(recalls) >= 0.95
    ids, _ = similar_to_sample(store, a_id, COLL, int(a_ids[0]), k=K, vectors=vs)  # include_self: it comes first
    assert len(ids) == K and int(ids[0]) == int(a_ids[0])


@pytest.mark.parametrize(
    "flt",
    [
        Filters(fields=(FieldFilter(field="split", values=("val",)),)),
        Filters(annotations=(LabelFilter(labels=("dog",)),)),
        Filters(fields=(FieldFilter(field="weather", values=("rain",)),)),
        "lasso",
    ],
    ids=["split", "label", "custom-field", "lasso"],
)
def test_any_filter_stays_exact(alone, monkeypatch, flt):
    store, vs, a_id, a_ids, a_vec = alone
    if flt == "lasso":
        flt = Filters(sample_ids=tuple(int(i) for i in a_ids[::3]))
    seen = record_paths(vs, monkeypatch)
    allowed = store.matching_ids(a_id, flt)
    mask = np.isin(a_ids, allowed)
    for r in (3, 70, 900):
        ids, _ = search_vector(store, a_id, COLL, a_vec[r], K, flt, vs)
        assert ids.tolist() == brute(a_ids[mask], a_vec[mask], a_vec[r], K).tolist()
    assert seen and all(seen)


def test_an_insight_filter_is_applied_and_exact(alone, monkeypatch):
    """``Filters.finding`` narrows to the insight's members (a DuckDB id set), never the whole dataset."""
    from visionlens.insights import Finding, save_run

    store, vs, a_id, a_ids, a_vec = alone
    members = a_ids[::50]
    saved = save_run(
        store, a_id, "clusters", [Finding(kind="slice", title="c", score=1.0, sample_ids=members.tolist())]
    )
    seen = record_paths(vs, monkeypatch)
    ids, _ = search_vector(store, a_id, COLL, a_vec[7], K, Filters(finding=saved[0].id), vs)
    mask = np.isin(a_ids, members)
    assert ids.tolist() == brute(a_ids[mask], a_vec[mask], a_vec[7], K).tolist() and seen == [True]


def test_second_dataset_brings_back_the_exact_search_and_deleting_it_the_graph(alone, monkeypatch):
    store, vs, a_id, a_ids, a_vec = alone
    b_id, b_ids = add_dataset(store, "b", 1500, seed=3)
    b_vec = clustered(1500, seed=2)  # the same clusters: an unfiltered search would return B's points
    seen = record_paths(vs, monkeypatch)

    def search(r: int) -> np.ndarray:
        return similar_to_sample(store, a_id, COLL, int(a_ids[r]), k=K, vectors=vs, include_self=False)[0]

    search(0)
    assert seen.pop() is False
    embed(store, vs, b_id, b_ids, b_vec)
    for r in (0, 11, 222):
        ids = search(r)
        truth = brute(a_ids, a_vec, a_vec[r], K + 1)
        assert ids.tolist() == truth[truth != a_ids[r]].tolist()  # exact, and only A's samples
        assert seen.pop() is True
    b_ids_found = similar_to_sample(store, b_id, COLL, int(b_ids[0]), k=K, vectors=vs)[0]
    assert seen.pop() is True and set(b_ids_found.tolist()) <= set(b_ids.tolist())

    assert vs.delete_matching(COLL, {"dataset": b_id}) == 1500  # what deleting dataset B does to the collection
    assert len(search(5)) == K and seen.pop() is False
    vs.upsert(COLL, b_ids[:1], b_vec[:1], store.payloads(b_id, b_ids[:1]))  # one stray point is enough
    search(5)
    assert seen.pop() is True
    vs.delete_ids(COLL, b_ids[:1])
    search(5)
    assert seen.pop() is False


def test_the_graph_keeps_the_dataset_filter(alone):
    """A stale "alone" answer costs recall at worst: the graph search still filters by dataset."""
    store, vs, a_id, a_ids, a_vec = alone
    b_id, b_ids = add_dataset(store, "b", 1500, seed=3)
    embed(store, vs, b_id, b_ids, clustered(1500, seed=2))
    for r in (1, 2, 3):
        ids, _ = vs.search(COLL, a_vec[r], K, payload_filter={"dataset": [a_id]}, exact=False)
        assert len(ids) and set(ids.tolist()) <= set(a_ids.tolist())


def test_counts_are_remembered_until_the_next_write(alone, monkeypatch):
    store, vs, a_id, a_ids, a_vec = alone
    counted: list[int] = []
    real = vs._count_exact
    monkeypatch.setattr(vs, "_count_exact", lambda name, terms: counted.append(1) or real(name, terms))
    for r in range(5):
        search_vector(store, a_id, COLL, a_vec[r], K, None, vs)
    assert vs.count_matching(COLL, {"dataset": [a_id]}) == N and len(counted) == 1
    vs.delete_ids(COLL, a_ids[:10])
    assert vs.count_matching(COLL, {"dataset": [a_id]}) == N - 10 == vs.count(COLL) and len(counted) == 2
    assert vs.count_matching(COLL, {"dataset": [a_id + 1]}) == 0 and len(counted) == 3
    assert vs.count_matching(COLL, {"split": []}) == 0 and vs.count_matching(COLL, None) == N - 10


def test_client_store_takes_the_same_decision(store, monkeypatch):
    """qdrant-client's local mode (no graph of its own) decides the same way through the VectorStore protocol."""
    a_id, a_ids = add_dataset(store, "a", 600, seed=1)
    b_id, b_ids = add_dataset(store, "b", 300, seed=3)
    a_vec, b_vec = clustered(600, seed=2), clustered(300, seed=4)
    vs = ClientVectorStore(path=":memory:")
    try:
        embed(store, vs, a_id, a_ids, a_vec)
        seen = record_paths(vs, monkeypatch)
        ids, _ = similar_to_sample(store, a_id, COLL, int(a_ids[4]), k=K, vectors=vs, include_self=False)
        assert seen.pop() is False and len(ids) == K and int(a_ids[4]) not in ids.tolist()
        embed(store, vs, b_id, b_ids, b_vec)
        ids, _ = search_vector(store, a_id, COLL, a_vec[4], K, None, vs)
        assert seen.pop() is True and ids.tolist() == brute(a_ids, a_vec, a_vec[4], K).tolist()
        assert vs.delete_matching(COLL, {"dataset": b_id}) == 300
        search_vector(store, a_id, COLL, a_vec[4], K, None, vs)
        assert seen.pop() is False
    finally:
        vs.close()
