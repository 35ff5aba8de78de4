"""Images whose size must be read from the header: a bad file becomes an issue on its sample, never a traceback,
and the other samples are ingested as usual (COCO without sizes, VOC without <size>, YOLO always)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

import visionlens as vl
from tests.factories import coco_doc, image, voc_xml, write_yolo


def _jpeg_bytes(size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buf, "JPEG")
    return buf.getvalue()


BAD_FILES: dict[str, Callable[[], bytes]] = {
    "corrupt": lambda: b"\x00\x01 these bytes are no image at all \xff" * 10,
    "zero-byte": lambda: b"",
    "truncated": lambda: _jpeg_bytes()[:120],  # cut inside the header: the size cannot be known
}
REASONS = {"corrupt": "not an image", "zero-byte": "empty (0 bytes)", "truncated": "truncated"}


def _coco(root: Path, bad: bytes) -> Path:
    image(root / "images" / "good.jpg", (64, 48))
    (root / "images" / "bad.jpg").write_bytes(bad)
    doc = coco_doc(
        [{"id": 1, "file_name": "good.jpg"}, {"id": 2, "file_name": "bad.jpg"}],
        [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [2, 2, 5, 5]},
        ],
    )
    (root / "annotations.json").write_text(json.dumps(doc))
    return root


def _voc(root: Path, bad: bytes) -> Path:
    for stem in ("good", "bad"):
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        xml = voc_xml(f"{stem}.jpg", [("dog", 1, 1, 5, 5)]).replace(
            "<size><width>100</width><height>80</height><depth>3</depth></size>", ""
        )
        (root / "Annotations" / f"{stem}.xml").write_text(xml)
    image(root / "JPEGImages" / "good.jpg", (64, 48))
    (root / "JPEGImages" / "bad.jpg").write_bytes(bad)
    return root


def _yolo(root: Path, bad: bytes) -> Path:
    write_yolo(
        root, {"train/good": "0 0.5 0.5 0.5 0.5\n", "train/bad": "0 0.5 0.5 0.5 0.5\n"}, sizes={"train/good": (64, 48)}
    )
    (root / "images" / "train" / "bad.jpg").write_bytes(bad)
    return root


LAYOUTS = {"coco": _coco, "voc": _voc, "yolo": _yolo}


def _check(ds, reason: str | None, kind: str = "unreadable_image") -> None:
    assert ds.count() == 2
    rows = ds.samples().set_index(ds.samples()["filepath"].str.rsplit("/", n=1).str[-1])
    assert (rows.loc["good.jpg", "width"], rows.loc["good.jpg", "height"]) == (64, 48)
    assert not rows.loc["good.jpg", "missing"] and rows.loc["bad.jpg", "missing"]
    assert (rows.loc["bad.jpg", "width"], rows.loc["bad.jpg", "height"]) == (0, 0)  # unknown
    found = [i for i in ds.issues() if i.kind == kind]
    assert len(found) == 1 and found[0].file.endswith("bad.jpg")
    if reason:
        assert reason in found[0].message
    good_id = int(rows.loc["good.jpg", "id"])
    assert len(ds.annotations([good_id])) == 1


@pytest.mark.parametrize("fmt", LAYOUTS)
@pytest.mark.parametrize("problem", BAD_FILES)
def test_unreadable_image_is_an_issue_and_the_rest_is_ingested(store, tmp_path, fmt, problem):
    root = LAYOUTS[fmt](tmp_path / fmt, BAD_FILES[problem]())
    ds = vl.ingest(root, "d", store=store)
    assert ds.format == fmt
    _check(ds, REASONS[problem])


@pytest.mark.parametrize("fmt", LAYOUTS)
def test_decompression_bomb_is_refused_as_an_issue(store, tmp_path, monkeypatch, fmt):
    """Pillow refuses images above twice MAX_IMAGE_PIXELS; a low limit makes a real 128x128 PNG such a bomb."""
    buf = io.BytesIO()
    Image.new("RGB", (128, 128)).save(buf, "PNG")
    root = LAYOUTS[fmt](tmp_path / fmt, buf.getvalue())
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 48)  # the good image is exactly at the limit
    ds = vl.ingest(root, "d", store=store)
    _check(ds, "decompression bomb")


@pytest.mark.parametrize("fmt", LAYOUTS)
def test_image_above_the_pixel_limit_keeps_its_size_with_an_issue(store, tmp_path, monkeypatch, fmt):
    """Between MAX_IMAGE_PIXELS and twice that, Pillow only warns: the size is known, the issue says why it matters."""
    buf = io.BytesIO()
    Image.new("RGB", (80, 48)).save(buf, "PNG")
    root = LAYOUTS[fmt](tmp_path / fmt, buf.getvalue())
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 48)
    with pytest.warns(Image.DecompressionBombWarning):
        ds = vl.ingest(root, "d", store=store)
    assert ds.count({"missing": True}) == 0
    row = ds.samples({"filepath": ds.samples()["filepath"][ds.samples()["filepath"].str.endswith("bad.jpg")].iloc[0]})
    assert (row["width"].iloc[0], row["height"].iloc[0]) == (80, 48)
    [issue] = [i for i in ds.issues() if i.kind == "large_image"]
    assert issue.file.endswith("bad.jpg") and "80x48" in issue.message


@pytest.mark.parametrize(
    ("value", "fmt"),
    [("nan", "coco"), ("-5", "coco"), ("1e300", "coco"), ("nan", "voc"), ("-5", "voc"), ("inf", "voc")],
)
def test_declared_size_that_is_no_size_is_read_from_the_image(store, tmp_path, value, fmt):
    root = tmp_path / fmt
    if fmt == "coco":
        image(root / "images" / "a.jpg", (90, 30))
        doc = coco_doc([{"id": 1, "file_name": "a.jpg", "width": float(value), "height": 30}], [])
        (root / "annotations.json").parent.mkdir(parents=True, exist_ok=True)
        (root / "annotations.json").write_text(json.dumps(doc))
    else:
        image(root / "JPEGImages" / "a.jpg", (90, 30))
        (root / "Annotations").mkdir(parents=True)
        (root / "Annotations" / "a.xml").write_text(
            voc_xml("a.jpg", []).replace("<width>100</width>", f"<width>{value}</width>")
        )
    ds = vl.ingest(root, "d", store=store)
    row = ds.samples().iloc[0]
    assert (row["width"], row["height"]) == (90, 30)
    [issue] = [i for i in ds.issues() if i.kind == "bad_image_size"]
    assert issue.location.endswith("width")


def test_non_numeric_declared_size_is_an_error_naming_the_field(store, tmp_path):
    root = tmp_path / "c"
    doc = coco_doc([{"id": 1, "file_name": "a.jpg", "width": "wide", "height": 30}], [])
    root.mkdir()
    (root / "annotations.json").write_text(json.dumps(doc))
    with pytest.raises(vl.IngestError, match=r"images\[0\]\.width: image size must be a number, got 'wide'"):
        vl.ingest(root, "c", store=store)
