"""Columnar records every format reader produces, and the reader interface.

Readers return columns (lists / numpy arrays), never per-row objects, so that a million boxes go to DuckDB through
Arrow in one step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

ProgressCallback = Callable[[str, int, int], None]
"""``progress(step, done, total)``; total 0 means unknown."""


def no_progress(step: str, done: int, total: int) -> None:
    return None


@dataclass
class Issue:
    """Something wrong with the input that did not stop the ingest (a missing image, a dropped box)."""

    kind: str
    file: str
    location: str
    message: str


@dataclass
class SampleRecords:
    filepath: list[str]
    width: np.ndarray
    height: np.ndarray
    split: list[str | None]
    ext_id: list[str]
    missing: np.ndarray
    custom: dict[str, list[Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.filepath)


@dataclass
class AnnotationRecords:
    """Boxes in absolute pixels, COCO xywh. ``sample_index`` points into the sample records of the ingest."""

    sample_index: np.ndarray
    label_index: np.ndarray
    bbox: np.ndarray  # float64[n, 4]
    confidence: np.ndarray | None = None
    iscrowd: np.ndarray | None = None
    area: np.ndarray | None = None
    polygon: list[Any] | None = None
    ext_id: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.sample_index)

    @classmethod
    def empty(cls) -> AnnotationRecords:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros((0, 4)))


@dataclass
class ParsedDataset:
    format: str
    root: str
    labels: list[str]
    samples: SampleRecords
    annotations: AnnotationRecords
    issues: list[Issue] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class SampleIndex:
    """What a prediction reader needs to know about samples already read: how to find one and its size."""

    filepath: list[str]
    ext_id: list[str]
    width: np.ndarray
    height: np.ndarray
    labels: list[str]
    label_ext_ids: list[str | None]

    def by_ext_id(self) -> dict[str, int]:
        """Ids as written by the source; ``split/id`` ids (several COCO files) also answer to the bare id when unique."""
        out = {e: i for i, e in enumerate(self.ext_id)}
        bare: dict[str, int] = {}
        clashes: set[str] = set()
        for i, e in enumerate(self.ext_id):
            if "/" in e:
                key = e.rsplit("/", 1)[1]
                if key in bare:
                    clashes.add(key)
                bare[key] = i
        for key, i in bare.items():
            if key not in clashes:
                out.setdefault(key, i)
        return out

    def by_stem(self) -> dict[str, int]:
        """Predictions files are usually keyed by the image's file name without extension."""
        import posixpath

        return {posixpath.splitext(posixpath.basename(p))[0]: i for i, p in enumerate(self.filepath)}

    def by_path(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.filepath)}

    def by_suffix(self) -> dict[str, int]:
        """Map every trailing run of path parts (extension dropped) to its sample; ambiguous keys map to -1.

        A predictions folder rarely mirrors the image folder exactly (``preds/val/a.txt`` for ``images/val/a.jpg``,
        or just ``a.txt``): matching on the longest unambiguous suffix finds the image either way.
        """
        import posixpath

        out: dict[str, int] = {}
        for i, p in enumerate(self.filepath):
            parts = [x for x in posixpath.splitext(p)[0].split("/") if x not in ("images", "labels", "JPEGImages")]
            for k in range(1, len(parts) + 1):
                key = "/".join(parts[-k:])
                out[key] = -1 if key in out and out[key] != i else i
        return out


@dataclass
class ParsedPredictions:
    annotations: AnnotationRecords
    new_labels: list[str]
    issues: list[Issue] = field(default_factory=list)


class FormatReader(Protocol):
    """A format is one module with one of these. ``detect`` must be cheap: it runs for every format on auto."""

    name: ClassVar[str]

    def detect(self, source: str) -> bool: ...

    def read(self, source: str, images: str | None, progress: ProgressCallback) -> ParsedDataset: ...

    def detect_predictions(self, source: str) -> bool: ...

    def read_predictions(self, source: str, index: SampleIndex, progress: ProgressCallback) -> ParsedPredictions: ...


def lookup_suffix(table: dict[str, int], relpath: str) -> int | None:
    """Find a sample for a predictions file by the longest unambiguous suffix of its path (see ``by_suffix``)."""
    import posixpath

    parts = [x for x in posixpath.splitext(relpath)[0].split("/") if x not in ("images", "labels", "JPEGImages")]
    for k in range(len(parts), 0, -1):
        hit = table.get("/".join(parts[-k:]))
        if hit is not None and hit >= 0:
            return hit
    return None
