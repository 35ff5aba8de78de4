"""Deleting a dataset from every store, and doctor's orphans: real DuckDB file, the embedded Qdrant engine (the
default), and thumbnails made from real JPEGs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visionlens as vl
from tests.factories import coco_doc, write_coco
from visionlens.cleanup import delete_dataset, find_orphans, fix_orphans
from visionlens.config import get_settings
from visionlens.embedding_jobs import close_vector_stores, embed_dataset, project_dataset, vector_store
from visionlens.metrics import evaluate_model
from visionlens.thumbnails import ThumbnailCache

COLLECTION = "builtin-colorstats-v1"


def make_dataset(root: Path, n: int, field: str, seed: int) -> tuple[Path, Path]:
    """``n`` distinct real JPEGs with a custom image field, COCO GT and one model's predictions."""
    rng = np.random.default_rng(seed)
    images, anns, preds = [], [], []
    for i in range(1, n + 1):
        images.append({"id": i, "file_name": f"im{i:02d}.jpg", "width": 64, "height": 48, field: f"v{i % 3}"})
        anns.append(
            {"id": i, "image_id": i, "category_id": 1 + i % 2, "bbox": [4, 4, 30, 20], "area": 600, "iscrowd": 0}
        )
        preds.append({"image_id": i, "category_id": 1 + i % 2, "bbox": [5, 4, 29, 21], "score": 0.9})
    path = write_coco(root, coco_doc(images, anns), make_images=False)
    for im in images:
        pixels = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        (root / "images").mkdir(exist_ok=True)
        Image.fromarray(pixels).save(root / "images" / im["file_name"], "JPEG")
    pred_path = root / "preds.json"
    pred_path.write_text(json.dumps(preds))
    return path, pred_path


def thumbs() -> ThumbnailCache:
    settings = get_settings()
    return ThumbnailCache(settings.thumbnails, settings.thumbnail_size)


@pytest.fixture
def two(store, tmp_path):
    """Dataset 'a' (evaluated, embedded, mapped, thumbnails at two sizes) and 'b' (embedded, thumbnails)."""
    out = {}
    for name, n, field, seed in (("a", 8, "weather", 0), ("b", 5, "camera", 1)):
        path, preds = make_dataset(tmp_path / name, n, field, seed)
        ds = vl.ingest(path, name, predictions={"m1": str(preds)}, store=store)
        summary = embed_dataset(store, ds.id, "builtin", num_workers=0)
        assert summary.embedded == n and not summary.failed
        for row in ds.samples(limit=100).itertuples():
            for side in (64, 256):
                assert not thumbs().get(ds.uri(row.filepath), row.id, side).placeholder
        out[name] = ds
    evaluate_model(store, out["a"].id, "m1")
    project_dataset(store, out["a"].id, COLLECTION, "pca")
    yield out
    close_vector_stores()


def sql(store, statement: str, params: list | None = None) -> list:
    """Raw SQL behind the app's back, as a crash or an older version would have left things."""
    with store.cursor() as cur:
        return cur.execute(statement, params or []).fetchall()


def counts(report) -> dict[str, int]:
    return {k.kind: k.count for k in report.kinds if k.count}


def test_delete_dataset_leaves_doctor_clean_and_the_other_dataset_whole(store, two):
    a, b = two["a"], two["b"]
    assert find_orphans(store).clean
    a_ids = a.sample_ids()
    a_uris = [a.uri(p) for p in a.samples(limit=100)["filepath"]]
    a_files = thumbs().keys_for(a_uris)
    assert len(a_files) == 16 and all((thumbs().cache_dir / f).exists() for f in a_files)
    columns_before = {r[0] for r in sql(store, "SELECT column_name FROM duckdb_columns() WHERE table_name = 'samples'")}
    a_columns = {
        r[0] for r in sql(store, "SELECT column_name FROM fields WHERE dataset_id = ? AND NOT builtin", [a.id])
    }
    assert len(a_columns) == 4  # its own field and its evaluation's tp/fp/fn counts

    report = vl.delete_dataset("a", store)

    assert (report.samples, report.vectors, report.thumbnails) == (8, {COLLECTION: 8}, 16)
    assert find_orphans(store).clean
    assert not any((thumbs().cache_dir / f).exists() for f in a_files)
    vs = vector_store()
    assert vs.collections() == [COLLECTION] and vs.count(COLLECTION) == 5  # the embedder's collection stays
    assert not np.isin(vs.all_ids(COLLECTION), a_ids).any()
    columns_after = {r[0] for r in sql(store, "SELECT column_name FROM duckdb_columns() WHERE table_name = 'samples'")}
    assert columns_before - columns_after == a_columns
    for table in (
        "samples",
        "annotations",
        "eval_objects",
        "evaluations",
        "projections",
        "fields",
        "labels",
        "sources",
        "ingest_issues",
    ):
        assert sql(store, f"SELECT count(*) FROM {table} WHERE dataset_id = ?", [a.id]) == [(0,)]
    # b is untouched: rows, its custom field, vectors and thumbnails
    b = vl.load("b", store)
    assert b.count() == 5 and b.count({"camera": "v1"}) == 2
    b_uris = [b.uri(p) for p in b.samples(limit=100)["filepath"]]
    assert all(thumbs().get(u, 1, 64).from_cache for u in b_uris)
    np.testing.assert_array_equal(np.sort(vs.all_ids(COLLECTION)), b.sample_ids())
    with pytest.raises(vl.DatasetNotFoundError):
        delete_dataset("a", store)


