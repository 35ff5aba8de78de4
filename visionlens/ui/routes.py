"""HTTP routes of the app: thumbnails and viewport-size images, by dataset and sample id.

Mounted by the app itself on the server that runs it (``server.mount``), so ``panel serve apps/browse.py`` needs
no flag; ``--plugins visionlens.ui.routes`` and ``pn.serve(..., extra_patterns=ROUTES)`` still work. An added
route bypasses ``--basic-auth``/OAuth unless it asks the server's auth provider itself, so the handler derives
from Bokeh's ``AuthRequestHandler`` and is ``@authenticated``. Requests name a sample id, never a path, so nothing outside a dataset can be read.
"""

from __future__ import annotations

import asyncio

from bokeh.server.views.auth_request_handler import AuthRequestHandler
from tornado.web import HTTPError, authenticated

from .. import media
from ..errors import DatasetNotFoundError
from ..server import fair_start
from ..store.metadata import MetadataStore
from ..thumbnails import ThumbResult, full_image
from . import resources

THUMB_PREFIX = "/vl/thumb"
IMAGE_PREFIX = "/vl/image"


def thumb_url(dataset_id: int, sample_id: int, prefix: str = "") -> str:
    return f"{prefix}{THUMB_PREFIX}/{dataset_id}/{sample_id}"


def image_url(dataset_id: int, sample_id: int, max_side: int = 1600, prefix: str = "") -> str:
    return f"{prefix}{IMAGE_PREFIX}/{dataset_id}/{sample_id}?max={max_side}"


NEIGHBOURS = 128
"""Ids read along with a sample the memory does not know: its neighbours in the default order, which a page asks for
next, cost the same range read."""
_ID_MAX = 2**63 - 1


def sample_uri(dataset_id: int, sample_id: int) -> str:
    """The image file of a sample, resolved through the store so that only dataset files are ever read.

    From memory when a grid window or an earlier request read it since the store's last write (a query per tile
    made every request wait on the store); otherwise one range read of it and its id neighbours, remembered.
    """
    if not (0 <= dataset_id <= _ID_MAX and 0 <= sample_id <= _ID_MAX):
        raise KeyError(sample_id)  # no store id is this large: a 404, not a database error
    store = resources.store()
    uri = resources.cached_sample_uri(store, dataset_id, sample_id)
    return uri if uri is not None else _look_up(store, dataset_id, sample_id)


def _look_up(store: MetadataStore, dataset_id: int, sample_id: int) -> str:
    """Read the sample's file and its neighbours' (one indexed range of this dataset's rows) and remember them."""
    generation = store.generation  # before the read: rows read while a write commits must not be filed as current
    first = max(0, sample_id - NEIGHBOURS // 2)
    rows = store.sample_files(dataset_id, first, first + NEIGHBOURS - 1)
    uris = {sid: media.join(root, path) for sid, root, path in rows}
    resources.sample_uris(store).put(generation, ((dataset_id, sid, uri) for sid, uri in uris.items()))
    return uris[sample_id]  # KeyError: no such sample in this dataset


def _thumbnail(dataset_id: int, sample_id: int, side: int) -> ThumbResult:
    """The grid's thumbnail; the lookup and the disk read in one trip to a worker thread."""
    return resources.thumbnails().get(sample_uri(dataset_id, sample_id), sample_id)


def _thumbnail_if_cached(dataset_id: int, sample_id: int) -> bytes | None:
    """A thumbnail known to the page and already on disk, or None: the common case, answered without a trip to a
    worker thread (that trip cost more than the read, on the interpreter every session shares)."""
    db = resources.store_if_open()  # opening the database is work for a worker thread, not the loop
    if db is None or not (0 <= dataset_id <= _ID_MAX and 0 <= sample_id <= _ID_MAX):
        return None
    uri = resources.cached_sample_uri(db, dataset_id, sample_id)
    return None if uri is None else resources.thumbnails().cached(uri)


def _full_image(dataset_id: int, sample_id: int, side: int) -> ThumbResult:
    """The detail view's image at ``side`` pixels, rendered from the source file every time."""
    return full_image(sample_uri(dataset_id, sample_id), side)


MAX_SIDE = (64, 4096)


class _ImageHandler(AuthRequestHandler):
    full = False

    def _max_side(self) -> int | None:
        """``?max=`` in pixels, clamped to MAX_SIDE; None (after a 400 answer) when it is not a whole number."""
        raw = self.get_argument("max", "1600")
        try:
            side = int(raw)
        except ValueError:
            self.set_status(400)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish(
                f"max must be a whole number of pixels between {MAX_SIDE[0]} and {MAX_SIDE[1]}, e.g. ?max=1600\n"
            )
            return None
        return min(MAX_SIDE[1], max(MAX_SIDE[0], side))

    @authenticated
    async def get(self, dataset_id: str, sample_id: str) -> None:
        side = self._max_side()  # checked on both routes, though only the full image uses it
        if side is None:
            return
        from ..server.mount import mount_for

        mount_for(
            self.application, self.request
        )  # served through --plugins before any page: this process owns the file now
        render, cache = (_full_image, "private, max-age=300") if self.full else (_thumbnail, "private, max-age=86400")
        with fair_start.answering():
            known = None if self.full else _thumbnail_if_cached(int(dataset_id), int(sample_id))
        if known is not None:
            self.set_header("Content-Type", "image/jpeg")
            self.set_header("Cache-Control", cache)
            self.write(known)
            return
        with fair_start.answering():  # a new session's build waits until this image is out
            try:  # store and disk work: off the event loop, which every session shares
                result = await asyncio.get_running_loop().run_in_executor(
                    None, render, int(dataset_id), int(sample_id), side
                )
            except (KeyError, ValueError, DatasetNotFoundError):
                raise HTTPError(404) from None
            self.set_header("Content-Type", "image/jpeg")
            self.set_header("Cache-Control", "no-store" if result.placeholder else cache)
            if result.placeholder:
                self.set_header("X-VisionLens-Placeholder", "1")
            self.write(result.data)
            await self.flush()


class ThumbnailHandler(_ImageHandler):
    full = False


class ImageHandler(_ImageHandler):
    full = True


ROUTES = [
    (rf"{THUMB_PREFIX}/(\d+)/(\d+)", ThumbnailHandler, {}),
    (rf"{IMAGE_PREFIX}/(\d+)/(\d+)", ImageHandler, {}),
]
