"""Pascal VOC: one XML file per image.

Layouts read without flags:

* classic: ``Annotations/*.xml``, ``JPEGImages/*.jpg``, splits in ``ImageSets/Main/<split>.txt``;
* exports (Roboflow, Kaggle, LabelImg): ``annotations/*.xml`` + ``images/*.jpg`` (any case, optionally with split
  subfolders such as ``annotations/train`` + ``images/train``), or each XML beside its image, also one folder per
  split (``train/a.jpg`` + ``train/a.xml``). Without ``ImageSets/Main``, a split is the first subfolder the XML
  lies in (not counting a folder named like ``images`` or ``annotations``).

An XML names its image by ``<filename>``, and often by ``<folder>`` and ``<path>`` too. The image is looked for, in
order: in the image folder (mirroring the XML's subfolder), beside the XML, in ``<folder>``, then at ``<path>``.
Relative names are resolved inside the dataset folder only, and an absolute ``<path>`` (from the labeller's machine)
only by its trailing parts inside the dataset folder; nothing outside it is ever read.

VOC boxes are 1-based inclusive pixel corners; they are stored as COCO-style xywh (``x = xmin - 1``,
``w = xmax - xmin + 1``), with nothing clipped. ``difficult`` objects are stored as crowd (ignore) regions, which is
how the VOC metric treats them.

Bad input, the same policy as every format (see ``boxes``): a box whose corners are inverted (``xmax < xmin`` or
``ymax < ymin``: a negative width or height) or that holds a NaN or infinite coordinate is dropped with an issue
naming the XML file and ``object[k]``; so is a prediction whose ``<score>`` is NaN or infinite. Boxes past the border
and scores outside [0, 1] are kept as given with one summary issue. An empty XML file, one image described by two
XML files, or an image listed in two split files is an error naming the files. An XML file that is a link out of
the dataset folder is refused; an image that is one is not read (the sample is kept, flagged missing).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
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
from .boxes import check_boxes, check_scores, note_past_border
from .files import (
    declared_size,
    first_repeat,
    flag_links_outside,
    read_sizes,
    refuse_links_outside,
    skipped_folder_issues,
)

_ANNOTATION_DIRS = ("annotations",)
_IMAGE_DIRS = ("jpegimages", "images")
_VOC_ROOT = re.compile(rb"<annotation[\s>]")
_DETECT_SUBFOLDERS = 8

Row = tuple[str, list[float], bool, float | None, str]
"""(label, xywh box, difficult, score, where in the file)"""


def parse_xml(uri: str) -> Element:
    try:
        data = media.read_bytes(uri)
    except OSError as e:
        raise IngestError(f"cannot read the file ({type(e).__name__}: {e.strerror or e})", uri) from None
    if not data.strip():
        raise IngestError("the file is empty; expected a VOC <annotation> XML document", uri)
    try:
        return ElementTree.fromstring(data)
    except ParseError as e:
        line, col = e.position
        raise IngestError(
            f"malformed XML: {e.msg if hasattr(e, 'msg') else e}", uri, f"line {line}, column {col + 1}"
        ) from None


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


def _objects(root: Element, uri: str, scored: bool) -> tuple[list[Row], list[Issue]]:
    """The objects of one file; inverted boxes are dropped here (VOC's own form of a negative width or height)."""
    out: list[Row] = []
    issues: list[Issue] = []
    for k, obj in enumerate(root.findall("object")):
        where = f"object[{k + 1}]"
        name = _text(obj, "name", uri, where)
        box = obj.find("bndbox")
        if box is None:
            raise IngestError("missing <bndbox>", uri, where)
        xmin, ymin, xmax, ymax = (_num(box, t, uri, f"{where}/bndbox") for t in ("xmin", "ymin", "xmax", "ymax"))
        difficult = (_text(obj, "difficult", uri, where, required=False) or "0") == "1"
        score = None
        if scored:
            raw = _text(obj, "score", uri, where, required=False) or _text(
                obj, "confidence", uri, where, required=False
            )
            if raw is None:
                raise IngestError("prediction object needs <score> (or <confidence>)", uri, where)
            try:
                score = float(raw)
            except ValueError:
                raise IngestError(f"<score> is {raw!r}, not a number", uri, where) from None
        if xmax < xmin or ymax < ymin:
            issues.append(
                Issue(
                    "dropped_box",
                    uri,
                    where,
                    f"box has xmax < xmin or ymax < ymin ({xmin}, {ymin}, {xmax}, {ymax}): a negative width or "
                    "height; dropped, it cannot be evaluated",
                )
            )
            continue
        out.append((str(name), [xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1], difficult, score, where))
    return out, issues


def _places_to_look(source: str) -> Iterator[tuple[str, list[str]]]:
    """(folder, names in it) for detection, listed lazily: the folder, its annotation folders and their first few
    subfolders, then its own first few subfolders (a name without a dot is taken for a folder: no stat per name)."""
    seen: set[str] = set()

    def subfolders(folder: str, names: list[str]) -> list[str]:
        return [media.join(folder, n) for n in names if "." not in n][:_DETECT_SUBFOLDERS]

    names = media.listdir(source)
    yield source, names
    seen.add(source)
    for ann in _child_dirs(source, _ANNOTATION_DIRS):
        listing = media.listdir(ann)
        seen.add(ann)
        yield ann, listing
        for sub in subfolders(ann, listing):
            seen.add(sub)
            yield sub, media.listdir(sub)
    for sub in subfolders(source, names):
        if sub not in seen:
            yield sub, media.listdir(sub)


def _child_dirs(folder: str, names: tuple[str, ...]) -> list[str]:
    """Subfolders of ``folder`` whose name is one of ``names`` in any case (``Annotations``, ``annotations``),
    in the order of ``names``."""
    found = {n.lower(): n for n in media.listdir(folder) if n.lower() in names}
    return [media.join(folder, found[n]) for n in names if n in found and media.isdir(media.join(folder, found[n]))]


def _inside(rel: str) -> str | None:
    """``rel`` normalised when it is a relative path that stays inside its folder, else None."""
    cleaned = rel.replace("\\", "/").strip()
    if not cleaned or cleaned.startswith("/") or "://" in cleaned or (len(cleaned) > 1 and cleaned[1] == ":"):
        return None
    norm = posixpath.normpath(cleaned)
    return None if norm in (".", "..") or norm.startswith("../") else norm


def _image_candidates(
    name: str, folder: str | None, path: str | None, xml_sub: str, xml_dir: str | None, image_dirs: list[str]
) -> list[str]:
    """Where the image of one XML file may be, relative to the dataset root, most likely first (see the module)."""
    out: list[str] = []

    def add(*parts: str) -> None:
        rel = _inside(posixpath.join(*[p for p in parts if p])) if any(parts) else None
        if rel is not None:
            out.append(rel)

    for d in image_dirs:
        if xml_sub:
            add(d, xml_sub, name)
        add(d, name)
    if xml_dir is not None:
        add(xml_dir, name)
    named_folder = _inside(folder) if folder else None
    if named_folder:
        add(named_folder, name)
        if xml_dir:
            add(posixpath.dirname(xml_dir), named_folder, name)
    if path:
        rel = _inside(path)
        if rel is not None:
            add(rel)
            if xml_dir:
                add(xml_dir, rel)
        else:  # absolute, from the labeller's machine: only its trailing parts, inside the dataset folder
            parts = [p for p in path.replace("\\", "/").split("/") if p and p not in (".", "..") and ":" not in p]
            for k in range(len(parts), 0, -1):
                add(*parts[-k:])
    return list(dict.fromkeys(out))


class VocReader:
    name: ClassVar[str] = "voc"

    def _ann_dir(self, source: str) -> str:
        found = _child_dirs(source, _ANNOTATION_DIRS)
        return found[0] if found else source

    def detect(self, source: str) -> bool:
        """An ``annotations`` folder (any case, or one level below it), the folder itself, or one of its first few
        subfolders holds VOC XML.

        Cheap: a few directory listings and the head of one XML file, which must have an ``<annotation>`` root (so
        CVAT's ``annotations.xml`` or other XML is not taken for VOC). COCO and YOLO are tried first and neither
        reads XML, so a COCO folder is never read as VOC; a VOC folder has no COCO JSON or YOLO data.yaml.
        """
        if not media.isdir(source):
            return False
        for folder, listing in _places_to_look(source):
            xml = next((n for n in listing if n.lower().endswith(".xml")), None)
            if xml is None:
                continue
            try:
                head = media.read_bytes(media.join(folder, xml))[:4096]
            except OSError:
                return False
            return bool(_VOC_ROOT.search(head)) or not head.strip()  # an empty file: let read() name it
        return False

    def _splits(self, source: str) -> dict[str, str]:
        """Image stem -> split from ``ImageSets/Main/<split>.txt``; per-class files (``dog_train.txt``) are skipped,
        and ``trainval`` when ``train`` or ``val`` is there. A stem in two split files is an error naming both."""
        folder = media.join(source, "ImageSets", "Main")
        files = [n for n in media.listdir(folder) if n.endswith(".txt") and "_" not in n[:-4]]
        stems = [n[:-4] for n in files]
        if "trainval" in stems and ("train" in stems or "val" in stems):
            files.remove("trainval.txt")
        out: dict[str, str] = {}
        first: dict[str, tuple[str, int]] = {}
        for name in files:
            path = media.join(folder, name)
            for line_no, line in enumerate(media.read_text(path).splitlines(), start=1):
                if not line.strip():
                    continue
                stem = line.split()[0]
                if stem in out:
                    where = first[stem]
                    raise IngestError(
                        f"image {stem!r} is listed in two splits: here and in {where[0]} line {where[1]}",
                        path,
                        f"line {line_no}",
                    )
                out[stem] = name[:-4]
                first[stem] = (path, line_no)
        return out

    def read(self, source: str, images: str | None, progress: ProgressCallback) -> ParsedDataset:
        source = source.rstrip("/")
        ann_dir = self._ann_dir(source)
        image_root = images.rstrip("/") if images else None
        if image_root is None or image_root == source or image_root.startswith(source + "/"):
            root = source
        else:
            root = image_root
        skipped: list[str] = []
        all_files = media.find_files(root, None, skipped)
        issues = skipped_folder_issues(root, skipped)
        ann_prefix = _prefix_in(ann_dir, root)
        if ann_prefix is None:
            xml_files = media.find_files(ann_dir, [".xml"])
        else:
            xml_files = [
                f[len(ann_prefix) + 1 :] if ann_prefix else f
                for f in all_files
                if (not ann_prefix or f.startswith(ann_prefix + "/")) and f.lower().endswith(".xml")
            ]
        if not xml_files:
            raise IngestError("no VOC XML files found", ann_dir)
        refuse_links_outside(ann_dir, xml_files, source)
        image_index = {f for f in all_files if f.lower().endswith(media.IMAGE_EXTENSIONS)}
        if image_root is not None:
            image_dirs = [_prefix_in(image_root, root) or ""]
        else:
            image_dirs = [_prefix_in(d, root) or "" for d in _child_dirs(root, _IMAGE_DIRS)]
        split_of = self._splits(source)
        labels: dict[str, int] = {}
        filepaths: list[str] = []
        looked: list[list[str]] = []
        n = len(xml_files)
        width = np.zeros(n, np.int32)
        height = np.zeros(n, np.int32)
        xml_split: list[str | None] = []
        rows: list[tuple[int, int, list[float], bool, str, str]] = []
        for i, rel in enumerate(xml_files):
            if i % 500 == 0:
                progress("read XML files", i, n)
            uri = media.join(ann_dir, rel)
            doc = parse_xml(uri)
            fname = _text(doc, "filename", uri, "annotation")
            name = media.safe_relpath(fname, uri, "filename")  # type: ignore[arg-type]
            xml_sub = posixpath.dirname(rel)
            xml_dir = posixpath.dirname(posixpath.join(ann_prefix, rel)) if ann_prefix is not None else None
            candidates = _image_candidates(
                name,
                _text(doc, "folder", uri, "annotation", required=False),
                _text(doc, "path", uri, "annotation", required=False),
                xml_sub,
                xml_dir,
                image_dirs,
            ) or [name]
            filepaths.append(next((c for c in candidates if c in image_index), candidates[0]))
            looked.append(candidates)
            top = xml_sub.split("/")[0]
            xml_split.append(top if top and top.lower() not in _IMAGE_DIRS + _ANNOTATION_DIRS else None)
            size = doc.find("size")
            if size is not None:
                for side, column in (("width", width), ("height", height)):
                    declared = _text(size, side, uri, "size", required=False)
                    column[i], size_issue = declared_size(declared, uri, f"size/{side}")
                    if size_issue is not None:
                        issues.append(size_issue)
            objects, object_issues = _objects(doc, uri, scored=False)
            issues += object_issues
            for label, box, difficult, _, where in objects:
                li = labels.setdefault(label, len(labels))
                rows.append((i, li, box, difficult, uri, where))
        progress("read XML files", n, n)
        repeat = first_repeat(filepaths)
        if repeat is not None:
            a, b = repeat
            raise IngestError(
                f"two XML files describe the same image {filepaths[b]!r}: this one and "
                f"{media.join(ann_dir, xml_files[a])}",
                media.join(ann_dir, xml_files[b]),
            )
        stems = [posixpath.splitext(posixpath.basename(p))[0] for p in filepaths]
        # stems name images for predictions; where split folders repeat a stem, the path (no extension) does
        ext = stems if first_repeat(stems) is None else [posixpath.splitext(p)[0] for p in filepaths]
        splits = [split_of.get(stem, xml_split[i] if not split_of else None) for i, stem in enumerate(stems)]
        present = np.fromiter((p in image_index for p in filepaths), bool, n)

        def xml_of(i: int) -> str:
            return media.join(ann_dir, xml_files[i])

        missing = np.zeros(n, bool)
        issues += flag_links_outside(root, filepaths, root, missing, xml_of)
        for i in np.flatnonzero(~present & ~missing):
            tried = f" (looked for {', '.join(repr(c) for c in looked[i][:4])})" if len(looked[i]) > 1 else ""
            message = f"image file not found{tried}"
            issues.append(Issue("missing_image", media.join(root, filepaths[i]), xml_of(i), message))
        missing |= ~present
        unknown = np.flatnonzero(((width <= 0) | (height <= 0)) & ~missing)
        issues += read_sizes(root, filepaths, unknown, width, height, missing, progress, xml_of)
        anns = AnnotationRecords.empty()
        if rows:
            si = np.asarray([r[0] for r in rows], np.int64)
            bbox = np.asarray([r[2] for r in rows], np.float64)
            keep, box_issues = check_boxes(bbox, lambda k: (rows[k][4], rows[k][5]))
            issues += box_issues
            si, bbox = si[keep], bbox[keep]
            issues += note_past_border(bbox, si, width, height, ann_dir, filepaths)
            label_index = np.asarray([r[1] for r in rows], np.int32)[keep]
            anns = AnnotationRecords(si, label_index, bbox, iscrowd=np.asarray([r[3] for r in rows], bool)[keep])
        samples = SampleRecords(filepaths, width, height, splits, ext, missing)
        names = sorted(labels, key=labels.get)  # type: ignore[arg-type]
        return ParsedDataset("voc", root, names, samples, anns, issues, {"label_ext_ids": names})

    def detect_predictions(self, source: str) -> bool:
        return media.isdir(source) and bool(media.find_files(source, [".xml"]))

    def read_predictions(self, source: str, index: SampleIndex, progress: ProgressCallback) -> ParsedPredictions:
        files = media.find_files(source, [".xml"])
        refuse_links_outside(source, files, source)
        table = index.by_suffix()
        labels = {n: i for i, n in enumerate(index.labels)}
        new_labels: list[str] = []
        rows: list[tuple[int, int, list[float], float, str, str]] = []
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
            objects, object_issues = _objects(doc, uri, scored=True)
            issues += object_issues
            for label, box, _, score, where in objects:
                if label not in labels:
                    labels[label] = len(labels)
                    new_labels.append(label)
                rows.append((si, labels[label], box, score, uri, where))  # type: ignore[arg-type]
        progress("read predictions", len(files), len(files))
        if new_labels:
            issues.append(
                Issue("new_labels", source, "", f"labels not in ground truth: {', '.join(repr(n) for n in new_labels)}")
            )
        if not rows:
            return ParsedPredictions(AnnotationRecords.empty(), new_labels, issues)
        si = np.asarray([r[0] for r in rows], np.int64)
        bbox = np.asarray([r[2] for r in rows], np.float64)
        score = np.asarray([r[3] for r in rows], np.float64)

        def where(i: int) -> tuple[str, str]:
            return rows[i][4], rows[i][5]

        keep, box_issues = check_boxes(bbox, where, score)
        issues += box_issues + check_scores(score, where, source)
        si, bbox, score = si[keep], bbox[keep], score[keep]
        issues += note_past_border(bbox, si, index.width, index.height, source, index.filepath)
        anns = AnnotationRecords(si, np.asarray([r[1] for r in rows], np.int32)[keep], bbox, confidence=score)
        return ParsedPredictions(anns, new_labels, issues)


def _prefix_in(folder: str, root: str) -> str | None:
    """``folder`` relative to ``root`` ("" when they are the same), or None when it is not inside it."""
    folder, root = folder.rstrip("/"), root.rstrip("/")
    if folder == root:
        return ""
    return folder[len(root) + 1 :] if folder.startswith(root + "/") else None
