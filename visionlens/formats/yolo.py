"""YOLO: ``data.yaml`` (or ``classes.txt``) plus one ``.txt`` per image with normalised ``class cx cy w h`` rows.

Boxes become pixels using each image's size, read from its header only, at full precision and without clipping.

Layouts: a ``data.yaml`` naming split folders or list files (Roboflow's ``../train/images`` entries are read as
Ultralytics does, from inside the dataset folder), or no yaml at all: ``classes.txt`` (in the folder, in ``labels/``
or in ``labels/<split>/``) with ``images/`` + ``labels/``, optionally split into ``images/train`` + ``labels/train``.

Bad input, the same policy as every format (see ``boxes``): a row with a NaN or infinite value, or a negative width or
height, is dropped with an issue naming file and line; so is a prediction whose confidence is NaN or infinite. A
confidence outside [0, 1] is kept with one summary issue. Any other value outside [0, 1] stays an error: it means the
file holds pixels rather than normalised coordinates, which no per-box fix can repair. An empty label file means
"no boxes". An image whose header cannot be read is kept, flagged missing, and its labels skipped (they cannot be
converted without its size). Paths: ``path:`` in data.yaml that leads outside the dataset folder is refused when it
exists (reading it would serve another folder's files) and ignored with an issue when it does not (a yaml written on
another machine); label, list and class files that lead outside are refused; images that do are not read.
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import yaml

from .. import media
from ..errors import IngestError
from .base import (
    AnnotationRecords,
    Issue,
    ParsedDataset,
    ParsedPredictions,
    ProgressCallback,
    SampleIndex,
    SampleRecords,
    lookup_suffix,
)
from .boxes import check_boxes, check_scores, note_past_border
from .files import (
    first_repeat,
    flag_links_outside,
    read_sizes,
    refuse_links_outside,
    refuse_outside,
    skipped_folder_issues,
)

_YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml")
_TOLERANCE = 1e-6


def label_path_for(image_rel: str) -> str:
    """Ultralytics' rule: the last ``images`` folder becomes ``labels``, the extension ``.txt``."""
    parts = image_rel.split("/")
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return posixpath.splitext("/".join(parts))[0] + ".txt"


