"""Columnar boxes in, grouped and sorted boxes out: the one place that decides evaluation order.

COCO's numbers depend on tie-breaking, so the order in which boxes reach the matcher is part of the contract.
pycocotools walks images in ascending id, keeps each (image, class) list in annotation order and sorts predictions
with a *stable* sort on descending score.  Everything here reproduces that order over whole columns, as an LSD
radix sort: one stable float argsort for scores and O(n) counting passes for image and class indices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from visionlens.evaluation import _kernels

COCO_AREA_RANGES: dict[str, tuple[float, float]] = {
    "all": (0.0**2, 1e5**2),
    "small": (0.0**2, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e5**2),
}


@dataclass(frozen=True)
class Detections:
    """Boxes of one source (ground truth or predictions) as columns, the shape the DuckDB store returns.

    ``area`` matters for ground truth only: COCO buckets objects by the annotation's (mask) area, not by the box.
    """

    image_id: np.ndarray  # int64[n]
    label: np.ndarray  # int32[n] category index
    bbox: np.ndarray  # float64[n, 4] absolute pixels, COCO xywh
    ann_id: np.ndarray  # int64[n] unique, reported in matches
    score: np.ndarray | None = None  # float64[n], predictions
    iscrowd: np.ndarray | None = None  # bool[n], ground truth
    area: np.ndarray | None = None  # float64[n], ground truth; None means w*h

    def __len__(self) -> int:
        return int(np.asarray(self.image_id).shape[0])


@dataclass(frozen=True)
class Side:
    """One source after filtering and sorting; ``row`` points back into the caller's arrays."""

    row: np.ndarray  # int64: index into the original Detections
    img: np.ndarray  # int64: dense image index (position in the sorted unique image ids)
    cls: np.ndarray  # int64: dense class index (position in the sorted labels)
    group: np.ndarray  # int64: matching group, (class, image) or image alone when class-agnostic
    box: np.ndarray  # float64[n, 4]
    area: np.ndarray  # float64
    crowd: np.ndarray  # bool
    score: np.ndarray  # float64 (zeros for ground truth)


