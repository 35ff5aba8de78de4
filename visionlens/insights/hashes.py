"""Perceptual hashes of a dataset's images: the second opinion the near-duplicate search needs.

Embeddings say two images *look alike* (same colours, same layout); they do not say one is a copy of the other.
A 64-bit perceptual hash of the grey image does: a shifted, brightened, re-encoded or resized copy keeps almost
every bit, an image that merely looks alike flips a dozen or more. ``compute_hashes`` stores two hashes per image
(``image_hashes`` table, uint64, one row per method), so ``duplicates`` can use either or both:

* ``phash``: sign of the 8x8 lowest DCT frequencies of a 32x32 grey thumbnail against their median. Robust to
  brightness (a gain scales every coefficient, the median with them), to JPEG re-encoding and to resizing; a
  shift of a few pixels moves only the highest of those frequencies. This is the default signal: on the tests'
  scenes (``tests/test_insights_duplicates.py``) shifted, brightened, re-encoded and resized copies stay within
  6 bits while the closest unrelated scenes are 14 apart; over 600 such scenes copies stayed within 16 bits (90%
  within 8) and unrelated scenes 16 or more apart.
* ``dhash``: whether each pixel of a 9x8 thumbnail is brighter than its right neighbour. Cheaper and as robust to
  brightness, but flat regions (sky, road) flip on noise, so unrelated scenes come much closer: the same test
  scenes leave a gap of 3 bits between copies (<= 4) and unrelated scenes (>= 7), and over 600 scenes unrelated
  ones came within 4 bits. It is stored too (same decode, negligible cost) for users who prefer it.

Hashing a million images is I/O and decoding: a thread pool overlaps reads (local or ``gs://``) and Pillow's
decoder, which releases the GIL; JPEG draft mode decodes at 1/2 to 1/8 scale since the hashes need 32 pixels.
The job is resumable (images already hashed by every method are skipped, results are written in batches) and a
missing or corrupt image is counted and logged, never a traceback.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import media
from ..formats.base import ProgressCallback, no_progress

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "HashSummary",
    "compute_hashes",
    "hamming",
    "hash_dataset",
    "hash_image",
    "hash_images",
]

log = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("phash", "dhash")
DEFAULT_METHOD = "phash"
# JPEG draft mode decodes at the smallest 1/2^k scale that keeps both sides at least this large: phash needs 32.
_DECODE_SIDE = 64
_WRITE_EVERY = 2048


@dataclass
class HashSummary:
    """What a hashing run did. ``failed`` holds (sample_id, uri, reason) of every image that could not be read;
    they are not stored, so the next run tries them again (a file that was missing may have been restored)."""

    hashed: int = 0
    skipped: int = 0
    failed: list[tuple[int, str, str]] = field(default_factory=list)
    seconds: float = 0.0


def _bits_to_uint64(bits: np.ndarray) -> np.uint64:
    """An 8x8 boolean hash, row-major, first bit most significant: the integer of imagehash's hex string."""
    return np.frombuffer(np.packbits(np.asarray(bits, bool).ravel()).tobytes(), ">u8")[0].astype(np.uint64)


def _load_grey(data: bytes) -> Any:
    """Decode just enough for a 32-pixel hash, upright as viewers show it (EXIF orientation applied)."""
    from PIL import Image, ImageOps

    image = Image.open(io.BytesIO(data))
    image.draft("L", (_DECODE_SIDE, _DECODE_SIDE))
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # transparent pixels hold arbitrary colours: flatten on white as viewers do, so copies hash alike
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("L")


def hash_image(image: Any, methods: Sequence[str] = METHODS) -> dict[str, np.uint64]:
    """The 64-bit hashes of one PIL image, by method."""
    import imagehash

    functions: dict[str, Callable[[Any], Any]] = {"phash": imagehash.phash, "dhash": imagehash.dhash}
    return {m: _bits_to_uint64(functions[m](image).hash) for m in methods}


def _hash_one(
    item: tuple[int, str], methods: Sequence[str]
) -> tuple[int, str, dict[str, np.uint64] | None, str | None]:
    """(sample_id, uri) -> hashes or the reason it failed; every failure is data, never an exception."""
    sample_id, uri = item
    try:
        return sample_id, uri, hash_image(_load_grey(media.read_bytes(uri)), methods), None
    except FileNotFoundError:
        return sample_id, uri, None, "file not found"
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on bad bytes; each is one unreadable image
        return sample_id, uri, None, f"{type(exc).__name__}: {exc}"


