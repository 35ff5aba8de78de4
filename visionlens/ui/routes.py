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

from ..errors import DatasetNotFoundError
from . import resources

THUMB_PREFIX = "/vl/thumb"
IMAGE_PREFIX = "/vl/image"


def thumb_url(dataset_id: int, sample_id: int, prefix: str = "") -> str:
    return f"{prefix}{THUMB_PREFIX}/{dataset_id}/{sample_id}"


def image_url(dataset_id: int, sample_id: int, max_side: int = 1600, prefix: str = "") -> str:
    return f"{prefix}{IMAGE_PREFIX}/{dataset_id}/{sample_id}?max={max_side}"


def sample_uri(dataset_id: int, sample_id: int) -> str:
    """The image file of a sample, resolved through the store so that only dataset files are ever read."""
    store = resources.store()
    row = store.dataset_by_id(dataset_id)
    rows = store.samples_by_id(dataset_id, [sample_id]).to_pylist()
    if not rows:
        raise KeyError(sample_id)
    from .. import media

    return media.join(row.root, rows[0]["filepath"])


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

        mount_for(self.application)  # served through --plugins before any page: this process owns the file now
        loop = asyncio.get_running_loop()
        try:  # a store query: off the event loop like the image work, which every session shares
            uri = await loop.run_in_executor(None, sample_uri, int(dataset_id), int(sample_id))
        except (KeyError, ValueError, DatasetNotFoundError):
            raise HTTPError(404) from None
        if self.full:
            from ..thumbnails import full_image

            result = await loop.run_in_executor(None, full_image, uri, side)
            cache = "private, max-age=300"
        else:
            cache_obj = resources.thumbnails()
            result = await loop.run_in_executor(None, cache_obj.get, uri, int(sample_id))
            cache = "private, max-age=86400"
        self.set_header("Content-Type", "image/jpeg")
        self.set_header("Cache-Control", "no-store" if result.placeholder else cache)
        if result.placeholder:
            self.set_header("X-VisionLens-Placeholder", "1")
        self.write(result.data)


class ThumbnailHandler(_ImageHandler):
    full = False


class ImageHandler(_ImageHandler):
    full = True


ROUTES = [
    (rf"{THUMB_PREFIX}/(\d+)/(\d+)", ThumbnailHandler, {}),
    (rf"{IMAGE_PREFIX}/(\d+)/(\d+)", ImageHandler, {}),
]
