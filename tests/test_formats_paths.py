"""Paths: nothing outside the dataset folder is read (links, data.yaml ``path:``); images listed twice and empty
annotation files are errors naming the files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import visionlens as vl
from tests.factories import coco_doc, image, voc_xml, write_coco, write_voc, write_yolo
from visionlens.errors import IngestError


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the dataset holding a real image and a 'secret' text file."""
    out = tmp_path / "outside"
    image(out / "secret.jpg", (33, 22))
    (out / "secret.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (out / "names.txt").write_text("root\ndaemon\n")
    return out


# --- links out of the dataset folder --------------------------------------------------------------------------------


def test_coco_image_link_outside_is_not_read(store, tmp_path, outside):
    root = tmp_path / "c"
    image(root / "images" / "a.jpg")
    (root / "images" / "b.jpg").symlink_to(outside / "secret.jpg")
    doc = coco_doc(
        [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
        [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5]}],
    )
    ds = vl.ingest(write_coco(root, doc, make_images=False), "c", store=store)
    rows = ds.samples().set_index("filepath")
    assert rows.loc["b.jpg", "missing"] and (rows.loc["b.jpg", "width"], rows.loc["b.jpg", "height"]) == (0, 0)
    [issue] = [i for i in ds.issues() if i.kind == "outside_root"]
    assert issue.file.endswith("images/b.jpg") and issue.location == "images[1]" and "secret.jpg" in issue.message
    assert not [i for i in ds.issues() if i.kind == "missing_image"]
    assert len(ds.annotations(ds.sample_ids())) == 1  # the sample's annotations still count


def test_voc_image_link_outside_is_not_read(store, tmp_path, outside):
    root = write_voc(
        tmp_path / "v", {"a": voc_xml("a.jpg", [("dog", 1, 1, 5, 5)]), "b": voc_xml("b.jpg", [("dog", 1, 1, 5, 5)])}
    )
    (root / "JPEGImages" / "b.jpg").unlink()
    (root / "JPEGImages" / "b.jpg").symlink_to(outside / "secret.jpg")
    ds = vl.ingest(root, "v", store=store)
    assert ds.count({"missing": True}) == 1
    [issue] = [i for i in ds.issues() if i.kind == "outside_root"]
    assert issue.file.endswith("JPEGImages/b.jpg") and issue.location.endswith("Annotations/b.xml")


def test_yolo_image_link_outside_is_not_read(store, tmp_path, outside):
    root = write_yolo(tmp_path / "y", {"train/a": "0 0.5 0.5 0.1 0.1\n", "train/b": "0 0.5 0.5 0.1 0.1\n"})
    (root / "images" / "train" / "b.jpg").unlink()
    (root / "images" / "train" / "b.jpg").symlink_to(outside / "secret.jpg")
    ds = vl.ingest(root, "y", store=store)
    row = ds.samples({"filepath": "images/train/b.jpg"}).iloc[0]
    assert row["missing"] and (row["width"], row["height"]) == (0, 0)
    assert [i.kind for i in ds.issues()] == ["outside_root"]


def test_folder_link_outside_is_not_followed(store, tmp_path, outside):
    root = write_yolo(tmp_path / "y", {"train/a": "0 0.5 0.5 0.1 0.1\n"})
    (root / "images" / "train" / "more").symlink_to(outside)
    ds = vl.ingest(root, "y", store=store)
    assert ds.count() == 1
    [issue] = [i for i in ds.issues() if i.kind == "outside_root"]
    assert issue.file.endswith("images/train/more") and "nothing in it was read" in issue.message


def test_folder_link_inside_the_dataset_is_followed(store, tmp_path):
    root = write_yolo(tmp_path / "y", {"train/a": "0 0.5 0.5 0.1 0.1\n"})
    image(root / "extra" / "b.jpg")
    (root / "images" / "train" / "more").symlink_to(root / "extra")
    ds = vl.ingest(root, "y", store=store)
    assert sorted(ds.samples()["filepath"]) == ["images/train/a.jpg", "images/train/more/b.jpg"]
    assert ds.issues() == []