def hash_images(
    items: Iterable[tuple[int, str]],
    methods: Sequence[str] = METHODS,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
    write: Callable[[np.ndarray, dict[str, np.ndarray]], None] | None = None,
    write_every: int = _WRITE_EVERY,
) -> tuple[np.ndarray, dict[str, np.ndarray], HashSummary]:
    """Hash (sample_id, uri) pairs with a thread pool; returns (ids, {method: uint64 hashes}, summary).

    ``write(ids, hashes)`` receives every ``write_every`` results as they come, so an interrupted run keeps its
    work; the returned arrays hold everything hashed in this call.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown hash method(s) {unknown}; choose from {list(METHODS)}")
    started = time.perf_counter()
    todo = list(items)
    summary = HashSummary()
    all_ids: list[np.ndarray] = []
    all_hashes: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    pending_ids: list[int] = []
    pending: dict[str, list[np.uint64]] = {m: [] for m in methods}

    def flush() -> None:
        if not pending_ids:
            return
        ids = np.asarray(pending_ids, np.int64)
        hashes = {m: np.asarray(v, np.uint64) for m, v in pending.items()}
        if write is not None:
            write(ids, hashes)
        all_ids.append(ids)
        for m in methods:
            all_hashes[m].append(hashes[m])
        pending_ids.clear()
        for v in pending.values():
            v.clear()

    chunk = max(64, 16 * max(1, workers))
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="vl-hash") as pool:
        for start in range(0, len(todo), chunk):
            for sample_id, uri, hashes, error in pool.map(
                lambda it: _hash_one(it, methods), todo[start : start + chunk]
            ):
                if hashes is None:
                    summary.failed.append((sample_id, uri, error or "unknown error"))
                    continue
                pending_ids.append(sample_id)
                for m in methods:
                    pending[m].append(hashes[m])
            if len(pending_ids) >= write_every:
                flush()
            if progress:
                progress(min(start + chunk, len(todo)), len(todo))
    flush()
    ids = np.concatenate(all_ids) if all_ids else np.empty(0, np.int64)
    out = {m: np.concatenate(v) if v else np.empty(0, np.uint64) for m, v in all_hashes.items()}
    summary.hashed = len(ids)
    summary.seconds = time.perf_counter() - started
    return ids, out, summary


def hash_dataset(
    store: Any,
    dataset_id: int,
    progress: ProgressCallback = no_progress,
    workers: int = 2,
    methods: Sequence[str] = METHODS,
) -> HashSummary:
    """Hash every image of a dataset that lacks a hash of one of ``methods``; store them as uint64.

    Resumable: images hashed by every method are skipped (``summary.skipped``), results are stored every
    few thousand images. Unreadable images are in ``summary.failed`` and logged once, with a few examples.
    """
    row = store.dataset_by_id(dataset_id)
    index, ids = store.sample_index(dataset_id)
    done: np.ndarray | None = None
    for m in methods:
        have = store.image_hashes(dataset_id, m)[0]
        done = have if done is None else np.intersect1d(done, have)
    todo_mask = ~np.isin(ids, done if done is not None else np.empty(0, np.int64))
    items = [(int(i), media.join(row.root, p)) for i, p, t in zip(ids, index.filepath, todo_mask) if t]

    def write(batch_ids: np.ndarray, hashes: dict[str, np.ndarray]) -> None:
        for m, h in hashes.items():
            store.write_image_hashes(dataset_id, batch_ids, h, m)

    progress("hash images", 0, len(items))
    _, _, summary = hash_images(items, methods, workers, lambda d, t: progress("hash images", d, t), write)
    summary.skipped = int(len(ids) - len(items))
    if summary.failed:
        examples = "; ".join(f"{uri}: {why}" for _, uri, why in summary.failed[:3])
        log.warning(
            "%d of %d images could not be hashed (they are left out of duplicate search), e.g. %s",
            len(summary.failed),
            len(items),
            examples,
        )
    return summary


def compute_hashes(
    store: Any,
    dataset_id: int,
    progress: ProgressCallback = no_progress,
    workers: int = 2,
    methods: Sequence[str] = METHODS,
) -> int:
    """Hash the dataset's images not hashed yet (see ``hash_dataset``); returns how many were hashed now.

    Unreadable images are logged with a count and examples; ``hash_dataset`` returns them as a list.
    """
    return hash_dataset(store, dataset_id, progress, workers, methods).hashed


_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise Hamming distance of uint64 hashes, element-wise (broadcasting), as uint8."""
    x = np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64))
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.uint8, copy=False)
    x = np.ascontiguousarray(x)
    return _POPCOUNT8[x.view(np.uint8)].reshape(*x.shape, 8).sum(-1, dtype=np.uint8)
