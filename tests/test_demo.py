"""The demo dataset: real JPEGs, and the planted failures really are in the files."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from visionlens.demo import CLASSES


def test_images_are_real_jpegs_matching_the_annotations(demo_files):
    doc = json.loads((demo_files.annotations / "instances_val.json").read_text())
    im = doc["images"][0]
    with Image.open(demo_files.root / "images" / "val" / im["file_name"]) as f:
        assert f.format == "JPEG" and f.size == (im["width"], im["height"])


def test_planted_failures_are_present(demo_files):
    planted = json.loads(demo_files.planted.read_text())
    train = json.loads((demo_files.annotations / "instances_train.json").read_text())
    val = json.loads((demo_files.annotations / "instances_val.json").read_text())
    gt = {a["id"]: a for a in train["annotations"] + val["annotations"]}
    for row in planted["wrong_gt_label"]:
        assert CLASSES[gt[row["gt_id"]]["category_id"] - 1] == "cat" and row["true"] == "dog"
    assert planted["truck_as_car"] and all(
        CLASSES[gt[r["gt_id"]]["category_id"] - 1] == "truck" for r in planted["truck_as_car"]
    )
    assert planted["near_duplicates"]
    pair = planted["near_duplicates"][0]
    a = np.asarray(Image.open(demo_files.root / "images" / pair["train"]).convert("L").resize((32, 24)), float)
    b = np.asarray(Image.open(demo_files.root / "images" / pair["val"]).convert("L").resize((32, 24)), float)
    others = [p for p in (demo_files.root / "images" / "val").glob("*.jpg")][:5]
    far = [np.abs(a - np.asarray(Image.open(p).convert("L").resize((32, 24)), float)).mean() for p in others]
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9
    assert np.abs(a - b).mean() < np.median(far) or np.median(far) == 0


def test_small_objects_on_night_images_are_mostly_missed(demo_files):
    train = json.loads((demo_files.annotations / "instances_train.json").read_text())
    val = json.loads((demo_files.annotations / "instances_val.json").read_text())
    images = {i["id"]: i for i in train["images"] + val["images"]}
    preds = json.loads(demo_files.predictions["detector_a"].read_text())
    with_preds = {p["image_id"] for p in preds}
    gts = train["annotations"] + val["annotations"]
    small_night = [a for a in gts if a["area"] < 32 * 32 and images[a["image_id"]]["time_of_day"] == "night"]
    missed = {
        r["gt_id"]
        for r in json.loads(demo_files.planted.read_text())["small_dark_missed"]
        if r["model"] == "detector_a"
    }
    assert len(small_night) >= 5
    assert len([a for a in small_night if a["id"] in missed]) / len(small_night) > 0.6
    assert with_preds  # the model does predict elsewhere


def test_demo_refuses_a_folder_it_did_not_make_and_keeps_the_users_file(tmp_path):
    import pytest

    from visionlens.demo import DemoDirError, build_demo

    target = tmp_path / "mine"
    target.mkdir()
    (target / "thesis.txt").write_text("four years of work")
    with pytest.raises(DemoDirError, match="not made by `visionlens demo`") as err:
        build_demo(target, n=3)
    assert repr(str(target)) in str(err.value)
    assert [p.name for p in target.iterdir()] == ["thesis.txt"]
    assert (target / "thesis.txt").read_text() == "four years of work"
    file_target = tmp_path / "a-file"
    file_target.write_text("x")
    with pytest.raises(DemoDirError, match="is a file"):
        build_demo(file_target, n=3)


def test_demo_rebuilds_its_own_folder_and_nothing_else(tmp_path):
    from visionlens.demo import DEMO_MARKER, build_demo

    target = tmp_path / "demo"
    build_demo(target, n=6)
    assert (target / DEMO_MARKER).exists() and len(list((target / "images").rglob("*.jpg"))) == 6
    (target / "notes.txt").write_text("mine")  # a user's file next to the demo's
    build_demo(target, n=3)
    assert len(list((target / "images").rglob("*.jpg"))) == 3  # no stale images of the larger run
    assert (target / "notes.txt").read_text() == "mine"
    (target / DEMO_MARKER).unlink()  # a demo made before the marker existed is still recognised as one
    (target / "notes.txt").unlink()
    build_demo(target, n=2, images=False)
    assert (target / DEMO_MARKER).exists() and not (target / "images").exists()
