"""Pascal VOC: one XML file per image (``Annotations/``), images in ``JPEGImages/``, splits in ``ImageSets/Main``.

VOC boxes are 1-based inclusive pixel corners; they are stored as COCO-style xywh (``x = xmin - 1``,
``w = xmax - xmin + 1``). ``difficult`` objects are stored as crowd (ignore) regions, which is how the VOC metric
treats them.
"""

from __future__ import annotations

import posixpath
from typing import ClassVar
from xml.etree.ElementTree import Element, ParseError

import numpy as np
from defusedxml import ElementTree

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
from .boxes import note_past_border


def parse_xml(uri: str) -> Element:
    data = media.read_bytes(uri)
    try:
        return ElementTree.fromstring(data)
    except ParseError as e:
        line, col = e.position
        raise IngestError(f"malformed XML: {e.msg if hasattr(e, 'msg') else e}", uri, f"line {line}, column {col + 1}") from None


def _text(el: Element, path: str, uri: str, where: str, required: bool = True) -> str | None:
    found = el.find(path)
    if found is None or found.text is None or not found.text.strip():
        if required:
            raise IngestError(f"missing <{path}>", uri, where)
        return None
    return found.text.strip()


def _num(el: Element, path: str, uri: str, where: str) -> float:
    raw = _text(el, path, uri, where)
    try:
        return float(raw)  # type: ignore[arg-type]
    except ValueError:
        raise IngestError(f"<{path}> is {raw!r}, not a number", uri, where) from None


def _objects(root: Element, uri: str, scored: bool) -> list[tuple[str, list[float], bool, float | None]]:
    out = []
    for k, obj in enumerate(root.findall("object")):
        where = f"object[{k + 1}]"
        name = _text(obj, "name", uri, where)
        box = obj.find("bndbox")
        if box is None:
            raise IngestError("missing <bndbox>", uri, where)
        xmin, ymin, xmax, ymax = (_num(box, t, uri, f"{where}/bndbox") for t in ("xmin", "ymin", "xmax", "ymax"))
        if xmax < xmin or ymax < ymin:
            raise IngestError(f"box has xmax < xmin or ymax < ymin ({xmin}, {ymin}, {xmax}, {ymax})", uri, where)
        difficult = (_text(obj, "difficult", uri, where, required=False) or "0") == "1"
        score = None
        if scored:
            raw = _text(obj, "score", uri, where, required=False) or _text(obj, "confidence", uri, where, required=False)
            if raw is None:
                raise IngestError("prediction object needs <score> (or <confidence>)", uri, where)
            try:
                score = float(raw)
            except ValueError:
                raise IngestError(f"<score> is {raw!r}, not a number", uri, where) from None
        out.append((str(name), [xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1], difficult, score))
    return out


