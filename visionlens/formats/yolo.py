"""YOLO: ``data.yaml`` (or ``classes.txt``) plus one ``.txt`` per image with normalised ``class cx cy w h`` rows.

Boxes become pixels using each image's size, read from its header only.
"""

from __future__ import annotations

import posixpath
from concurrent.futures import ThreadPoolExecutor
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
        if source.lower().endswith((".yaml", ".yml")):
            return True
        if not media.isdir(source):
            return False
        names = media.listdir(source)
        return self._yaml(source) is not None or "classes.txt" in names or (
            "labels" in names and "images" in names
        )

    def _config(self, source: str) -> tuple[str, list[str], dict[str, list[str]]]:
        """(root, class names, split -> image folders or list files relative to root)."""
        yaml_path = source if source.lower().endswith((".yaml", ".yml")) else self._yaml(source)
        if yaml_path is None:
            root = source
            classes = media.join(root, "classes.txt")
            if not media.exists(classes):
                classes = media.join(root, "labels", "classes.txt")
            if not media.exists(classes):
                raise IngestError("no data.yaml or classes.txt found: cannot name the classes", source)
            names = [ln.strip() for ln in media.read_text(classes).splitlines() if ln.strip()]
            image_root = media.join(root, "images") if media.isdir(media.join(root, "images")) else root
            subdirs = [d for d in media.listdir(image_root) if media.isdir(media.join(image_root, d))]
            prefix = "images/" if image_root != root else ""
            splits = {d: [prefix + d] for d in subdirs} if subdirs else {"": [prefix.rstrip("/") or "."]}
            return root, names, splits
        text = media.read_text(yaml_path)
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
        root = base
        if isinstance(cfg.get("path"), str):
            candidate = cfg["path"] if "://" in cfg["path"] or cfg["path"].startswith("/") else media.join(base, cfg["path"])
            if media.isdir(candidate):
                root = candidate.rstrip("/")
        splits: dict[str, list[str]] = {}
        for split in ("train", "val", "test"):
            entry = cfg.get(split)
            if not entry:
                continue
            entries = entry if isinstance(entry, list) else [entry]
            splits[split] = [media.safe_relpath(str(e), yaml_path, split) for e in entries]
        if not splits:
            raise IngestError("data.yaml names no 'train', 'val' or 'test' images", yaml_path)
        return root, names, splits

    def read(self, source: str, images: str | None, progress: ProgressCallback) -> ParsedDataset:
        root, names, splits = self._config(source.rstrip("/"))
        filepaths: list[str] = []
        split_of: list[str | None] = []
        for split, entries in splits.items():
            for entry in entries:
                for rel in self._images_of(root, entry):
                    filepaths.append(rel)
                    split_of.append(split or None)
        if not filepaths:
            raise IngestError("no images found", source)
        if len(set(filepaths)) != len(filepaths):
            seen: set[str] = set()
            dup = next(p for p in filepaths if p in seen or seen.add(p))  # type: ignore[func-returns-value]
            raise IngestError(f"image {dup!r} is listed in two splits", source)
        n = len(filepaths)
        width, height, missing = _image_sizes(root, filepaths, progress)
        label_files = set(media.find_files(root, [".txt"]))
        rows: list[tuple[int, int, float, float, float, float, list[float] | None]] = []
        has_polygon = False
        for i, rel in enumerate(filepaths):
            if i % 500 == 0:
                progress("read label files", i, n)
            lp = label_path_for(rel)
            if lp not in label_files:
                continue
            label_files.discard(lp)
            if missing[i]:
                continue
            for line_no, cls, vals, _ in _parse_lines(media.join(root, lp), len(names), predictions=False):
                if len(vals) == 4:
                    cx, cy, w, h = vals
                    poly = None
                else:
                    xs, ys = np.asarray(vals[0::2]), np.asarray(vals[1::2])
                    cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
                    w, h = xs.max() - xs.min(), ys.max() - ys.min()
                    poly = [float(v) * (width[i] if k % 2 == 0 else height[i]) for k, v in enumerate(vals)]
                    has_polygon = True
                rows.append((i, cls, cx, cy, w, h, poly))
        progress("read label files", n, n)
        issues = [
            Issue("orphan_label", media.join(root, f), "", "label file has no matching image")
            for f in sorted(label_files)
            if "/labels/" in f"/{f}" and posixpath.basename(f) != "classes.txt"
        ]
        issues += [
            Issue("missing_image", media.join(root, filepaths[i]), "", "image could not be read; its labels were skipped")
            for i in np.flatnonzero(missing)
        ]
        anns = _to_records(rows, width, height, has_polygon)
        samples = SampleRecords(filepaths, width, height, split_of, filepaths, missing)
        info = {"label_ext_ids": [str(i) for i in range(len(names))]}
        return ParsedDataset("yolo", root, names, samples, anns, issues, info)

    def _images_of(self, root: str, entry: str) -> list[str]:
        path = media.join(root, entry) if entry != "." else root
        if entry.lower().endswith(".txt"):
            listed = []
            for k, line in enumerate(media.read_text(path).splitlines()):
                line = line.strip()
                if line:
                    listed.append(media.safe_relpath(line.removeprefix("./"), path, f"line {k + 1}"))
            return listed
        prefix = "" if entry == "." else entry.rstrip("/") + "/"
        return [prefix + f for f in media.find_files(path, media.IMAGE_EXTENSIONS)]

    def detect_predictions(self, source: str) -> bool:
        return media.isdir(source) and bool(media.find_files(source, [".txt"]))

    def read_predictions(self, source: str, index: SampleIndex, progress: ProgressCallback) -> ParsedPredictions:
        files = media.find_files(source, [".txt"])
        table = index.by_suffix()
        rows = []
        issues: list[Issue] = []
        for k, rel in enumerate(files):
            if k % 500 == 0:
                progress("read predictions", k, len(files))
            si = lookup_suffix(table, rel)
            if si is None:
                issues.append(Issue("unmatched_prediction", media.join(source, rel), "", "no image with this name"))
                continue
            for _, cls, vals, conf in _parse_lines(media.join(source, rel), len(index.labels), predictions=True):
                rows.append((si, cls, *vals, None, conf))
        progress("read predictions", len(files), len(files))
        anns = _to_records([r[:7] for r in rows], index.width, index.height, False)
        anns.confidence = np.asarray([r[7] for r in rows], np.float64)
        return ParsedPredictions(anns, [], issues)


