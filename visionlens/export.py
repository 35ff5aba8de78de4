"""Export a view of a dataset (its filters, a tag, a lasso selection) as COCO, YOLO or VOC files, or its sample
fields as Parquet or CSV.

The store is read here, in batches, through its public reads; ``formats.writers`` turns the batches into files.
The export folder appears whole or not at all: everything is written into a temporary folder beside it, which
is renamed into place at the end, so a failure or a cancel (``JobCancelled`` from the progress callback) leaves
nothing behind. A folder is only ever replaced when it is empty or an earlier export made it (it holds the
``.visionlens-export`` manifest), like ``visionlens demo --out``: a typo must not delete someone's files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from . import media
from .formats.base import ProgressCallback, no_progress
from .formats.writers import (
    IMAGE_MODES,
    ExportBatch,
    ExportError,
    ExportInput,
    ExportLabel,
    WriteOptions,
    get_writer,
)
from .query import FieldFilter, Filters, as_filters
from .store import exports as reads
from .store.metadata import GROUND_TRUTH, MetadataStore

__all__ = ["MARKER", "ExportReport", "export_view", "image_mode", "tag_filters"]

MARKER = ".visionlens-export"
"""The manifest an export leaves in its folder (JSON): what was exported, and the proof that the folder is ours."""
BATCH = 2000


@dataclass
class ExportReport:
    dataset: str
    format: str
    out: str
    samples: int
    gt_boxes: int
    predictions: dict[str, int]
    images: dict[str, int]
    image_mode: str | None
    files: list[str]
    notes: list[str] = field(default_factory=list)
    ingest: dict[str, Any] | None = None
    """How to read the export back: absolute ``path``, ``format``, ``images`` root and ``predictions`` paths."""
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def image_mode(value: str) -> str:
    """``in-place`` (as typed on a command line) or ``in_place``; anything else is an error naming the choices."""
    mode = value.strip().lower().replace("-", "_").replace(" ", "_")
    if mode not in IMAGE_MODES:
        raise ExportError(f"unknown images mode {value!r}; choose copy, link or in-place")
    return mode


def tag_filters(filters: Filters | dict[str, Any] | None, tag: str | None) -> Filters:
    """``filters`` narrowed to the samples carrying ``tag`` (the CLI's ``--tag``)."""
    flt = as_filters(filters)
    if not tag:
        return flt
    return flt.model_copy(update={"fields": (*flt.fields, FieldFilter(field="tags", values=(tag,)))})


def export_view(
    store: MetadataStore,
    dataset: str | int,
    out_dir: str | Path,
    format: str = "coco",
    filters: Filters | dict[str, Any] | None = None,
    models: Sequence[str] | None = None,
    images: str = "copy",
    progress: ProgressCallback = no_progress,
) -> ExportReport:
    """Write the samples of ``dataset`` matching ``filters`` to ``out_dir``.

    ``models``: the predictions to include (None: every model; empty: none). ``images``: copy, link or in_place
    (see ``formats.writers``; ignored by parquet and csv, which write no images).
    """
    start = time.perf_counter()
    writer = get_writer(format)
    ds = store.get_dataset(dataset) if isinstance(dataset, str) else store.dataset_by_id(int(dataset))
    mode = image_mode(images) if writer.image_modes else None
    if mode is not None and mode not in writer.image_modes:
        raise ExportError(_mode_refusal(format, mode, writer.image_modes))
    chosen = _models(store, ds.id, models)
    target = _target(out_dir)
    if mode in ("link", "in_place") and not media.is_remote(ds.root) and media.is_within(ds.root, str(target)):
        raise ExportError(
            f"{ds.name!r} lives in {ds.root}, inside the export folder {target}: replacing that folder would delete "
            "the images this export links to or names; choose another folder or copy the images"
        )
    ids = store.matching_ids(ds.id, as_filters(filters))
    data = _input(store, ds.id, ds.name, ds.root, chosen, ids)
    created = _make_parents(target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.export-", dir=target.parent))
    try:
        result = writer.write(data, tmp, WriteOptions(images=mode or "copy"), progress)
        report = _report(ds.name, format, target, mode, result)
        manifest = {**report.to_json(), "filters": as_filters(filters).model_dump(mode="json", exclude_defaults=True)}
        manifest["seconds"] = time.perf_counter() - start
        (tmp / MARKER).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in reversed(created):
            _remove_if_empty(folder)
        raise
    report.seconds = time.perf_counter() - start
    return report


def _mode_refusal(format: str, mode: str, modes: tuple[str, ...]) -> str:
    if format == "yolo" and mode == "in_place":
        return (
            "YOLO finds each image beside its labels (images/<split>/ and labels/<split>/), so its images cannot stay "
            "in place: choose images copy or link"
        )
    return f"{format} cannot leave images {mode.replace('_', ' ')}: choose {', '.join(modes)}"


def _models(store: MetadataStore, dataset_id: int, models: Sequence[str] | None) -> list[str]:
    known = [s for s in store.source_ids(dataset_id) if s != GROUND_TRUTH]
    if models is None:
        return known
    unknown = [m for m in models if m not in known]
    if unknown:
        raise ExportError(
            f"no predictions named {', '.join(map(repr, unknown))}; this dataset has: {', '.join(known) or 'none'}"
        )
    return list(dict.fromkeys(models))


def _labels(store: MetadataStore, dataset_id: int) -> list[ExportLabel]:
    """Every label in the dataset's order; COCO ids as the source file had them when they are unique positive
    integers (so an old results file still matches), else 1..n (a YOLO class 0 would become category 0, which
    many COCO tools take for the background). Labels only predictions use get ids after the largest."""
    rows = reads.label_rows(store, dataset_id)
    given = [int(r.ext_id) if r.ext_id is not None and r.ext_id.isdigit() else None for r in rows]
    present = [g for g in given if g is not None]
    keep = (
        len(present) == len(set(present))
        and all(g > 0 for g in present)
        and all(g is not None or r.ext_id is None for g, r in zip(given, rows))
    )
    if not keep:
        return [ExportLabel(r.name, k + 1) for k, r in enumerate(rows)]
    nxt = max([*present, 0]) + 1
    out = []
    for g, r in zip(given, rows):
        if g is None:
            g, nxt = nxt, nxt + 1
        out.append(ExportLabel(r.name, g))
    return out


def _input(
    store: MetadataStore, dataset_id: int, name: str, root: str, models: list[str], ids: np.ndarray
) -> ExportInput:
    fields = store.fields(dataset_id)
    custom = [f.name for f in fields.values() if f.level == "sample" and not f.builtin and f.owner is None]
    sources = [GROUND_TRUTH, *models]

    def batches() -> Iterator[ExportBatch]:
        """At least one batch (maybe empty): a table writer takes its columns from the first."""
        for k in range(0, max(len(ids), 1), BATCH):
            chunk = ids[k : k + BATCH]
            yield ExportBatch(
                samples=store.samples_by_id(dataset_id, chunk),
                annotations=store.annotations(dataset_id, chunk, sources),
                polygons=reads.polygons(store, dataset_id, chunk),
            )

    return ExportInput(
        dataset=name,
        root=root,
        labels=_labels(store, dataset_id),
        models=models,
        custom_fields=custom,
        splits=reads.split_counts(store, dataset_id, ids),
        total=len(ids),
        batches=batches,
    )


def _report(dataset: str, format: str, target: Path, mode: str | None, result: Any) -> ExportReport:
    ingest = None
    if result.ingest is not None:
        hint = result.ingest
        images = hint.get("images")
        ingest = {
            "path": str(target / hint["path"]) if hint["path"] != "." else str(target),
            "format": hint["format"],
            "images": images,
            "predictions": {m: str(target / p) for m, p in hint.get("predictions", {}).items()},
        }
    return ExportReport(
        dataset=dataset,
        format=format,
        out=str(target),
        samples=result.samples,
        gt_boxes=result.gt_boxes,
        predictions=result.predictions,
        images=result.images,
        image_mode=mode,
        files=result.files,
        notes=result.notes,
        ingest=ingest,
    )


# --- the folder ----------------------------------------------------------------------------------------------


def _target(out_dir: str | Path) -> Path:
    """The export folder, absolute; refused when it holds anything an earlier export did not write."""
    s = str(out_dir)
    if "://" in s:
        raise ExportError(f"exports are written to a local folder, not {s}")
    target = Path(s).expanduser().absolute()
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ExportError(f"export folder {str(target)!r} is a file or a link, not a folder; choose another")
    if target.exists():
        names = {p.name for p in target.iterdir()}
        if names and MARKER not in names:
            raise ExportError(
                f"export folder {str(target)!r} is not empty and was not made by an export; it was left untouched: "
                "choose another folder, or empty that one first"
            )
    return target


def _make_parents(folder: Path) -> list[Path]:
    """Create the missing parents of the export folder; returns those it made, so a failure can take them back."""
    missing = []
    p = folder
    while not p.exists():
        missing.append(p)
        p = p.parent
    for m in reversed(missing):
        m.mkdir()
    return list(reversed(missing))


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _swap_in(tmp: Path, target: Path) -> None:
    """Put the finished export where it belongs: an earlier export (or an empty folder) there is moved aside
    first and removed only once the new one is in place."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.rmdir(old)
        os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)
        raise
    os.chmod(target, 0o777 & ~_umask())  # mkdtemp's folder is private (0700); give it the user's usual mode
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    """The process umask, read without setting it (``os.umask`` would change it for every thread meanwhile)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022
