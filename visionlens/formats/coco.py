"""COCO instances JSON (one file, or one per split in a folder) and COCO results JSON for predictions.

Boxes are kept exactly as the file gives them; bad boxes and scores follow the policy shared by every format (see
``boxes``): a NaN or infinite coordinate or score, or a negative width or height, drops that box with an issue naming
``annotations[k]`` (predictions: ``[k]``); zero-size boxes, boxes past the border and scores outside [0, 1] are kept
as given. Images listed twice (twice in one file, or in two split files that share an image folder) are an error
naming both entries. An image that cannot be read when its size must come from its header is kept, flagged missing,
with an issue (see ``files.read_sizes``); one that is a link out of the dataset folder is not read (``outside_root``).
"""

from __future__ import annotations

import json
import posixpath
import re
from typing import Any, ClassVar

import numpy as np
import orjson

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
)
from .boxes import check_boxes, check_scores, note_past_border
from .files import declared_size, first_repeat, flag_links_outside, read_sizes, refuse_links_outside

_STANDARD_IMAGE_KEYS = {"id", "file_name", "width", "height", "license", "flickr_url", "coco_url", "date_captured"}


def load_json(uri: str) -> Any:
    """Parse JSON, naming the line and column of a syntax error (orjson is ~5x faster than json on 100 MB files).

    orjson is strict JSON, but Python's own ``json.dump`` writes ``NaN`` and ``Infinity`` by default, so results
    files from Python scripts often hold them: a file orjson refuses is read again with ``json``, and the boxes or
    scores that are not finite are then dropped with an issue instead of the whole file failing.
    """
    try:
        data = media.read_bytes(uri) if not isinstance(uri, bytes) else uri
    except OSError as e:
        raise IngestError(f"cannot read the file ({type(e).__name__}: {e.strerror or e})", str(uri)) from None
    if not data.strip():
        raise IngestError("the file is empty; expected a COCO JSON document", str(uri))
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        error = e
    text = media.decode_utf8(data, str(uri))  # a non-UTF-8 file gets the clearer encoding error
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    raw = data.decode("utf-8", errors="replace")
    line = raw.count("\n", 0, error.pos) + 1
    col = error.pos - (raw.rfind("\n", 0, error.pos) + 1) + 1
    raise IngestError(f"malformed JSON: {error.msg}", str(uri), f"line {line}, column {col}") from None


def _is_instances(doc: Any) -> bool:
    return isinstance(doc, dict) and "images" in doc and ("annotations" in doc or "categories" in doc)


def _split_name(json_path: str) -> str:
    stem = posixpath.splitext(posixpath.basename(json_path))[0]
    return re.sub(r"^(instances|annotations|labels)_", "", stem)


