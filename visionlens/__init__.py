"""VisionLens: look inside computer-vision datasets.

import visionlens as vl
ds = vl.ingest("coco/", name="coco", predictions={"yolo": "preds.json"})
ds.count({"split": "val", "annotations": [{"source": "yolo", "labels": ["car"], "confidence": {"max": 0.5}}]})
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .dataset import Dataset, delete_dataset, list_datasets, load
from .errors import DatasetExistsError, DatasetNotFoundError, FilterError, IngestError, VisionLensError
from .query import FieldFilter, Filters, LabelFilter, Range, Sort

__all__ = [
    "Dataset",
    "app",
    "DatasetExistsError",
    "DatasetNotFoundError",
    "FieldFilter",
    "FilterError",
    "Filters",
    "IngestError",
    "LabelFilter",
    "Range",
    "Sort",
    "VisionLensError",
    "delete_dataset",
    "ingest",
    "list_datasets",
    "load",
]


def app(dataset: Any = None, height: int = 900) -> Any:
    """The VisionLens app as a notebook cell: ``vl.app(ds)``."""
    from .ui.app import notebook_app

    return notebook_app(dataset, height)


def ingest(
    path: str | Path,
    name: str,
    format: str = "auto",
    images: str | Path | None = None,
    predictions: dict[str, str | Path] | None = None,
    replace: bool = False,
    store: Any = None,
    progress: Any = None,
) -> Dataset:
    """Read a COCO/YOLO/VOC dataset (local path or ``gs://``) and any models' predictions into the store."""
    from .formats.base import no_progress
    from .ingestion import ingest as _ingest
    from .store.metadata import open_store

    store = store or open_store()
    _ingest(store, path, name, format, images, predictions, replace=replace, progress=progress or no_progress)
    return load(name, store)
