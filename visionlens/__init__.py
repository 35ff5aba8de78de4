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
    "launch_app",
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

    if store is None:
        from .client import Client, connect

        backend = connect()
        if isinstance(backend, Client):
            preds = {m: str(p) for m, p in (predictions or {}).items()}
            backend.ingest(str(path), name, format, images and str(images), preds, replace, progress or no_progress)
            return load(name)
        store = backend.store
    _ingest(store, path, name, format, images, predictions, replace=replace, progress=progress or no_progress)
    return load(name, store)


def launch_app(dataset: Any = None, port: int = 5006, address: str = "127.0.0.1", **serve_kwargs: Any) -> Any:
    """Serve the app from this Python process (a notebook, a script) in a background thread: code here and the
    open page share one store, so what this process ingests or evaluates shows in the page. Returns the server
    (``.url``, ``.stop()``); other processes reach it through its HTTP API."""
    from .server.mount import launch_app as _launch

    return _launch(dataset, port=port, address=address, **serve_kwargs)