def test_a_crash_between_stores_leaves_orphans_doctor_reports_not_a_broken_dataset(store, two):
    """DuckDB goes first: if the vector store fails afterwards the dataset is gone and only orphans remain."""

    class Crashing:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def delete_ids(self, *args):
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        delete_dataset("a", store, vectors=Crashing(vector_store()))
    assert [d["name"] for d in store.list_datasets()] == ["b"]
    report = find_orphans(store)
    assert counts(report) == {"vector_points": 8, "stray_thumbnails": 16}
    assert any("'builtin-colorstats-v1': 8 points" in e for k in report.kinds for e in k.examples)
    assert fix_orphans(report) == {"vector_points": 8, "stray_thumbnails": 16}
    assert find_orphans(store).clean
    assert vector_store().count(COLLECTION) == 5


def test_doctor_finds_and_fixes_every_orphan_kind(store, two):
    a, b = two["a"], two["b"]
    vs = vector_store()
    # b's dataset row vanishes: all its rows, its vectors, its thumbnails and its custom column are orphans
    (b_column,) = sql(store, "SELECT column_name FROM fields WHERE dataset_id = ? AND NOT builtin", [b.id])[0]
    sql(store, "DELETE FROM datasets WHERE id = ?", [b.id])
    # a's evaluation row vanishes but its per-object rows stay
    n_eval = sql(store, "SELECT count(*) FROM eval_objects WHERE dataset_id = ?", [a.id])[0][0]
    sql(store, "DELETE FROM evaluations WHERE dataset_id = ?", [a.id])
    # a table this module never heard of (a later feature's) with a row of a dataset that never existed
    sql(store, "CREATE TABLE later_feature (dataset_id INTEGER, x INTEGER)")
    sql(store, "INSERT INTO later_feature VALUES (999, 1)")
    # a column nobody registered
    sql(store, 'ALTER TABLE samples ADD COLUMN "f_stray__num" DOUBLE')
    # stray points in the embedder's collection, a collection nobody registered, a registration of nothing
    vecs = vs.get_vectors(COLLECTION, a.sample_ids()[:3])
    vs.upsert(COLLECTION, np.array([10**9, 10**9 + 1]), vecs[:2], [{"dataset": 999}, {"dataset": 999}])
    vs.ensure_collection("stray-coll", vecs.shape[1])
    vs.upsert("stray-coll", np.array([10**9 + 5]), vecs[:1])
    vs.ensure_collection("imported", vecs.shape[1])  # unregistered but in use: a note, never deleted
    vs.upsert("imported", a.sample_ids()[:3], vecs)
    sql(store, "INSERT INTO collections VALUES ('ghost', 'builtin', '{}', 8)")
    # a thumbnail of no sample (a real JPEG) and a crashed writer's temp file
    cache = thumbs()
    stray = cache.cache_dir / "256" / "ab" / ("ab" + "0" * 38 + ".jpg")
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes((cache.path_for(a.uri(a.samples(limit=1)["filepath"][0])) or Path()).read_bytes())
    temp = stray.parent / ".tmp-crashed1.jpg"
    temp.write_bytes(b"half")
    os.utime(temp, (1, 1))
    b_tables = {
        r[0]: r[1]
        for r in sql(
            store,
            """
        SELECT 'samples', count(*) FROM samples WHERE dataset_id = $1 UNION ALL
        SELECT 'annotations', count(*) FROM annotations WHERE dataset_id = $1 UNION ALL
        SELECT 'fields', count(*) FROM fields WHERE dataset_id = $1""",
            [b.id],
        )
    }

    report = find_orphans(store)
    found = counts(report)
    assert found["vector_points"] == 5 + 2 + 1  # b's samples, two strays, the stray collection's point
    assert found["registered_without_vectors"] == 1 and found["vectors_without_registration"] == 1
    assert found["stray_thumbnails"] == 2 * 5 + 2
    assert found["eval_objects_without_evaluation"] == n_eval
    assert found["rows_without_dataset"] >= sum(b_tables.values())
    by_kind = {k.kind: k for k in report.kinds}
    assert any(
        e.startswith(f"samples: 5 rows of dataset id(s) {b.id}") for e in by_kind["rows_without_dataset"].examples
    )
    assert "later_feature: 1 rows of dataset id(s) 999" in by_kind["rows_without_dataset"].examples
    assert "'f_stray__num'" in by_kind["unreferenced_columns"].examples
    assert repr(b_column) in by_kind["unreferenced_columns"].examples  # b's custom field
    assert by_kind["registered_without_vectors"].examples == ["'ghost'"]
    assert by_kind["vectors_without_registration"].examples == ["'stray-coll'"]
    assert any("'imported'" in n and "3 existing samples" in n for n in report.notes)
    assert str(stray) in by_kind["stray_thumbnails"].examples or "..." in by_kind["stray_thumbnails"].examples

    removed = fix_orphans(report)
    assert removed["vector_points"] == 8 and removed["vectors_without_registration"] == 1
    assert removed["eval_objects_without_evaluation"] == n_eval and removed["stray_thumbnails"] == 12
    after = find_orphans(store)
    assert after.clean, counts(after)
    assert sorted(vs.collections()) == [COLLECTION, "imported"] and vs.count("imported") == 3
    assert sql(store, "SELECT collection FROM collections") == [(COLLECTION,)]
    # a is whole: rows, field, evaluation counts, vectors, map, thumbnails
    a = vl.load("a", store)
    assert a.count() == 8 and a.count({"weather": "v1"}) == 3
    assert vs.count(COLLECTION) == 8 and store.projection_methods(a.id) == [("pca", COLLECTION)]
    assert all(cache.get(a.uri(p), 1, 64).from_cache for p in a.samples(limit=100)["filepath"])


