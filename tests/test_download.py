"""The COCO val2017 download path, run against a local HTTP server serving zips of the real layout."""

from __future__ import annotations

import functools
import http.server
import io
import json
import threading
import zipfile
from pathlib import Path

import pytest
from PIL import Image

import visionlens as vl
from visionlens.download import COCO_VAL2017, download_coco_val2017
from visionlens.errors import VisionLensError


@pytest.fixture
def mirror(tmp_path: Path):
    site = tmp_path / "site"
    (site / "annotations").mkdir(parents=True)
    (site / "zips").mkdir()
    doc = {
        "images": [{"id": 139, "file_name": "000000000139.jpg", "width": 64, "height": 48}],
        "annotations": [{"id": 1, "image_id": 139, "category_id": 1, "bbox": [1, 2, 3, 4], "area": 12, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "person"}],
    }
    with zipfile.ZipFile(site / COCO_VAL2017["annotations"], "w") as z:
        z.writestr("annotations/instances_val2017.json", json.dumps(doc))
        z.writestr("annotations/captions_val2017.json", "{}")
    buf = io.BytesIO()
    Image.new("RGB", (64, 48)).save(buf, "JPEG")
    with zipfile.ZipFile(site / COCO_VAL2017["images"], "w") as z:
        z.writestr("val2017/000000000139.jpg", buf.getvalue())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_download_unpack_and_ingest(store, tmp_path, mirror):
    root = download_coco_val2017(tmp_path / "coco", base_url=mirror)
    ds = vl.ingest(root, "coco", store=store)
    assert ds.count() == 1 and ds.labels() == ["person"]
    row = ds.samples().iloc[0]
    assert row["filepath"] == "val2017/000000000139.jpg" and row["split"] == "val2017" and not row["missing"]


def test_offline_fails_fast_and_clearly(tmp_path):
    with pytest.raises(VisionLensError, match="could not download http://127.0.0.1:9/"):
        download_coco_val2017(tmp_path / "coco", base_url="http://127.0.0.1:9")
    assert not list((tmp_path / "coco").rglob("*.part"))
