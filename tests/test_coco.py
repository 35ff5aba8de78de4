"""COCO ingestion on real files: what is read, and a clear error for each kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import visionlens as vl
from tests.factories import coco_doc, image, simple_coco, write_coco
from visionlens.errors import IngestError


def test_single_file_reads_samples_boxes_polygons_and_custom_fields(store, tmp_path):
    path = simple_coco(tmp_path / "c")
    ds = vl.ingest(path, "c", store=store)
    assert ds.format == "coco"
    assert ds.count() == 3
    assert sorted(ds.labels()) == ["car", "person"]
    rows = ds.samples(limit=10)
    assert sorted(rows["filepath"]) == ["a.jpg", "b.jpg", "sub/c.jpg"]
    assert set(rows["weather"]) == {"rain", "clear"}
    assert ds.fields()["weather"].kind == "categorical"
    ann = ds.annotations(rows["id"]).sort_values("x")
    assert list(ann["label"]) == ["person", "car", "person"]
    car = ann[ann["label"] == "car"].iloc[0]
    assert (car["x"], car["y"], car["w"], car["h"]) == (1, 2, 20, 10)
    assert bool(ann["iscrowd"].iloc[0])  # the crowd person box of b.jpg is at x=0
    assert ds.count({"weather": "rain"}) == 1
    assert Path(ds.uri("sub/c.jpg")).exists()


def test_polygons_are_kept(store, tmp_path):
    path = simple_coco(tmp_path / "c")
    vl.ingest(path, "c", store=store)
    with store.cursor() as cur:
        poly = cur.execute("SELECT polygon FROM annotations WHERE ext_id = 10").fetchall()[0][0]
    assert poly == [[1, 2, 21, 2, 21, 12, 1, 12]]


def test_split_files_and_two_models(store, demo_files):
    ds = vl.ingest(
        demo_files.root, "demo", predictions={m: str(p) for m, p in demo_files.predictions.items()}, store=store
    )
    assert ds.models() == ["detector_a", "detector_b"]
    splits = dict(ds.value_counts("split"))
    assert splits["train"] + splits["val"] == 120 and splits["val"] == 36
    a = json.loads(demo_files.predictions["detector_a"].read_text())
    b = json.loads(demo_files.predictions["detector_b"].read_text())
    assert dict(store.list_datasets()[0])["pred_boxes"] == len(a) + len(b)
    # "samples with a car prediction of confidence < 0.5 from detector_b"
    flt = {"annotations": [{"source": "detector_b", "labels": ["car"], "confidence": {"max": 0.5}}]}
    expected = {r["image_id"] for r in b if r["category_id"] == 1 and r["score"] <= 0.5}
    assert ds.count(flt) == len(expected) > 0


def test_malformed_json_names_line_and_column(store, tmp_path):
    path = write_coco(tmp_path / "c", '{"images": [\n  {"id": 1,}\n]}', make_images=False)
    with pytest.raises(IngestError) as e:
        vl.ingest(path, "c", store=store)
    assert str(path) in str(e.value) and "line 2" in str(e.value) and "malformed JSON" in str(e.value)


def test_non_utf8_json(store, tmp_path):
    (tmp_path / "c").mkdir()
    path = tmp_path / "c" / "annotations.json"
    path.write_bytes('{"images": [], "categories": [{"id": 1, "name": "caf\u00e9"}]}'.encode("latin-1"))
    with pytest.raises(IngestError, match="not UTF-8") as e:
        vl.ingest(path, "c", store=store)
    assert str(path) in str(e.value)


def test_unknown_category_names_the_annotation(store, tmp_path):
    doc = coco_doc(
        [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
        [{"id": 5, "image_id": 1, "category_id": 9, "bbox": [0, 0, 4, 4]}],
    )
    with pytest.raises(IngestError, match=r"annotations\[0\]\.category_id: unknown category_id 9"):
        vl.ingest(write_coco(tmp_path / "c", doc), "c", store=store)


@pytest.mark.parametrize(
    ("images", "annotations", "message"),
    [
        ([{"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": "b.jpg"}], [], r"images\[1\]: duplicate image id 1"),
        (
            [{"id": 1, "file_name": "a.jpg"}],
            [
                {"id": 7, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]},
                {"id": 7, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]},
            ],
            r"annotations\[1\]: duplicate annotation id 7",
        ),
        (
            [{"id": 1, "file_name": "a.jpg"}],
            [{"id": 7, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]}],
            r"annotations\[0\]\.image_id: image_id 2 is not in 'images'",
        ),
        (
            [{"id": 1, "file_name": "a.jpg"}],
            [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1]}],
            r"annotations\[0\]\.bbox: bbox must be",
        ),
        (
            [{"id": 1, "file_name": "../../etc/passwd"}],
            [],
            r"images\[0\]\.file_name: file name '../../etc/passwd' escapes",
        ),
        ([{"id": 1, "file_name": "/etc/passwd"}], [], r"is absolute"),
        ([{"id": 1}], [], r"images\[0\]: image needs 'id' and 'file_name'"),
    ],
)
def test_bad_input_is_named(store, tmp_path, images, annotations, message):
    for im in images:
        im.setdefault("width", 64)
        im.setdefault("height", 48)
    path = write_coco(tmp_path / "c", coco_doc(images, annotations), make_images=False)
    with pytest.raises(IngestError, match=message) as e:
        vl.ingest(path, "c", store=store)
    assert str(path) in str(e.value)
    assert store.list_datasets() == []


def test_boxes_outside_the_image_are_kept_as_given_and_reported(store, tmp_path):
    doc = coco_doc(
        [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
        [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [-5, 40, 20, 20]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [10, 10, 5, 5]},
        ],
    )
    ds = vl.ingest(write_coco(tmp_path / "c", doc), "c", store=store)
    ann = ds.annotations(ds.sample_ids()).sort_values("w")
    assert list(ann[["x", "y", "w", "h"]].iloc[1]) == [-5, 40, 20, 20]
    assert list(ann[["x", "y", "w", "h"]].iloc[0]) == [10, 10, 5, 5]
    past = [i for i in ds.issues() if i.kind == "boxes_past_border"]
    assert len(past) == 1 and "1 boxes in 1 images" in past[0].message and "kept as given" in past[0].message


def test_missing_images_are_recorded_and_the_rest_ingested(store, tmp_path):
    doc = coco_doc(
        [
            {"id": 1, "file_name": "a.jpg", "width": 64, "height": 48},
            {"id": 2, "file_name": "gone.jpg", "width": 64, "height": 48},
        ],
        [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5]}],
    )
    root = tmp_path / "c"
    image(root / "images" / "a.jpg")
    ds = vl.ingest(write_coco(root, doc, make_images=False), "c", store=store)
    assert ds.count() == 2
    assert ds.count({"missing": True}) == 1
    missing = [i for i in ds.issues() if i.kind == "missing_image"]
    assert len(missing) == 1 and missing[0].file.endswith("gone.jpg")


def test_size_read_from_header_when_json_has_none(store, tmp_path):
    root = tmp_path / "c"
    image(root / "images" / "a.jpg", (90, 30))
    doc = coco_doc([{"id": 1, "file_name": "a.jpg"}], [])
    ds = vl.ingest(write_coco(root, doc, make_images=False), "c", store=store)
    row = ds.samples().iloc[0]
    assert (row["width"], row["height"]) == (90, 30)


def test_predictions_with_unknown_image_fail_and_change_nothing(store, tmp_path):
    path = simple_coco(tmp_path / "c")
    preds = tmp_path / "p.json"
    preds.write_text(
        json.dumps(
            [
                {"image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2], "score": 0.9},
                {"image_id": 99, "category_id": 1, "bbox": [1, 1, 2, 2], "score": 0.9},
            ]
        )
    )
    with pytest.raises(IngestError, match=r"\[1\]\.image_id: unknown image_id 99"):
        vl.ingest(path, "c", predictions={"m": preds}, store=store)
    assert store.table_counts()["samples"] == 0


def test_add_predictions_later(store, tmp_path):
    ds = vl.ingest(simple_coco(tmp_path / "c"), "c", store=store)
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps([{"image_id": 2, "category_id": 2, "bbox": [1, 1, 2, 2], "score": 0.25}]))
    assert ds.add_predictions("m1", preds) == 1
    assert ds.models() == ["m1"]
    with pytest.raises(vl.DatasetExistsError):
        ds.add_predictions("m1", preds)
    assert ds.add_predictions("m1", preds, replace=True) == 1
    ann = ds.annotations(ds.sample_ids(), sources=["m1"])
    assert len(ann) == 1 and ann["confidence"].iloc[0] == pytest.approx(0.25)
    assert np.isclose(ann["area"].iloc[0], 4)
