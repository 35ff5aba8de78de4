"""Process-wide resources shared by every session: the DuckDB store and the thumbnail cache.

DuckDB allows one connection per process and the thumbnail cache is a disk directory, so both are created once
and every session takes cursors / reads files through them.
"""

from __future__ import annotations

import threading

from ..config import get_settings
from ..store.metadata import MetadataStore, open_store
from ..thumbnails import ThumbnailCache

_lock = threading.Lock()
_thumbs: dict[str, ThumbnailCache] = {}


def store() -> MetadataStore:
    return open_store()


def thumbnails() -> ThumbnailCache:
    settings = get_settings()
    key = str(settings.thumbnails)
    with _lock:
        cache = _thumbs.get(key)
        if cache is None:
            cache = _thumbs[key] = ThumbnailCache(settings.thumbnails, settings.thumbnail_size)
        return cache
