"""Ingestion: read everything first, then write it in one transaction, so a failure leaves the database as it was."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import media
from .errors import IngestError
from .formats import detect_format, detect_predictions_format, get_reader
from .formats.base import Issue, ParsedPredictions, ProgressCallback, SampleIndex, no_progress
from .store.metadata import MetadataStore


@dataclass
class IngestReport:
    name: str
    format: str
    samples: int
    gt_boxes: int
    predictions: dict[str, int] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)
    seconds: float = 0.0

    def summary_lines(self) -> list[str]:
        """One line per kind of issue, so 10,000 missing images read as one line, not a wall."""
        by_kind: dict[str, list[Issue]] = {}
        for issue in self.issues:
            by_kind.setdefault(issue.kind, []).append(issue)
        lines = []
        for kind, items in by_kind.items():
            first = items[0]
            where = ":".join(p for p in (first.file, first.location) if p)
            more = f" (+{len(items) - 1} more)" if len(items) > 1 else ""
            lines.append(f"{kind}: {where}: {first.message}{more}")
        return lines


def _as_source(path: str | Path) -> str:
    """The path as readers see it (links resolved, so "inside the dataset folder" means the real folder); a path
    that does not exist is an error naming it rather than a format guess or a traceback further on."""
    s = str(path)
    src = s if "://" in s else str(Path(s).expanduser().resolve())
    if not media.exists(src):
        raise IngestError("no such file or folder", src)
    return src


def read_predictions(
    source: str | Path, index: SampleIndex, format: str = "auto", progress: ProgressCallback = no_progress
) -> ParsedPredictions:
    src = _as_source(source)
    reader = detect_predictions_format(src) if format == "auto" else get_reader(format)
    return reader.read_predictions(src, index, progress)


def ingest(
    store: MetadataStore,
    source: str | Path,
    name: str,
    format: str = "auto",
    images: str | Path | None = None,
    predictions: Mapping[str, str | Path] | None = None,
    prediction_format: str = "auto",
    replace: bool = False,
    progress: ProgressCallback = no_progress,
) -> IngestReport:
    import time

    from .errors import DatasetExistsError

    start = time.perf_counter()
    if not replace and store.has_dataset(name):
        raise DatasetExistsError(f"a dataset named {name!r} exists; pass replace=True (--replace) to overwrite it")
    src = _as_source(source)
    reader = detect_format(src) if format == "auto" else get_reader(format)
    parsed = reader.read(src, _as_source(images) if images else None, progress)
    index = SampleIndex(
        parsed.samples.filepath,
        parsed.samples.ext_id,
        parsed.samples.width,
        parsed.samples.height,
        parsed.labels,
        parsed.info.get("label_ext_ids") or [None] * len(parsed.labels),
    )
    preds: dict[str, ParsedPredictions] = {}
    for model, path in (predictions or {}).items():
        p = read_predictions(path, index, prediction_format, progress)
        preds[model] = p
        index.labels = index.labels + p.new_labels
        index.label_ext_ids = index.label_ext_ids + [None] * len(p.new_labels)
    progress("write database", 0, 1)
    from .cleanup import before_replace

    purge_replaced = before_replace(store, name) if replace else (lambda: None)
    store.insert_dataset(name, parsed, preds, replace=replace)
    purge_replaced()
    progress("write database", 1, 1)
    from .plugins import after_ingest

    # committed: a failing post-ingest plugin is a warning of the ingest (and disabled), never its failure
    plugin_issues = after_ingest(store, store.get_dataset(name).id, name, progress)
    return IngestReport(
        name=name,
        format=reader.name,
        samples=len(parsed.samples),
        gt_boxes=len(parsed.annotations),
        predictions={m: len(p.annotations) for m, p in preds.items()},
        issues=parsed.issues + [i for p in preds.values() for i in p.issues] + plugin_issues,
        seconds=time.perf_counter() - start,
    )


def add_predictions(
    store: MetadataStore,
    name: str,
    model: str,
    source: str | Path,
    format: str = "auto",
    replace: bool = False,
    progress: ProgressCallback = no_progress,
) -> ParsedPredictions:
    row = store.get_dataset(name)
    index, _ = store.sample_index(row.id)
    preds = read_predictions(source, index, format, progress)
    store.add_predictions(name, model, preds, replace=replace)
    return preds