class CocoReader:
    name: ClassVar[str] = "coco"

    def _json_files(self, source: str) -> list[str]:
        if source.lower().endswith(".json"):
            return [source]
        files = []
        for folder in (media.join(source, "annotations"), source):
            for name in media.listdir(folder):
                if name.lower().endswith(".json") and not name.lower().startswith(("predictions", "results")):
                    files.append(media.join(folder, name))
            if files:
                break
        return files

    def detect(self, source: str) -> bool:
        """A JSON file named directly is COCO's (no other format reads JSON), so ``read`` can name what is wrong
        with it; in a folder, the first JSON file must look like COCO, or be an empty file in ``annotations/``."""
        if source.lower().endswith(".json"):
            return True
        for path in self._json_files(source)[:1]:
            try:
                head = media.read_bytes(path)[:4096]
            except OSError:
                return False
            if not head.strip() and posixpath.basename(posixpath.dirname(path)) == "annotations":
                return True
            return b'"images"' in head or b'"categories"' in head or b'"info"' in head or b'"licenses"' in head
        return False

    def _image_dir(self, source: str, json_path: str, split: str | None, images: str | None) -> str:
        if images:
            return images
        base = source if not source.lower().endswith(".json") else posixpath.dirname(json_path)
        parent = posixpath.dirname(base) if posixpath.basename(base) == "annotations" else base
        candidates = []
        if split:
            candidates += [media.join(parent, "images", split), media.join(parent, split)]
        candidates += [media.join(parent, "images"), parent]
        for c in candidates:
            if media.isdir(c):
                return c
        return parent

    def read(self, source: str, images: str | None, progress: ProgressCallback) -> ParsedDataset:
        files = self._json_files(source)
        if not files:
            raise IngestError("no COCO JSON file found (looked in ./annotations and the folder itself)", source)
        if not source.lower().endswith(".json"):  # files found by listing the folder, not named by the user
            refuse_links_outside(source, [f[len(source.rstrip("/")) + 1 :] for f in files], source)
        multi = len(files) > 1
        root = source if not source.lower().endswith(".json") else None
        labels: list[str] = []
        label_ext: list[str] = []
        parts: list[tuple[SampleRecords, AnnotationRecords]] = []
        issues: list[Issue] = []
        polygons: list[Any] = []
        origins: list[tuple[str, int]] = []
        for i, path in enumerate(files):
            progress("read annotation files", i, len(files))
            doc = load_json(path)
            if not _is_instances(doc):
                raise IngestError("not a COCO instances file: expected an object with 'images' and 'annotations'", path)
            split = _split_name(path) if multi or not source.lower().endswith(".json") else None
            image_dir = self._image_dir(source, path, split, images)
            if images or root is None:
                root = image_dir
            prefix = _relative_to(image_dir, root, path)
            labels, label_ext = _merge_categories(doc.get("categories", []), labels, label_ext, path)
            cat_index = {e: j for j, e in enumerate(label_ext)}
            samples, anns, polys, file_issues = _read_instances(
                doc, path, image_dir, root, prefix, split, cat_index, progress
            )
            parts.append((samples, anns))
            origins += [(path, k) for k in range(len(samples))]
            polygons.extend(polys)
            issues += file_issues
        progress("read annotation files", len(files), len(files))
        samples, anns = _concat(parts)
        repeat = first_repeat(samples.filepath)
        if repeat is not None:
            (f1, k1), (f2, k2) = origins[repeat[0]], origins[repeat[1]]
            first = f"images[{k1}]" if f1 == f2 else f"{f1}:images[{k1}]"
            raise IngestError(
                f"image file {samples.filepath[repeat[1]]!r} is listed twice: here and at {first}; "
                "each image may appear once (in one split)",
                f2,
                f"images[{k2}]",
            )
        anns.polygon = polygons if any(p is not None for p in polygons) else None
        info = {"label_ext_ids": label_ext, "annotation_files": files}
        return ParsedDataset("coco", root or source, labels, samples, anns, issues, info)

    def detect_predictions(self, source: str) -> bool:
        return source.lower().endswith(".json")

    def read_predictions(self, source: str, index: SampleIndex, progress: ProgressCallback) -> ParsedPredictions:
        progress("read predictions", 0, 1)
        doc = load_json(source)
        if isinstance(doc, dict) and "annotations" in doc:
            doc = doc["annotations"]  # an instances-style file with scores is accepted too
        if not isinstance(doc, list):
            raise IngestError("COCO results must be a JSON list of {image_id, category_id, bbox, score}", source)
        by_image = index.by_ext_id()
        by_cat = {str(e): j for j, e in enumerate(index.label_ext_ids) if e is not None}
        by_name = {n: j for j, n in enumerate(index.labels)}
        cols = _predictions_fast(doc, by_image, by_cat)
        if cols is None:
            cols = _predictions_checked(doc, by_image, by_cat, by_name, source)
        sample_index, label_index, bbox, score = cols

        def where(k: int) -> tuple[str, str]:
            return source, f"[{k}]"

        keep, issues = check_boxes(bbox, where, score)
        issues += check_scores(score, where, source)
        sample_index, label_index, bbox, score = sample_index[keep], label_index[keep], bbox[keep], score[keep]
        issues += note_past_border(bbox, sample_index, index.width, index.height, source, index.filepath)
        progress("read predictions", 1, 1)
        anns = AnnotationRecords(sample_index, label_index, bbox, confidence=score)
        return ParsedPredictions(anns, [], issues)


def _merge_categories(
    categories: list[Any], labels: list[str], label_ext: list[str], path: str
) -> tuple[list[str], list[str]]:
    """Split files share one label list; the same id must mean the same name in every file."""
    labels, label_ext = list(labels), list(label_ext)
    known = dict(zip(label_ext, labels))
    for k, c in enumerate(categories):
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            raise IngestError("category needs 'id' and 'name'", path, f"categories[{k}]")
        cid, name = str(c["id"]), str(c["name"])
        if cid in known:
            if known[cid] != name:
                raise IngestError(
                    f"category id {cid} is {name!r} here but {known[cid]!r} elsewhere", path, f"categories[{k}]"
                )
            continue
        if name in labels:
            raise IngestError(f"duplicate category name {name!r} (id {cid})", path, f"categories[{k}]")
        known[cid] = name
        labels.append(name)
        label_ext.append(cid)
    return labels, label_ext


