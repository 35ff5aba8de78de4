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
MAX_SIDE = 1024
WORKERS = 4
CHUNK = 256


def measure(data: bytes) -> dict[str, float | None]:
    """The five measures of one encoded image; all None when it cannot be decoded."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            factor = math.ceil(max(width, height) / MAX_SIDE)
            grey = im.convert("L")
            if factor > 1:
                grey = grey.reduce(factor)
            g = np.asarray(grey, np.float32)
    except Exception as exc:  # noqa: BLE001 - any undecodable file is "no measure", as the docstring says
        log.debug("image quality: undecodable image: %s", exc)
        return dict.fromkeys(FIELDS)
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


@hookimpl
def computed_fields() -> list[ComputedFields]:
    return [ComputedFields("image quality", tuple(FieldSpec(f) for f in FIELDS), compute)]
