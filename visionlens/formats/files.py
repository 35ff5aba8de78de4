"""File-level checks the readers share: image headers, links that leave the dataset folder, repeated listings.

Ingestion is all-or-nothing, so one unreadable image must never stop it: such problems become issues on the sample
(kept, flagged ``missing``). Annotation files are different: a reader cannot guess what a file it may not read says,
so a link out of the dataset folder there is an error naming the file.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import media
from ..errors import IngestError
from .base import Issue, ProgressCallback

Location = Callable[[int], str]


def read_sizes(
    folder: str,
    relpaths: Sequence[str],
    todo: np.ndarray,
    width: np.ndarray,
    height: np.ndarray,
    missing: np.ndarray,
    progress: ProgressCallback,
    location: Location,
) -> list[Issue]:
    """Fill ``width``/``height`` of the samples ``todo`` from their image headers, in place.

    An image whose header cannot be read (corrupt, empty, truncated, a decompression bomb) keeps its sample, flagged
    ``missing`` with size 0 (unknown), and gets an ``unreadable_image`` issue: the other samples must not be lost
    to one bad file. An image above Pillow's pixel limit keeps its size and gets a ``large_image`` issue, since
    decoding it for a thumbnail may be refused or costly. Headers are read on threads: on a bucket each read is a
    round trip.
    """
    todo = np.asarray(todo, np.int64)
    n = len(todo)
    errors: dict[int, str] = {}

    def one(i: int) -> None:
        try:
            width[i], height[i] = media.image_size(media.join(folder, relpaths[i]))
        except media.UnreadableImageError as e:
            errors[i] = e.reason

    if n:
        workers = 16 if media.is_remote(folder) else 4
        with ThreadPoolExecutor(workers) as pool:
            for done, _ in enumerate(pool.map(one, todo.tolist())):
                if done % 1000 == 0:
                    progress("read image sizes", done, n)
        progress("read image sizes", n, n)
    issues = []
    for i in sorted(errors):
        missing[i] = True
        width[i] = height[i] = 0
        issues.append(Issue("unreadable_image", media.join(folder, relpaths[i]), location(i), errors[i]))
    for i in todo.tolist():
        if i not in errors and media.exceeds_pixel_limit(width[i], height[i]):
            issues.append(
                Issue(
                    "large_image",
                    media.join(folder, relpaths[i]),
                    location(i),
                    f"{int(width[i])}x{int(height[i])} pixels is above Pillow's limit of "
                    f"{media.pixel_limit()} (a possible decompression bomb); kept, but its thumbnail may not be drawn",
                )
            )
    return issues


def flag_links_outside(
    folder: str, relpaths: Sequence[str], root: str, missing: np.ndarray, location: Location
) -> list[Issue]:
    """Flag as ``missing`` the images that are links to a place outside ``root``, with an ``outside_root`` issue each.

    The sample is kept so its annotations still count, but nothing will read the file: on a shared server that
    link could point at anyone's data. An image folder elsewhere can be ingested by naming it (``images=``).
    """
    escaped = media.links_outside(folder, relpaths, root)
    issues = []
    for i in sorted(escaped):
        missing[i] = True
        issues.append(
            Issue(
                "outside_root",
                media.join(folder, relpaths[i]),
                location(i),
                f"the file is a link to {escaped[i]!r}, outside the dataset folder {root!r}; not read (pass images= "
                "to ingest an image folder that lives elsewhere)",
            )
        )
    return issues


def refuse_links_outside(folder: str, relpaths: Sequence[str], root: str) -> None:
    """Stop on an annotation file that is a link out of ``root``: reading it could show another user's file."""
    escaped = media.links_outside(folder, relpaths, root)
    if escaped:
        i = min(escaped)
        more = f" ({len(escaped) - 1} more such files)" if len(escaped) > 1 else ""
        raise IngestError(
            f"this annotation file is a link to {escaped[i]!r}, outside the dataset folder {root!r}; refusing to "
            f"read it{more}",
            media.join(folder, relpaths[i]),
        )


def first_repeat(keys: Sequence[Hashable]) -> tuple[int, int] | None:
    """Positions of the first key seen twice (its first and second occurrence), or None."""
    seen: dict[Hashable, int] = {}
    for i, k in enumerate(keys):
        j = seen.setdefault(k, i)
        if j != i:
            return j, i
    return None


_MAX_SIDE = 2**31 - 1  # the samples table stores sizes as INTEGER


def declared_size(value: object, file: str, location: str) -> tuple[int, Issue | None]:
    """An image width or height as an annotation file declares it; 0 means unknown (read from the header later).

    Absent (None, empty) is unknown. Something that is not a number is an error naming the field. A number that
    is no size (NaN, infinite, negative, beyond the column's range) becomes unknown with a ``bad_image_size``
    issue, so the true size is read from the image instead of a traceback or a wrong size.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return 0, None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise IngestError(f"image size must be a number, got {value!r}", file, location)
    try:
        number = float(value)
    except ValueError:
        raise IngestError(f"image size must be a number, got {value!r}", file, location) from None
    if not np.isfinite(number) or number < 0 or number > _MAX_SIDE:
        message = f"image size {value!r} is not a size; read from the image instead"
        issue = Issue("bad_image_size", file, location, message)
        return 0, issue
    return int(number), None


def refuse_outside(uri: str, root: str, what: str) -> None:
    """Stop on a configuration file (``data.yaml``, ``classes.txt``, a split list) that resolves outside ``root``."""
    if not media.is_within(uri, root):
        raise IngestError(
            f"this {what} leads to {media.normalize(uri)!r}, outside the dataset folder {root!r}; refusing to read it",
            uri,
        )


def skipped_folder_issues(root: str, skipped: Sequence[str]) -> list[Issue]:
    """One ``outside_root`` issue per folder link that ``media.find_files`` did not follow out of the dataset."""
    return [
        Issue(
            "outside_root",
            media.join(root, rel),
            "",
            "this folder is a link to a place outside the dataset folder; nothing in it was read",
        )
        for rel in skipped
    ]
