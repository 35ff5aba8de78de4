"""Image quality as sample fields: brightness, contrast, sharpness, aspect ratio and file size.

The example plugin: one ``computed_fields`` hook. Once computed (``visionlens plugins compute DATASET`` or the
Browse tab's "Compute plugin fields"), the values are ordinary numeric sample fields: the sidebar shows each as a
range filter with a histogram, the grid sorts by them, and insights' slice discovery tests their quantile bins
and tails like any other field ("recall is low where sharpness <= 12").

Measures, on the grey image (Pillow's ``L``, 0..255):

* ``brightness``: mean grey level;
* ``contrast``: standard deviation of the grey levels (RMS contrast; 0 for a flat image);
* ``sharpness``: variance of the 4-neighbour Laplacian, the usual blur measure: low means blurry, 0 for a flat
  image. Images larger than ``MAX_SIDE`` are reduced first, so values compare across resolutions;
* ``aspect ratio``: width / height of the image file;
* ``file size``: bytes of the file.

Images are read and decoded on a thread pool (Pillow's decoder and numpy release the GIL); an unreadable or
missing image gets no values (missing), never an error.

A second hook result measures every box (object fields, ``level="object"``): ``box brightness``, ``box contrast``
and ``box sharpness`` on the box's crop of the same grey image, each image decoded once for all its boxes. A dark
or blurred object in a sharp, bright image is what a detector misses and what the image-level numbers hide; the
sidebar's Objects section filters boxes (and so images) by them, e.g. ground truth with box sharpness below 20.
A box under 3x3 pixels gets no sharpness; a box outside the image gets no values.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from visionlens import media
from visionlens.hookspecs import ComputedFields, FieldSpec, hookimpl

log = logging.getLogger(__name__)

FIELDS = ("brightness", "contrast", "sharpness", "aspect ratio", "file size")
BOX_FIELDS = ("box brightness", "box contrast", "box sharpness")
MAX_SIDE = 1024
WORKERS = 4
CHUNK = 256


def grey_image(data: bytes) -> tuple[np.ndarray, int] | None:
    """The grey pixels (reduced to at most ``MAX_SIDE``) and the reduction factor; None when undecodable."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            factor = max(1, math.ceil(max(im.size) / MAX_SIDE))
            grey = im.convert("L")
            if factor > 1:
                grey = grey.reduce(factor)
            return np.asarray(grey, np.float32), factor
    except Exception as exc:  # noqa: BLE001 - any undecodable file is "no measure", as the docstring says
        log.debug("image quality: undecodable image: %s", exc)
        return None


def measure(data: bytes) -> dict[str, float | None]:
    """The five measures of one encoded image; all None when it cannot be decoded."""
    from PIL import Image

    decoded = grey_image(data)
    if decoded is None:
        return dict.fromkeys(FIELDS)
    g = decoded[0]
    with Image.open(io.BytesIO(data)) as im:
        width, height = im.size
    return {
        "brightness": float(g.mean()),
        "contrast": float(g.std()),
        "sharpness": laplacian_variance(g),
        "aspect ratio": width / height if height else None,
        "file size": float(len(data)),
    }


def laplacian_variance(g: np.ndarray) -> float | None:
    """Variance of ``g[y-1,x] + g[y+1,x] + g[y,x-1] + g[y,x+1] - 4 g[y,x]`` over the interior pixels."""
    if g.shape[0] < 3 or g.shape[1] < 3:
        return None
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


def _measure_uri(uri: str) -> dict[str, float | None]:
    try:
        data = media.read_bytes(uri)
    except Exception as exc:  # noqa: BLE001 - a missing image is a missing value
        log.debug("image quality: cannot read %s: %s", uri, exc)
        return dict.fromkeys(FIELDS)
    return measure(data)