class YoloReader:
    name: ClassVar[str] = "yolo"

    def _yaml(self, source: str) -> str | None:
        names = media.listdir(source)
        for n in _YAML_NAMES:
            if n in names:
                return media.join(source, n)
        return None

    def detect(self, source: str) -> bool:
        """A yaml file, or a folder with data.yaml or a ``classes.txt`` this reader would use.

        Cheap: a listing of the folder and a stat; ``labels/`` is listed only when it has no ``classes.txt`` of its
        own (then it holds split folders, or it is not YOLO: ``images/`` + ``labels/*.xml`` is Pascal VOC).
        """
        if source.lower().endswith((".yaml", ".yml")):
            return True
        if not media.isdir(source):
            return False
        names = media.listdir(source)
        if self._yaml(source) is not None or "classes.txt" in names:
            return True
        return "labels" in names and bool(_classes_files(source))

    def _classes_file(self, root: str) -> str:
        """The ``classes.txt`` that names the classes (see ``_classes_files``); several different ones are an error
        naming two of them."""
        found = _classes_files(root)
        if not found:
            raise IngestError("no data.yaml or classes.txt found: cannot name the classes", root)
        texts = [media.read_text(f).split() for f in found]
        for f, t in zip(found[1:], texts[1:]):
            if t != texts[0]:
                raise IngestError(f"this classes.txt differs from {found[0]}; which one names the classes?", f)
        return found[0]

    def _config(self, source: str) -> tuple[str, list[str], dict[str, list[str]], list[Issue]]:
        """(root, class names, split -> image folders or list files relative to root, issues)."""
        yaml_path = source if source.lower().endswith((".yaml", ".yml")) else self._yaml(source)
        if yaml_path is None:
            root = source
            classes = self._classes_file(root)
            refuse_outside(classes, root, "classes.txt")
            names = [ln.strip() for ln in media.read_text(classes).splitlines() if ln.strip()]
            if not names:
                raise IngestError("classes.txt names no classes (one class name per line)", classes)
            image_root = media.join(root, "images") if media.isdir(media.join(root, "images")) else root
            subdirs = [d for d in media.listdir(image_root) if media.isdir(media.join(image_root, d))]
            prefix = "images/" if image_root != root else ""
            splits = {d: [prefix + d] for d in subdirs} if subdirs else {"": [prefix.rstrip("/") or "."]}
            return root, names, splits, []
        if yaml_path != source:  # found by listing the folder, not named by the user
            refuse_outside(yaml_path, source, "data.yaml")
        text = media.read_text(yaml_path)
        if not text.strip():
            raise IngestError("the file is empty; expected 'names' and 'train'/'val'/'test' entries", yaml_path)
        try:
            cfg = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            loc = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
            raise IngestError(f"malformed YAML: {getattr(e, 'problem', e)}", yaml_path, loc) from None
        if not isinstance(cfg, dict) or "names" not in cfg:
            raise IngestError("data.yaml needs a 'names' entry (list or {index: name})", yaml_path)
        raw = cfg["names"]
        if isinstance(raw, dict):
            try:
                keys = sorted(int(k) for k in raw)
            except (TypeError, ValueError):
                raise IngestError("'names' keys must be class indices 0..n-1", yaml_path, "names") from None
            if keys != list(range(len(keys))):
                raise IngestError("'names' keys must be 0..n-1 without gaps", yaml_path, "names")
            names = [str(raw[k] if k in raw else raw[str(k)]) for k in keys]
        elif isinstance(raw, list):
            names = [str(n) for n in raw]
        else:
            raise IngestError("'names' must be a list or a mapping", yaml_path, "names")
        base = posixpath.dirname(yaml_path)
        root, issues = _yaml_root(cfg.get("path"), base, yaml_path)
        splits: dict[str, list[str]] = {}
        for split in ("train", "val", "test"):
            entry = cfg.get(split)
            if not entry:
                continue
            entries = entry if isinstance(entry, list) else [entry]
            splits[split] = [_split_entry(str(e), root, yaml_path, split) for e in entries]
        if not splits:
            raise IngestError("data.yaml names no 'train', 'val' or 'test' images", yaml_path)
        return root, names, splits, issues

    def read(self, source: str, images: str | None, progress: ProgressCallback) -> ParsedDataset:
        root, names, splits, issues = self._config(source.rstrip("/"))
        skipped: list[str] = []
        all_files = media.find_files(root, None, skipped)
        issues += skipped_folder_issues(root, skipped)
        filepaths: list[str] = []
        split_of: list[str | None] = []
        origin: list[str] = []
        for split, entries in splits.items():
            for entry in entries:
                for rel, where in self._images_of(root, entry, all_files):
                    filepaths.append(rel)
                    split_of.append(split or None)
                    origin.append(f"split {split!r} ({where})" if split else where)
        if not filepaths:
            raise IngestError("no images found", source)
        repeat = first_repeat(filepaths)
        if repeat is not None:
            a, b = repeat
            raise IngestError(
                f"image {filepaths[b]!r} is listed twice: in {origin[a]} and in {origin[b]}; each image may appear "
                "once (in one split)",
                source,
            )
        n = len(filepaths)
        listed = set(all_files)
        present = np.fromiter((p in listed for p in filepaths), bool, n)
        missing = np.zeros(n, bool)
        issues += flag_links_outside(root, filepaths, root, missing, lambda i: origin[i])
        issues += [
            Issue(
                "missing_image", media.join(root, filepaths[i]), origin[i], "image not found; its labels were skipped"
            )
            for i in np.flatnonzero(~present & ~missing)
        ]
        missing |= ~present
        width = np.zeros(n, np.int32)
        height = np.zeros(n, np.int32)
        readable = np.flatnonzero(~missing)
        unreadable = read_sizes(root, filepaths, readable, width, height, missing, progress, lambda i: origin[i])
        for issue in unreadable:
            if issue.kind == "unreadable_image":
                issue.message += "; its labels were skipped (YOLO boxes need the image size)"
        issues += unreadable
        label_files = {f for f in all_files if f.lower().endswith(".txt")}
        label_of = [label_path_for(rel) for rel in filepaths]
        used = [(i, lp) for i, lp in enumerate(label_of) if lp in label_files]
        refuse_links_outside(root, [lp for _, lp in used], root)
        rows: list[tuple[Any, ...]] = []
        has_polygon = False
        for k, (i, lp) in enumerate(used):
            if k % 500 == 0:
                progress("read label files", k, len(used))
            label_files.discard(lp)
            if missing[i]:
                continue
            uri = media.join(root, lp)
            for line_no, cls, vals, _ in _parse_lines(uri, len(names), predictions=False):
                if len(vals) == 4:
                    cx, cy, w, h = vals
                    poly = None
                else:
                    xs, ys = np.asarray(vals[0::2]), np.asarray(vals[1::2])
                    cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
                    w, h = xs.max() - xs.min(), ys.max() - ys.min()
                    poly = [float(v) * (width[i] if j % 2 == 0 else height[i]) for j, v in enumerate(vals)]
                    has_polygon = True
                rows.append((i, cls, cx, cy, w, h, poly, uri, f"line {line_no}"))
        progress("read label files", len(used), len(used))
        issues += [
            Issue("orphan_label", media.join(root, f), "", "label file has no matching image")
            for f in sorted(label_files)
            if "/labels/" in f"/{f}" and posixpath.basename(f) != "classes.txt"
        ]
        anns, box_issues = _to_records(rows, width, height, has_polygon, None, source)
        issues += box_issues
        issues += note_past_border(anns.bbox, anns.sample_index, width, height, source, filepaths)
        samples = SampleRecords(filepaths, width, height, split_of, filepaths, missing)
        info = {"label_ext_ids": [str(i) for i in range(len(names))]}
        return ParsedDataset("yolo", root, names, samples, anns, issues, info)

    def _images_of(self, root: str, entry: str, all_files: list[str]) -> list[tuple[str, str]]:
        """(image path relative to root, where it was listed) for a split folder or a list file."""
        path = media.join(root, entry) if entry != "." else root
        if entry.lower().endswith(".txt"):
            refuse_outside(path, root, "image list")
            listed = []
            for k, line in enumerate(media.read_text(path).splitlines()):
                line = line.strip()
                if line:
                    rel = media.safe_relpath(line.removeprefix("./"), path, f"line {k + 1}")
                    listed.append((rel, f"{entry} line {k + 1}"))
            return listed
        refuse_outside(path, root, "split folder")
        prefix = "" if entry == "." else entry.rstrip("/") + "/"
        return [(f, entry) for f in all_files if f.startswith(prefix) and f.lower().endswith(media.IMAGE_EXTENSIONS)]

    def detect_predictions(self, source: str) -> bool:
        return media.isdir(source) and bool(media.find_files(source, [".txt"]))

    def read_predictions(self, source: str, index: SampleIndex, progress: ProgressCallback) -> ParsedPredictions:
        files = media.find_files(source, [".txt"])
        refuse_links_outside(source, files, source)
        table = index.by_suffix()
        rows = []
        issues: list[Issue] = []
        for k, rel in enumerate(files):
            if k % 500 == 0:
                progress("read predictions", k, len(files))
            uri = media.join(source, rel)
            si = lookup_suffix(table, rel)
            if si is None:
                issues.append(Issue("unmatched_prediction", uri, "", "no image with this name"))
                continue
            for line_no, cls, vals, conf in _parse_lines(uri, len(index.labels), predictions=True):
                rows.append((si, cls, *vals, None, uri, f"line {line_no}", conf))
        progress("read predictions", len(files), len(files))
        score = np.asarray([r[9] for r in rows], np.float64)
        anns, box_issues = _to_records([r[:9] for r in rows], index.width, index.height, False, score, source)
        issues += box_issues
        issues += note_past_border(anns.bbox, anns.sample_index, index.width, index.height, source, index.filepath)
        return ParsedPredictions(anns, [], issues)


