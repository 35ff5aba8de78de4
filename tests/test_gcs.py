"""Datasets on ``gs://`` read through gcsfs from a real GCS emulator on 127.0.0.1 (``gcp-storage-emulator``).

One emulator serves the whole module: a COCO demo folder with its predictions, a COCO file without image sizes and
with one image missing, and YOLO and VOC folders, all uploaded once. Every test has a 30 s limit: a read that hit
one of gcsfs's 60 s timeouts (the experimental bucket-type probe, a credentials probe) fails it instead of slowing
the suite down.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import visionlens as vl
from tests.factories import coco_doc, image, voc_xml, write_coco, write_voc, write_yolo
from tests.gcs_emulator import GcsEmulator, gcs_emulator
from visionlens.demo import DemoPaths, build_demo

pytestmark = pytest.mark.timeout(30)

# Sizes that differ per image, so a size read from the wrong header (or not read at all) shows.
NO_SIZE_IMAGES = {"a.jpg": (80, 60), "sub/b.png": (33, 21)}


@dataclass
class Bucket:
    """The emulator and the local originals of what was uploaded to it."""

    emulator: GcsEmulator
    demo: DemoPaths
    setup_seconds: float


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bucket]:
    start = time.perf_counter()
    local = tmp_path_factory.mktemp("gcs-local")
    with gcs_emulator(tmp_path_factory.mktemp("gcs-emulator")) as emu:
        demo = build_demo(local / "coco", n=20, seed=5)
        emu.upload(demo.root, "coco")
        emu.upload(_no_size_coco(local / "nosize"), "nosize")
        emu.upload(
            write_yolo(local / "yolo", {"train/x": "0 0.5 0.5 0.5 0.5\n", "val/y": "1 0.25 0.25 0.1 0.2\n"}), "yolo"
        )
        emu.upload(write_voc(local / "voc", {"v1": voc_xml("v1.jpg", [("cat", 10, 10, 50, 40)])}), "voc")
        yield Bucket(emu, demo, time.perf_counter() - start)


def _no_size_coco(root: Path) -> Path:
    """A COCO file that gives no image sizes; ``gone.jpg`` is listed but never uploaded."""
    for name, size in NO_SIZE_IMAGES.items():
        image(root / "images" / name, size)
    files = [*NO_SIZE_IMAGES, "gone.jpg"]
    doc = coco_doc(
        [{"id": i + 1, "file_name": f} for i, f in enumerate(files)],
        [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 20, 10]}],
    )
    write_coco(root, doc, make_images=False)
    return root


def test_gs_uses_the_emulator_anonymously_with_plain_gcsfs(gcs):
    """The emulator setup that avoids 60 s waits: anonymous token, its endpoint, no experimental bucket probe."""
    import gcsfs.core

    from visionlens import media

    fs, _ = media.fs_path(gcs.emulator.uri("coco"))
    assert type(fs) is gcsfs.core.GCSFileSystem
    assert fs.credentials.method == "anon" and fs._location == gcs.emulator.endpoint
    assert media.listdir(gcs.emulator.uri("coco")) == [
        ".visionlens-demo",
        "annotations",
        "images",
        "planted.json",
        "predictions",
    ]
    assert gcs.setup_seconds < 20, f"starting the emulator and uploading took {gcs.setup_seconds:.1f} s"


def test_coco_folder_and_predictions_from_gcs_match_the_local_ingest(gcs, store):
    emu, demo = gcs.emulator, gcs.demo
    remote_preds = {m: emu.uri("coco", "predictions", p.name) for m, p in demo.predictions.items()}
    remote = vl.ingest(emu.uri("coco"), "remote", predictions=remote_preds, store=store)
    local = vl.ingest(demo.root, "local", predictions={m: str(p) for m, p in demo.predictions.items()}, store=store)

    assert remote.root == emu.uri("coco") and remote.count() == local.count() == 20
    assert remote.count({"missing": True}) == 0
    assert sorted(remote.models()) == sorted(demo.predictions)
    cols = ["filepath", "width", "height", "split"]
    assert remote.samples(limit=50)[cols].equals(local.samples(limit=50)[cols])
    r_ann, l_ann = remote.annotations(remote.sample_ids()), local.annotations(local.sample_ids())
    assert len(r_ann) == len(l_ann) > 0
    assert (r_ann.groupby("source").size() == l_ann.groupby("source").size()).all()
    assert remote.uri("train/x.jpg").startswith(emu.uri("coco") + "/")


def test_image_sizes_come_from_gcs_headers_and_a_missing_image_is_flagged(gcs, store):
    ds = vl.ingest(gcs.emulator.uri("nosize", "annotations.json"), "nosize", store=store)
    rows = ds.samples().set_index("filepath")
    for name, size in NO_SIZE_IMAGES.items():
        assert (rows.loc[name, "width"], rows.loc[name, "height"]) == size
        assert not rows.loc[name, "missing"]
    assert rows.loc["gone.jpg", "missing"]
    assert any("gone.jpg" in (issue.file or "") for issue in ds.issues())


def test_thumbnail_of_a_gcs_image_is_cached_on_local_disk(gcs, tmp_path):
    from visionlens.thumbnails import ThumbnailCache

    emu = gcs.emulator
    cache = ThumbnailCache(tmp_path / "thumbs", size=64)
    uri = emu.uri("nosize", "images", "a.jpg")
    before = len(emu.requests())
    first = cache.get(uri, 1)
    assert not first.placeholder and not first.from_cache, first.error
    assert len(emu.requests()) > before, "the first thumbnail is made from the bucket's bytes"
    path = cache.path_for(uri)
    assert path is not None and path.is_file() and path.is_relative_to(tmp_path / "thumbs")

    before = len(emu.requests())
    again = cache.get(uri, 1)
    other_process = ThumbnailCache(tmp_path / "thumbs", size=64).get(uri, 1)
    assert again.from_cache and other_process.from_cache and again.data == other_process.data == first.data
    assert len(emu.requests()) == before, "a cached thumbnail must not touch the bucket"


def test_a_missing_gcs_image_becomes_a_placeholder(gcs, tmp_path):
    from visionlens.thumbnails import ThumbnailCache, full_image

    uri = gcs.emulator.uri("nosize", "images", "gone.jpg")
    thumb = ThumbnailCache(tmp_path / "thumbs", size=64).get(uri, 3)
    assert thumb.placeholder and "FileNotFoundError" in (thumb.error or "")
    assert full_image(uri, 256).placeholder
    assert not list((tmp_path / "thumbs").rglob("*.jpg")), "placeholders are not cached"


def test_yolo_and_voc_folders_from_gcs(gcs, store):
    emu = gcs.emulator
    yolo = vl.ingest(emu.uri("yolo"), "yolo", store=store)
    assert yolo.format == "yolo" and yolo.count() == 2 and yolo.count({"missing": True}) == 0
    ann = yolo.annotations(yolo.sample_ids()).sort_values("x")
    assert ann[["x", "y", "w", "h"]].to_numpy().ravel().tolist() == pytest.approx([20, 7.5, 10, 10, 25, 12.5, 50, 25])

    voc = vl.ingest(emu.uri("voc"), "voc", store=store)
    assert voc.format == "voc" and voc.count() == 1 and voc.labels() == ["cat"]
    box = voc.annotations(voc.sample_ids()).iloc[0]
    assert (box["x"], box["y"], box["w"], box["h"]) == (9, 9, 41, 31)  # VOC corners are 1-based and inclusive


def test_builtin_embedding_reads_gcs_images(gcs, store):
    from visionlens.embedding_jobs import embed_dataset

    ds = vl.ingest(gcs.emulator.uri("nosize", "annotations.json"), "embed-nosize", store=store)
    summary = embed_dataset(store, ds.id, "builtin", num_workers=0)
    assert summary.embedded == len(NO_SIZE_IMAGES)
    assert [uri for _, uri, _ in summary.failed] == [gcs.emulator.uri("nosize", "images", "gone.jpg")]
