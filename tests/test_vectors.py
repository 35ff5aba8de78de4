"""Both vector stores against brute-force numpy on the same clustered vectors, payloads and id sets."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from visionlens.errors import StoreLockedError
from visionlens.store.vectors import (
    ClientVectorStore,
    CollectionNotFoundError,
    EdgeVectorStore,
    IndexParams,
    VectorStoreError,
    open_vector_store,
)

DIM = 32
N = 3000
LABELS = ["car", "person", "dog", "cat"]
BASE_ID = 2**40  # sample ids are int64; make sure large ones survive the round trip


def clustered(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = centers[rng.integers(0, clusters, n)] + 0.4 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    vectors = clustered(N, DIM, 20, seed=0)
    ids = BASE_ID + np.arange(N, dtype=np.int64) * 3 + 1
    splits = rng.choice(["train", "val", "test"], N, p=[0.7, 0.2, 0.1])
    labels = [sorted(set(rng.choice(LABELS, rng.integers(0, 3)).tolist())) for _ in range(N)]
    rare = rng.choice(N, 7, replace=False)  # a label on only 7 points: k=10 must return exactly those 7
    for i in rare:
        labels[i] = labels[i] + ["unicycle"]
    payloads = [{"split": str(s), "labels": lab} for s, lab in zip(splits, labels, strict=True)]
    return ids, vectors, payloads


def brute_force(ids, vectors, query, k, mask=None):
    q = query / np.linalg.norm(query)
    scores = vectors @ q
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    order = np.argsort(-scores, kind="stable")[:k]
    order = order[np.isfinite(scores[order])]
    return ids[order], scores[order]


def payload_mask(payloads, flt):
    def ok(p):
        for key, want in flt.items():
            want = [want] if isinstance(want, str) else want
            have = p.get(key)
            have = have if isinstance(have, list) else [have]
            if not set(want) & set(have):
                return False
        return True

    return np.array([ok(p) for p in payloads])


def filled(kind, path, data):
    ids, vectors, payloads = data
    s = EdgeVectorStore(path) if kind == "edge" else ClientVectorStore(path=":memory:")
    s.ensure_collection("emb", DIM)
    s.upsert("emb", ids, vectors, payloads)
    return s


@pytest.fixture(scope="module", params=["edge", "client"])
def store(request, tmp_path_factory, data):
    """Read-only tests share one filled store per engine."""
    s = filled(request.param, tmp_path_factory.mktemp("vec"), data)
    yield s
    s.close()


@pytest.fixture(params=["edge", "client"])
def fresh_store(request, tmp_path, data):
    """For tests that write."""
    s = filled(request.param, tmp_path / "vec", data)
    yield s
    s.close()


def assert_same(got, expected):
    got_ids, got_scores = got
    exp_ids, exp_scores = expected
    np.testing.assert_array_equal(got_ids, exp_ids)
    np.testing.assert_allclose(got_scores, exp_scores, atol=1e-4)


def test_counts_ids_and_vectors_round_trip(store, data):
    ids, vectors, _ = data
    assert store.count("emb") == N
    np.testing.assert_array_equal(np.sort(store.all_ids("emb")), ids)
    pick = ids[[5, 0, 2999, 17]]
    np.testing.assert_allclose(store.get_vectors("emb", pick), vectors[[5, 0, 2999, 17]], atol=1e-5)
    assert store.collections() == ["emb"]


@pytest.mark.parametrize("k", [1, 10, 50])
def test_exact_unfiltered_matches_brute_force(store, data, k):
    ids, vectors, _ = data
    rng = np.random.default_rng(k)
    for query in rng.standard_normal((5, DIM)).astype(np.float32):
        assert_same(store.search("emb", query, k, exact=True), brute_force(ids, vectors, query, k))


@pytest.mark.parametrize(
    "flt",
    [
        {"split": "val"},
        {"split": ["val", "test"]},
        {"labels": ["dog"]},
        {"split": ["train"], "labels": ["car", "cat"]},
    ],
)
def test_payload_filter_is_exact(store, data, flt):
    ids, vectors, payloads = data
    mask = payload_mask(payloads, flt)
    for query in vectors[[3, 500, 2000]]:
        assert_same(store.search("emb", query, 25, payload_filter=flt), brute_force(ids, vectors, query, 25, mask))


def test_filter_matching_fewer_than_k_returns_all_of_them(store, data):
    ids, vectors, payloads = data
    mask = payload_mask(payloads, {"labels": ["unicycle"]})
    got = store.search("emb", vectors[0], 10, payload_filter={"labels": ["unicycle"]})
    assert len(got[0]) == 7
    assert_same(got, brute_force(ids, vectors, vectors[0], 10, mask))
    assert len(store.search("emb", vectors[0], 10, payload_filter={"labels": []})[0]) == 0


@pytest.mark.parametrize("size", [5, 300, 2500])
def test_allowed_ids_is_exact_and_never_underfills(store, data, size):
    ids, vectors, payloads = data
    rng = np.random.default_rng(size)
    allowed = rng.choice(ids, size, replace=False)
    mask = np.isin(ids, allowed)
    query = vectors[1234]
    got = store.search("emb", query, 20, allowed_ids=allowed)
    assert len(got[0]) == min(size, 20)
    assert_same(got, brute_force(ids, vectors, query, 20, mask))
    # id set and payload filter together
    both = mask & payload_mask(payloads, {"split": "train"})
    assert_same(
        store.search("emb", query, 20, allowed_ids=allowed, payload_filter={"split": "train"}),
        brute_force(ids, vectors, query, 20, both),
    )
    assert len(store.search("emb", query, 20, allowed_ids=np.array([], np.int64))[0]) == 0


def test_large_id_set_far_from_the_query_is_still_exact_and_full(store, data):
    """A big id set is applied after an over-fetching scan; when that scan holds too few allowed points (the set
    lies far from the query) the engine must still return the exact, full top-k."""
    ids, vectors, _ = data
    query = vectors[42]
    far = ids[np.argsort(vectors @ query)[:1200]]  # the 40% of points least like the query
    got = store.search("emb", query, 50, allowed_ids=far)
    assert len(got[0]) == 50
    assert_same(got, brute_force(ids, vectors, query, 50, np.isin(ids, far)))


def test_upsert_replaces_and_delete_removes(fresh_store, data):
    store = fresh_store
    ids, vectors, _ = data
    store.upsert("emb", ids[:2], vectors[[10, 11]], [{"split": "moved"}, {"split": "moved"}])
    assert store.count("emb") == N
    np.testing.assert_allclose(store.get_vectors("emb", ids[:2]), vectors[[10, 11]], atol=1e-5)
    got, _ = store.search("emb", vectors[0], 5, payload_filter={"split": "moved"})
    assert sorted(got.tolist()) == sorted(ids[:2].tolist())
    store.delete_ids("emb", ids[:100])
    assert store.count("emb") == N - 100
    assert not np.isin(store.search("emb", vectors[50], 50, exact=True)[0], ids[:100]).any()
    with pytest.raises(VectorStoreError, match="no vector"):
        store.get_vectors("emb", ids[:1])
    store.drop("emb")
    with pytest.raises(CollectionNotFoundError, match="emb"):
        store.count("emb")


def test_delete_matching_removes_exactly_the_matching_points(fresh_store, data):
    """Deleting a dataset's points by payload: only they go, with the count, and an empty filter is refused."""
    store = fresh_store
    ids, vectors, payloads = data
    test_split = ids[[p["split"] == "test" for p in payloads]]
    assert store.delete_matching("emb", {"split": "test"}) == len(test_split)
    assert store.count("emb") == N - len(test_split)
    assert not np.isin(store.all_ids("emb"), test_split).any()
    assert store.delete_matching("emb", {"split": "test"}) == 0
    extra = np.array([1, 2, 3], np.int64)  # integer payloads, as the app writes {"dataset": <id>}
    store.upsert("emb", extra, vectors[:3], [{"dataset": 7}, {"dataset": 8}, {"dataset": 7}])
    assert store.delete_matching("emb", {"dataset": 7}) == 2
    np.testing.assert_array_equal(np.intersect1d(store.all_ids("emb"), extra), [2])
    assert store.delete_matching("emb", {"dataset": []}) == 0
    with pytest.raises(VectorStoreError, match="needs a payload filter"):
        store.delete_matching("emb", {})
    with pytest.raises(CollectionNotFoundError):
        store.delete_matching("emb-missing", {"dataset": 7})


