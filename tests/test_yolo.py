"""YOLO ingestion on real files: normalised boxes become pixels from image headers; bad rows name file and line."""

from __future__ import annotations

import pytest

import visionlens as vl
from tests.factories import image, write_yolo
from visionlens.errors import IngestError


def test_data_yaml_with_splits_converts_to_pixels(store, tmp_path):
    root = write_yolo(
        tmp_path / "y",
        {"train/a": "0 0.5 0.5 0.2 0.4\n1 0.1 0.1 0.2 0.2\n", "val/b": "1 0.5 0.5 1.0 1.0\n", "val/empty": ""},
        sizes={"train/a": (200, 100)},
    )
    ds = vl.ingest(root, "y", store=store)
    assert ds.format == "yolo"
    assert dict(ds.value_counts("split")) == {"val": 2, "train": 1}
    a = ds.samples({"filepath": "images/train/a.jpg"}).iloc[0]
    assert (a["width"], a["height"]) == (200, 100)
    ann = ds.annotations([a["id"]]).sort_values("label")
    car = ann[ann["label"] == "car"].iloc[0]
    assert [car["x"], car["y"], car["w"], car["h"]] == pytest.approx([80, 30, 40, 40])
    person = ann[ann["label"] == "person"].iloc[0]
    assert [person["x"], person["y"], person["w"], person["h"]] == pytest.approx([0, 0, 40, 20])
    assert ds.count({"num_gt": (0, 0)}) == 1


def test_classes_txt_layout_and_predictions_with_confidence(store, tmp_path):
    root = tmp_path / "flat"
    image(root / "images" / "x.jpg", (100, 50))
    image(root / "images" / "y.jpg", (100, 50))
    (root / "labels").mkdir(parents=True)
    (root / "labels" / "x.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    (root / "classes.txt").write_text("car\nperson\n")
    preds = tmp_path / "preds"
    preds.mkdir()
    (preds / "x.txt").write_text("1 0.5 0.5 0.5 0.5 0.91\n0 0.2 0.2 0.1 0.1 0.30\n")
    (preds / "y.txt").write_text("")
    ds = vl.ingest(root, "flat", predictions={"yolo11": preds}, store=store)
    assert ds.count() == 2 and ds.labels() == ["car", "person"]
    ann = ds.annotations(ds.sample_ids(), sources=["yolo11"]).sort_values("confidence")
    assert list(ann["confidence"]) == pytest.approx([0.30, 0.91])
    assert [ann.iloc[1]["x"], ann.iloc[1]["w"]] == pytest.approx([25, 50])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 0.5 0.5 0.2\n", r"line 1: 4 columns"),
        ("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2 0.9\n", r"line 2: 6 columns"),
        ("0 0.5 1.5 0.2 0.2\n", r"line 1: value 1.5 is outside \[0, 1\]"),
        ("0 0.5 -0.1 0.2 0.2\n", r"line 1: value -0.1 is outside"),
        ("7 0.5 0.5 0.2 0.2\n", r"line 1: class 7 is out of range"),
        ("\n\ncar 0.5 0.5 0.2 0.2\n", r"line 3: class 'car' is not an integer"),
        ("0 0.5 abc 0.2 0.2\n", r"line 1: non-numeric value"),
    ],
)
def test_bad_rows_name_file_and_line(store, tmp_path, text, message):
    root = write_yolo(tmp_path / "y", {"train/a": "0 0.5 0.5 0.1 0.1\n", "train/bad": text})
    with pytest.raises(IngestError, match=message) as e:
        vl.ingest(root, "y", store=store)
    assert "labels/train/bad.txt" in str(e.value)
    assert store.table_counts()["samples"] == 0


def test_non_utf8_label_file(store, tmp_path):
    root = write_yolo(tmp_path / "y", {"train/a": "0 0.5 0.5 0.1 0.1\n"})
    (root / "labels" / "train" / "a.txt").write_bytes(b"0 0.5 0.5 0.1 0.1\n\xff\xfe\n")
    with pytest.raises(IngestError, match=r"a\.txt:line 2: not UTF-8"):
        vl.ingest(root, "y", store=store)


def test_malformed_yaml_names_line(store, tmp_path):
    root = write_yolo(tmp_path / "y", {"train/a": ""})
    (root / "data.yaml").write_text("train: images/train\nnames: [car, person\n")
    with pytest.raises(IngestError, match=r"data\.yaml:line \d+, column \d+: malformed YAML"):
        vl.ingest(root, "y", store=store)


def test_orphan_labels_and_corrupt_images_are_reported(store, tmp_path):
    root = write_yolo(tmp_path / "y", {"train/a": "0 0.5 0.5 0.1 0.1\n", "train/broken": "0 0.5 0.5 0.1 0.1\n"})
    (root / "images" / "train" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "labels" / "train" / "ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    ds = vl.ingest(root, "y", store=store)
    kinds = {i.kind: i for i in ds.issues()}
    assert kinds["orphan_label"].file.endswith("labels/train/ghost.txt")
    assert kinds["unreadable_image"].file.endswith("broken.jpg")
    assert ds.count({"missing": True}) == 1
    assert ds.label_counts() == [("car", 1)]