def _image_sizes(root: str, filepaths: list[str], progress: ProgressCallback) -> tuple[np.ndarray, ...]:
    n = len(filepaths)
    width = np.zeros(n, np.int32)
    height = np.zeros(n, np.int32)
    missing = np.zeros(n, bool)

    def one(i: int) -> None:
        try:
            width[i], height[i] = media.image_size(media.join(root, filepaths[i]))
        except Exception:  # noqa: BLE001 - unreadable images are reported, not fatal
            missing[i] = True

    workers = 16 if media.is_remote(root) else 4
    with ThreadPoolExecutor(workers) as pool:
        for done, _ in enumerate(pool.map(one, range(n))):
            if done % 1000 == 0:
                progress("read image sizes", done, n)
    progress("read image sizes", n, n)
    return width, height, missing


def _parse_lines(uri: str, num_classes: int, predictions: bool) -> Any:
    """Yield ``(line, class, values, confidence)``; every malformed row is an error naming file and line."""
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
        conf = None
        if predictions:
            conf = vals.pop()
            if not 0.0 <= conf <= 1.0:
                raise IngestError(f"confidence {conf} is outside [0, 1]", uri, loc)
        bad = [v for v in vals if not (-_TOLERANCE <= v <= 1 + _TOLERANCE)]
        if bad:
            raise IngestError(f"value {bad[0]} is outside [0, 1]; YOLO coordinates are normalised", uri, loc)
        yield line_no, cls, vals, conf


def _to_records(rows: list[tuple[Any, ...]], width: np.ndarray, height: np.ndarray, has_polygon: bool) -> AnnotationRecords:
    if not rows:
        return AnnotationRecords.empty()
    si = np.asarray([r[0] for r in rows], np.int64)
    cls = np.asarray([r[1] for r in rows], np.int32)
    v = np.asarray([r[2:6] for r in rows], np.float64).clip(0, 1)
    W = width[si].astype(np.float64)
    H = height[si].astype(np.float64)
    bbox = np.stack([(v[:, 0] - v[:, 2] / 2) * W, (v[:, 1] - v[:, 3] / 2) * H, v[:, 2] * W, v[:, 3] * H], axis=1)
    bbox[:, 0:2] = np.maximum(bbox[:, 0:2], 0)
    polygons = [[r[6]] if r[6] is not None else None for r in rows] if has_polygon else None
    return AnnotationRecords(si, cls, bbox, polygon=polygons)
