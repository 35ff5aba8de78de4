"""Embeddings of a real dataset in the embedded Qdrant engine: exact filtered similarity, text search, maps, doctor."""

from __future__ import annotations

import numpy as np
import pytest

from visionlens.embedding_jobs import close_vector_stores, doctor, embed_dataset, project_dataset, vector_store
from visionlens.query import FieldFilter, Filters, LabelFilter
from visionlens.similarity import search_vector, similar_to_sample, similar_to_text


@pytest.fixture
def embedded(demo_ds):
    summary = embed_dataset(demo_ds.store, demo_ds.id, "builtin", num_workers=0)
    assert summary.embedded == 120 and not summary.failed
    yield demo_ds, summary
    close_vector_stores()


def _brute(vs, collection, ids, query, k):
    vecs = vs.get_vectors(collection, ids)
    scores = vecs @ (query / np.linalg.norm(query))
    order = np.argsort(-scores, kind="stable")[:k]
    return ids[order], scores[order]


@pytest.mark.parametrize("case", ["none", "split", "labels", "lasso", "tiny"])
def test_similar_is_the_exact_top_k_under_filters(embedded, case):
    ds, summary = embedded
    vs = vector_store()
    coll = "builtin-colorstats-v1"
    all_ids = ds.sample_ids()
    flt = {
        "none": Filters(),
        "split": Filters(fields=(FieldFilter(field="split", values=("val",)),)),
        "labels": Filters(annotations=(LabelFilter(labels=("dog",)),)),
        "lasso": Filters(sample_ids=tuple(int(i) for i in all_ids[::3])),
        "tiny": Filters(
            fields=(FieldFilter(field="time_of_day", values=("night",)),),
            sample_ids=tuple(int(i) for i in all_ids[:40]),
        ),
    }[case]
    allowed = ds.sample_ids(flt)
    k = 25
    ids, scores = similar_to_sample(ds.store, ds.id, coll, int(all_ids[7]), k=k, filters=flt)
    exp_ids, exp_scores = _brute(vs, coll, allowed, vs.get_vectors(coll, all_ids[7:8])[0], k)
    assert len(ids) == min(k, len(allowed))
    assert np.allclose(scores, exp_scores, atol=1e-5)
    assert set(ids) <= set(allowed.tolist())
    assert set(ids[scores < exp_scores[-1] - 1e-5]) == set()  # nothing worse than the true k-th made it in


def test_resumable_and_doctor(embedded):
    ds, _ = embedded
    again = embed_dataset(ds.store, ds.id, "builtin", num_workers=0)
    assert again.embedded == 0 and again.skipped == 120
    coll = "builtin-colorstats-v1"
    assert doctor(ds.store, ds.id, coll).ok
    vs = vector_store()
    victim = ds.sample_ids()[:2]
    vs.delete_ids(coll, victim)
    vs.upsert(
        coll,
        np.asarray([10**9], np.int64),
        np.ones((1, vs.get_vectors(coll, ds.sample_ids()[5:6]).shape[1]), np.float32),
    )
    report = doctor(ds.store, ds.id, coll)
    assert not report.ok and list(report.missing_vectors) == list(victim) and list(report.orphan_vectors) == [10**9]
    fixed = embed_dataset(ds.store, ds.id, "builtin", num_workers=0)
    assert fixed.embedded == 2


def test_map_is_stored_and_coloured(embedded):
    ds, _ = embedded
    n = project_dataset(ds.store, ds.id, "builtin-colorstats-v1", "pca")
    assert n == 120
    t = ds.store.projection(ds.id, "pca", color="label").to_pandas()
    assert len(t) == 120 and np.isfinite(t[["x", "y"]].to_numpy()).all()
    assert set(t["color"].dropna()) <= set(ds.labels()) and t["color"].notna().sum() > 100
    t = ds.store.projection(ds.id, "pca", color="time_of_day").to_pandas()
    assert set(t["color"]) == {"day", "dusk", "night"}


def test_clip_text_search_with_the_real_model_code(demo_ds):
    from visionlens.embeddings.clip import ClipEmbedder

    emb = ClipEmbedder("RN50", random_init=True, device="cpu")
    ids = demo_ds.sample_ids()[:24]
    flt = Filters(sample_ids=tuple(int(i) for i in ids))
    from visionlens import media
    from visionlens.embeddings.runner import embed_images

    rows = demo_ds.store.samples_by_id(demo_ds.id, ids).to_pylist()
    embed_images(
        [(r["id"], media.join(demo_ds.root, r["filepath"])) for r in rows],
        emb,
        vector_store(),
        emb.name,
        batch_size=8,
        num_workers=0,
        payload_fn=lambda b: demo_ds.store.payloads(demo_ds.id, np.asarray(b, np.int64)),
    )
    try:
        got, scores = similar_to_text(demo_ds.store, demo_ds.id, emb.name, "a red stop sign", emb, k=5, filters=flt)
        q = emb.embed_text(["a red stop sign"])[0]
        exp, exp_scores = _brute(vector_store(), emb.name, ids, q, 5)
        assert np.allclose(scores, exp_scores, atol=1e-4) and len(got) == 5
        builtin_like = type("NoText", (), {})()
        with pytest.raises(Exception, match="text"):
            similar_to_text(demo_ds.store, demo_ds.id, emb.name, "x", builtin_like)
        assert len(search_vector(demo_ds.store, demo_ds.id, emb.name, q, 50, flt)[0]) == 24
    finally:
        close_vector_stores()


def test_app_state_find_similar_respects_filters_and_order(embedded):
    from visionlens.ui.state import AppState

    ds, _ = embedded
    state = AppState(ds.store, dataset=ds.name)
    assert state.collection == "builtin-colorstats-v1"
    state.similar_k = 10
    state.filters = Filters(fields=(FieldFilter(field="split", values=("train",)),))
    anchor = int(state.result_ids[3])
    state.find_similar(sample_ids=[anchor])
    train = set(ds.sample_ids({"split": "train"}).tolist())
    assert state.count == 10 and int(state.result_ids[0]) == anchor and set(state.result_ids.tolist()) <= train
    expected, _ = similar_to_sample(ds.store, ds.id, state.collection, anchor, k=10, filters=state.filters)
    assert list(state.result_ids) == list(expected)
    state.find_similar(text="a dog")  # the builtin embedder has no text side: a clear message, no crash
    assert "text" in state.error and list(state.result_ids) == list(expected)
