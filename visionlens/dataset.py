"""The object a user holds: a named dataset in the store, with short methods for the usual questions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from . import media
from .formats.base import Issue, ProgressCallback, no_progress
from .query import Filters, LabelFilter, SavedView, Sort, as_filters
from .store.metadata import GROUND_TRUTH, DatasetRow, FieldInfo, MetadataStore


@dataclass
class Dataset:
    store: MetadataStore
    row: DatasetRow

    @property
    def id(self) -> int:
        return self.row.id

    @property
    def name(self) -> str:
        return self.row.name

    @property
    def root(self) -> str:
        return self.row.root

    @property
    def format(self) -> str:
        return self.row.format

    def __repr__(self) -> str:
        return f"<Dataset {self.name!r}: {self.count()} samples, models {self.models()}>"

    def uri(self, filepath: str) -> str:
        """Where a sample's image lives; the stored path is relative so a dataset can move with its root."""
        return media.join(self.root, filepath)

    def count(self, filters: Filters | dict[str, Any] | None = None) -> int:
        return self.store.count(self.id, as_filters(filters))

    def samples(
        self,
        filters: Filters | dict[str, Any] | None = None,
        limit: int = 100,
        offset: int = 0,
        sort_by: str = "id",
        descending: bool = False,
        as_: Literal["pandas", "arrow"] = "pandas",
    ) -> Any:
        table = self.store.page(self.id, as_filters(filters), Sort(field=sort_by, descending=descending), limit, offset)
        return table.to_pandas() if as_ == "pandas" else table

    def page(
        self,
        filters: Filters | dict[str, Any] | None = None,
        limit: int = 100,
        offset: int = 0,
        sort_by: str = "id",
        descending: bool = False,
    ) -> tuple[Any, int]:
        """(one page as pandas, total matching) from one filtered scan: what a paged UI asks for."""
        table, total = self.store.page_and_count(
            self.id, as_filters(filters), Sort(field=sort_by, descending=descending), limit, offset
        )
        return table.to_pandas(), total

    def sample_ids(
        self, filters: Filters | dict[str, Any] | None = None, sort_by: str = "id", descending: bool = False
    ) -> np.ndarray:
        return self.store.matching_ids(self.id, as_filters(filters), Sort(field=sort_by, descending=descending))

    def annotations(
        self,
        sample_ids: Any,
        sources: list[str] | None = None,
        as_: Literal["pandas", "arrow"] = "pandas",
        evaluation: str | None = None,
    ) -> Any:
        table: pa.Table = self.store.annotations(
            self.id, np.atleast_1d(np.asarray(sample_ids, np.int64)), sources, evaluation
        )
        return table.to_pandas() if as_ == "pandas" else table

    def fields(self) -> dict[str, FieldInfo]:
        return self.store.fields(self.id)

    def labels(self) -> list[str]:
        return list(self.store.label_ids(self.id))

    def models(self) -> list[str]:
        return [s for s in self.store.source_ids(self.id) if s != GROUND_TRUTH]

    def label_counts(
        self, source: str = GROUND_TRUTH, filters: Filters | dict[str, Any] | None = None
    ) -> list[tuple[str, int]]:
        return self.store.label_counts(self.id, source, as_filters(filters))

    def value_counts(self, field: str, filters: Filters | dict[str, Any] | None = None) -> list[tuple[Any, int]]:
        return self.store.value_counts(self.id, field, as_filters(filters))

    def issues(self) -> list[Issue]:
        return self.store.issues(self.id)

    def add_predictions(
        self,
        model: str,
        path: str | Path,
        format: str = "auto",
        replace: bool = False,
        progress: ProgressCallback = no_progress,
    ) -> int:
        from .ingestion import add_predictions

        preds = add_predictions(self.store, self.name, model, path, format, replace, progress)
        return len(preds.annotations)

    def evaluate(
        self, model: str, iou: float = 0.5, class_agnostic: bool = False, progress: ProgressCallback = no_progress
    ) -> Any:
        """COCO-exact evaluation of ``model``; per-object TP/FP/FN and per-sample counts are stored and filterable
        (fields ``<key>.tp``, ``<key>.fp``, ``<key>.fn``; ``{"annotations": [{"source": model, "status": ["fp"]}]}``)."""
        from .metrics import evaluate_model

        return evaluate_model(self.store, self.id, model, iou, class_agnostic, progress)

    def metrics(
        self,
        model: str,
        filters: Filters | dict[str, Any] | None = None,
        iou: float = 0.5,
        class_agnostic: bool = False,
    ) -> Any:
        """mAP, per-class AP, PR curves and confusion on any filtered subset, without storing anything."""
        from .metrics import subset_metrics

        return subset_metrics(self.store, self.id, model, as_filters(filters), iou, class_agnostic)

    def evaluations(self) -> list[dict[str, Any]]:
        return self.store.evaluations(self.id)

    def insights(
        self,
        model: str | list[str] | None = None,
        kinds: list[str] | None = None,
        compute: bool = True,
        progress: ProgressCallback = no_progress,
    ) -> list[Any]:
        """Blind-spot slices, error patterns, label-mistake candidates and near-duplicates, best first per kind.

        Computes and stores them (re-running replaces the earlier findings); ``compute=False`` only reads what
        is stored. Each finding's ``app_filters()`` selects its samples: ``ds.count(f.app_filters())``.
        """
        from .insights import KINDS, load_findings
        from .insights.runner import run_insights

        wanted = list(kinds or KINDS)
        if not compute:
            return [f for f in load_findings(self.store, self.id) if f.kind in wanted]
        models = [model] if isinstance(model, str) else model
        return run_insights(self.store, self.id, models=models, kinds=wanted, progress=progress)

    # -- tags: one UPDATE over the samples (or boxes) named, however many ---------------------------------------

    def tag(
        self, tags: str | list[str], filters: Filters | dict[str, Any] | None = None, sample_ids: Any = None
    ) -> int:
        """Add tags to the samples matching ``filters`` and/or in ``sample_ids``; how many samples changed.
        ``ds.tag("review", {"split": "val"})``; ``Filters()`` tags every sample (naming none is refused)."""
        return self.store.tag_samples(self.id, tags, _maybe_filters(filters), sample_ids)

    def untag(
        self, tags: str | list[str], filters: Filters | dict[str, Any] | None = None, sample_ids: Any = None
    ) -> int:
        return self.store.untag_samples(self.id, tags, _maybe_filters(filters), sample_ids)

    def tag_objects(
        self,
        tags: str | list[str],
        ann_ids: Any = None,
        filters: Filters | dict[str, Any] | None = None,
        objects: LabelFilter | dict[str, Any] | None = None,
    ) -> int:
        """Add tags to boxes: by annotation id, and/or those matching ``objects`` (source, labels, confidence,
        status, ...) on the samples matching ``filters``; how many boxes changed. Filter on them with
        ``{"annotations": [{"source": ..., "tags": ["bad box"]}]}``."""
        return self.store.tag_objects(self.id, tags, ann_ids, _maybe_filters(filters), _maybe_objects(objects))

    def untag_objects(
        self,
        tags: str | list[str],
        ann_ids: Any = None,
        filters: Filters | dict[str, Any] | None = None,
        objects: LabelFilter | dict[str, Any] | None = None,
    ) -> int:
        return self.store.untag_objects(self.id, tags, ann_ids, _maybe_filters(filters), _maybe_objects(objects))

    def tag_counts(self, filters: Filters | dict[str, Any] | None = None) -> dict[str, dict[str, int]]:
        """``{"samples": {tag: samples}, "objects": {tag: boxes}}`` over ``filters`` (default: all)."""
        return self.store.tag_counts(self.id, _maybe_filters(filters))

    # -- saved views -------------------------------------------------------------------------------------------

    def save_view(
        self,
        name: str,
        filters: Filters | dict[str, Any] | None = None,
        selection: Any = None,
        sort: Sort | dict[str, Any] | str | None = None,
        sources: list[str] | None = None,
        replace: bool = False,
    ) -> SavedView:
        """Keep a view under ``name`` (the app opens it, a link names it: ``?view=<name>``). ``sort`` may be
        ``"-width"`` for descending. An existing name is replaced only with ``replace=True``."""
        view = SavedView(
            name=name,
            filters=as_filters(filters),
            selection=None if selection is None else np.asarray(selection, np.int64).ravel().tolist(),
            sort=as_sort(sort),
            sources=None if sources is None else tuple(sources),
        )
        return self.store.save_view(self.id, view, replace=replace)

    def views(self) -> list[SavedView]:
        """Saved views by name; their selections' ids are left out (``selected`` counts them)."""
        return self.store.list_views(self.id)

    def view(self, name: str) -> SavedView:
        """A saved view: ``ds.count(ds.view("night").effective_filters())`` counts what it shows."""
        return self.store.get_view(self.id, name)

    def rename_view(self, name: str, new_name: str) -> SavedView:
        return self.store.rename_view(self.id, name, new_name)

    def delete_view(self, name: str) -> None:
        self.store.delete_view(self.id, name)

    def summary(self) -> dict[str, Any]:
        info = next(d for d in self.store.list_datasets() if d["id"] == self.id)
        return {
            **info,
            "labels": len(self.labels()),
            "splits": dict(self.value_counts("split")),
            "issues": len(self.issues()),
        }


