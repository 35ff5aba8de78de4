"""Tags on samples and objects: by id set, by filter (one UPDATE, timed on a 100K-sample view), removal, the
annotation-level tag filter, names that are data, and the in-place upgrade of a schema 2 file."""

from __future__ import annotations

import time

import duckdb
import numpy as np
import pandas as pd
import pytest

from visionlens.errors import FilterError, VisionLensError
from visionlens.formats.base import AnnotationRecords, ParsedDataset, SampleRecords
from visionlens.query import FieldFilter, Filters, LabelFilter
from visionlens.store.metadata import SCHEMA_VERSION, MetadataStore
from visionlens.store.tags import MAX_TAG_CHARS, TagError


def tagged(tag: str) -> Filters:
    return Filters(fields=(FieldFilter(field="tags", values=(tag,)),))


def objects_tagged(tag: str, source: str = "ground_truth") -> Filters:
    return Filters(annotations=(LabelFilter(source=source, tags=(tag,)),))


# --- samples ---------------------------------------------------------------------------------------------------


def test_tag_by_ids_counts_changed_rows_and_filters(demo_ds):
    ids = demo_ds.sample_ids()[:3]
    generation = demo_ds.store.generation
    assert demo_ds.tag("review", sample_ids=ids) == 3
    assert demo_ds.store.generation > generation  # caches of derived data drop after a tag write
    assert demo_ds.tag("review", sample_ids=ids) == 0  # nothing to change: no row rewritten
    assert demo_ds.tag(["review", "hard"], sample_ids=ids[:1]) == 1
    assert demo_ds.count(tagged("review")) == 3 and demo_ds.count({"tags": "hard"}) == 1
    assert set(demo_ds.sample_ids(tagged("review"))) == set(ids.tolist())
    assert demo_ds.tag_counts() == {"samples": {"review": 3, "hard": 1}, "objects": {}}
    rows = demo_ds.samples(tagged("hard"))
    assert list(rows["tags"].iloc[0]) == ["hard", "review"]  # sorted, no duplicates
    assert dict(demo_ds.value_counts("tags")) == {"review": 3, "hard": 1}  # the sidebar's counts


def test_tag_and_untag_by_filters(demo_ds):
    val = {"split": "val"}
    n_val = demo_ds.count(val)
    assert 0 < n_val < 120
    assert demo_ds.tag("check", val) == n_val
    assert demo_ds.count(tagged("check")) == n_val
    # the intersection of a filter and an id set
    some = np.concatenate([demo_ds.sample_ids({"split": "train"})[:5], demo_ds.sample_ids(val)[:3]])
    assert demo_ds.tag("both", val, sample_ids=some) == 3
    # removal: only the samples carrying it change, other tags stay
    assert demo_ds.untag("check", Filters()) == n_val
    assert demo_ds.count(tagged("check")) == 0 and demo_ds.count(tagged("both")) > 0
    assert demo_ds.untag(["both", "never-there"], Filters()) > 0
    assert demo_ds.tag_counts()["samples"] == {}


def test_a_tag_call_must_name_its_samples_and_its_tags(demo_ds):
    with pytest.raises(TagError, match="say which samples"):
        demo_ds.tag("x")
    for bad in ("", "   ", "x" * (MAX_TAG_CHARS + 1)):
        with pytest.raises(TagError):
            demo_ds.tag(bad, Filters())
    with pytest.raises(TagError):
        demo_ds.tag([], Filters())
    with pytest.raises(FilterError):
        demo_ds.tag("x", {"nope": "a"})  # the view's filter compiles against the dataset first
    assert demo_ds.tag("  padded  ", sample_ids=[int(demo_ds.sample_ids()[0])]) == 1
    assert demo_ds.tag_counts()["samples"] == {"padded": 1}
    assert demo_ds.tag("x", sample_ids=[]) == 0


@pytest.mark.parametrize(
    "name",
    ["it's", '"; DROP TABLE samples; --', "') OR 1=1 --", "<b>bold</b><script>alert(1)</script>", "ünï 标签 🏷️", "a,b"],
)
def test_tag_names_are_data(demo_ds, name):
    ids = demo_ds.sample_ids()[:2]
    assert demo_ds.tag(name, sample_ids=ids) == 2
    assert demo_ds.count(tagged(name)) == 2 and demo_ds.tag_counts()["samples"] == {name: 2}
    assert demo_ds.tag_objects(name, filters={"sample_ids": ids.tolist()}) > 0
    assert demo_ds.count(objects_tagged(name)) == 2
    assert demo_ds.count() == 120  # nothing was dropped or rewritten around it
    assert demo_ds.untag(name, sample_ids=ids) == 2


# --- objects -----------------------------------------------------------------------------------------------------


