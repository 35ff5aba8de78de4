"""Confusion matrix with a background row and column, the way detection users read one.

Rule (documented because every tool differs): per image, predictions with ``score >= conf_threshold`` are paired
with non-crowd GT boxes *ignoring class*, greedily by descending IoU (ties: higher score first), keeping pairs
with IoU >= ``iou``.  A pair counts at ``[gt class, predicted class]``; an unpaired GT counts at
``[gt class, background]`` (a miss); an unpaired prediction counts at ``[background, predicted class]`` unless it
lies inside a same-class crowd region (crowd IoU = intersection / prediction area >= ``iou``), which COCO ignores.
So ``matrix[:K].sum()`` is the number of non-crowd GT and ``matrix[K].sum()`` the background false positives.
Unlike COCO AP there is no maxDets cut: the score threshold is the knob.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from visionlens.evaluation import _kernels
from visionlens.evaluation.detections import (
    Detections,
    Side,
    image_bounds,
    prepare_side,
    resolve_labels,
    stable_order,
)


@dataclass(frozen=True)
class ConfusionMatrix:
    """``matrix[i, j]``: rows are GT classes then background, columns predicted classes then background."""

    matrix: np.ndarray  # int64[K+1, K+1]
    labels: np.ndarray  # the K class indices; index K is background
    iou: float
    conf_threshold: float

    @property
    def background_fp(self) -> int:
        return int(self.matrix[-1].sum())

    @property
    def missed(self) -> int:
        return int(self.matrix[:-1, -1].sum())


def confusion_matrix(
    gt: Detections,
    dt: Detections,
    image_ids: np.ndarray,
    *,
    iou: float = 0.5,
    conf_threshold: float = 0.0,
    labels: np.ndarray | None = None,
    prepared: tuple[Side, Side] | None = None,
) -> ConfusionMatrix:
    """Count class confusions on ``image_ids``; ``prepared`` lets ``evaluate`` reuse its filtered sides."""
    lbl = resolve_labels(gt, dt, labels)
    img_universe = np.unique(np.asarray(image_ids, dtype=np.int64))
    if prepared is None:
        gts = prepare_side(gt, img_universe, lbl, is_gt=True, class_agnostic=True)
        dts = prepare_side(dt, img_universe, lbl, is_gt=False, class_agnostic=True)
    else:
        gts, dts = prepared
    n_img = len(img_universe)
    g_order = stable_order((gts.img, n_img))  # sides come sorted by (class, image) or image: keep that inside
    keep = np.flatnonzero(dts.score >= conf_threshold)
    d_order = keep[stable_order((dts.img[keep], n_img), (-dts.score[keep], None))]
    gs, ge = image_bounds(gts.img[g_order], len(img_universe))
    ds, de = image_bounds(dts.img[d_order], len(img_universe))
    matrix = _kernels.confusion_counts(
        gts.box[g_order], gts.cls[g_order], gts.crowd[g_order], gs, ge,
        dts.box[d_order], dts.cls[d_order], ds, de, float(iou), len(lbl),
    )  # fmt: skip
    return ConfusionMatrix(matrix=matrix, labels=lbl, iou=float(iou), conf_threshold=float(conf_threshold))
