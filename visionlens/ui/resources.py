"""Process-wide resources shared by every session: the DuckDB store, the thumbnail cache, and where samples' images
are.

DuckDB allows one connection per process and the thumbnail cache is a disk directory, so both are created once
and every session takes cursors / reads files through them. The image routes answer one request per tile, so what
they need per request (settings, the sample's file) is kept in memory here rather than looked up every time.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Iterable
from typing import Any

from .. import media
from ..config import Settings, get_settings
from ..store.metadata import MetadataStore, open_store, open_store_if_open
from ..thumbnails import ThumbnailCache

_lock = threading.Lock()
_thumbs: dict[str, ThumbnailCache] = {}
_uris: weakref.WeakKeyDictionary[MetadataStore, SampleUris] = weakref.WeakKeyDictionary()

SAMPLE_URI_LIMIT = 65_536
"""Sample files kept per store: a few screens of every open session, about 15 MB."""


def settings() -> Settings:
    """The settings (``config.get_settings``: parsed again only when the environment changed)."""
    return get_settings()


def store() -> MetadataStore:
    return open_store(settings().database)


def store_if_open() -> MetadataStore | None:
    """The store when this process has it open already (what code on the event loop may use: no file is opened)."""
    return open_store_if_open(settings().database)


def thumbnails() -> ThumbnailCache:
    current = settings()
    key = str(current.thumbnails)
    with _lock:
        cache = _thumbs.get(key)
        if cache is None:
            cache = _thumbs[key] = ThumbnailCache(current.thumbnails, current.thumbnail_size)
        return cache


class SampleUris:
    """Image URI by (dataset id, sample id) for one store, valid while the store's generation stands.

    Every committed write bumps the generation and empties this, so a deleted or replaced dataset's files are never
    served from memory. Entries are filed under the generation read *before* the rows were: rows read while a
    write commits belong to a generation nobody asks for again. Bounded: the oldest entries go first.
    """

    def __init__(self, limit: int = SAMPLE_URI_LIMIT) -> None:
        self._lock = threading.Lock()
        self._limit = max(1, int(limit))
        self._generation = -1
        self._uris: dict[tuple[int, int], str] = {}

    def get(self, generation: int, dataset_id: int, sample_id: int) -> str | None:
        with self._lock:
            self._sync(generation)
            return self._uris.get((dataset_id, sample_id))

    def put(self, generation: int, entries: Iterable[tuple[int, int, str]]) -> None:
        """Remember ``(dataset id, sample id, uri)`` entries read from the store at ``generation``."""
        with self._lock:
            self._sync(generation)
            if generation != self._generation:
                return  # read before a write that has committed since
            for dataset_id, sample_id, uri in entries:
                key = (int(dataset_id), int(sample_id))
                self._uris.pop(key, None)  # re-inserted at the young end: what is on screen stays
                self._uris[key] = uri
            self._trim()

    def __len__(self) -> int:
        return len(self._uris)

    def _sync(self, generation: int) -> None:
        """Under the lock: a newer generation empties the cache (an older one is a late reader; it changes nothing)."""
        if generation > self._generation:
            self._uris.clear()
            self._generation = generation

    def _trim(self) -> None:
        excess = len(self._uris) - self._limit
        if excess > 0:  # a quarter at once, so a full cache is not trimmed on every put
            for key in list(itertools.islice(self._uris, excess + self._limit // 4)):
                del self._uris[key]


def sample_uris(db: MetadataStore) -> SampleUris:
    """The sample-file cache of this store (one per store object, dropped with it)."""
    with _lock:
        cache = _uris.get(db)
        if cache is None:
            cache = _uris[db] = SampleUris()
        return cache


def cached_sample_uri(db: MetadataStore, dataset_id: int, sample_id: int) -> str | None:
    """The image URI of a sample if a page or an earlier request read it since the store's last write."""
    return sample_uris(db).get(db.generation, dataset_id, sample_id)


def remember_sample_files(
    db: MetadataStore, generation: int, dataset_id: int, root: str, files: Iterable[tuple[int, str]]
) -> None:
    """Hand ``(sample id, file path)`` pairs that were read anyway (a grid window) to the image routes, so the
    thumbnails the browser asks for next need no store query. ``generation``: ``db.generation`` before the read."""
    sample_uris(db).put(generation, ((dataset_id, sid, media.join(root, path)) for sid, path in files))


def serve_without_mathjax() -> None:
    """Pages leave out Bokeh's MathJax bundle unless ``pn.extension("mathjax")`` asked for it.

    Panel adds it (1.8 MB of the page's 6.3 MB of JavaScript) to any page with an HTML pane, which every page of
    the app has, though nothing in it is TeX: each browser downloaded and compiled it before the first thumbnail,
    20 sessions opened at once 20 times over. A pane that does show TeX still gets it: Bokeh then fetches MathJax
    from its CDN. Idempotent; called when the app module is imported.
    """
    import panel.io.server as served

    bundle = served.bundle_resources
    if getattr(bundle, "_vl_no_mathjax", False):
        return

    def without_mathjax(*args: Any, enable_mathjax: Any = "auto", **kwargs: Any) -> Any:
        if enable_mathjax == "auto":
            from panel.config import panel_extension

            enable_mathjax = "mathjax" in panel_extension._loaded_extensions
        return bundle(*args, enable_mathjax=enable_mathjax, **kwargs)

    without_mathjax._vl_no_mathjax = True  # type: ignore[attr-defined]
    served.bundle_resources = without_mathjax