class VocReader:
    name: ClassVar[str] = "voc"

    def _ann_dir(self, source: str) -> str:
        return media.join(source, "Annotations") if media.isdir(media.join(source, "Annotations")) else source

    def detect(self, source: str) -> bool:
        if not media.isdir(source):
            return False
        return any(n.lower().endswith(".xml") for n in media.listdir(self._ann_dir(source)))

    def _splits(self, source: str) -> dict[str, str]:
        folder = media.join(source, "ImageSets", "Main")
        out: dict[str, str] = {}
        for split in ("train", "val", "test"):
            path = media.join(folder, f"{split}.txt")
            if media.exists(path):
                for line in media.read_text(path).splitlines():
                    if line.strip():
                        out.setdefault(line.split()[0], split)
        return out

    def read(self, source: str, images: str | None, progress: ProgressCallback) -> ParsedDataset:
        source = source.rstrip("/")
        ann_dir = self._ann_dir(source)
        xml_files = [f for f in media.find_files(ann_dir, [".xml"])]
        if not xml_files:
            raise IngestError("no VOC XML files found", ann_dir)
        image_dir = images or (media.join(source, "JPEGImages") if media.isdir(media.join(source, "JPEGImages")) else source)
        root = source if image_dir.startswith(source + "/") or image_dir == source else image_dir
        prefix = image_dir[len(root) + 1 :] if image_dir != root else ""
        split_of = self._splits(source)
        labels: dict[str, int] = {}
        filepaths: list[str] = []
        rel_names: list[str] = []
        width = np.zeros(len(xml_files), np.int32)
        height = np.zeros(len(xml_files), np.int32)
        splits: list[str | None] = []
        ext: list[str] = []
        rows: list[tuple[int, int, list[float], bool]] = []
        for i, rel in enumerate(xml_files):
            if i % 500 == 0:
                progress("read XML files", i, len(xml_files))
            uri = media.join(ann_dir, rel)
            doc = parse_xml(uri)
            fname = _text(doc, "filename", uri, "annotation")
            name = media.safe_relpath(fname, uri, "filename")  # type: ignore[arg-type]
            rel_names.append(name)
            filepaths.append(posixpath.join(prefix, name) if prefix else name)
            stem = posixpath.splitext(posixpath.basename(name))[0]
            ext.append(stem)
            splits.append(split_of.get(stem))
            size = doc.find("size")
            if size is not None and _text(size, "width", uri, "size", required=False):
                width[i] = int(_num(size, "width", uri, "size"))
                height[i] = int(_num(size, "height", uri, "size"))
            for label, box, difficult, _ in _objects(doc, uri, scored=False):
                li = labels.setdefault(label, len(labels))
                rows.append((i, li, box, difficult))
        progress("read XML files", len(xml_files), len(xml_files))
        if len(set(filepaths)) != len(filepaths):
            seen: set[str] = set()
            dup = next(p for p in filepaths if p in seen or seen.add(p))  # type: ignore[func-returns-value]
            raise IngestError(f"two XML files describe the same image {dup!r}", ann_dir)
        present = media.existing_mask(image_dir, rel_names)
        for i in np.flatnonzero(((width <= 0) | (height <= 0)) & present):
            width[i], height[i] = media.image_size(media.join(image_dir, rel_names[i]))
        issues = [
            Issue("missing_image", media.join(image_dir, rel_names[i]), xml_files[i], "image file not found")
            for i in np.flatnonzero(~present)
        ]
        if rows:
            si = np.asarray([r[0] for r in rows], np.int64)
            bbox = np.asarray([r[2] for r in rows], np.float64)
            issues += note_past_border(bbox, si, width, height, ann_dir, filepaths)
            anns = AnnotationRecords(
                si, np.asarray([r[1] for r in rows], np.int32), bbox, iscrowd=np.asarray([r[3] for r in rows], bool)
            )
        else:
            anns = AnnotationRecords.empty()
        samples = SampleRecords(filepaths, width, height, splits, ext, ~present)
        names = sorted(labels, key=labels.get)  # type: ignore[arg-type]
        return ParsedDataset("voc", root, names, samples, anns, issues, {"label_ext_ids": names})

    def detect_predictions(self, source: str) -> bool:
        return media.isdir(source) and bool(media.find_files(source, [".xml"]))

    def read_predictions(self, source: str, index: SampleIndex, progress: ProgressCallback) -> ParsedPredictions:
        files = media.find_files(source, [".xml"])
        table = index.by_suffix()
        labels = {n: i for i, n in enumerate(index.labels)}
        new_labels: list[str] = []
        rows: list[tuple[int, int, list[float], float]] = []
        issues: list[Issue] = []
        for k, rel in enumerate(files):
            if k % 500 == 0:
                progress("read predictions", k, len(files))
            uri = media.join(source, rel)
            doc = parse_xml(uri)
            fname = _text(doc, "filename", uri, "annotation", required=False)
            si = lookup_suffix(table, media.safe_relpath(fname, uri, "filename")) if fname else None
            if si is None:
                si = lookup_suffix(table, rel)
            if si is None:
                issues.append(Issue("unmatched_prediction", uri, "", "no image with this name"))
                continue
            for label, box, _, score in _objects(doc, uri, scored=True):
                if label not in labels:
                    labels[label] = len(labels)
                    new_labels.append(label)
                rows.append((si, labels[label], box, score))  # type: ignore[arg-type]
        progress("read predictions", len(files), len(files))
        if not rows:
            return ParsedPredictions(AnnotationRecords.empty(), new_labels, issues)
        si = np.asarray([r[0] for r in rows], np.int64)
        bbox = np.asarray([r[2] for r in rows], np.float64)
        clip_issues = note_past_border(bbox, si, index.width, index.height, source, index.filepath)
        anns = AnnotationRecords(
            si, np.asarray([r[1] for r in rows], np.int32), bbox, confidence=np.asarray([r[3] for r in rows])
        )
        if new_labels:
            issues.append(Issue("new_labels", source, "", f"labels not in ground truth: {', '.join(new_labels)}"))
        return ParsedPredictions(anns, new_labels, issues + clip_issues)