def _number(v: Any, file: str, loc: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise IngestError(f"expected a number, got {v!r}", file, loc)
    return float(v)


def _box(v: Any, file: str, loc: str) -> list[float]:
    if not isinstance(v, (list, tuple)) or len(v) != 4:
        raise IngestError(f"bbox must be [x, y, width, height], got {v!r}", file, loc)
    return [_number(x, file, loc) for x in v]


def _read_instances(
    doc: dict[str, Any],
    path: str,
    image_dir: str,
    root: str,
    prefix: str,
    split: str | None,
    cat_index: dict[str, int],
    progress: ProgressCallback,
) -> tuple[SampleRecords, AnnotationRecords, list[Any], list[Issue]]:
    images = doc["images"]
    n = len(images)
    ext_ids: list[str] = []
    filepaths: list[str] = []
    rel_names: list[str] = []
    width = np.zeros(n, np.int32)
    height = np.zeros(n, np.int32)
    custom: dict[str, list[Any]] = {}
    seen: dict[str, int] = {}
    issues: list[Issue] = []
    for k, im in enumerate(images):
        loc = f"images[{k}]"
        if not isinstance(im, dict):
            raise IngestError("expected an object", path, loc)
        if "id" not in im or "file_name" not in im:
            raise IngestError("image needs 'id' and 'file_name'", path, loc)
        eid = str(im["id"])
        if eid in seen:
            raise IngestError(f"duplicate image id {im['id']!r} (first at images[{seen[eid]}])", path, loc)
        seen[eid] = k
        rel = media.safe_relpath(im["file_name"], path, f"{loc}.file_name")
        ext_ids.append(eid)
        rel_names.append(rel)
        filepaths.append(posixpath.join(prefix, rel) if prefix else rel)
        for side, column in (("width", width), ("height", height)):
            column[k], size_issue = declared_size(im.get(side), path, f"{loc}.{side}")
            if size_issue is not None:
                issues.append(size_issue)
        for key, value in im.items():
            if key not in _STANDARD_IMAGE_KEYS and (value is None or isinstance(value, (str, int, float, bool))):
                column = custom.get(key)
                if column is None:
                    column = custom[key] = [None] * n
                column[k] = value
    progress("check image files", 0, n)
    present = media.existing_mask(image_dir, rel_names)
    progress("check image files", n, n)

    def image_loc(k: int) -> str:
        return f"images[{k}]"

    missing = np.zeros(n, bool)
    issues += flag_links_outside(image_dir, rel_names, root, missing, image_loc)
    lost = ~present & ~missing
    issues += [
        Issue("missing_image", media.join(image_dir, rel_names[k]), f"images[{k}]", "image file not found")
        for k in np.flatnonzero(lost)
    ]
    missing |= lost
    unknown = np.flatnonzero(((width <= 0) | (height <= 0)) & ~missing)
    issues += read_sizes(image_dir, rel_names, unknown, width, height, missing, progress, image_loc)
    samples = SampleRecords(filepaths, width, height, [split] * n, ext_ids, missing, custom)

    anns = doc.get("annotations", [])
    m = len(anns)
    progress("read annotations", 0, m)
    raw_pos = {im["id"]: k for k, im in enumerate(images)}
    cols = _annotations_fast(anns, raw_pos, cat_index)
    if cols is None:  # something is wrong: the checked pass finds the first bad element and names it
        cols = _annotations_checked(anns, seen, cat_index, path, progress)
    sample_index, label_index, bbox, area, iscrowd, ann_ids, polygons = cols
    progress("read annotations", m, m)
    keep, box_issues = check_boxes(bbox, lambda k: (path, f"annotations[{k}].bbox"))
    if not keep.all():
        sample_index, label_index, bbox = sample_index[keep], label_index[keep], bbox[keep]
        area, iscrowd, ann_ids = area[keep], iscrowd[keep], ann_ids[keep]
        polygons = [p for p, ok in zip(polygons, keep) if ok]
    issues += box_issues
    issues += note_past_border(bbox, sample_index, width, height, path, filepaths)
    anns_rec = AnnotationRecords(sample_index, label_index, bbox, None, iscrowd, area, None, ann_ids)
    return samples, anns_rec, polygons, issues


def _raw_keys(table: dict[str, int]) -> dict[Any, int]:
    """String keys plus their integer twins, so JSON ints look up without a str() per element."""
    out: dict[Any, int] = dict(table)
    for key, idx in table.items():
        if key.lstrip("-").isdigit():
            out.setdefault(int(key), idx)
    return out


def _predictions_fast(doc: list[Any], by_image: dict[str, int], by_cat: dict[str, int]) -> tuple[Any, ...] | None:
    m = len(doc)
    images, cats = _raw_keys(by_image), _raw_keys(by_cat)
    try:
        sample_index = np.fromiter((images.get(d["image_id"], -1) for d in doc), np.int64, m)
        label_index = np.fromiter((cats.get(d["category_id"], -1) for d in doc), np.int64, m)
        bbox = _numeric([d["bbox"] for d in doc], (m, 4)) if m else np.zeros((0, 4))
        score = _numeric([d["score"] for d in doc], (m,)) if m else np.zeros(0)
    except (KeyError, TypeError):
        return None
    if bbox is None or score is None or (m and (sample_index.min() < 0 or label_index.min() < 0)):
        return None
    return sample_index, label_index.astype(np.int32), bbox, score


def _predictions_checked(
    doc: list[Any], by_image: dict[str, int], by_cat: dict[str, int], by_name: dict[str, int], source: str
) -> tuple[Any, ...]:
    """Element by element, to name the first bad prediction (category ids may also be label names)."""
    n = len(doc)
    sample_index = np.empty(n, np.int64)
    label_index = np.empty(n, np.int32)
    bbox = np.empty((n, 4), np.float64)
    score = np.empty(n, np.float64)
    for k, d in enumerate(doc):
        loc = f"[{k}]"
        if not isinstance(d, dict):
            raise IngestError("expected an object", source, loc)
        try:
            img, cat, box, s = d["image_id"], d["category_id"], d["bbox"], d["score"]
        except KeyError as e:
            raise IngestError(f"missing field {e.args[0]!r}", source, loc) from None
        si = by_image.get(str(img))
        if si is None:
            raise IngestError(f"unknown image_id {img!r}", source, f"{loc}.image_id")
        li = by_cat.get(str(cat), by_name.get(str(cat)))
        if li is None:
            raise IngestError(f"unknown category_id {cat!r}", source, f"{loc}.category_id")
        sample_index[k] = si
        label_index[k] = li
        bbox[k] = _box(box, source, f"{loc}.bbox")
        score[k] = _number(s, source, f"{loc}.score")
    return sample_index, label_index, bbox, score


def _numeric(values: list[Any], shape: tuple[int, ...]) -> np.ndarray | None:
    """Numbers only (numpy would quietly turn "3" or True into 3.0); None when anything else is there."""
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError):
        return None
    if arr.shape != shape or arr.dtype.kind not in "if":
        return None
    return arr.astype(np.float64)


