"""Per-object verdicts at one IoU: which prediction is a TP/FP, which object was missed, and why an FP is wrong.

Semantics are COCO's at a single threshold (area "all", the largest maxDets), so every TP here is a TP in
COCOeval's ``evalImgs`` at that IoU.  FP error types follow TIDE's precedence (Bolya et al., ECCV 2020), checked
in this order on each FP (IoUs are against non-crowd GT of the same image):

* ``CONFUSION``   -- IoU >= match_iou with a GT of another class (never happens when class-agnostic);
* ``DUPLICATE``   -- IoU >= match_iou with a same-class GT, which must then already be taken by a higher score;
* ``LOCALIZATION``-- best same-class IoU in [0.1, match_iou);
* ``BACKGROUND``  -- everything else (TIDE's "both" -- wrong class *and* poor box -- lands here).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from visionlens.evaluation import _kernels
from visionlens.evaluation.detections import Detections, Side, image_bounds

BACKGROUND_IOU = 0.1


class Status(IntEnum):
    """Stored as int8. SKIPPED: not evaluated (image/class filtered out, or past maxDets in its image and class)."""

    SKIPPED = 0
    TP = 1
    FP = 2
    FN = 3
    IGNORED = 4  # prediction matched to a crowd region (or out of area range); GT that is crowd


class FPError(IntEnum):
    NONE = 0
    LOCALIZATION = 1
    CONFUSION = 2
    DUPLICATE = 3
    BACKGROUND = 4


@dataclass(frozen=True)
class ObjectMatches:
    """Rows align with the caller's ``gt`` / ``dt`` arrays; per-image counts align with the caller's image_ids."""

    match_iou: float
    dt_ann_id: np.ndarray
    dt_status: np.ndarray  # int8 Status
    dt_match_id: np.ndarray  # int64 GT ann_id or -1
    dt_iou: np.ndarray  # IoU with the matched GT, else best IoU with a same-class non-crowd GT
    dt_error: np.ndarray  # int8 FPError, NONE unless FP
    gt_ann_id: np.ndarray
    gt_status: np.ndarray  # int8 Status
    gt_match_id: np.ndarray  # int64 prediction ann_id or -1
    gt_iou: np.ndarray  # IoU with the matching prediction, else best IoU with a same-class prediction
    image_ids: np.ndarray
    image_tp: np.ndarray
    image_fp: np.ndarray
    image_fn: np.ndarray

    def tables(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(predictions, ground truth, images) as plain column dicts, ready for an Arrow/DuckDB write."""
        dt = {k[3:]: getattr(self, k) for k in ("dt_ann_id", "dt_status", "dt_match_id", "dt_iou", "dt_error")}
        gt = {k[3:]: getattr(self, k) for k in ("gt_ann_id", "gt_status", "gt_match_id", "gt_iou")}
        img = {"image_id": self.image_ids, "tp": self.image_tp, "fp": self.image_fp, "fn": self.image_fn}
        return dt, gt, img


def _fp_errors(
    gts: Side, dts: Side, fp: np.ndarray, same_iou: np.ndarray, n_images: int, match_iou: float, class_agnostic: bool
) -> np.ndarray:
    err = np.full(len(fp), FPError.NONE, np.int8)
    idx = np.flatnonzero(fp)
    if class_agnostic or len(idx) == 0:
        other = np.zeros(len(idx))
    else:
        by_img = np.argsort(gts.img, kind="stable")
        start, end = image_bounds(gts.img[by_img], n_images)
        other = _kernels.other_class_iou(
            gts.box[by_img], gts.cls[by_img], gts.crowd[by_img], start, end,
            dts.box[idx], dts.cls[idx], dts.img[idx],
        )  # fmt: skip
    same = same_iou[idx]
    err[idx] = np.select(
        [other >= match_iou, same >= match_iou, same >= BACKGROUND_IOU],
        [FPError.CONFUSION, FPError.DUPLICATE, FPError.LOCALIZATION],
        FPError.BACKGROUND,
    )
    return err


def object_matches(
    gt: Detections,
    dt: Detections,
    gts: Side,
    dts: Side,
    img_universe: np.ndarray,
    image_ids: np.ndarray,
    dt_match: np.ndarray,
    gt_match: np.ndarray,
    dt_iou: np.ndarray,
    gt_iou: np.ndarray,
    gt_ignore: np.ndarray,
    area_rng: np.ndarray,
    match_iou: float,
    class_agnostic: bool,
) -> ObjectMatches:
    """Turn kernel outputs (positions in the sorted sides) into per-row verdicts on the caller's arrays."""
    gt_ann = np.asarray(gt.ann_id, np.int64)
    dt_ann = np.asarray(dt.ann_id, np.int64)
    matched = dt_match > -1
    mpos = np.where(matched, dt_match, 0)
    out_of_range = (dts.area < area_rng[0]) | (dts.area > area_rng[1])
    if len(gts.row):
        kept_status = np.where(
            matched,
            np.where(gt_ignore[mpos], Status.IGNORED, Status.TP),
            np.where(out_of_range, Status.IGNORED, Status.FP),
        ).astype(np.int8)
    else:
        kept_status = np.where(out_of_range, Status.IGNORED, Status.FP).astype(np.int8)
    fp = kept_status == Status.FP
    kept_error = _fp_errors(gts, dts, fp, dt_iou, len(img_universe), match_iou, class_agnostic)

    dt_status = np.full(len(dt_ann), Status.SKIPPED, np.int8)
    dt_match_id = np.full(len(dt_ann), -1, np.int64)
    dt_iou_out = np.zeros(len(dt_ann))
    dt_error = np.full(len(dt_ann), FPError.NONE, np.int8)
    dt_status[dts.row] = kept_status
    dt_match_id[dts.row[matched]] = gt_ann[gts.row[dt_match[matched]]]
    dt_iou_out[dts.row] = dt_iou
    dt_error[dts.row] = kept_error

    g_matched = gt_match > -1
    gt_status = np.full(len(gt_ann), Status.SKIPPED, np.int8)
    gt_match_id = np.full(len(gt_ann), -1, np.int64)
    gt_iou_out = np.zeros(len(gt_ann))
    kept_gt_status = np.where(gt_ignore, Status.IGNORED, np.where(g_matched, Status.TP, Status.FN)).astype(np.int8)
    gt_status[gts.row] = kept_gt_status
    gt_match_id[gts.row[g_matched]] = dt_ann[dts.row[gt_match[g_matched]]]
    gt_iou_out[gts.row] = gt_iou

    n_img = len(img_universe)
    pos = np.searchsorted(img_universe, image_ids)
    return ObjectMatches(
        match_iou=match_iou,
        dt_ann_id=dt_ann,
        dt_status=dt_status,
        dt_match_id=dt_match_id,
        dt_iou=dt_iou_out,
        dt_error=dt_error,
        gt_ann_id=gt_ann,
        gt_status=gt_status,
        gt_match_id=gt_match_id,
        gt_iou=gt_iou_out,
        image_ids=image_ids,
        image_tp=np.bincount(dts.img[kept_status == Status.TP], minlength=n_img)[pos],
        image_fp=np.bincount(dts.img[fp], minlength=n_img)[pos],
        image_fn=np.bincount(gts.img[kept_gt_status == Status.FN], minlength=n_img)[pos],
    )
