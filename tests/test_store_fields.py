"""Fields never share a column: names are data, columns are registry ids, and clashing names are refused."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

import visionlens as vl
from tests.factories import coco_doc, write_coco
from visionlens.errors import FieldNameError, FilterError
from visionlens.query import FieldFilter, Filters, Range
from visionlens.store.kinds import BOOL, CATEGORICAL, NUMERIC, TAGS, TEXT, infer_kind
from visionlens.store.metadata import MetadataStore
from visionlens.store.sql import Sql


def _ingest(store, tmp_path, extra: list[dict], name: str = "ds", preds: dict | None = None, sub: str = "d"):
    images = [{"id": i + 1, "file_name": f"{i}.jpg", "width": 64, "height": 48, **e} for i, e in enumerate(extra)]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 20, 10], "area": 200, "iscrowd": 0}]
    write_coco(tmp_path / sub, coco_doc(images, anns))
    return vl.ingest(tmp_path / sub, name, predictions=preds or {}, store=store)


def _preds(tmp_path) -> str:
    import json

    path = tmp_path / "preds.json"
    path.write_text(
        json.dumps(
            [
                {"image_id": 1, "category_id": 1, "bbox": [1, 2, 19, 10], "score": 0.9},
                {"image_id": 2, "category_id": 2, "bbox": [5, 5, 9, 9], "score": 0.4},
            ]
        )
    )
    return str(path)


def _columns(store) -> list[str]:
    with store.cursor() as cur:
        return [
            r[0]
            for r in cur.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = 'samples'").fetchall()
        ]


def test_names_that_slug_alike_keep_their_own_values(store, tmp_path):
    long_a, long_b = "x" * 60 + "_a", "x" * 60 + "_b"
    ds = _ingest(
        store,
        tmp_path,
        [
            {"time of day": "night", "time-of-day": 3, long_a: "A", long_b: "B", "eval_yolo_tp": 7},
            {"time of day": "day", "time-of-day": 5, long_a: "A2", long_b: "B2", "eval_yolo_tp": 8},
        ],
    )
    rows = ds.samples().to_dict("records")
    assert [r["time of day"] for r in rows] == ["night", "day"]
    assert [r["time-of-day"] for r in rows] == [3, 5]
    assert [r[long_a] for r in rows] == ["A", "A2"] and [r[long_b] for r in rows] == ["B", "B2"]
    assert ds.count({"time of day": "night"}) == 1 and ds.count({"time-of-day": (4, 6)}) == 1
    columns = {f.column for f in ds.fields().values() if not f.builtin}
    assert len(columns) == 5 and all(c.startswith("f_") and c[2:].isdigit() for c in columns)


def test_evaluation_leaves_a_user_field_of_a_similar_name_alone(store, tmp_path):
    pred = _preds(tmp_path)
    ds = _ingest(store, tmp_path, [{"eval_yolo_tp": 7}, {"eval_yolo_tp": 8}], preds={"yolo": pred})
    ds.evaluate("yolo")
    assert sorted(ds.samples()["eval_yolo_tp"]) == [7, 8]
    assert {"yolo.tp", "yolo.fp", "yolo.fn"} <= set(ds.fields())


def test_models_differing_by_punctuation_keep_separate_evaluations(store, demo_ds, demo_files):
    demo_ds.add_predictions("det-a", demo_files.predictions["detector_a"])
    demo_ds.add_predictions("det_a", demo_files.predictions["detector_b"])
    a, b = demo_ds.evaluate("det-a"), demo_ds.evaluate("det_a")
    assert a.stats["AP"] != b.stats["AP"]
    rows = demo_ds.samples(limit=1000)
    assert not np.array_equal(rows["det-a.fp"].to_numpy(), rows["det_a.fp"].to_numpy())


@pytest.mark.parametrize(
    "extra,both",
    [
        ({"Weather": "rain", "weather": "sun"}, ("Weather", "weather")),
        ({"Time": 1, "TIME": 2}, ("Time", "TIME")),
    ],
)
def test_names_differing_only_in_case_are_refused_naming_both(store, tmp_path, extra, both):
    with pytest.raises(FieldNameError) as err:
        _ingest(store, tmp_path, [extra])
    assert all(repr(n) in str(err.value) for n in both)
    assert store.table_counts()["samples"] == 0 and store.table_counts()["fields"] == 0


@pytest.mark.parametrize("name", ["split", "Tags", "WIDTH", "num_gt", "random"])
def test_a_field_may_not_hide_a_built_in_one(store, tmp_path, name):
    with pytest.raises(FieldNameError, match="built-in"):
        _ingest(store, tmp_path, [{name: "x"}])
    assert store.table_counts()["samples"] == 0


def test_a_field_may_not_hide_an_evaluation_field(store, tmp_path):
    pred = _preds(tmp_path)
    with pytest.raises(FieldNameError, match="'yolo.FP'.*'yolo'"):
        _ingest(store, tmp_path, [{"yolo.FP": 1}, {}], preds={"yolo": pred})
    ds = _ingest(store, tmp_path, [{"m2@0.75.tp": 1}, {}], sub="e")
    with pytest.raises(FieldNameError, match="'m2@0.75.tp'"):
        ds.add_predictions("m2", pred)
    assert ds.models() == []


def test_models_differing_only_in_case_are_refused(store, demo_ds, demo_files):
    path = demo_files.predictions["detector_a"]
    demo_ds.add_predictions("Yolo", path)
    with pytest.raises(FieldNameError, match="'Yolo' and 'yolo'"):
        demo_ds.add_predictions("yolo", path)
    with pytest.raises(FieldNameError):
        demo_ds.add_predictions("Ground_Truth", path)


def test_replacing_or_deleting_leaves_no_columns_behind(store, demo_ds, demo_files, tmp_path):
    base = set(_columns(store))
    demo_ds.evaluate("detector_a")
    after_one = set(_columns(store))
    assert len(after_one - base) == 3
    demo_ds.evaluate("detector_a")  # replaced: the old evaluation's columns are dropped, not emptied
    assert len(set(_columns(store)) - base) == 3 and set(_columns(store)) != after_one
    demo_ds.evaluate("detector_a", iou=0.75)
    demo_ds.add_predictions("detector_a", demo_files.predictions["detector_a"], replace=True)
    assert set(_columns(store)) == base  # replacing predictions dropped both of its evaluations
    other = _ingest(store, tmp_path, [{"mood": "ok"}], name="other")
    assert len(set(_columns(store)) - base) == 1
    vl.delete_dataset(other.name, store=store)
    vl.delete_dataset(demo_ds.name, store=store)
    assert set(_columns(store)) == set(_columns(store)) & {
        "id",
        "dataset_id",
        "filepath",
        "width",
        "height",
        "split",
        "tags",
        "missing",
        "num_gt",
        "ext_id",
    }
    with store.cursor() as cur:
        assert cur.execute("SELECT count(*) FROM fields").fetchone()[0] == 0


def test_registry_answers_follow_each_write(store, tmp_path):
    ds = _ingest(store, tmp_path, [{"a": 1}])
    assert "a" in ds.fields()
    _ingest(store, tmp_path, [{"b": 1}], name="ds2", sub="e")
    vl.ingest(tmp_path / "e", "ds", store=store, replace=True)
    assert "a" not in vl.load("ds", store=store).fields() and "b" in vl.load("ds", store=store).fields()


# -- kinds and the SQL builder ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values,kind",
    [
        ([True, None, False], BOOL),
        ([1, 2.5, None], NUMERIC),
        ([["a"], ["b", "c"]], TAGS),
        (["a", 1], CATEGORICAL),
        ([f"v{i}" for i in range(1500)], TEXT),
        ([None, None], CATEGORICAL),
    ],
)
def test_kind_inference(values, kind):
    assert infer_kind(values) is kind


def test_kind_clauses_filter_as_described():
    con = duckdb.connect()
    con.execute("CREATE TABLE s (n DOUBLE, c VARCHAR, b BOOLEAN, t VARCHAR[])")
    con.execute("INSERT INTO s VALUES (1, 'a', true, ['x']), (5, 'b', false, ['y']), (NULL, NULL, NULL, [])")

    def rows(kind, column, flt):
        sql = "SELECT count(*) FROM s WHERE " + kind.clause(column, flt)
        return sql.first(con)[0]

    assert rows(NUMERIC, "n", FieldFilter(field="n", range=Range(min=2))) == 1
    assert rows(NUMERIC, "n", FieldFilter(field="n", range=Range(min=2), exclude=True)) == 2
    assert rows(CATEGORICAL, "c", FieldFilter(field="c", values=("a", None))) == 2
    assert rows(BOOL, "b", FieldFilter(field="b", values=("no",))) == 1
    assert rows(TAGS, "t", FieldFilter(field="t", values=("y", "z"))) == 1
    assert NUMERIC.describe(FieldFilter(field="hour", range=Range(min=20))) == "hour ≥ 20"
    assert (
        CATEGORICAL.describe(FieldFilter(field="cam", values=("c3", None), exclude=True))
        == "not (cam is c3 or (missing))"
    )
    with pytest.raises(FilterError, match="range needs a numeric"):
        CATEGORICAL.clause("c", FieldFilter(field="c", range=Range(min=1)))
    with pytest.raises(FilterError, match="not a number"):
        NUMERIC.clause("n", FieldFilter(field="n", values=("abc",)))


def test_sql_builder_keeps_values_with_their_placeholders():
    a = Sql.of("x >= $min AND y = $name", min=1, name="it's")
    b = Sql.of("z <= $min", min=9)  # the same name in another fragment is another value
    both = Sql.join([a, b], " AND ")
    assert both.text == "x >= ? AND y = ? AND z <= ?" and both.params == (1, "it's", 9)
    assert ("SELECT 1 WHERE " + both).params == both.params
    with pytest.raises(KeyError):
        Sql.of("x = $missing")
    with pytest.raises(KeyError):
        Sql.of("x = 1", unused=2)
    assert Sql.in_list("c", []).text == "false"


def test_schema_1_files_are_upgraded_in_place(tmp_path):
    """A file written by schema 1 (FLOAT boxes, slug columns) opens, keeps its values, and can be evaluated."""
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE meta (key VARCHAR, value VARCHAR)")
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.execute("""CREATE TABLE datasets (id INTEGER NOT NULL, name VARCHAR NOT NULL, format VARCHAR NOT NULL,
                   root VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL DEFAULT current_timestamp, info JSON)""")
    con.execute("""CREATE TABLE samples (id BIGINT NOT NULL, dataset_id INTEGER NOT NULL, filepath VARCHAR NOT NULL,
        width INTEGER, height INTEGER, split VARCHAR, tags VARCHAR[] NOT NULL DEFAULT [],
        missing BOOLEAN NOT NULL DEFAULT false, num_gt INTEGER NOT NULL DEFAULT 0, ext_id VARCHAR,
        f_weather__str VARCHAR, f_eval_m_tp__num DOUBLE)""")
    con.execute("""CREATE TABLE annotations (id BIGINT NOT NULL, dataset_id INTEGER NOT NULL, sample_id BIGINT NOT NULL,
        source_id SMALLINT NOT NULL, label_id INTEGER NOT NULL, x FLOAT, y FLOAT, w FLOAT, h FLOAT, confidence FLOAT,
        iscrowd BOOLEAN NOT NULL DEFAULT false, area FLOAT, polygon FLOAT[][], ext_id BIGINT)""")
    con.execute("""CREATE TABLE fields (dataset_id INTEGER NOT NULL, name VARCHAR NOT NULL, column_name VARCHAR NOT NULL,
        level VARCHAR NOT NULL, kind VARCHAR NOT NULL, builtin BOOLEAN NOT NULL)""")
    con.execute("""CREATE TABLE evaluations (dataset_id INTEGER NOT NULL, key VARCHAR NOT NULL, model VARCHAR NOT NULL,
        iou DOUBLE NOT NULL, class_agnostic BOOLEAN NOT NULL,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp, stats JSON)""")
    con.execute("""CREATE TABLE eval_objects (dataset_id INTEGER NOT NULL, eval_key VARCHAR NOT NULL,
        ann_id BIGINT NOT NULL, sample_id BIGINT NOT NULL, is_pred BOOLEAN NOT NULL, status TINYINT NOT NULL,
        match_id BIGINT, iou FLOAT, error TINYINT)""")
    con.execute("INSERT INTO datasets (id, name, format, root) VALUES (1, 'old', 'coco', '/nowhere')")
    con.execute(
        "INSERT INTO samples (id, dataset_id, filepath, width, height, ext_id, f_weather__str, "
        "f_eval_m_tp__num) VALUES (1, 1, 'a.jpg', 64, 48, '1', 'rain', 2), (2, 1, 'b.jpg', 64, 48, '2', 'sun', 0)"
    )
    con.execute(
        "INSERT INTO annotations (id, dataset_id, sample_id, source_id, label_id, x, y, w, h, area) "
        "VALUES (1, 1, 1, 0, 0, 1.5, 2.5, 10, 20, 200)"
    )
    con.execute(
        "INSERT INTO evaluations (dataset_id, key, model, iou, class_agnostic) VALUES (1, 'm', 'm', 0.5, false)"
    )
    rows = [
        (1, "id", "id", "sample", "numeric", True),
        (1, "weather", "f_weather__str", "sample", "categorical", False),
        (1, "m.tp", "f_eval_m_tp__num", "sample", "numeric", False),
    ]
    con.executemany("INSERT INTO fields VALUES (?, ?, ?, ?, ?, ?)", rows)
    con.close()

    store = MetadataStore(path)
    try:
        fields = store.fields(1)
        assert fields["weather"].column.startswith("f_") and fields["m.tp"].owner == "m"
        assert store.count(1, Filters(fields=(FieldFilter(field="weather", values=("rain",)),))) == 1
        page = store.page(1, Filters()).to_pylist()
        assert [r["weather"] for r in page] == ["rain", "sun"] and [r["m.tp"] for r in page] == [2, 0]
        assert "f_weather__str" not in _columns(store)
        with store.cursor() as cur:
            assert (
                cur.execute(
                    "SELECT data_type FROM duckdb_columns() WHERE table_name = 'annotations' AND column_name = 'x'"
                ).fetchone()[0]
                == "DOUBLE"
            )
    finally:
        store.close()
    MetadataStore(path).close()  # opening an upgraded file again is a no-op