def _classes_files(root: str) -> list[str]:
    """``classes.txt`` in the folder or in ``labels/``; else every ``labels/<split>/classes.txt`` (LabelImg writes it
    beside the labels it saves)."""
    for candidate in (media.join(root, "classes.txt"), media.join(root, "labels", "classes.txt")):
        if media.exists(candidate):
            return [candidate]
    labels = media.join(root, "labels")
    found = [media.join(labels, d, "classes.txt") for d in media.listdir(labels) if "." not in d]
    return [f for f in found if media.exists(f)]


def _yaml_root(raw: Any, base: str, yaml_path: str) -> tuple[str, list[Issue]]:
    """The folder data.yaml's ``path:`` names, which must lie inside ``base`` (the folder of data.yaml).

    An existing folder outside is refused: VisionLens serves the files of the folder it ingests, and on a shared
    server ``path: ../../home/someone`` must not widen that. A ``path:`` that does not exist here (Colab's
    ``/content/...``, another machine's home) is ignored with an issue and the yaml's folder is used, as
    Ultralytics does.
    """
    if not isinstance(raw, str) or not raw.strip():
        return base, []
    candidate = raw if "://" in raw or raw.startswith("/") else media.join(base, raw)
    exists = media.isdir(candidate)
    if exists and media.is_within(candidate, base):
        return media.normalize(candidate), []
    if exists:
        raise IngestError(
            f"'path' is {raw!r}, which leads outside the dataset folder {base!r}; VisionLens reads only files inside "
            "the folder it ingests: put data.yaml in the data folder, or set 'path' to a folder inside it",
            yaml_path,
            "path",
        )
    issue = Issue(
        "yaml_path_ignored",
        yaml_path,
        "path",
        f"'path' {raw!r} is not a folder here (written on another machine?); images are read relative to the folder "
        "of data.yaml",
    )
    return base, [issue]