def _maybe_filters(value: Filters | dict[str, Any] | None) -> Filters | None:
    """None stays None (a tag call must name its samples); anything else as ``as_filters`` reads it."""
    return None if value is None else as_filters(value)


def _maybe_objects(value: LabelFilter | dict[str, Any] | None) -> LabelFilter | None:
    if value is None or isinstance(value, LabelFilter):
        return value
    return LabelFilter.model_validate(value)


def as_sort(value: Sort | dict[str, Any] | str | None) -> Sort:
    """A ``Sort`` from its short forms: ``"width"``, ``"-width"`` (descending), a dict, or None (by id)."""
    if value is None:
        return Sort()
    if isinstance(value, Sort):
        return value
    if isinstance(value, str):
        return Sort(field=value.lstrip("-"), descending=value.startswith("-"))
    return Sort.model_validate(value)


def load(name: str, store: MetadataStore | None = None) -> Any:
    """The dataset ``name``: a ``Dataset`` on the store, or, while an app owns the database, a
    ``client.RemoteDataset`` answered by that app (same methods, same results)."""
    if store is None:
        from .client import Client, RemoteDataset, connect

        backend = connect()
        if isinstance(backend, Client):
            return RemoteDataset(backend, backend.dataset_info(name))
        store = backend.store
    return Dataset(store, store.get_dataset(name))


def list_datasets(store: MetadataStore | None = None) -> list[dict[str, Any]]:
    if store is None:
        from .client import connect

        return connect().list_datasets()
    return store.list_datasets()


def delete_dataset(name: str, store: MetadataStore | None = None, vectors: Any = None, thumbnails: Any = None) -> Any:
    """Delete a dataset everywhere: DuckDB, its vectors and its cached thumbnails (see ``cleanup.delete_dataset``
    for the order and why); returns what was removed. Image files are not touched."""
    from .cleanup import delete_dataset as delete_everywhere

    if store is None and vectors is None and thumbnails is None:
        from .client import Client, connect

        backend = connect()
        if isinstance(backend, Client):
            return backend.delete(name)
        store = backend.store
    return delete_everywhere(name, store, vectors, thumbnails)
