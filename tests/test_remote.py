"""Remote storage goes through fsspec: the same readers run on a non-local filesystem (fsspec's memory://),
which exercises the code path `gs://` takes (gcsfs is an fsspec filesystem) without a network."""

from __future__ import annotations

import io
import json

import fsspec
from PIL import Image

import visionlens as vl
from visionlens.formats import detect_format


def _put_jpeg(fs, path: str, size=(40, 30)) -> None:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 200, 10)).save(buf, "JPEG")
    fs.pipe(path, buf.getvalue())


def test_coco_and_yolo_from_memory_filesystem(store):
    fs = fsspec.filesystem("memory")
    _put_jpeg(fs, "/bucket/coco/images/a.jpg")
    doc = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
            {"id": 2, "file_name": "missing.jpg", "width": 40, "height": 30},
        ],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]}],
        "categories": [{"id": 1, "name": "car"}],
    }
    fs.pipe("/bucket/coco/annotations.json", json.dumps(doc).encode())
    assert detect_format("memory://bucket/coco/annotations.json").name == "coco"
    ds = vl.ingest("memory://bucket/coco/annotations.json", "remote", store=store)
    assert ds.count() == 2 and ds.count({"missing": True}) == 1
    assert ds.uri("a.jpg") == "memory://bucket/coco/images/a.jpg"

    _put_jpeg(fs, "/bucket/yolo/images/train/x.jpg", (100, 50))
    fs.pipe("/bucket/yolo/labels/train/x.txt", b"0 0.5 0.5 0.5 0.5\n")
    fs.pipe("/bucket/yolo/data.yaml", b"train: images/train\nnames: [car]\n")
    ds = vl.ingest("memory://bucket/yolo", "remote-yolo", store=store)
    ann = ds.annotations(ds.sample_ids())
    assert (ann["x"].iloc[0], ann["w"].iloc[0], ann["h"].iloc[0]) == (25, 50, 25)