def test_object_tags_and_the_annotation_tag_filter(demo_ds):
    cars = LabelFilter(labels=("car",))
    n_cars = len(demo_ds.annotations(demo_ds.sample_ids(), sources=["ground_truth"]).query("label == 'car'"))
    assert n_cars > 0
    assert demo_ds.tag_objects("check box", objects=cars) == n_cars
    assert demo_ds.tag_counts()["objects"] == {"check box": n_cars}
    assert demo_ds.count(objects_tagged("check box")) == demo_ds.count({"annotations": [{"labels": ["car"]}]})
    # a model's boxes are tagged apart from the ground truth's
    model = demo_ds.models()[0]
    assert demo_ds.count(objects_tagged("check box", model)) == 0
    # the tag combines with the other per-box conditions
    both = Filters(annotations=(LabelFilter(labels=("person",), tags=("check box",)),))
    assert demo_ds.count(both) == 0
    # by annotation id, on any source
    boxes = demo_ds.annotations(demo_ds.sample_ids()[:2], sources=[model])
    assert demo_ds.tag_objects("fp?", ann_ids=boxes["id"]) == len(boxes)
    assert demo_ds.count(objects_tagged("fp?", model)) == boxes["sample_id"].nunique()
    # the boxes of a filtered set of samples, under a per-box condition
    val = {"split": "val"}
    got = demo_ds.tag_objects("val car", filters=val, objects={"labels": ["car"]})
    assert got == len(demo_ds.annotations(demo_ds.sample_ids(val), sources=["ground_truth"]).query("label == 'car'"))
    assert demo_ds.untag_objects("check box", filters=Filters()) == n_cars
    assert "check box" not in demo_ds.tag_counts()["objects"]
    assert demo_ds.count(objects_tagged("check box")) == 0
    # sample tags and object tags are separate
    assert demo_ds.tag_counts()["samples"] == {}


def test_object_tag_calls_are_checked(demo_ds):
    with pytest.raises(TagError, match="say which objects"):
        demo_ds.tag_objects("x")
    with pytest.raises(TagError, match="describe images"):
        demo_ds.tag_objects("x", objects={"labels": ["car"], "exclude": True})
    with pytest.raises(FilterError, match="unknown source"):
        demo_ds.tag_objects("x", objects={"source": "nomodel"})


# --- scale -------------------------------------------------------------------------------------------------------


def _large(store: MetadataStore, n: int) -> int:
    rng = np.random.default_rng(1)
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
        sample_index=np.arange(n), label_index=np.zeros(n, np.int32), bbox=np.tile([1.0, 1.0, 10.0, 10.0], (n, 1))
    )
    return store.insert_dataset("large", ParsedDataset("coco", "/data", ["car"], samples, boxes))


def test_a_100k_sample_view_is_tagged_in_one_statement(store):
    ds_id = _large(store, 100_000)
    train = Filters(fields=(FieldFilter(field="split", values=("train",)),))
    n_train = store.count(ds_id, train)
    start = time.perf_counter()
    assert store.tag_samples(ds_id, "bulk", train) == n_train
    took = time.perf_counter() - start
    assert took < 10, f"tagging {n_train} samples took {took:.1f}s"  # ~0.1 s here; loose for a busy CI machine
    assert store.count(ds_id, tagged("bulk")) == n_train
    start = time.perf_counter()
    assert store.tag_objects(ds_id, "bulk box", filters=train) == n_train
    assert store.untag_samples(ds_id, "bulk", Filters()) == n_train
    assert time.perf_counter() - start < 20
    assert store.tag_counts(ds_id) == {"samples": {}, "objects": {"bulk box": n_train}}


# --- upgrade -----------------------------------------------------------------------------------------------------


def _downgrade_to_schema_2(path) -> None:
    """What a schema 2 file looks like: boxes without tags, no saved views table."""
    con = duckdb.connect(str(path))
    con.execute("ALTER TABLE annotations DROP COLUMN tags")
    con.execute("DROP TABLE saved_views")
    con.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    con.close()


def test_a_schema_2_file_is_upgraded_in_place_and_keeps_its_data(tmp_path, demo_files):
    import visionlens as vl

    path = tmp_path / "v2.duckdb"
    store = MetadataStore(path)
    ds = vl.ingest(
        demo_files.root, "demo", predictions={m: str(p) for m, p in demo_files.predictions.items()}, store=store
    )
    ds.tag("kept", {"split": "val"})
    before = {
        "count": ds.count(),
        "val": ds.count({"split": "val"}),
        "boxes": ds.annotations(ds.sample_ids()),
        "tags": ds.tag_counts()["samples"],
    }
    store.close()
    _downgrade_to_schema_2(path)
    with duckdb.connect(str(path)) as con:
        cols = [
            r[0]
            for r in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = 'annotations'").fetchall()
        ]
        assert "tags" not in cols

    store = MetadataStore(path)
    try:
        ds = vl.load("demo", store)
        assert ds.count() == before["count"] and ds.count({"split": "val"}) == before["val"]
        pd.testing.assert_frame_equal(ds.annotations(ds.sample_ids()), before["boxes"])
        assert ds.tag_counts() == {"samples": before["tags"], "objects": {}}
        with store.cursor() as cur:
            assert cur.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(
                SCHEMA_VERSION
            )
            assert (
                cur.execute("SELECT count(*) FROM annotations WHERE tags IS NULL OR len(tags) > 0").fetchone()[0] == 0
            )
        # the new parts work on the upgraded file
        assert ds.tag_objects("after upgrade", objects={"labels": ["car"]}) > 0
        assert ds.save_view("v", {"split": "val"}).name == "v"
    finally:
        store.close()
    MetadataStore(path).close()  # opening an upgraded file again is a no-op


def test_new_boxes_start_untagged(demo_ds, demo_files):
    model = "again"
    demo_ds.add_predictions(model, demo_files.predictions[demo_ds.models()[0]])
    with demo_ds.store.cursor() as cur:
        assert cur.execute("SELECT count(*) FROM annotations WHERE len(tags) > 0").fetchone()[0] == 0
    assert isinstance(TagError("x"), VisionLensError)