def _annotations_fast(anns: list[Any], raw_pos: dict[Any, int], cat_index: dict[str, int]) -> tuple[Any, ...] | None:
    """Columns for well-formed input in a few comprehensions (~10x the per-element loop); None on any doubt."""
    m = len(anns)
    try:
        ids = [a["id"] for a in anns]
        sample_index = np.fromiter((raw_pos.get(a["image_id"], -1) for a in anns), np.int64, m)
        raw_cat = _raw_keys(cat_index)
        label_index = np.fromiter((raw_cat.get(a["category_id"], -1) for a in anns), np.int64, m)
        bbox = _numeric([a["bbox"] for a in anns], (m, 4)) if m else np.zeros((0, 4))
        areas = [a.get("area") for a in anns]
        crowd = [a.get("iscrowd", 0) for a in anns]
        segs = [a.get("segmentation") for a in anns]
    except (KeyError, TypeError, AttributeError):
        return None
    if bbox is None or (m and (sample_index.min() < 0 or label_index.min() < 0)):
        return None
    ann_ids = _numeric(ids, (m,))
    if ann_ids is None or ann_ids.dtype.kind != "f" or not np.all(ann_ids == np.round(ann_ids)):
        return None
    ann_ids = ann_ids.astype(np.int64)
    if len(np.unique(ann_ids)) != m:
        return None
    area = np.asarray([np.nan if v is None else v for v in areas]) if m else np.zeros(0)
    if area.dtype.kind not in "if":
        return None
    area = np.where(np.isnan(area), bbox[:, 2] * bbox[:, 3], area) if m else area
    polygons = [g if isinstance(g, list) and g and isinstance(g[0], list) else None for g in segs]
    iscrowd = np.asarray([bool(c) for c in crowd], bool)
    return sample_index, label_index.astype(np.int32), bbox, area.astype(np.float64), iscrowd, ann_ids, polygons


