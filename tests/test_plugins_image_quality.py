"""The example plugin ``plugins/image_quality`` on images it never saw, written here with known properties: a flat
grey image has contrast 0 and sharpness 0, a fine checkerboard is sharp, a 2:1 image has aspect ratio 2, the file
size is the file's. Its fields are numeric sample fields (range filters), and insights' slice discovery finds a
planted failure on blurry images through the sharpness field with nothing else changed."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFilter

import visionlens as vl
from tests.factories import coco_doc, write_coco
from visionlens.plugins import Plugins, load_plugins, set_plugins

ROOT = Path(__file__).resolve().parent.parent
FIELDS = ["brightness", "contrast", "sharpness", "aspect ratio", "file size"]


@pytest.fixture
def quality() -> Iterator[Plugins]:
    """The repository's ``plugins/`` folder as this process's plugins (built-ins + image_quality)."""
    plugins = load_plugins(folders=[ROOT / "plugins"], entry_points=False)
    assert plugins.enabled("image_quality")
    previous = set_plugins(plugins)
    yield plugins
    set_plugins(previous)


def checkerboard(w: int, h: int, cell: int = 2) -> Image.Image:
    y, x = np.mgrid[0:h, 0:w]
    return Image.fromarray(np.where((x // cell + y // cell) % 2 == 0, 40, 215).astype(np.uint8), "L").convert("RGB")


def test_measures_of_generated_images(quality: Plugins, store: Any, tmp_path: Path) -> None:
    from visionlens.plugins import compute_fields

    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    Image.new("RGB", (80, 60), (128, 128, 128)).save(root / "images" / "flat.png")
    checkerboard(80, 60).save(root / "images" / "checker.png")
    checkerboard(80, 60).filter(ImageFilter.GaussianBlur(3)).save(root / "images" / "blurred.png")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (50, 100, 3), np.uint8)).save(root / "images" / "wide.jpg", quality=90)
    Image.new("RGB", (40, 40), (250, 250, 250)).save(root / "images" / "white.jpg")
    names = ["flat.png", "checker.png", "blurred.png", "wide.jpg", "white.jpg", "gone.jpg"]
    sizes = {"flat.png": (80, 60), "checker.png": (80, 60), "blurred.png": (80, 60), "wide.jpg": (100, 50)}
    images = [
        {"id": i + 1, "file_name": n, "width": sizes.get(n, (40, 40))[0], "height": sizes.get(n, (40, 40))[1]}
        for i, n in enumerate(names)
    ]
    ds = vl.ingest(write_coco(root, coco_doc(images, []), make_images=False), "q", store=store)
    report = compute_fields(store, ds.id)
    assert report.fields == dict.fromkeys(FIELDS, 5) and not report.failed  # gone.jpg: no values
    ids = store.sample_index(ds.id)[1]
    table = store.samples_by_id(ds.id, ids)
    got = {row["filepath"].split("/")[-1]: row for row in table.to_pylist()}

    flat = got["flat.png"]
    assert flat["brightness"] == pytest.approx(128, abs=0.5)
    assert flat["contrast"] == pytest.approx(0, abs=1e-6) and flat["sharpness"] == pytest.approx(0, abs=1e-6)
    assert flat["aspect ratio"] == pytest.approx(80 / 60)
    checker, blurred = got["checker.png"], got["blurred.png"]
    assert checker["contrast"] == pytest.approx(87.5, abs=0.5)  # half 40, half 215: std (215 - 40) / 2
    assert checker["sharpness"] > 1000 and blurred["sharpness"] < checker["sharpness"] / 100
    assert got["wide.jpg"]["aspect ratio"] == pytest.approx(2.0)
    assert got["white.jpg"]["brightness"] == pytest.approx(250, abs=1)
    for name in names[:5]:
        assert got[name]["file size"] == os.path.getsize(root / "images" / name)
    assert all(got["gone.jpg"][f] is None for f in FIELDS)

    fields = store.fields(ds.id)
    for f in FIELDS:  # ordinary numeric sample fields: a range slider in the sidebar, sortable, filterable
        assert fields[f].kind == "numeric" and fields[f].kind.control == "range" and fields[f].owner is None
    assert ds.count({"fields": [{"field": "sharpness", "range": {"max": 1.0}}]}) == 2  # flat and white
    compute_fields(store, ds.id, ["sharpness"])  # again: rewritten in place
    assert sorted(n for n in store.fields(ds.id) if n in FIELDS) == sorted(FIELDS)


def test_slice_discovery_finds_low_recall_on_blurry_images(quality: Plugins, store: Any, tmp_path: Path) -> None:
    """Half the images blurred; the model misses most objects on those. After computing the plugin's fields the
    blind-spot analysis names the sharpness field, with no change to insights."""
    from visionlens.insights.slices import find_slices
    from visionlens.plugins import compute_fields

    rng = np.random.default_rng(7)
    root, n, w, h = tmp_path / "blur", 160, 96, 72
    images, anns, preds = [], [], []
    for i in range(1, n + 1):
        blurry = i % 2 == 0
        pixels = rng.integers(0, 255, (h // 4, w // 4), np.uint8)
        im = Image.fromarray(pixels, "L").resize((w, h), Image.NEAREST).convert("RGB")
        if blurry:
            im = im.filter(ImageFilter.GaussianBlur(4))
        name = f"{i:04d}.png"
        (root / "images").mkdir(parents=True, exist_ok=True)
        im.save(root / "images" / name)
        images.append({"id": i, "file_name": name, "width": w, "height": h})
        for _ in range(3):
            x, y = float(rng.uniform(0, w - 20)), float(rng.uniform(0, h - 20))
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "bbox": [x, y, 20, 20], "area": 400})
            if rng.random() >= (0.75 if blurry else 0.1):
                preds.append({"image_id": i, "category_id": 1, "bbox": [x, y, 20, 20], "score": 0.9})
    path = write_coco(root, coco_doc(images, anns, ["thing"]), make_images=False)
    (root / "preds.json").write_text(json.dumps(preds))
    ds = vl.ingest(path, "blur", predictions={"m": str(root / "preds.json")}, store=store)
    ds.evaluate("m")
    compute_fields(store, ds.id)
    found = find_slices(store, ds.id, "m", ap_top=0)
    named = [f for f in found if "sharpness" in " ".join([f.definition, *f.detail.get("also", [])])]
    assert named, [f.definition for f in found]
    best = named[0]
    ev = best.evidence
    assert ev["metric"] == "recall" and ev["slice"]["recall"] < 0.4 < 0.8 < ev["rest"]["recall"]
    assert best.filters is not None
    assert ds.count(best.filters) >= n // 2 * 0.8  # mostly the blurred half