def test_bad_input_fails_clearly(store, data):
    ids, vectors, _ = data
    with pytest.raises(VectorStoreError, match="positive"):
        store.upsert("emb", np.array([0, 1]), vectors[:2])
    with pytest.raises(VectorStoreError, match=r"shape \(3, dim\)"):
        store.upsert("emb", ids[:3], vectors[:2])
    with pytest.raises(VectorStoreError, match="holds 32-d"):
        store.ensure_collection("emb", 64)
    with pytest.raises(VectorStoreError, match="strings"):
        store.search("emb", vectors[0], 5, payload_filter={"split": ["val", 3]})
    with pytest.raises(VectorStoreError, match="invalid collection name"):
        store.ensure_collection("../escape", DIM)
    with pytest.raises(CollectionNotFoundError):
        store.search("emb-missing", vectors[0], 5)


def test_edge_hnsw_recall_and_filtered_exactness_after_indexing(tmp_path):
    """After optimize() the graph serves unfiltered queries; filtered ones must stay exact through the index."""
    n, dim = 12_000, 48
    vectors = clustered(n, dim, 40, seed=3)
    ids = np.arange(1, n + 1, dtype=np.int64)
    split = np.where(np.arange(n) % 10 == 0, "val", "train")
    small_segments = IndexParams(full_scan_threshold_kb=100, indexing_threshold_kb=100)  # index 12K points
    with EdgeVectorStore(tmp_path / "vec", index=small_segments) as store:
        store.ensure_collection("emb", dim)
        store.upsert("emb", ids, vectors, [{"split": s} for s in split])
        store.optimize("emb")
        assert store._shard("emb").info().indexed_vectors_count == n  # the graph, not a scan, answers below
        queries = vectors[np.random.default_rng(0).choice(n, 40, replace=False)]
        recalls = []
        for q in queries:
            got, _ = store.search("emb", q, 10)
            exp, _ = brute_force(ids, vectors, q, 10)
            recalls.append(len(set(got.tolist()) & set(exp.tolist())) / 10)
        assert np.mean(recalls) >= 0.9
        for q in queries[:10]:
            assert_same(
                store.search("emb", q, 30, payload_filter={"split": "val"}),
                brute_force(ids, vectors, q, 30, split == "val"),
            )
            allowed = ids[::7]
            assert_same(
                store.search("emb", q, 30, allowed_ids=allowed), brute_force(ids, vectors, q, 30, np.isin(ids, allowed))
            )