def _annotations_checked(
    anns: list[Any], image_pos: dict[str, int], cat_index: dict[str, int], path: str, progress: ProgressCallback
) -> tuple[Any, ...]:
    """The slow, element-by-element pass whose only job is an exact error message."""
    m = len(anns)
    sample_index = np.empty(m, np.int64)
    label_index = np.empty(m, np.int32)
    bbox = np.empty((m, 4), np.float64)
    area = np.empty(m, np.float64)
    iscrowd = np.zeros(m, bool)
    ann_ids = np.empty(m, np.int64)
    polygons: list[Any] = [None] * m
    seen_ann: dict[Any, int] = {}
    step = max(1, m // 20)
    for k, a in enumerate(anns):
        if k % step == 0:
            progress("read annotations", k, m)
        loc = f"annotations[{k}]"
        if not isinstance(a, dict):
            raise IngestError("expected an object", path, loc)
        try:
            aid, img, cat = a["id"], a["image_id"], a["category_id"]
        except KeyError as e:
            raise IngestError(f"missing field {e.args[0]!r}", path, loc) from None
        if aid in seen_ann:
            raise IngestError(f"duplicate annotation id {aid!r} (first at annotations[{seen_ann[aid]}])", path, loc)
        seen_ann[aid] = k
        si = image_pos.get(str(img))
        if si is None:
            raise IngestError(f"image_id {img!r} is not in 'images'", path, f"{loc}.image_id")
        li = cat_index.get(str(cat))
        if li is None:
            raise IngestError(f"unknown category_id {cat!r}", path, f"{loc}.category_id")
        sample_index[k] = si
        label_index[k] = li
        ann_ids[k] = int(aid) if isinstance(aid, int) else k
        box = a.get("bbox")
        if box is None:
            raise IngestError("missing field 'bbox'", path, loc)
        bbox[k] = _box(box, path, f"{loc}.bbox")
        area[k] = _number(a["area"], path, f"{loc}.area") if a.get("area") is not None else bbox[k, 2] * bbox[k, 3]
        iscrowd[k] = bool(a.get("iscrowd", 0))
        seg = a.get("segmentation")
        if isinstance(seg, list) and seg and isinstance(seg[0], list):
            polygons[k] = seg
    return sample_index, label_index, bbox, area, iscrowd, ann_ids, polygons


def _concat(parts: list[tuple[SampleRecords, AnnotationRecords]]) -> tuple[SampleRecords, AnnotationRecords]:
    if len(parts) == 1:
        return parts[0]
    offset = 0
    filepath: list[str] = []
    split: list[str | None] = []
    ext: list[str] = []
    custom_keys = {k for s, _ in parts for k in s.custom}
    custom: dict[str, list[Any]] = {k: [] for k in custom_keys}
    sample_index, ann_parts = [], []
    for s, a in parts:
        filepath += s.filepath
        split += s.split
        # image ids repeat across split files (COCO train/val both start at 1): prefix them with the split
        ext += [f"{sp}/{e}" if sp else e for sp, e in zip(s.split, s.ext_id)]
        for k in custom_keys:
            custom[k] += s.custom.get(k, [None] * len(s))
        sample_index.append(a.sample_index + offset)
        ann_parts.append(a)
        offset += len(s)
    samples = SampleRecords(
        filepath,
        np.concatenate([s.width for s, _ in parts]),
        np.concatenate([s.height for s, _ in parts]),
        split,
        ext,
        np.concatenate([s.missing for s, _ in parts]),
        custom,
    )
    anns = AnnotationRecords(
        np.concatenate(sample_index),
        np.concatenate([a.label_index for a in ann_parts]),
        np.concatenate([a.bbox for a in ann_parts]),
        None,
        np.concatenate([a.iscrowd for a in ann_parts]),
        np.concatenate([a.area for a in ann_parts]),
        None,
        np.concatenate([a.ext_id for a in ann_parts]),
    )
    return samples, anns


def _relative_to(image_dir: str, root: str, path: str) -> str:
    base = root.rstrip("/")
    if image_dir.rstrip("/") == base:
        return ""
    if not image_dir.startswith(base + "/"):
        raise IngestError(f"image folder {image_dir} is outside the dataset folder {root}", path)
    return image_dir[len(base) + 1 :].rstrip("/")
