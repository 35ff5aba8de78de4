"""Format writers: the inverse of the readers, so a filtered view of a dataset can leave VisionLens as files.

A writer gets plain data (sample rows and their boxes in batches, the label list) and a folder to fill; it never
sees the store, so it can be tested, and replaced by a plugin, on its own. ``visionlens.export`` reads the store,
hands the batches over, and makes the folder appear whole or not at all.

What every writer keeps, so that ingesting an export gives back the same dataset (the round-trip tests check it to
1e-3 px):

* boxes exactly as stored (float64, full precision, nothing clipped: a box past the border stays past it);
* labels by name, in the dataset's label order (YOLO class ``k`` is the dataset's ``k``-th label, COCO category ids
  are the source file's when they were integers);
* splits, custom sample fields (COCO only: it is the one format with a place for them), crowd / difficult flags
  and segmentation polygons (COCO only);
* predictions per model, with their scores, in that format's results form.

Images: ``copy`` (read through ``media``, so ``gs://`` images are downloaded), ``link`` (a symbolic link to the
original; local images only) or ``in_place`` (nothing is written, the annotation files name the original files:
COCO ``file_name`` relative to the dataset root, VOC ``<filename>`` and ``<path>``; ingest such an export with
``--images <root>``). YOLO finds images only beside their labels (``images/`` + ``labels/``), so it has no
``in_place``. Images of samples flagged missing (not found, unreadable, or a link out of their dataset folder at
ingest) are never copied or linked: the server must not read a file its ingest refused.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import orjson
import pyarrow as pa

from .. import media
from ..errors import VisionLensError
from .base import ProgressCallback
from .yolo import label_path_for

ImageMode = Literal["copy", "link", "in_place"]
IMAGE_MODES: tuple[str, ...] = ("copy", "link", "in_place")
GROUND_TRUTH = "ground_truth"
YOLO_SPLITS = ("train", "val", "test")
"""The only split keys ``data.yaml`` has (Ultralytics reads these, and so does VisionLens)."""
_IMAGE_DIRS = {"images", "jpegimages", "imgs"}


class ExportError(VisionLensError):
    """An export that cannot be done as asked (a mode the format lacks, a folder that is not ours to replace)."""


# --- what a writer is given ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportLabel:
    """A label as the files name it: ``name`` everywhere, ``coco_id`` in COCO files, its position for YOLO."""

    name: str
    coco_id: int


@dataclass
class ExportBatch:
    """Some samples with every field under its user-visible name (``MetadataStore.samples_by_id``), their boxes
    (``MetadataStore.annotations``: ground truth and the exported models) and the polygons of those boxes."""

    samples: pa.Table
    annotations: pa.Table
    polygons: dict[int, list[list[float]]] = field(default_factory=dict)


@dataclass
class ExportInput:
    """The view to write. ``batches()`` streams it, so a million samples never sit in memory at once (COCO, whose
    files are single JSON documents, keeps its documents; the others write as they go)."""

    dataset: str
    root: str
    labels: list[ExportLabel]
    models: list[str]
    custom_fields: list[str]
    """Sample fields the dataset brought (not built-in, not an evaluation's), written where a format has room."""
    splits: dict[str | None, int]
    total: int
    batches: Callable[[], Iterator[ExportBatch]]


@dataclass(frozen=True)
class WriteOptions:
    images: ImageMode = "copy"
    workers: int = 8


@dataclass
class WriteResult:
    """What was written. Paths are relative to the export folder; ``ingest`` says how to read it back
    (``{"path", "format", "images", "predictions": {model: path}}``; ``images`` may be an absolute root)."""

    files: list[str] = field(default_factory=list)
    samples: int = 0
    gt_boxes: int = 0
    predictions: dict[str, int] = field(default_factory=dict)
    images: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    ingest: dict[str, Any] | None = None


class Writer(Protocol):
    """A format is one class with these; list it in ``WRITERS``. ``image_modes`` empty: writes no images."""

    name: ClassVar[str]
    image_modes: ClassVar[tuple[str, ...]]

    def write(self, data: ExportInput, out_dir: Path, options: WriteOptions, progress: ProgressCallback) -> WriteResult:
        """Fill ``out_dir`` (an empty folder the caller made); raise to fail, the caller removes the folder."""
        ...


# --- rows and boxes as plain Python --------------------------------------------------------------------------


@dataclass
class Box:
    label: str
    x: float
    y: float
    w: float
    h: float
    confidence: float | None
    iscrowd: bool
    area: float | None
    polygon: list[list[float]] | None


@dataclass
class SampleRow:
    id: int
    filepath: str
    split: str | None
    width: int
    height: int
    missing: bool
    fields: dict[str, Any]
    gt: list[Box]
    predictions: dict[str, list[Box]]


def sample_rows(batch: ExportBatch, models: list[str], custom_fields: list[str]) -> Iterator[SampleRow]:
    """The batch's samples with their boxes grouped per source (ground truth first, then each model)."""
    s = batch.samples
    cols = {name: s.column(name).to_pylist() for name in ("id", "filepath", "split", "width", "height", "missing")}
    custom = {name: s.column(name).to_pylist() for name in custom_fields if name in s.column_names}
    boxes: dict[int, dict[str, list[Box]]] = {}
    a = batch.annotations
    if a.num_rows:
        acol = {
            name: a.column(name).to_pylist()
            for name in ("id", "sample_id", "source", "label", "x", "y", "w", "h", "confidence", "iscrowd", "area")
        }
        for k in range(a.num_rows):
            box = Box(
                acol["label"][k], acol["x"][k], acol["y"][k], acol["w"][k], acol["h"][k], acol["confidence"][k],
                bool(acol["iscrowd"][k]), acol["area"][k], batch.polygons.get(acol["id"][k]),
            )  # fmt: skip
            boxes.setdefault(acol["sample_id"][k], {}).setdefault(acol["source"][k], []).append(box)
    for i in range(s.num_rows):
        sid = int(cols["id"][i])
        own = boxes.get(sid, {})
        yield SampleRow(
            id=sid,
            filepath=cols["filepath"][i],
            split=cols["split"][i],
            width=int(cols["width"][i] or 0),
            height=int(cols["height"][i] or 0),
            missing=bool(cols["missing"][i]),
            fields={name: values[i] for name, values in custom.items()},
            gt=own.get(GROUND_TRUTH, []),
            predictions={m: own.get(m, []) for m in models},
        )


# --- names ---------------------------------------------------------------------------------------------------


def short_name(filepath: str, split: str | None) -> str:
    """The image's path without the folders an export lays out again: ``images/train/a.jpg`` of split ``train``
    becomes ``a.jpg`` (it is written to ``images/train/a.jpg`` of the export, not ``images/train/images/train/``)."""
    parts = [p for p in filepath.split("/") if p]
    while len(parts) > 1 and (parts[0].lower() in _IMAGE_DIRS or (split is not None and parts[0] == split)):
        parts = parts[1:]
    return "/".join(parts) or posixpath.basename(filepath)


class NameBook:
    """Hands out file names that are unique by stem within one folder tree: YOLO pairs an image with
    ``<stem>.txt`` and VOC with ``<stem>.xml``, so ``a.jpg`` and ``a.png`` must not both stay ``a``. ``flat``
    names (VOC's ``JPEGImages/``) have no subfolders: the base name, else the path joined with ``_``."""

    def __init__(self, flat: bool = False):
        self.flat = flat
        self.taken: set[str] = set()
        self.renamed = 0

    def claim(self, name: str) -> str:
        candidates = [posixpath.basename(name), name.replace("/", "_")] if self.flat else [name]
        for candidate in candidates:
            if self._free(candidate):
                return self._take(candidate)
        stem, ext = posixpath.splitext(candidates[-1])
        k = 1
        while not self._free(f"{stem}_{k}{ext}"):
            k += 1
        self.renamed += 1
        return self._take(f"{stem}_{k}{ext}")

    def _free(self, name: str) -> bool:
        return posixpath.splitext(name)[0].casefold() not in self.taken

    def _take(self, name: str) -> str:
        self.taken.add(posixpath.splitext(name)[0].casefold())
        return name


def safe_file_name(name: str, taken: set[str]) -> str:
    """A model name (data) as one file or folder name: other characters become ``_``; unique among ``taken``."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"
    out, k = base, 1
    while out.casefold() in taken:
        k += 1
        out = f"{base}_{k}"
    taken.add(out.casefold())
    return out


def number(v: float) -> int | float:
    """Integral values as integers (``12``, not ``12.0``), others at full precision."""
    f = float(v)
    return int(f) if f.is_integer() and abs(f) < 2**53 else f


# --- images --------------------------------------------------------------------------------------------------


class ImagePlacer:
    """Copies or links images into the export, many at a time (each ``gs://`` read is a round trip)."""

    def __init__(self, root: str, out_dir: Path, mode: ImageMode, progress: ProgressCallback, workers: int = 8):
        if mode == "link" and media.is_remote(root):
            raise ExportError(
                f"images on {root} cannot be linked: links need a local disk; export with images copied instead"
            )
        self.root, self.out_dir, self.mode, self.progress, self.workers = root, out_dir, mode, progress, workers
        self.pending: list[tuple[str, Path]] = []
        self.counts = {"copied": 0, "linked": 0, "in_place": 0, "missing": 0}
        self.missing_examples: list[str] = []
        self._done = 0
        self._step = {"copy": "copy images", "link": "link images", "in_place": "images left in place"}[mode]

    def uri(self, filepath: str) -> str:
        return media.join(self.root, filepath)

    def add(self, row: SampleRow, dest: str | None) -> None:
        """Queue ``row``'s image for ``dest`` (relative to the export); ``in_place`` only counts it."""
        if row.missing:
            self._missing(self.uri(row.filepath), "flagged missing at ingest")
            return
        if self.mode == "in_place" or dest is None:
            self.counts["in_place"] += 1
            return
        self.pending.append((self.uri(row.filepath), self.out_dir / dest))

    def _missing(self, uri: str, why: str) -> None:
        self.counts["missing"] += 1
        if len(self.missing_examples) < 3:
            self.missing_examples.append(f"{uri} ({why})")

    def flush(self, total: int) -> None:
        """Place what was queued, reporting ``(step, done, total)`` over the whole export's ``total`` images."""
        items, self.pending = self.pending, []
        if not items:
            return
        with ThreadPoolExecutor(self.workers) as pool:
            for ok, uri, why in pool.map(lambda item: self._place(*item), items):
                if ok:
                    self.counts["copied" if self.mode == "copy" else "linked"] += 1
                else:
                    self._missing(uri, why)
                self._done += 1
                if self._done % 200 == 0:
                    self.progress(self._step, self._done, total)
        self.progress(self._step, self._done, total)

    def _place(self, uri: str, dest: Path) -> tuple[bool, str, str]:
        """Reading problems (gone, a link out of the dataset folder) make the image missing; a failure to write
        the export (a full disk) is raised and fails it."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        if media.is_remote(uri):
            try:
                data = media.read_bytes(uri)
            except FileNotFoundError:
                return False, uri, "not found"
            dest.write_bytes(data)
            return True, uri, ""
        if not os.path.isfile(uri):
            return False, uri, "not found"
        if not media.is_within(uri, self.root):
            return False, uri, "a link out of the dataset folder; not read"
        if self.mode == "link":
            os.symlink(os.path.abspath(uri), dest)
        else:
            shutil.copyfile(uri, dest)
        return True, uri, ""

    def notes(self) -> list[str]:
        n = self.counts["missing"]
        if not n:
            return []
        done = {"copy": "not copied", "link": "not linked", "in_place": "missing"}[self.mode]
        return [f"{n} images {done} (their annotations are written): e.g. {'; '.join(self.missing_examples)}"]


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY))


def _progress_rows(data: ExportInput, progress: ProgressCallback) -> Iterator[tuple[ExportBatch, list[SampleRow]]]:
    """Batches with their rows, reporting ``export samples`` as they go."""
    done = 0
    progress("export samples", 0, data.total)
    for batch in data.batches():
        rows = list(sample_rows(batch, data.models, data.custom_fields))
        yield batch, rows
        done += len(rows)
        progress("export samples", done, data.total)


# --- COCO ----------------------------------------------------------------------------------------------------


_COCO_IMAGE_KEYS = {"id", "file_name", "width", "height", "license", "flickr_url", "coco_url", "date_captured"}


class CocoWriter:
    """``annotations/instances_<split>.json`` (``instances.json`` for samples without a split), images under
    ``images/<split>/``, and ``predictions/<model>.json`` as COCO results whose ``image_id`` are the exported
    images' ids (unique over the whole export, so one results file serves every split)."""

    name: ClassVar[str] = "coco"
    image_modes: ClassVar[tuple[str, ...]] = IMAGE_MODES

    def write(self, data: ExportInput, out_dir: Path, options: WriteOptions, progress: ProgressCallback) -> WriteResult:
        placer = ImagePlacer(data.root, out_dir, options.images, progress, options.workers)
        categories = [{"id": lab.coco_id, "name": lab.name} for lab in data.labels]
        cat_id = {lab.name: lab.coco_id for lab in data.labels}
        extra = [f for f in data.custom_fields if f not in _COCO_IMAGE_KEYS]
        docs: dict[str | None, dict[str, Any]] = {}
        books: dict[str | None, NameBook] = {}
        preds: dict[str, list[dict[str, Any]]] = {m: [] for m in data.models}
        result = WriteResult(predictions={m: 0 for m in data.models})
        ann_id = 0
        for _, rows in _progress_rows(data, progress):
            for row in rows:
                doc = docs.get(row.split)
                if doc is None:
                    doc = docs[row.split] = {"info": {"description": f"VisionLens export of {data.dataset}"},
                                             "images": [], "annotations": [], "categories": categories}  # fmt: skip
                    books[row.split] = NameBook()
                image_id = result.samples + 1
                result.samples += 1
                if options.images == "in_place":
                    file_name = row.filepath
                    placer.add(row, None)
                else:
                    file_name = books[row.split].claim(short_name(row.filepath, row.split))
                    placer.add(row, posixpath.join(_coco_image_dir(row.split), file_name))
                image = {"id": image_id, "file_name": file_name, "width": row.width, "height": row.height}
                image.update({k: row.fields[k] for k in extra if row.fields.get(k) is not None})
                doc["images"].append(image)
                for box in row.gt:
                    ann_id += 1
                    doc["annotations"].append(_coco_annotation(ann_id, image_id, cat_id[box.label], box))
                result.gt_boxes += len(row.gt)
                for model, boxes in row.predictions.items():
                    result.predictions[model] += len(boxes)
                    preds[model] += [
                        {"image_id": image_id, "category_id": cat_id[b.label], "bbox": [b.x, b.y, b.w, b.h],
                         "score": b.confidence}
                        for b in boxes
                    ]  # fmt: skip
            placer.flush(data.total)
        progress("write annotation files", 0, len(docs) + len(preds))
        for split, doc in docs.items():
            path = f"annotations/{'instances' if split is None else f'instances_{split}'}.json"
            _write_json(out_dir / path, doc)
            result.files.append(path)
        pred_paths = _write_results(out_dir, preds, result)
        progress("write annotation files", len(docs) + len(preds), len(docs) + len(preds))
        result.images = placer.counts
        result.notes += placer.notes() + _coco_notes(docs, data, extra)
        only_unsplit = set(docs) == {None}
        result.ingest = {
            "path": "annotations/instances.json" if only_unsplit else ".",
            "format": "coco",
            "images": data.root if options.images == "in_place" else None,
            "predictions": pred_paths,
        }
        return result


def _coco_image_dir(split: str | None) -> str:
    return "images" if split is None else f"images/{split}"


def _coco_annotation(ann_id: int, image_id: int, category_id: int, box: Box) -> dict[str, Any]:
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [box.x, box.y, box.w, box.h],
        "area": box.area if box.area is not None else box.w * box.h,
        "iscrowd": int(box.iscrowd),
        "segmentation": box.polygon or [],
    }


def _write_results(out_dir: Path, preds: dict[str, list[dict[str, Any]]], result: WriteResult) -> dict[str, str]:
    taken: set[str] = set()
    paths = {}
    for model, rows in preds.items():
        path = f"predictions/{safe_file_name(model, taken)}.json"
        _write_json(out_dir / path, rows)
        result.files.append(path)
        paths[model] = path
    return paths


def _coco_notes(docs: dict[str | None, Any], data: ExportInput, extra: list[str]) -> list[str]:
    notes = []
    if None in docs and len(docs) > 1:
        notes.append(
            "samples without a split are in annotations/instances.json: ingesting the folder gives them the split "
            "'instances'"
        )
    skipped = [f for f in data.custom_fields if f not in extra]
    if skipped:
        notes.append(f"fields {', '.join(map(repr, skipped))} clash with COCO's own image keys and were left out")
    return notes


# --- YOLO ----------------------------------------------------------------------------------------------------


class YoloWriter:
    """``data.yaml`` + ``images/<split>/`` + ``labels/<split>/<stem>.txt`` (``class cx cy w h``, normalised by the
    image size) and ``predictions/<model>/<split>/<stem>.txt`` with a sixth, confidence column.

    Values are written as they are, also outside [0, 1]: a box past the border has a centre or size past 1 only
    when more than half of it lies outside, and clipping would change the box. Ultralytics and VisionLens refuse
    such rows, so the result notes how many there are. Crowd regions are left out (as Ultralytics' own COCO
    converter does: YOLO has no "ignore" flag), and so are the boxes of images of unknown size (nothing to
    normalise by). Layout: ``data.yaml`` names only train, val and test, so an export with other splits (or
    without splits) writes ``classes.txt`` instead, which VisionLens reads with any split folder; Ultralytics then
    needs a ``data.yaml`` naming the folders to train and validate on.
    """

    name: ClassVar[str] = "yolo"
    image_modes: ClassVar[tuple[str, ...]] = ("copy", "link")

    def write(self, data: ExportInput, out_dir: Path, options: WriteOptions, progress: ProgressCallback) -> WriteResult:
        if options.images not in self.image_modes:
            raise ExportError(
                "YOLO finds each image beside its labels (images/<split>/ and labels/<split>/), so its images must "
                "be in the export: choose images copy or link"
            )
        placer = ImagePlacer(data.root, out_dir, options.images, progress, options.workers)
        index = {lab.name: k for k, lab in enumerate(data.labels)}
        use_yaml = bool(data.splits) and all(s in YOLO_SPLITS for s in data.splits)
        flat = set(data.splits) <= {None}
        books: dict[str, NameBook] = {}
        taken: set[str] = set()
        model_dirs = {m: safe_file_name(m, taken) for m in data.models}
        result = WriteResult(predictions={m: 0 for m in data.models})
        counts = {"outside": 0, "crowd": 0, "unsized": 0}
        for _, rows in _progress_rows(data, progress):
            for row in rows:
                folder = "" if flat else (row.split or "unsplit")
                book = books.setdefault(folder, NameBook(flat=flat))
                name = book.claim(short_name(row.filepath, row.split))
                image_rel = posixpath.join("images", folder, name)
                placer.add(row, image_rel)
                label_rel = label_path_for(image_rel)
                result.samples += 1
                gt = [b for b in row.gt if not b.iscrowd]
                counts["crowd"] += len(row.gt) - len(gt)
                sized = row.width > 0 and row.height > 0
                if not sized:
                    counts["unsized"] += 1
                    gt = []
                _write_text(out_dir / label_rel, _yolo_lines(gt, row, index, counts, scored=False))
                result.gt_boxes += len(gt)
                pred_rel = label_rel.removeprefix("labels/")
                for model, boxes in row.predictions.items():
                    if not boxes or not sized:
                        continue
                    lines = _yolo_lines(boxes, row, index, counts, scored=True)
                    _write_text(out_dir / "predictions" / model_dirs[model] / pred_rel, lines)
                    result.predictions[model] += len(boxes)
            placer.flush(data.total)
        names = [lab.name for lab in data.labels]
        if use_yaml:
            _write_text(out_dir / "data.yaml", _data_yaml(names, [s for s in YOLO_SPLITS if s in data.splits]))
            result.files.append("data.yaml")
        else:
            _write_text(out_dir / "classes.txt", "".join(f"{n}\n" for n in names))
            result.files.append("classes.txt")
        result.images = placer.counts
        result.notes += placer.notes() + _yolo_notes(counts, use_yaml, data, sum(b.renamed for b in books.values()))
        result.ingest = {
            "path": ".",
            "format": "yolo",
            "images": None,
            "predictions": {m: f"predictions/{d}" for m, d in model_dirs.items()},
        }
        return result


def _yolo_lines(boxes: list[Box], row: SampleRow, index: dict[str, int], counts: dict[str, int], scored: bool) -> str:
    out = []
    W, H = float(row.width), float(row.height)
    for b in boxes:
        values = [(b.x + b.w / 2) / W, (b.y + b.h / 2) / H, b.w / W, b.h / H]
        if any(v < 0 or v > 1 for v in values):
            counts["outside"] += 1
        tail = f" {b.confidence!r}" if scored else ""
        out.append(f"{index[b.label]} " + " ".join(repr(v) for v in values) + tail + "\n")
    return "".join(out)


def _data_yaml(names: list[str], splits: list[str]) -> str:
    import yaml

    doc = {"path": ".", **{s: f"images/{s}" for s in splits}, "nc": len(names), "names": dict(enumerate(names))}
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def _yolo_notes(counts: dict[str, int], use_yaml: bool, data: ExportInput, renamed: int) -> list[str]:
    notes = []
    if counts["outside"]:
        notes.append(
            f"{counts['outside']} boxes have a normalised centre or size outside [0, 1] (more than half of the box "
            "past the image border); written as they are, but Ultralytics and VisionLens refuse such rows"
        )
    if counts["crowd"]:
        notes.append(f"{counts['crowd']} crowd (ignore) regions left out: YOLO has no crowd flag")
    if counts["unsized"]:
        notes.append(f"{counts['unsized']} images of unknown size: their boxes cannot be normalised and were left out")
    if not use_yaml and data.splits:
        shown = ", ".join("(none)" if s is None else repr(s) for s in data.splits)
        notes.append(
            f"splits {shown} are not all train/val/test, which is all data.yaml can name: classes.txt written "
            "instead (VisionLens reads it with any split folder; Ultralytics needs a data.yaml you write)"
        )
    if None in data.splits and len(data.splits) > 1:
        notes.append("samples without a split are in images/unsplit and labels/unsplit")
    if renamed:
        notes.append(f"{renamed} images renamed (a _N suffix) so that no two share a label file")
    return notes


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# --- Pascal VOC ----------------------------------------------------------------------------------------------


class VocWriter:
    """``Annotations/<id>.xml``, ``JPEGImages/<id>.<ext>``, ``ImageSets/Main/<split>.txt``, and
    ``predictions/<model>/<id>.xml`` whose objects carry ``<score>``.

    VOC corners are 1-based and inclusive: ``xmin = x + 1``, ``xmax = x + w`` (what the reader undoes). They are
    written as integers when they are whole and at full precision otherwise (VOC tools that expect integers read
    them with ``int(float(...))``). Crowd regions are ``<difficult>1</difficult>`` (both mean "ignore" to their
    metric); a box past the border is ``<truncated>1</truncated>``. With images left in place, ``<filename>`` is
    the image's path under the dataset root and ``<path>`` its full location.
    """

    name: ClassVar[str] = "voc"
    image_modes: ClassVar[tuple[str, ...]] = IMAGE_MODES

    def write(self, data: ExportInput, out_dir: Path, options: WriteOptions, progress: ProgressCallback) -> WriteResult:
        placer = ImagePlacer(data.root, out_dir, options.images, progress, options.workers)
        book = NameBook(flat=True)
        taken: set[str] = set()
        model_dirs = {m: safe_file_name(m, taken) for m in data.models}
        split_lists: dict[str, list[str]] = {}
        result = WriteResult(predictions={m: 0 for m in data.models})
        in_place = options.images == "in_place"
        (out_dir / "Annotations").mkdir(exist_ok=True)
        for _, rows in _progress_rows(data, progress):
            for row in rows:
                name = book.claim(short_name(row.filepath, row.split))
                stem = posixpath.splitext(name)[0]
                if in_place:
                    placer.add(row, None)
                    file_name, folder, path = row.filepath, None, placer.uri(row.filepath)
                else:
                    placer.add(row, f"JPEGImages/{name}")
                    file_name, folder, path = name, "JPEGImages", None
                if row.split is not None:
                    split_lists.setdefault(row.split, []).append(stem)
                xml = _voc_xml(data.dataset, file_name, folder, path, row, row.gt, scored=False)
                (out_dir / "Annotations" / f"{stem}.xml").write_bytes(xml)
                result.samples += 1
                result.gt_boxes += len(row.gt)
                for model, boxes in row.predictions.items():
                    if not boxes:
                        continue
                    pred = _voc_xml(data.dataset, file_name, folder, path, row, boxes, scored=True)
                    target = out_dir / "predictions" / model_dirs[model] / f"{stem}.xml"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(pred)
                    result.predictions[model] += len(boxes)
            placer.flush(data.total)
        for split, stems in split_lists.items():
            _write_text(out_dir / "ImageSets" / "Main" / f"{split}.txt", "".join(f"{s}\n" for s in stems))
            result.files.append(f"ImageSets/Main/{split}.txt")
        result.files.insert(0, "Annotations")
        result.images = placer.counts
        result.notes += placer.notes()
        if book.renamed:
            result.notes.append(f"{book.renamed} images renamed (a _N suffix) so that no two share an XML file")
        result.ingest = {
            "path": ".",
            "format": "voc",
            "images": data.root if in_place else None,
            "predictions": {m: f"predictions/{d}" for m, d in model_dirs.items()},
        }
        return result


def _voc_xml(
    dataset: str,
    file_name: str,
    folder: str | None,
    path: str | None,
    row: SampleRow,
    boxes: list[Box],
    scored: bool,
) -> bytes:
    """One VOC document, written from a template (every text escaped): ElementTree took most of a VOC export."""
    head = [
        "<annotation>",
        f"  <folder>{_x(folder)}</folder>" if folder else "",
        f"  <filename>{_x(file_name)}</filename>",
        f"  <path>{_x(path)}</path>" if path else "",
        f"  <source>\n    <database>VisionLens export of {_x(dataset)}</database>\n  </source>",
        f"  <size>\n    <width>{row.width}</width>\n    <height>{row.height}</height>\n    <depth>3</depth>\n  </size>",
        "  <segmented>0</segmented>",
    ]
    parts = [line for line in head if line]
    for b in boxes:
        past = row.width > 0 and (b.x < 0 or b.y < 0 or b.x + b.w > row.width or b.y + b.h > row.height)
        score = f"    <score>{float(b.confidence)!r}</score>\n" if scored else ""  # type: ignore[arg-type]
        corners = zip(("xmin", "ymin", "xmax", "ymax"), (b.x + 1, b.y + 1, b.x + b.w, b.y + b.h))
        bnd = "".join(f"      <{tag}>{number(value)!r}</{tag}>\n" for tag, value in corners)
        parts.append(
            f"  <object>\n    <name>{_x(b.label)}</name>\n    <pose>Unspecified</pose>\n"
            f"    <truncated>{int(past)}</truncated>\n    <difficult>{int(b.iscrowd)}</difficult>\n{score}"
            f"    <bndbox>\n{bnd}    </bndbox>\n  </object>"
        )
    parts.append("</annotation>\n")
    return "\n".join(parts).encode("utf-8")


def _x(text: str) -> str:
    """Text for an XML element: ``&``, ``<``, ``>`` escaped, and characters XML 1.0 cannot hold dropped."""
    cleaned = _XML_INVALID.sub("", str(text))
    return cleaned.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


# --- metadata ------------------------------------------------------------------------------------------------


class _TableWriter:
    """Every sample field, custom ones under their user-visible names, one row per sample; no boxes, no images
    (``filepath`` is relative to the dataset root, which the export's manifest names)."""

    name: ClassVar[str] = ""
    image_modes: ClassVar[tuple[str, ...]] = ()
    file_name: ClassVar[str] = ""

    def write(self, data: ExportInput, out_dir: Path, options: WriteOptions, progress: ProgressCallback) -> WriteResult:
        result = WriteResult(files=[self.file_name])
        sink = None
        try:
            for batch, rows in _progress_rows(data, progress):
                table = self.prepare(batch.samples)
                if sink is None:
                    sink = self.open(out_dir / self.file_name, table.schema)
                sink.write_table(table)
                result.samples += len(rows)
        finally:
            if sink is not None:
                sink.close()
        result.ingest = None
        return result

    def prepare(self, table: pa.Table) -> pa.Table:
        return table

    def open(self, path: Path, schema: pa.Schema) -> Any:
        raise NotImplementedError


class ParquetWriter(_TableWriter):
    name: ClassVar[str] = "parquet"
    file_name: ClassVar[str] = "metadata.parquet"

    def open(self, path: Path, schema: pa.Schema) -> Any:
        import pyarrow.parquet as pq

        return pq.ParquetWriter(str(path), schema)


class CsvWriter(_TableWriter):
    """Lists (``tags``) become JSON text, since CSV has no lists."""

    name: ClassVar[str] = "csv"
    file_name: ClassVar[str] = "metadata.csv"

    def prepare(self, table: pa.Table) -> pa.Table:
        for i, f in enumerate(table.schema):
            if pa.types.is_list(f.type) or pa.types.is_large_list(f.type):
                values = [None if v is None else orjson.dumps(v).decode() for v in table.column(i).to_pylist()]
                table = table.set_column(i, f.name, pa.array(values, pa.string()))
        return table

    def open(self, path: Path, schema: pa.Schema) -> Any:
        import pyarrow.csv as pcsv

        return pcsv.CSVWriter(str(path), schema)


WRITERS: dict[str, Writer] = {
    w.name: w for w in (CocoWriter(), YoloWriter(), VocWriter(), ParquetWriter(), CsvWriter())
}
"""Writers by format name. A plugin's writer is one more entry (the hook registry will fill this)."""


def get_writer(name: str) -> Writer:
    try:
        return WRITERS[name]
    except KeyError:
        raise ExportError(f"unknown export format {name!r}; known: {', '.join(WRITERS)}") from None
