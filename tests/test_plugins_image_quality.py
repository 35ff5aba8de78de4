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
BOX_FIELDS = ["box brightness", "box contrast", "box sharpness"]


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
    # gone.jpg: no values; no boxes in this dataset, so no box measured
    assert report.fields == {**dict.fromkeys(FIELDS, 5), **dict.fromkeys(BOX_FIELDS, 0)} and not report.failed
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


def test_box_measures_are_object_fields_that_filter_boxes_and_images(quality: Plugins, store: Any, tmp_path: Path):
    """Each image has a sharp half (checkerboard) and a blurred or dark half; boxes over each half get the measures
    of their own crop, in image pixels even when the image is reduced before measuring (a 2400-wide image). The
    values are object fields: read with the boxes, filtered by ``LabelFilter.fields``, usable to tag boxes."""
    from visionlens.plugins import compute_fields
    from visionlens.query import FieldFilter, Filters, LabelFilter, Range

    root = tmp_path / "boxes"
    (root / "images").mkdir(parents=True)
    images, anns = [], []
    for i, (w, h) in enumerate([(200, 100), (2400, 600), (120, 80)], start=1):
        # 6-pixel cells: the 2400-wide image is reduced 3x before measuring, which keeps such cells whole
        left = np.asarray(checkerboard(w // 2, h, cell=6), np.uint8)
        right = np.asarray(checkerboard(w // 2, h, cell=6).filter(ImageFilter.GaussianBlur(8)), np.uint8)
        if i == 3:
            right = np.full_like(right, 10)  # a dark, flat half
        Image.fromarray(np.concatenate([left, right], axis=1)).save(root / "images" / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "width": w, "height": h})
        q = w // 8
        boxes = [[q, h // 4, 2 * q, h // 2], [w // 2 + q, h // 4, 2 * q, h // 2]]  # inside left, inside right
        if i == 1:
            boxes += [[w + 10, 0, 20, 20], [5, 5, 1, 1]]  # outside the image; a one-pixel box
        for bbox in boxes:
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "bbox": bbox, "area": bbox[2] * bbox[3]})
    images.append({"id": 4, "file_name": "gone.png", "width": 50, "height": 50})
    anns.append({"id": len(anns) + 1, "image_id": 4, "category_id": 1, "bbox": [1, 1, 20, 20], "area": 400})
    ds = vl.ingest(write_coco(root, coco_doc(images, anns, ["thing"]), make_images=False), "boxes", store=store)

    report = compute_fields(store, ds.id, ["box sharpness"])  # only the provider of that field runs
    assert set(report.fields) == set(BOX_FIELDS) and not report.failed
    assert report.fields["box brightness"] == len(anns) - 2  # the outside box and the missing image: none
    assert report.fields["box sharpness"] == len(anns) - 3  # ... and the one-pixel box has no Laplacian
    fields = store.fields(ds.id)
    for f in BOX_FIELDS:
        info = fields[f"annotation.{f}"]
        assert info.level == "annotation" and info.kind == "numeric" and not info.builtin
    assert not set(FIELDS) & set(fields)  # the image measures were not asked for

    boxes = ds.annotations(ds.sample_ids()).set_index("id")
    assert set(BOX_FIELDS) <= set(boxes.columns)
    for i in (1, 2, 3):
        sharp, soft = (row for _, row in boxes[boxes["sample_id"] == ds.sample_ids()[i - 1]].iloc[:2].iterrows())
        assert sharp["box sharpness"] > 1000, (i, sharp["box sharpness"])
        assert soft["box sharpness"] < sharp["box sharpness"] / 50
        assert sharp["box contrast"] == pytest.approx(87.5, abs=1.0)
    dark = boxes[boxes["sample_id"] == ds.sample_ids()[2]].iloc[1]
    assert dark["box brightness"] == pytest.approx(10, abs=0.5) and dark["box contrast"] == pytest.approx(0, abs=1e-6)

    blurry = LabelFilter(fields=(FieldFilter(field="box sharpness", range=Range(max=20.0)),))
    assert ds.count(Filters(annotations=(blurry,))) == 3  # every image with pixels has one soft or flat half
    sharp_only = Filters(annotations=(blurry.model_copy(update={"exclude": True}),))
    assert ds.count(sharp_only) == 1  # the missing image: its box has no measure, so no soft box
    assert ds.tag_objects("soft", objects=blurry, filters=Filters()) == 3
    tagged = ds.annotations(ds.sample_ids())
    soft_ids = set(tagged[tagged["tags"].map(lambda t: "soft" in list(t if t is not None else []))]["id"])
    assert soft_ids == set(boxes[boxes["box sharpness"] < 20].index)

    from visionlens.errors import FilterError

    with pytest.raises(FilterError, match="unknown object field 'nope'"):
        ds.count(Filters(annotations=(LabelFilter(fields=(FieldFilter(field="nope", range=Range(max=1)),)),)))
    with pytest.raises(FilterError, match="built in"):
        ds.count(Filters(annotations=(LabelFilter(fields=(FieldFilter(field="area", range=Range(max=1)),)),)))


def test_box_measures_in_the_sidebar_and_the_detail_table(quality: Plugins, store: Any, tmp_path: Path):
    """After computing, the sidebar's Objects section has a range slider per box measure; narrowing it filters the
    images by their boxes, and the detail view's objects table shows each box's measures."""
    from visionlens.plugins import compute_fields
    from visionlens.query import FieldFilter, Filters, LabelFilter, Range
    from visionlens.ui.detail_view import DetailView
    from visionlens.ui.filters_view import FiltersView
    from visionlens.ui.state import AppState

    rng = np.random.default_rng(1)
    root = tmp_path / "side"
    (root / "images").mkdir(parents=True)
    images, anns = [], []
    for i in range(1, 13):
        level = int(rng.integers(20, 230))
        Image.new("RGB", (64, 48), (level, level, level)).save(root / "images" / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "width": 64, "height": 48})
        anns.append({"id": i, "image_id": i, "category_id": 1, "bbox": [8, 8, 30, 20], "area": 600})
    ds = vl.ingest(write_coco(root, coco_doc(images, anns, ["thing"]), make_images=False), "side", store=store)
    compute_fields(store, ds.id, ["box brightness"])
    state = AppState(store, dataset="side")
    sidebar = FiltersView(state=state)
    slider = sidebar._obj_fields["box brightness"]
    values = ds.annotations(ds.sample_ids())["box brightness"]
    assert slider.start == pytest.approx(values.min()) and slider.end == pytest.approx(values.max())
    cut = float(np.median(values))
    slider.value = (slider.start, cut)
    slider.param.trigger("value_throttled")
    want = LabelFilter(fields=(FieldFilter(field="box brightness", range=Range(max=cut)),))
    assert state.filters.annotations == (want,)
    assert state.count == int((values <= cut).sum()) == ds.count(Filters(annotations=(want,)))
    state.reset()
    assert slider.value == (slider.start, slider.end)  # Reset shows in the slider
    state.filters = Filters(annotations=(want,))  # a link's filter shows in the slider
    assert slider.value == (slider.start, pytest.approx(cut))
    sidebar.wait()

    detail = DetailView(state=state)
    state.open_sample = int(ds.sample_ids()[0])
    table = detail._table.value
    assert "box brightness" in table.columns and table["box brightness"].notna().all()
    detail.wait()


def test_deleting_a_dataset_drops_its_object_field_columns(quality: Plugins, store: Any, tmp_path: Path):
    from visionlens.plugins import compute_fields

    root = tmp_path / "gone"
    (root / "images").mkdir(parents=True)
    checkerboard(40, 30).save(root / "images" / "a.png")
    doc = coco_doc(
        [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
        [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 20, 20], "area": 400}],
        ["thing"],
    )
    ds = vl.ingest(write_coco(root, doc, make_images=False), "gone", store=store)

    def columns() -> set[str]:
        with store.cursor() as cur:
            return {r[0] for r in cur.execute("DESCRIBE annotations").fetchall()}

    before = columns()
    compute_fields(store, ds.id, ["box contrast"])
    added = columns() - before
    assert len(added) == len(BOX_FIELDS)
    vl.delete_dataset("gone", store=store)
    assert columns() == before