def compute(store: Any, dataset_id: int, sample_ids: Sequence[int], progress: Any) -> dict[str, list[float | None]]:
    """Measure every sample's image in parallel, reporting ``progress("image quality", done, total)``."""
    root = store.dataset_by_id(dataset_id).root
    ids = np.asarray(sample_ids, np.int64)
    paths = store.samples_by_id(dataset_id, ids)["filepath"].to_pylist() if len(ids) else []
    uris = [media.join(root, p) for p in paths]
    out: dict[str, list[float | None]] = {f: [] for f in FIELDS}
    progress("image quality", 0, len(uris))
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="vl-quality") as pool:
        for start in range(0, len(uris), CHUNK):
            for values in pool.map(_measure_uri, uris[start : start + CHUNK]):
                for f in FIELDS:
                    out[f].append(values[f])
            progress("image quality", min(start + CHUNK, len(uris)), len(uris))
    return out


def measure_boxes(data: bytes | None, boxes: Sequence[tuple[float, float, float, float]]) -> list[dict[str, Any]]:
    """The box measures of each (x, y, w, h) box, in image pixels, on one image decoded once."""
    decoded = grey_image(data) if data is not None else None
    if decoded is None:
        return [dict.fromkeys(BOX_FIELDS) for _ in boxes]
    g, factor = decoded
    out = []
    for x, y, w, h in boxes:
        x0, y0 = max(0, math.floor(x / factor)), max(0, math.floor(y / factor))
        x1, y1 = min(g.shape[1], math.ceil((x + w) / factor)), min(g.shape[0], math.ceil((y + h) / factor))
        crop = g[y0:y1, x0:x1]
        if crop.size == 0:
            out.append(dict.fromkeys(BOX_FIELDS))
            continue
        out.append(
            {
                "box brightness": float(crop.mean()),
                "box contrast": float(crop.std()),
                "box sharpness": laplacian_variance(crop),
            }
        )
    return out


def _measure_sample(uri: str, boxes: list[tuple[float, float, float, float]]) -> list[dict[str, Any]]:
    try:
        data = media.read_bytes(uri)
    except Exception as exc:  # noqa: BLE001 - a missing image is a missing value
        log.debug("image quality: cannot read %s: %s", uri, exc)
        data = None
    return measure_boxes(data, boxes)


def compute_boxes(store: Any, dataset_id: int, ann_ids: Sequence[int], progress: Any) -> dict[str, list[Any]]:
    """Measure every box, one image read per sample, images in parallel; ``progress("box quality", ...)``."""
    root = store.dataset_by_id(dataset_id).root
    table = store.annotations_by_id(dataset_id, np.asarray(ann_ids, np.int64))
    ids, samples = table["id"].to_pylist(), table["sample_id"].to_pylist()
    xywh = list(zip(*(table[c].to_pylist() for c in ("x", "y", "w", "h"))))
    by_sample: dict[int, list[int]] = {}
    for row, sample in enumerate(samples):
        by_sample.setdefault(sample, []).append(row)
    order = list(by_sample)
    paths = store.samples_by_id(dataset_id, np.asarray(order, np.int64))["filepath"].to_pylist() if order else []
    uri_of = dict(zip(order, (media.join(root, p) for p in paths)))
    measured: dict[int, dict[str, Any]] = {}
    progress("box quality", 0, len(order))
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="vl-box-quality") as pool:
        for start in range(0, len(order), CHUNK):
            chunk = [s for s in order[start : start + CHUNK] if s in uri_of]
            jobs = [(uri_of[s], [xywh[r] for r in by_sample[s]]) for s in chunk]
            for sample, values in zip(chunk, pool.map(lambda job: _measure_sample(*job), jobs)):
                for row, v in zip(by_sample[sample], values):
                    measured[ids[row]] = v
            progress("box quality", min(start + CHUNK, len(order)), len(order))
    empty = dict.fromkeys(BOX_FIELDS)
    return {f: [measured.get(int(a), empty)[f] for a in ann_ids] for f in BOX_FIELDS}


@hookimpl
def computed_fields() -> list[ComputedFields]:
    return [
        ComputedFields("image quality", tuple(FieldSpec(f) for f in FIELDS), compute),
        ComputedFields("box quality", tuple(FieldSpec(f) for f in BOX_FIELDS), compute_boxes, level="object"),
    ]