def dense_index(values: np.ndarray, universe: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map values onto positions in a sorted unique ``universe``; (position, found).

    A lookup table when the ids span a range comparable to the data (store row ids, class indices), which is
    several times faster than a binary search; a binary search otherwise.
    """
    n_u = len(universe)
    if n_u == 0 or len(values) == 0:
        return np.zeros(len(values), np.int64), np.zeros(len(values), bool)
    lo, hi = int(universe[0]), int(universe[-1])
    if hi - lo <= 4 * (len(values) + n_u) + (1 << 16):
        lut = np.full(hi - lo + 1, -1, np.int64)
        lut[universe - lo] = np.arange(n_u)
        inside = (values >= lo) & (values <= hi)
        pos = np.where(inside, lut[np.clip(values - lo, 0, hi - lo)], -1)
        found = pos >= 0
        return np.maximum(pos, 0), found
    pos = np.minimum(np.searchsorted(universe, values), n_u - 1)
    return pos.astype(np.int64), universe[pos] == values


def stable_order(*keys: tuple[np.ndarray, int | None]) -> np.ndarray:
    """Row order sorting by ``keys`` (most significant first), ties kept in row order, like ``np.lexsort``.

    Each key is (values, n_distinct) for non-negative integer codes, sorted by counting in O(n), or (values, None)
    for anything else (a stable comparison argsort).
    """
    n = len(keys[0][0])
    order = np.arange(n, dtype=np.int64)
    for values, n_distinct in reversed(keys):
        v = values[order]
        step = _kernels.counting_order(v, n_distinct) if n_distinct is not None else np.argsort(v, kind="stable")
        order = order[step]
    return order


def _columns(det: Detections, is_gt: bool) -> tuple[np.ndarray, ...]:
    n = len(det)
    box = np.ascontiguousarray(det.bbox, dtype=np.float64).reshape(n, 4)
    if is_gt:
        area = box[:, 2] * box[:, 3] if det.area is None else np.asarray(det.area, dtype=np.float64)
        crowd = np.zeros(n, bool) if det.iscrowd is None else np.asarray(det.iscrowd).astype(bool)
        score = np.zeros(n)
    else:
        if det.score is None:
            raise ValueError("predictions need a score column")
        area = box[:, 2] * box[:, 3]  # COCO's loadRes: a prediction's area is always its box area
        crowd = np.zeros(n, bool)
        score = np.asarray(det.score, dtype=np.float64)
    return box, area, crowd, score


def prepare_side(
    det: Detections, image_universe: np.ndarray, labels: np.ndarray, *, is_gt: bool, class_agnostic: bool
) -> Side:
    """Keep rows on evaluated images and classes, then sort them the way pycocotools visits them.

    Ground truth: by group, then (class, row) -- the class key only matters when class-agnostic, where COCO
    concatenates the per-class lists in category order.  Predictions: by group, descending score, then (class, row),
    which is exactly what a stable sort on ``-score`` of that concatenated list gives.
    """
    box, area, crowd, score = _columns(det, is_gt)
    img, img_ok = dense_index(np.asarray(det.image_id, dtype=np.int64), image_universe)
    cls, cls_ok = dense_index(np.asarray(det.label, dtype=np.int64), labels)
    keep = np.flatnonzero(img_ok & cls_ok)
    img, cls = img[keep], cls[keep]
    n_img, n_cls = len(image_universe), len(labels)
    major = [(img, n_img)] if class_agnostic else [(cls, n_cls), (img, n_img)]
    minor = [] if is_gt else [(-score[keep], None)]
    tail = [(cls, n_cls)] if class_agnostic else []  # COCO's per-class concatenation order within an image
    order = stable_order(*major, *minor, *tail)  # rows (already ascending) break the remaining ties
    img, cls = img[order], cls[order]
    group = img if class_agnostic else cls * n_img + img
    rows = keep[order]
    return Side(
        row=rows,
        img=img,
        cls=cls,
        group=group,
        box=box[rows],
        area=area[rows],
        crowd=crowd[rows],
        score=score[rows],
    )


def take(side: Side, idx: np.ndarray) -> Side:
    """A subset of a side, order preserved."""
    return Side(*(getattr(side, f)[idx] for f in Side.__dataclass_fields__))


def rank_in_group(group: np.ndarray) -> np.ndarray:
    """Position of each row inside its (sorted) group: COCO's maxDets cut is 'the first k of each group'."""
    idx = np.arange(len(group), dtype=np.int64)
    if len(group) == 0:
        return idx
    first = np.empty(len(group), bool)
    first[0] = True
    np.not_equal(group[1:], group[:-1], out=first[1:])
    return idx - np.maximum.accumulate(np.where(first, idx, 0))


def group_bounds(gt_group: np.ndarray, dt_group: np.ndarray) -> tuple[np.ndarray, ...]:
    """Start/end offsets of every non-empty group in both sorted sides, so the kernel never scans empty pairs."""
    return _kernels.merged_group_bounds(gt_group, dt_group)


def image_bounds(img: np.ndarray, n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """Offsets of each dense image in an image-sorted array (empty images get an empty slice)."""
    ids = np.arange(n_images)
    return np.searchsorted(img, ids, "left"), np.searchsorted(img, ids, "right")


def resolve_labels(gt: Detections, dt: Detections, labels: np.ndarray | None) -> np.ndarray:
    """The K axis. Default: every class seen on either side (classes without ground truth score -1, as in COCO)."""
    if labels is not None:
        return np.unique(np.asarray(labels, dtype=np.int64))
    both = np.concatenate([np.asarray(gt.label, np.int64), np.asarray(dt.label, np.int64)])
    if len(both) and both.min() >= 0 and both.max() < 1 << 20:
        return np.flatnonzero(np.bincount(both)).astype(np.int64)
    return np.unique(both)