@pytest.mark.parametrize("fmt", ["coco", "voc", "yolo-label", "yolo-classes", "yolo-split-folder"])
def test_annotation_file_link_outside_is_refused(store, tmp_path, outside, fmt):
    if fmt == "coco":
        root = tmp_path / "c"
        (root / "annotations").mkdir(parents=True)
        target = outside / "instances.json"
        target.write_text(json.dumps(coco_doc([], [])))
        link = root / "annotations" / "instances_train.json"
    elif fmt == "voc":
        root = write_voc(tmp_path / "v", {"a": voc_xml("a.jpg", [("dog", 1, 1, 5, 5)])})
        target = outside / "b.xml"
        target.write_text(voc_xml("b.jpg", [("dog", 1, 1, 5, 5)]))
        link = root / "Annotations" / "b.xml"
    elif fmt == "yolo-label":
        root = write_yolo(tmp_path / "y", {"train/a": "0 0.5 0.5 0.1 0.1\n"})
        (root / "labels" / "train" / "a.txt").unlink()
        target, link = outside / "secret.txt", root / "labels" / "train" / "a.txt"
    elif fmt == "yolo-classes":
        root = tmp_path / "y"
        image(root / "images" / "a.jpg")
        (root / "labels").mkdir()
        target, link = outside / "names.txt", root / "classes.txt"
    else:
        root = write_yolo(tmp_path / "y", {"train/a": "0 0.5 0.5 0.1 0.1\n"})
        (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [car]\n")
        target, link = outside, root / "images" / "val"
    link.symlink_to(target)
    with pytest.raises(IngestError, match="outside the dataset folder") as e:
        vl.ingest(root, "d", store=store)
    assert str(e.value).startswith(f"{link.parent.resolve() / link.name}: ")
    assert store.list_datasets() == []


# --- data.yaml path: ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["relative", "absolute"])
def test_yaml_path_outside_the_dataset_is_refused(store, tmp_path, outside, kind):
    root = write_yolo(tmp_path / "y", {"train/a": "0 0.5 0.5 0.1 0.1\n"})
    (outside / "images" / "train").mkdir(parents=True)
    value = "../outside" if kind == "relative" else str(outside)
    (root / "data.yaml").write_text(f"path: {value}\ntrain: images/train\nnames: [car]\n")
    with pytest.raises(IngestError, match=r"data\.yaml:path: 'path' is .* outside the dataset folder") as e:
        vl.ingest(root, "y", store=store)
    assert repr(value) in str(e.value)


def test_yaml_path_that_does_not_exist_here_is_ignored_with_an_issue(store, tmp_path):
    root = write_yolo(tmp_path / "y", {"train/a": "0 0.5 0.5 0.1 0.1\n"})
    (root / "data.yaml").write_text("path: /content/datasets/elsewhere\ntrain: images/train\nnames: [car]\n")
    ds = vl.ingest(root, "y", store=store)
    assert ds.count() == 1
    [issue] = ds.issues()
    assert issue.kind == "yaml_path_ignored" and issue.location == "path" and "/content/datasets" in issue.message


def test_yaml_path_inside_the_dataset_is_used(store, tmp_path):
    root = tmp_path / "y"
    write_yolo(root / "data", {"train/a": "0 0.5 0.5 0.1 0.1\n"})
    (root / "data" / "data.yaml").unlink()
    (root / "data.yaml").write_text("path: data\ntrain: images/train\nnames: [car]\n")
    ds = vl.ingest(root, "y", store=store)
    assert ds.count() == 1 and ds.issues() == []


def test_roboflow_yaml_with_parent_relative_splits(store, tmp_path):
    """Roboflow writes ``train: ../train/images``; Ultralytics reads it inside the dataset folder, and so do we."""
    root = tmp_path / "rf"
    for split in ("train", "valid"):
        image(root / split / "images" / f"{split}.jpg", (100, 50))
        (root / split / "labels").mkdir(parents=True)
        (root / split / "labels" / f"{split}.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 1\nnames: ['car']\n")
    ds = vl.ingest(root, "rf", store=store)
    assert dict(ds.value_counts("split")) == {"train": 1, "val": 1}
    assert len(ds.annotations(ds.sample_ids())) == 2


# --- listed twice ---------------------------------------------------------------------------------------------------


def test_coco_same_file_twice_in_one_file_names_both_entries(store, tmp_path):
    doc = coco_doc(
        [
            {"id": 1, "file_name": "a.jpg", "width": 64, "height": 48},
            {"id": 2, "file_name": "b.jpg", "width": 64, "height": 48},
            {"id": 3, "file_name": "./a.jpg", "width": 64, "height": 48},
        ],
        [],
    )
    path = write_coco(tmp_path / "c", doc, make_images=False)
    with pytest.raises(
        IngestError,
        match=r"annotations\.json:images\[2\]: image file 'a\.jpg' is listed twice: "
        r"here and at images\[0\]",
    ):
        vl.ingest(path, "c", store=store)


def test_coco_image_in_two_split_files_names_both_files(store, tmp_path):
    root = tmp_path / "c"
    image(root / "images" / "a.jpg")
    image(root / "images" / "b.jpg")
    (root / "annotations").mkdir()
    for split, names in (("train", ["a.jpg", "b.jpg"]), ("val", ["b.jpg"])):
        doc = coco_doc([{"id": i + 1, "file_name": n, "width": 64, "height": 48} for i, n in enumerate(names)], [])
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
    with pytest.raises(IngestError) as e:
        vl.ingest(root, "c", store=store)
    message = str(e.value)
    assert message.startswith(str((root / "annotations" / "instances_val.json").resolve()) + ":images[0]")
    assert "'images/b.jpg' is listed twice" in message and "instances_train.json:images[1]" in message


def test_yolo_image_in_two_split_lists_names_both_lines(store, tmp_path):
    root = write_yolo(tmp_path / "y", {"all/a": "", "all/b": "", "all/c": ""})
    (root / "train.txt").write_text("images/all/a.jpg\nimages/all/b.jpg\n")
    (root / "val.txt").write_text("images/all/c.jpg\n./images/all/b.jpg\n")
    (root / "data.yaml").write_text("train: train.txt\nval: val.txt\nnames: [car]\n")
    with pytest.raises(
        IngestError,
        match=r"image 'images/all/b\.jpg' is listed twice: in split 'train' \(train\.txt "
        r"line 2\) and in split 'val' \(val\.txt line 2\)",
    ):
        vl.ingest(root, "y", store=store)


def test_yolo_overlapping_split_folders_are_an_error(store, tmp_path):
    root = write_yolo(tmp_path / "y", {"val/a": ""})
    (root / "data.yaml").write_text("train: images\nval: images/val\nnames: [car]\n")
    with pytest.raises(
        IngestError,
        match=r"'images/val/a\.jpg' is listed twice: in split 'train' \(images\) and in "
        r"split 'val' \(images/val\)",
    ):
        vl.ingest(root, "y", store=store)


def test_voc_image_in_two_split_files_is_an_error(store, tmp_path):
    root = write_voc(
        tmp_path / "v",
        {"a": voc_xml("a.jpg", []), "b": voc_xml("b.jpg", [])},
        splits={"train": ["a", "b"], "val": ["b"]},
    )
    with pytest.raises(
        IngestError,
        match=r"val\.txt:line 1: image 'b' is listed in two splits: here and in .*"
        r"train\.txt line 2",
    ):
        vl.ingest(root, "v", store=store)


def test_voc_trainval_beside_train_and_val_is_not_a_clash(store, tmp_path):
    root = write_voc(
        tmp_path / "v",
        {"a": voc_xml("a.jpg", []), "b": voc_xml("b.jpg", [])},
        splits={"train": ["a"], "val": ["b"], "trainval": ["a", "b"]},
    )
    ds = vl.ingest(root, "v", store=store)
    assert dict(ds.value_counts("split")) == {"train": 1, "val": 1}


def test_voc_two_xml_files_for_one_image_name_both(store, tmp_path):
    root = write_voc(tmp_path / "v", {"a": voc_xml("a.jpg", []), "copy": voc_xml("a.jpg", [])})
    with pytest.raises(
        IngestError,
        match=r"copy\.xml: two XML files describe the same image 'JPEGImages/a\.jpg': "
        r"this one and .*Annotations/a\.xml",
    ):
        vl.ingest(root, "v", store=store)


# --- empty annotation files -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"  \n\t\n"])
def test_empty_coco_json_is_an_error_naming_it(store, tmp_path, content):
    root = tmp_path / "c"
    (root / "annotations").mkdir(parents=True)
    path = root / "annotations" / "instances_train.json"
    path.write_bytes(content)
    for source in (root, path):  # found in the folder (auto-detected), or named
        with pytest.raises(IngestError, match="the file is empty") as e:
            vl.ingest(source, "c", store=store)
        assert str(e.value).startswith(str(path.resolve()))


@pytest.mark.parametrize("content", [b"", b" \n \n"])
def test_empty_voc_xml_is_an_error_naming_it(store, tmp_path, content):
    root = write_voc(tmp_path / "v", {"a": voc_xml("a.jpg", [])})
    (root / "Annotations" / "b.xml").write_bytes(content)
    with pytest.raises(IngestError, match=r"Annotations/b\.xml: the file is empty"):
        vl.ingest(root, "v", store=store)


@pytest.mark.parametrize("content", ["", "   \n\n \t\n"])
def test_empty_yolo_label_file_means_no_boxes(store, tmp_path, content):
    root = write_yolo(tmp_path / "y", {"train/a": "0 0.5 0.5 0.1 0.1\n", "train/b": content})
    ds = vl.ingest(root, "y", store=store)
    assert ds.count() == 2 and len(ds.annotations(ds.sample_ids())) == 1 and ds.issues() == []


def test_empty_data_yaml_is_an_error_naming_it(store, tmp_path):
    root = write_yolo(tmp_path / "y", {"train/a": ""})
    (root / "data.yaml").write_text("\n  \n")
    with pytest.raises(IngestError, match=r"data\.yaml: the file is empty"):
        vl.ingest(root, "y", store=store)


def test_empty_prediction_files_are_errors_naming_them(store, tmp_path):
    coco = write_coco(tmp_path / "c", coco_doc([{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}], []))
    preds = tmp_path / "p.json"
    preds.write_text("\n")
    with pytest.raises(IngestError, match=r"p\.json: the file is empty"):
        vl.ingest(coco, "c", predictions={"m": preds}, store=store)
    voc = write_voc(tmp_path / "v", {"a": voc_xml("a.jpg", [])})
    (tmp_path / "vp").mkdir()
    (tmp_path / "vp" / "a.xml").write_text("")
    with pytest.raises(IngestError, match=r"vp/a\.xml: the file is empty"):
        vl.ingest(voc, "v", predictions={"m": tmp_path / "vp"}, store=store)


def test_links_are_checked_cheaply(tmp_path, monkeypatch):
    """One directory scan per folder and a realpath only for links, not a realpath per file."""
    from visionlens import media

    root = tmp_path / "r"
    for k in range(50):
        image(root / "images" / f"{k}.jpg", (4, 4))
    calls = []
    real = os.path.realpath
    monkeypatch.setattr(os.path, "realpath", lambda p, *a, **kw: calls.append(p) or real(p, *a, **kw))
    assert media.links_outside(str(root), [f"images/{k}.jpg" for k in range(50)], str(root)) == {}
    assert len(calls) <= 2


# --- files that are no regular files --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gone", "gone.json"])
def test_source_that_does_not_exist_is_an_error_naming_it(store, tmp_path, name):
    with pytest.raises(IngestError, match="no such file or folder") as e:
        vl.ingest(tmp_path / name, "x", store=store)
    assert str(tmp_path / name) in str(e.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_posing_as_an_image_is_never_opened(store, tmp_path):
    """Opening a FIFO blocks until someone writes to it: listing only regular files keeps ingest from hanging."""
    root = tmp_path / "c"
    image(root / "images" / "a.jpg")
    os.mkfifo(root / "images" / "b.jpg")
    doc = coco_doc([{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}], [])
    ds = vl.ingest(write_coco(root, doc, make_images=False), "c", store=store)
    assert ds.count() == 2 and ds.count({"missing": True}) == 1
    [issue] = ds.issues()
    assert issue.kind == "missing_image" and issue.file.endswith("b.jpg")


def test_xml_link_inside_the_dataset_is_read_like_a_file(store, tmp_path):
    root = write_voc(tmp_path / "v", {"a": voc_xml("a.jpg", [])})
    (root / "Annotations" / "c.xml").symlink_to(root / "Annotations" / "a.xml")
    with pytest.raises(IngestError, match=r"c\.xml: two XML files describe the same image 'JPEGImages/a\.jpg'"):
        vl.ingest(root, "v", store=store)
