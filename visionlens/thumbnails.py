"""Thumbnails for the image grid and the detail view.

The grid shows up to a million samples, so thumbnails are generated on demand, kept on disk and shared by
every browser session of every process. A broken source image must never break the page: every failure
becomes a placeholder tile plus a flag the caller can log.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import fsspec
import numpy as np
from PIL import Image, ImageDraw, ImageOps

__all__ = [
    "PregenerateStats",
    "ThumbResult",
    "ThumbnailCache",
    "full_image",
    "placeholder_jpeg",
    "render_jpeg",
]

log = logging.getLogger(__name__)

# Bump when the rendering changes so old cache files are not served for new code.
_RENDER_VERSION = "1"
_THUMB_QUALITY = 80
_FULL_QUALITY = 90
_LOCK_STRIPES = 64
# A temp file older than this is a crashed writer's leftover, not a write in progress.
_STALE_TEMP_SECONDS = 3600
_TEMP_PREFIX = ".tmp-"
# SIDE/xx/KEY.jpg, or a writer's temp file next to it: the only names housekeeping ever lists or deletes.
_CACHE_FILE_RE = re.compile(r"^[0-9]+/[0-9a-f]{2}/(?:[0-9a-f]{40}|\.tmp-[A-Za-z0-9_]+)\.jpg$")


@dataclass(frozen=True, slots=True)
class ThumbResult:
    """A JPEG plus what the caller needs to log or debug it.

    `placeholder` is True when the source was missing or undecodable; `error` then says why.
    `decoded_size` is the pixel size Pillow actually decoded (smaller than the source when JPEG draft
    mode kicked in); it is None for cache hits and placeholders.
    """

    data: bytes
    placeholder: bool = False
    from_cache: bool = False
    error: str | None = None
    decoded_size: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class PregenerateStats:
    """Counts from `ThumbnailCache.pregenerate`, for the CLI to print."""

    total: int
    generated: int
    cached: int
    placeholders: int


_placeholder_lock = threading.Lock()
_placeholders: dict[int, bytes] = {}


def placeholder_jpeg(max_side: int) -> bytes:
    """Grey tile with a broken-picture mark; built once per size because it is served for every failure."""
    with _placeholder_lock:
        cached = _placeholders.get(max_side)
        if cached is not None:
            return cached
        s = max(16, int(max_side))
        im = Image.new("RGB", (s, s), (58, 58, 62))
        d = ImageDraw.Draw(im)
        m, w = s // 4, max(1, s // 48)
        frame = (m, m, s - m, s - m)
        d.rectangle(frame, outline=(150, 150, 156), width=w)
        # a little landscape: sun and mountain, then a crack through the frame
        r = max(2, s // 20)
        d.ellipse((m + 2 * r, m + 2 * r, m + 4 * r, m + 4 * r), fill=(150, 150, 156))
        d.polygon([(m + w, s - m - w), (s // 2 - r, s // 2), (s - m - w, s - m - w)], fill=(110, 110, 116))
        crack = [(s // 2 + r, m - w), (s // 2 - r, s // 2 - r), (s // 2 + r, s // 2 + r), (s // 2 - r, s - m + w)]
        d.line(crack, fill=(58, 58, 62), width=3 * w)
        d.line(crack, fill=(210, 80, 80), width=w)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=_THUMB_QUALITY)
        _placeholders[max_side] = data = buf.getvalue()
        return data


def _to_rgb(im: Image.Image) -> Image.Image:
    """Flatten every mode Pillow can hand us into 8-bit RGB without clipping or black backgrounds."""
    if im.mode == "RGB":
        return im
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        # Pillow's own convert() clips 16/32-bit values at 255, which turns most 16-bit images white.
        a = np.asarray(im, dtype=np.float64)
        if im.mode.startswith("I;16"):
            a = a / 257.0
        else:
            lo, hi = float(a.min()), float(a.max())
            if lo < 0 or hi > 255:
                a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        return Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, im).convert("RGB")
    return im.convert("RGB")


def render_jpeg(data: bytes, max_side: int, quality: int = _THUMB_QUALITY) -> tuple[bytes, tuple[int, int]]:
    """Decode image bytes, fit them in a max_side square upright and in RGB, and encode as JPEG.

    Returns the JPEG and the size that was decoded. Raises on undecodable input (callers turn that into
    a placeholder).
    """
    with Image.open(io.BytesIO(data)) as im:
        # Draft lets libjpeg decode at 1/2, 1/4 or 1/8 scale: a 24 MP photo then costs a fraction of
        # a full decode. It never goes below the target size, so quality is kept.
        scale = max_side / max(im.size)
        if scale < 1:
            im.draft("RGB", (max(1, round(im.width * scale)), max(1, round(im.height * scale))))
        im.load()
        decoded = im.size
        im = ImageOps.exif_transpose(im)
        im = _to_rgb(im)
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality)
    return buf.getvalue(), decoded


def _read(uri: str) -> bytes:
    with fsspec.open(uri, "rb") as f:
        return f.read()


def _local_path(uri: str) -> str | None:
    protocol, path = fsspec.core.split_protocol(uri)
    return path if protocol in (None, "file", "local") else None


def full_image(uri: str, max_side: int = 2048, quality: int = _FULL_QUALITY) -> ThumbResult:
    """The detail view's image at viewport resolution; same orientation and placeholder rules, no disk cache
    (one image at a time is cheap, and caching every viewport size would bloat the cache)."""
    try:
        data, decoded = render_jpeg(_read(uri), max_side, quality)
        return ThumbResult(data, decoded_size=decoded)
    except Exception as exc:  # noqa: BLE001 - any decoder/IO failure must become a placeholder
        log.debug("full image %s failed: %s", uri, exc)
        return ThumbResult(placeholder_jpeg(max_side), placeholder=True, error=f"{type(exc).__name__}: {exc}")


class ThumbnailCache:
    """Disk cache of JPEG thumbnails, safe to share between threads, sessions and processes.

    Cache files are keyed by a hash of uri, size and, for local files, mtime and byte size (a stat is
    cheap locally; for remote URIs it would be a network round trip, so remote objects are treated as
    immutable). Files are written to a temp file and renamed, so a reader never sees half a JPEG.
    Placeholders are not cached on disk, so an image that appears or gets fixed later shows up.
    """

    def __init__(self, cache_dir: str | os.PathLike[str], size: int = 256) -> None:
        self.cache_dir = Path(cache_dir)
        self.size = int(size)
        # Striped locks: concurrent requests for the same thumbnail in one process decode it once.
        self._locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]

    def path_for(self, uri: str, max_side: int | None = None) -> Path | None:
        """Where the thumbnail for uri lives (or would live); None when a local source file is missing."""
        fingerprint = _fingerprint(uri)
        if fingerprint is None:
            return None
        return self.cache_dir / _relative_path(uri, int(max_side or self.size), fingerprint)

    # -- housekeeping: which files belong to which images ----------------------------------------------------------
    #
    # A cache file's name is a hash of its source, so the only way to know whose file it is, is to hash every
    # known source again. Deleting a dataset and `visionlens doctor` both do that, for every size on disk.

    def sizes(self) -> list[int]:
        """Thumbnail sides that have a folder in the cache (the grid may have asked for more than one size)."""
        try:
            entries = list(os.scandir(self.cache_dir))
        except OSError:
            return []
        return sorted(int(e.name) for e in entries if e.name.isdigit() and e.is_dir(follow_symlinks=False))

    def keys_for(self, uris: Iterable[str], sizes: Iterable[int] | None = None) -> set[str]:
        """Cache file paths (relative to ``cache_dir``) these sources have or would have, at every size on disk.

        A local source that is gone has no key: its old cache files can no longer be named, and only a full
        scan (``stray_files``) finds them.
        """
        sides = list(self.sizes() if sizes is None else sizes)
        keys: set[str] = set()
        if not sides:
            return keys
        for uri in uris:
            fingerprint = _fingerprint(uri)
            if fingerprint is not None:
                keys.update(_relative_path(uri, side, fingerprint) for side in sides)
        return keys

    def remove(self, uris: Iterable[str]) -> int:
        """Delete the cached thumbnails of these sources at every size; returns how many files went."""
        return self.remove_files(self.keys_for(uris))

    def files(self) -> Iterator[str]:
        """Every file in the cache layout (``SIDE/xx/KEY.jpg``, and writers' temp files), as relative paths.

        Anything else in the folder is not ours and is never listed, so it is never deleted.
        """
        for side in self.sizes():
            for sub in _scandir(self.cache_dir / str(side)):
                if not sub.is_dir(follow_symlinks=False):
                    continue
                for entry in _scandir(Path(sub.path)):
                    rel = f"{side}/{sub.name}/{entry.name}"
                    if _CACHE_FILE_RE.match(rel) and entry.is_file(follow_symlinks=False):
                        yield rel

    def stray_files(self, uris: Iterable[str]) -> list[str]:
        """Cache files of no source in ``uris`` (deleted samples, changed or vanished images, crashed writes).

        Temp files younger than an hour are skipped: another process may be writing them right now.
        """
        expected = self.keys_for(uris)
        now = time.time()
        stray = []
        for rel in self.files():
            if rel in expected:
                continue
            if rel.rsplit("/", 1)[-1].startswith(_TEMP_PREFIX):
                try:
                    if now - (self.cache_dir / rel).stat().st_mtime < _STALE_TEMP_SECONDS:
                        continue
                except FileNotFoundError:
                    continue
            stray.append(rel)
        return sorted(stray)

    def remove_files(self, relative_paths: Iterable[str]) -> int:
        """Delete cache files named as ``files`` names them; returns how many went. Other names are refused, so
        a bad caller cannot delete outside the cache."""
        removed = 0
        for rel in relative_paths:
            if not _CACHE_FILE_RE.match(rel):
                raise ValueError(f"{rel!r} is not a thumbnail cache file name")
            try:
                (self.cache_dir / rel).unlink()
                removed += 1
            except FileNotFoundError:
                pass
        return removed

    def cached(self, uri: str, max_side: int | None = None) -> bytes | None:
        """The thumbnail's bytes when it is on disk already, else None (nothing is rendered; never raises): a
        stat of a local source and one small read, cheap enough for the image route to answer on its event loop."""
        try:
            path = self.path_for(uri, max_side)
            return None if path is None else _read_if_exists(path)
        except OSError:
            return None

    def get(self, uri: str, sample_id: int, max_side: int | None = None) -> ThumbResult:
        """Thumbnail JPEG for one sample; never raises. sample_id only labels log lines."""
        side = int(max_side or self.size)
        try:
            path = self.path_for(uri, side)
            if path is None:
                raise FileNotFoundError(uri)
            hit = _read_if_exists(path)
            if hit is not None:
                return ThumbResult(hit, from_cache=True)
            with self._locks[int(path.stem[:8], 16) % _LOCK_STRIPES]:
                hit = _read_if_exists(path)  # another thread may have written it while we waited
                if hit is not None:
                    return ThumbResult(hit, from_cache=True)
                data, decoded = render_jpeg(_read(uri), side)
                _atomic_write(path, data)
            return ThumbResult(data, decoded_size=decoded)
        except Exception as exc:  # noqa: BLE001 - any decoder/IO failure must become a placeholder
            log.debug("thumbnail for sample %s (%s) failed: %s", sample_id, uri, exc)
            return ThumbResult(placeholder_jpeg(side), placeholder=True, error=f"{type(exc).__name__}: {exc}")

    def pregenerate(
        self,
        items: Iterable[tuple[int, str]],
        progress: Callable[[int, int], None] | None = None,
        workers: int = 2,
        max_side: int | None = None,
    ) -> PregenerateStats:
        """Fill the cache ahead of browsing. Threads suffice: Pillow releases the GIL while decoding,
        resizing and encoding. At most a few tasks are in flight, so a million items cost no memory."""
        todo = items if hasattr(items, "__len__") else list(items)
        total = len(todo)  # type: ignore[arg-type]
        done = generated = cached = placeholders = 0
        in_flight: set[Future[ThumbResult]] = set()

        def collect(futures: Iterable[Future[ThumbResult]]) -> None:
            nonlocal done, generated, cached, placeholders
            for fut in futures:
                res = fut.result()
                done += 1
                if res.placeholder:
                    placeholders += 1
                elif res.from_cache:
                    cached += 1
                else:
                    generated += 1
                if progress is not None:
                    progress(done, total)

        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="thumbs") as pool:
            for sample_id, uri in todo:
                if len(in_flight) >= 4 * max(1, workers):
                    finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    collect(finished)
                in_flight.add(pool.submit(self.get, uri, sample_id, max_side))
            collect(wait(in_flight).done)
        return PregenerateStats(total, generated, cached, placeholders)


def _fingerprint(uri: str) -> str | None:
    """What besides the uri keys a cache file: a local file's mtime and size (None when it is missing)."""
    local = _local_path(uri)
    if local is None:
        return ""
    try:
        st = os.stat(local)
    except OSError:
        return None
    return f"{st.st_mtime_ns}:{st.st_size}"


def _relative_path(uri: str, side: int, fingerprint: str) -> str:
    key = hashlib.blake2b(f"{_RENDER_VERSION}\0{uri}\0{side}\0{fingerprint}".encode(), digest_size=20).hexdigest()
    return f"{side}/{key[:2]}/{key}.jpg"


def _scandir(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return list(it)
    except OSError:
        return []


def _read_if_exists(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TEMP_PREFIX, suffix=".jpg")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