@pytest.mark.parametrize("kind", ["edge", "client"])
def test_persists_across_reopen(tmp_path, data, kind):
    ids, vectors, payloads = data

    def make():
        return EdgeVectorStore(tmp_path / "v") if kind == "edge" else ClientVectorStore(path=tmp_path / "v")

    with make() as store:
        store.ensure_collection("emb", DIM)
        store.upsert("emb", ids[:500], vectors[:500], payloads[:500])
        before = store.search("emb", vectors[7], 10, payload_filter={"split": "val"})
    with make() as store:
        assert store.count("emb") == 500
        assert_same(store.search("emb", vectors[7], 10, payload_filter={"split": "val"}), before)
        store.ensure_collection("emb", DIM)  # reopening with the same shape keeps the data
        assert store.count("emb") == 500


@pytest.mark.parametrize("kind", ["edge", "client"])
def test_second_process_gets_a_clear_lock_error(tmp_path, kind):
    path = tmp_path / "locked"
    opener = f"EdgeVectorStore({str(path)!r})" if kind == "edge" else f"ClientVectorStore(path={str(path)!r})"
    with open_vector_store(path=path) if kind == "edge" else ClientVectorStore(path=path):
        code = (
            "from visionlens.store.vectors import *\n"
            "from visionlens.errors import StoreLockedError\n"
            f"try:\n    {opener}\nexcept StoreLockedError as e:\n    print('LOCKED', e)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert "LOCKED" in out.stdout, out.stderr
        assert str(path) in out.stdout
        assert f"process {os.getpid()}" in out.stdout
        # the same process opening it twice is refused as well
        with pytest.raises(StoreLockedError, match=str(path)):
            EdgeVectorStore(path) if kind == "edge" else ClientVectorStore(path=path)
    # released on close
    open_vector_store(path=path).close() if kind == "edge" else ClientVectorStore(path=path).close()


def test_open_vector_store_picks_engine(tmp_path, monkeypatch):
    with open_vector_store(path=tmp_path / "e") as s:
        assert isinstance(s, EdgeVectorStore) and s.exclusive
    with pytest.raises(VectorStoreError, match="path"):
        open_vector_store()
    # housekeeping may treat every collection of a local store as VisionLens's, never a server's
    with ClientVectorStore(path=":memory:") as local:
        assert local.exclusive
    import qdrant_client

    class Offline:  # no server in tests: the store is only constructed, never asked anything
        def __init__(self, **kwargs):
            self.kwargs = kwargs

        def close(self):
            pass

    monkeypatch.setattr(qdrant_client, "QdrantClient", Offline)
    with open_vector_store(url="http://qdrant.example:6333") as server:
        assert isinstance(server, ClientVectorStore) and not server.exclusive
