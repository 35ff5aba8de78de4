"""Download a real public dataset (COCO val2017) when the machine is online.

The code path is tested against a local HTTP server serving zips of the same layout, since CI cannot reach the
internet.
"""

from __future__ import annotations

import shutil
import urllib.request
import zipfile
from pathlib import Path

from .errors import VisionLensError
from .formats.base import ProgressCallback, no_progress

COCO_BASE_URL = "http://images.cocodataset.org"
COCO_VAL2017 = {
    "annotations": "annotations/annotations_trainval2017.zip",
    "images": "zips/val2017.zip",
}


def fetch(url: str, dest: Path, progress: ProgressCallback = no_progress, timeout: float = 30.0) -> Path:
    """Stream ``url`` to ``dest`` (via a .part file, so an interrupted download is never taken for a whole one)."""
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(part, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0)
            done = 0
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                progress(f"download {dest.name}", done, total)
    except OSError as e:
        part.unlink(missing_ok=True)
        raise VisionLensError(
            f"could not download {url}: {e}. Are you online? Use a local copy with `visionlens ingest`."
        ) from None
    part.rename(dest)
    return dest


def download_coco_val2017(
    dest: str | Path, base_url: str = COCO_BASE_URL, progress: ProgressCallback = no_progress
) -> Path:
    """Fetch and unpack COCO val2017 into ``dest``; returns the folder to ingest (``annotations/`` + ``val2017/``)."""
    dest = Path(dest)
    cache = dest / "_downloads"
    ann_zip = fetch(f"{base_url.rstrip('/')}/{COCO_VAL2017['annotations']}", cache / "annotations.zip", progress)
    img_zip = fetch(f"{base_url.rstrip('/')}/{COCO_VAL2017['images']}", cache / "val2017.zip", progress)
    (dest / "annotations").mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(ann_zip) as z:
        member = "annotations/instances_val2017.json"
        if member not in z.namelist():
            raise VisionLensError(f"{ann_zip} has no {member}")
        with z.open(member) as src, open(dest / member, "wb") as out:
            shutil.copyfileobj(src, out)
    with zipfile.ZipFile(img_zip) as z:
        names = [n for n in z.namelist() if n.startswith("val2017/") and not n.endswith("/")]
        for k, n in enumerate(names):
            if k % 200 == 0:
                progress("unpack images", k, len(names))
            target = dest / n
            if not target.resolve().is_relative_to(dest.resolve()):
                raise VisionLensError(f"{img_zip}: member {n!r} escapes the target folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(n) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
        progress("unpack images", len(names), len(names))
    return dest