def _split_entry(entry: str, root: str, yaml_path: str, split: str) -> str:
    """A ``train``/``val``/``test`` entry relative to root. Roboflow writes ``../train/images``; Ultralytics reads
    that as ``train/images`` when the ``../`` path does not exist, and so do we (the ``../`` one is never read)."""
    if entry.startswith("../"):
        inner = posixpath.normpath(entry[3:])
        if inner != ".." and not inner.startswith("../") and media.exists(media.join(root, inner)):
            return media.safe_relpath(inner, yaml_path, split)
    return media.safe_relpath(entry, yaml_path, split)


def _parse_lines(uri: str, num_classes: int, predictions: bool) -> Iterator[tuple[int, int, list[float], Any]]:
    """Yield ``(line, class, values, confidence)``; every malformed row is an error naming file and line.

    Non-finite values and negative sizes pass through: the caller drops those boxes with an issue (the policy of
    every format). Confidence is passed through as given.
    """
    text = media.read_text(uri)
    for line_no, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        loc = f"line {line_no}"
        n = len(parts)
        if predictions:
            if n != 6:
                raise IngestError(f"{n} columns; a prediction row is 'class cx cy w h confidence'", uri, loc)
        elif not (n == 5 or (n >= 7 and n % 2 == 1)):
            raise IngestError(
                f"{n} columns; expected 5 ('class cx cy w h') or a polygon 'class x1 y1 x2 y2 x3 y3 ...'", uri, loc
            )
        try:
            cls = int(parts[0])
        except ValueError:
            raise IngestError(f"class {parts[0]!r} is not an integer", uri, loc) from None
        if not 0 <= cls < num_classes:
            raise IngestError(f"class {cls} is out of range (the dataset has {num_classes} classes)", uri, loc)
        try:
            vals = [float(p) for p in parts[1:]]
        except ValueError:
            raise IngestError(f"non-numeric value in {line.strip()!r}", uri, loc) from None
        conf = vals.pop() if predictions else None
        sizes = (2, 3) if len(vals) == 4 else ()
        bad = [
            v
            for j, v in enumerate(vals)
            if math.isfinite(v) and not (j in sizes and v < 0) and not (-_TOLERANCE <= v <= 1 + _TOLERANCE)
        ]
        if bad:
            raise IngestError(f"value {bad[0]} is outside [0, 1]; YOLO coordinates are normalised", uri, loc)
        yield line_no, cls, vals, conf


def _to_records(
    rows: list[tuple[Any, ...]],
    width: np.ndarray,
    height: np.ndarray,
    has_polygon: bool,
    score: np.ndarray | None,
    source: str,
) -> tuple[AnnotationRecords, list[Issue]]:
    """Normalised rows ``(sample, class, cx, cy, w, h, polygon, file, location)`` to pixel xywh in float64, as given
    (no clipping), dropping the rows the shared policy drops."""
    if not rows:
        records = AnnotationRecords.empty()
        if score is not None:
            records.confidence = np.zeros(0)
        return records, []
    si = np.asarray([r[0] for r in rows], np.int64)
    cls = np.asarray([r[1] for r in rows], np.int32)
    v = np.asarray([r[2:6] for r in rows], np.float64)
    W = width[si].astype(np.float64)
    H = height[si].astype(np.float64)
    bbox = np.stack([(v[:, 0] - v[:, 2] / 2) * W, (v[:, 1] - v[:, 3] / 2) * H, v[:, 2] * W, v[:, 3] * H], axis=1)

    def where(i: int) -> tuple[str, str]:
        return rows[i][7], rows[i][8]

    keep, issues = check_boxes(bbox, where, score)
    if score is not None:
        issues += check_scores(score, where, source)
    polygons = [[r[6]] if r[6] is not None else None for r, ok in zip(rows, keep) if ok] if has_polygon else None
    records = AnnotationRecords(si[keep], cls[keep], bbox[keep], polygon=polygons)
    if score is not None:
        records.confidence = score[keep]
    return records, issues
