"""HTTP routes of the app: thumbnails and viewport-size images, by dataset and sample id.

Served with ``panel serve apps/browse.py --plugins visionlens.ui.routes`` (the Makefile does this) or
``pn.serve(..., extra_patterns=ROUTES)``. A plugin route bypasses ``--basic-auth``/OAuth unless it asks the
server's auth provider itself, so the handler derives from Bokeh's ``AuthRequestHandler`` and is
``@authenticated``. Requests name a sample id, never a path, so nothing outside a dataset can be read.
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


class _ImageHandler(AuthRequestHandler):
    full = False

    @authenticated
    async def get(self, dataset_id: str, sample_id: str) -> None:
        try:
            uri = sample_uri(int(dataset_id), int(sample_id))
        except (KeyError, ValueError, DatasetNotFoundError):
            raise HTTPError(404) from None
        if self.full:
            from ..thumbnails import full_image

            side = min(4096, max(64, int(self.get_argument("max", "1600"))))
            result = await asyncio.get_running_loop().run_in_executor(None, full_image, uri, side)
            cache = "private, max-age=300"
        else:
            cache_obj = resources.thumbnails()
            result = await asyncio.get_running_loop().run_in_executor(None, cache_obj.get, uri, int(sample_id))
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