def test_on_a_shared_server_only_registered_collections_are_touched(store, tmp_path):
    """A Qdrant server may hold other applications' collections, whose ids and payloads can match ours by chance."""
    from visionlens.store.vectors import ClientVectorStore

    path, _ = make_dataset(tmp_path / "s", 4, "weather", 2)
    ds = vl.ingest(path, "s", store=store)
    with ClientVectorStore(path=":memory:") as server:
        server.exclusive = False  # what a server says: qdrant-client's local mode stands in for one
        embed_dataset(store, ds.id, "builtin", vectors=server, num_workers=0)
        server.ensure_collection("their-app", 4)
        theirs = np.concatenate([ds.sample_ids(), [10**9]])
        server.upsert("their-app", theirs, np.ones((len(theirs), 4)), [{"dataset": ds.id}] * len(theirs))

        report = find_orphans(store, vectors=server, thumbnails=thumbs())
        assert report.clean and any("'their-app'" in n and "another application" in n for n in report.notes)
        deleted = delete_dataset("s", store, vectors=server, thumbnails=thumbs())
        assert deleted.vectors == {COLLECTION: 4}
        assert server.count("their-app") == len(theirs)
        assert find_orphans(store, vectors=server, thumbnails=thumbs()).clean
        assert sorted(server.collections()) == sorted([COLLECTION, "their-app"])


def test_replacing_a_dataset_leaves_no_vectors_or_thumbnails_of_its_old_samples(store, two, tmp_path):
    a = two["a"]
    old_ids = a.sample_ids()
    old_files = thumbs().keys_for([a.uri(p) for p in a.samples(limit=100)["filepath"]])
    path, preds = make_dataset(tmp_path / "a2", 6, "weather", 3)
    new = vl.ingest(path, "a", predictions={"m1": str(preds)}, store=store, replace=True)
    assert new.count() == 6 and not np.isin(new.sample_ids(), old_ids).any()
    assert find_orphans(store).clean
    assert not np.isin(vector_store().all_ids(COLLECTION), old_ids).any()
    assert not any((thumbs().cache_dir / f).exists() for f in old_files)
