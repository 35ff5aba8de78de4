"""File access through fsspec, so every reader works the same on local paths and ``gs://`` URIs."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable

import fsspec
import numpy as np
from fsspec.core import url_to_fs

from .errors import IngestError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def fs_path(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """Split a URI into its filesystem and the path that filesystem understands."""
    return url_to_fs(str(uri))


def is_remote(uri: str) -> bool:
    return "://" in str(uri) and not str(uri).startswith("file://")


def join(root: str, *parts: str) -> str:
    """Join with ``/`` whatever the filesystem, keeping the protocol of ``root``."""
    root = str(root).rstrip("/")
    rel = posixpath.join(*parts) if parts else ""
    return f"{root}/{rel}" if rel else root


def safe_relpath(name: str, file: str, location: str) -> str:
    """Normalise a file name from an annotation file; refuse names that leave the image root.

    A dataset is served to everyone who opens the app, so ``../../etc/passwd`` in a COCO ``file_name`` must never
    become a readable path.
    """
    if not isinstance(name, str) or not name.strip():
        raise IngestError(f"empty or non-text file name {name!r}", file, location)
    cleaned = name.replace("\\", "/")
    if cleaned.startswith("/") or "://" in cleaned or (len(cleaned) > 1 and cleaned[1] == ":"):
        raise IngestError(f"file name {name!r} is absolute; it must be relative to the image root", file, location)
    norm = posixpath.normpath(cleaned)
    if norm == ".." or norm.startswith("../"):
        raise IngestError(f"file name {name!r} escapes the image root", file, location)
    return norm


def read_bytes(uri: str) -> bytes:
    with fsspec.open(str(uri), "rb") as f:
        return f.read()


def decode_utf8(data: bytes, file: str) -> str:
    """Decode strictly: a latin-1 label file silently read as garbage labels is worse than an error."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise IngestError(
            f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); save the file as UTF-8",
            file,
            f"line {line}",
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def read_text(uri: str) -> str:
    try:
        return decode_utf8(read_bytes(uri), str(uri))
    except FileNotFoundError:
        raise IngestError("file not found", str(uri)) from None


def exists(uri: str) -> bool:
    fs, path = fs_path(uri)
    return fs.exists(path)


def isdir(uri: str) -> bool:
    fs, path = fs_path(uri)
    return fs.isdir(path)


def listdir(uri: str) -> list[str]:
    """Names (not paths) of the entries of a directory, sorted."""
    fs, path = fs_path(uri)
    if not fs.isdir(path):
        return []
    return sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False))


def find_files(root: str, extensions: Iterable[str] | None = None) -> list[str]:
    """All files under ``root`` as paths relative to it, listed in one recursive call (cheap on GCS)."""
    fs, path = fs_path(root)
    if not fs.isdir(path):
        return []
    base = path.rstrip("/") + "/"
    exts = tuple(e.lower() for e in extensions) if extensions else None
    out = []
    for p in fs.find(path):
        rel = p[len(base):] if p.startswith(base) else posixpath.relpath(p, path)
        if exts is None or rel.lower().endswith(exts):
            out.append(rel)
    return sorted(out)


def existing_mask(root: str, relpaths: list[str]) -> np.ndarray:
    """Which of ``relpaths`` exist under ``root``: one listing instead of one stat per image."""
    present = set(find_files(root))
    return np.fromiter((p in present for p in relpaths), dtype=bool, count=len(relpaths))


def image_size(uri: str) -> tuple[int, int]:
    """(width, height) from the image header only, after EXIF rotation, as annotation tools see the image."""
    from PIL import Image

    with fsspec.open(str(uri), "rb") as f, Image.open(f) as im:
        w, h = im.size
        try:
            orientation = im.getexif().get(0x0112, 1)
        except Exception:  # noqa: BLE001 - a broken EXIF block must not hide the size
            orientation = 1
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)
