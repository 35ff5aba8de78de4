"""Format detection and image finding on the layouts real exports have, through the public entry points."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import visionlens as vl
from tests.factories import image, simple_coco, voc_xml, write_voc
from visionlens import media
from visionlens.formats import detect_format
from visionlens.formats.coco import CocoReader
from visionlens.formats.voc import VocReader
from visionlens.formats.yolo import YoloReader


def _fmt(path: Path) -> str:
    return detect_format(str(path.resolve())).name


def _xml(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# --- Pascal VOC -----------------------------------------------------------------------------------------------------


def test_voc_lowercase_annotations_and_images(store, tmp_path):
    """Roboflow / Kaggle: annotations/*.xml + images/*.jpg, no flags."""
    root = tmp_path / "v"
    for stem in ("a", "b"):
        image(root / "images" / f"{stem}.jpg", (100, 80))
        _xml(root / "annotations" / f"{stem}.xml", voc_xml(f"{stem}.jpg", [("dog", 11, 21, 50, 60)]))
    assert _fmt(root) == "voc"
    ds = vl.ingest(root, "v", store=store)
    assert ds.format == "voc" and ds.count() == 2 and ds.count({"missing": True}) == 0
    assert sorted(ds.samples()["filepath"]) == ["images/a.jpg", "images/b.jpg"]
    assert ds.issues() == []
    assert Path(ds.uri("images/a.jpg")).exists()


def test_voc_lowercase_layout_with_split_subfolders(store, tmp_path):
    root = tmp_path / "v"
    for split in ("train", "val"):
        image(root / "images" / split / f"{split}1.jpg", (100, 80))
        _xml(root / "annotations" / split / f"{split}1.xml", voc_xml(f"{split}1.jpg", [("dog", 1, 1, 5, 5)]))
    assert _fmt(root) == "voc"
    ds = vl.ingest(root, "v", store=store)
    assert dict(ds.value_counts("split")) == {"train": 1, "val": 1}
    assert ds.count({"missing": True}) == 0


def test_voc_xml_beside_the_images(store, tmp_path):
    """LabelImg saves a.xml beside a.jpg; its <folder> and absolute <path> come from the labeller's machine."""
    root = tmp_path / "v"
    for stem in ("a", "b"):
        image(root / f"{stem}.jpg", (100, 80))
        xml = voc_xml(f"{stem}.jpg", [("dog", 1, 1, 5, 5)]).replace(
            "<filename>", f"<folder>Desktop</folder><path>C:\\Users\\bob\\Desktop\\{stem}.jpg</path><filename>"
        )
        _xml(root / f"{stem}.xml", xml)
    assert _fmt(root) == "voc"
    ds = vl.ingest(root, "v", store=store)
    assert sorted(ds.samples()["filepath"]) == ["a.jpg", "b.jpg"] and ds.count({"missing": True}) == 0
    assert set(ds.samples()["split"].dropna()) == set()


def test_voc_one_folder_per_split_with_xml_beside_images(store, tmp_path):
    """Roboflow's Pascal VOC export: train/ and valid/ each hold the images and their XML files."""
    root = tmp_path / "v"
    for split in ("train", "valid"):
        image(root / split / f"{split}.jpg", (100, 80))
        _xml(root / split / f"{split}.xml", voc_xml(f"{split}.jpg", [("dog", 1, 1, 5, 5)]))
    (root / "README.roboflow.txt").write_text("exported\n")
    assert _fmt(root) == "voc"
    ds = vl.ingest(root, "v", store=store)
    assert dict(ds.value_counts("split")) == {"train": 1, "valid": 1}
    assert ds.count({"missing": True}) == 0


def test_voc_image_found_through_folder_and_path_elements(store, tmp_path):
    root = tmp_path / "v"
    image(root / "pics" / "a.jpg", (100, 80))
    image(root / "photos" / "2021" / "b.jpg", (100, 80))
    image(root / "shots" / "c.jpg", (100, 80))
    _xml(root / "Annotations" / "a.xml", voc_xml("a.jpg", []).replace("<filename>", "<folder>pics</folder><filename>"))
    _xml(
        root / "Annotations" / "b.xml",
        voc_xml("b.jpg", []).replace("<filename>", "<path>photos/2021/b.jpg</path><filename>"),
    )
    _xml(
        root / "Annotations" / "c.xml",
        voc_xml("c.jpg", []).replace("<filename>", "<path>/home/bob/data/shots/c.jpg</path><filename>"),
    )
    ds = vl.ingest(root, "v", store=store)
    assert sorted(ds.samples()["filepath"]) == ["photos/2021/b.jpg", "pics/a.jpg", "shots/c.jpg"]
    assert ds.count({"missing": True}) == 0 and ds.issues() == []


def test_voc_folder_and_path_never_lead_outside_the_dataset(store, tmp_path):
    root = tmp_path / "v"
    image(tmp_path / "outside" / "a.jpg", (100, 80))
    _xml(
        root / "Annotations" / "a.xml",
        voc_xml("a.jpg", []).replace(
            "<filename>", "<folder>../outside</folder><path>../../outside/a.jpg</path><filename>"
        ),
    )
    ds = vl.ingest(root, "v", store=store)
    assert ds.count({"missing": True}) == 1
    [issue] = ds.issues()
    assert issue.kind == "missing_image" and "outside" not in issue.file


def test_voc_classic_layout_still_reads_splits_from_imagesets(store, tmp_path):
    root = write_voc(
        tmp_path / "v", {"a": voc_xml("a.jpg", []), "b": voc_xml("b.jpg", [])}, splits={"train": ["a"], "val": ["b"]}
    )
    (root / "ImageSets" / "Main" / "dog_train.txt").write_text("a 1\nb -1\n")  # per-class files are not splits
    assert _fmt(root) == "voc"
    ds = vl.ingest(root, "v", store=store)
    assert sorted(ds.samples()["filepath"]) == ["JPEGImages/a.jpg", "JPEGImages/b.jpg"]
    assert dict(ds.value_counts("split")) == {"train": 1, "val": 1}


def test_voc_explicit_image_folder_elsewhere(store, tmp_path):
    ann = tmp_path / "ann"
    _xml(ann / "a.xml", voc_xml("a.jpg", []))
    image(tmp_path / "imgs" / "a.jpg", (100, 80))
    ds = vl.ingest(ann, "v", images=tmp_path / "imgs", store=store)
    assert list(ds.samples()["filepath"]) == ["a.jpg"] and ds.count({"missing": True}) == 0


def test_cvat_annotations_xml_is_not_taken_for_voc(tmp_path):
    root = tmp_path / "cvat"
    image(root / "images" / "a.jpg")
    _xml(root / "annotations.xml", '<?xml version="1.0"?><annotations><version>1.1</version></annotations>')
    assert not VocReader().detect(str(root))


# --- YOLO without a yaml ------------------------------------------------------------------------------------------


def _yolo_no_yaml(root: Path, splits: list[str], classes_at: str = "classes.txt") -> Path:
    for split in splits:
        sub = f"{split}/" if split else ""
        image(root / "images" / f"{sub}{split or 'x'}1.jpg", (100, 50))
        (root / "labels" / sub).mkdir(parents=True, exist_ok=True)
        (root / "labels" / f"{sub}{split or 'x'}1.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    (root / classes_at).parent.mkdir(parents=True, exist_ok=True)
    (root / classes_at).write_text("car\nperson\n")
    return root


@pytest.mark.parametrize(
    ("splits", "classes_at"),
    [
        ([""], "classes.txt"),
        (["train", "val"], "classes.txt"),
        ([""], "labels/classes.txt"),
        (["train", "val"], "labels/train/classes.txt"),
    ],
)
def test_yolo_classes_txt_layouts(store, tmp_path, splits, classes_at):
    root = _yolo_no_yaml(tmp_path / "y", splits, classes_at)
    assert _fmt(root) == "yolo"
    ds = vl.ingest(root, "y", store=store)
    assert ds.labels() == ["car", "person"] and ds.count() == len(splits)
    assert ds.label_counts() == [("person", len(splits))]
    if splits != [""]:
        assert dict(ds.value_counts("split")) == {"train": 1, "val": 1}
    assert ds.issues() == []


def test_yolo_different_classes_files_per_split_are_an_error(store, tmp_path):
    root = _yolo_no_yaml(tmp_path / "y", ["train", "val"], "labels/train/classes.txt")
    (root / "labels" / "val" / "classes.txt").write_text("person\ncar\n")
    with pytest.raises(vl.IngestError, match=r"labels/val/classes\.txt: this classes\.txt differs from"):
        vl.ingest(root, "y", store=store)


def test_images_and_labels_holding_xml_is_voc_not_yolo(store, tmp_path):
    root = tmp_path / "v"
    image(root / "images" / "a.jpg", (100, 80))
    _xml(root / "labels" / "a.xml", voc_xml("a.jpg", [("dog", 1, 1, 5, 5)]))
    assert not YoloReader().detect(str(root))
    assert _fmt(root) == "voc"
    ds = vl.ingest(root, "v", store=store)
    assert list(ds.samples()["filepath"]) == ["images/a.jpg"] and ds.count({"missing": True}) == 0


# --- no confusion between formats, and cheap detection --------------------------------------------------------------


def test_coco_folder_is_not_voc_and_voc_folder_is_not_coco(tmp_path):
    coco = tmp_path / "coco"
    simple_coco(coco)
    (coco / "annotations").mkdir()
    (coco / "annotations.json").rename(coco / "annotations" / "instances_val.json")
    voc = tmp_path / "voc"
    image(voc / "images" / "a.jpg")
    _xml(voc / "annotations" / "a.xml", voc_xml("a.jpg", []))
    assert _fmt(coco) == "coco" and _fmt(voc) == "voc"
    assert not VocReader().detect(str(coco)) and not CocoReader().detect(str(voc))
    assert not YoloReader().detect(str(coco)) and not YoloReader().detect(str(voc))


def test_voc_detection_reads_one_file_and_lists_few_folders(tmp_path, monkeypatch):
    root = tmp_path / "v"
    for k in range(30):
        _xml(root / "annotations" / f"{k}.xml", voc_xml(f"{k}.jpg", []))
        image(root / "images" / f"{k}.jpg", (8, 8))
    reads: list[str] = []
    lists: list[str] = []
    read_bytes, listdir = media.read_bytes, media.listdir
    monkeypatch.setattr(media, "read_bytes", lambda u: reads.append(u) or read_bytes(u))
    monkeypatch.setattr(media, "listdir", lambda u: lists.append(u) or listdir(u))
    assert detect_format(str(root.resolve())).name == "voc"
    assert len(reads) == 1 and len(lists) <= 8


def test_named_json_file_is_coco_and_read_names_the_problem(store, tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2], "score": 0.5}]))
    assert _fmt(path) == "coco"
    with pytest.raises(vl.IngestError, match=r"results\.json: not a COCO instances file"):
        vl.ingest(path, "c", store=store)
