"""COCO bbox evaluation that equals pycocotools' numbers and also says which prediction matched which object.

``evaluate`` is one pass: group and sort columns once (``detections``), match every (image, class) group in one
compiled kernel (``_kernels``), accumulate precision/recall like ``COCOeval.accumulate`` and summarise like
``COCOeval.summarize``.  The same match kernel also runs a single pass at ``match_iou`` for the per-object
results (``objects``) that the UI stores and filters on, and ``confusion`` builds the confusion matrix.

Known, deliberate difference from pycocotools: pycocotools treats a GT whose annotation id is 0 as unmatched
(``dtm == 0`` is its "no match" sentinel).  Matches here are positions, so an id of 0 is an ordinary id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from visionlens.evaluation import _kernels
from visionlens.evaluation.confusion import ConfusionMatrix, confusion_matrix
from visionlens.evaluation.detections import (
    COCO_AREA_RANGES,
    Detections,
    Side,
    group_bounds,
    prepare_side,
    rank_in_group,
    resolve_labels,
    stable_order,
    take,
)
from visionlens.evaluation.objects import ObjectMatches, object_matches

REC_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
STAT_NAMES = (
    "AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
    "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large",
)  # fmt: skip


@dataclass(frozen=True)
class EvalResult:
    """Everything a model-comparison view needs; arrays follow COCOeval.eval's layout.

    ``precision[T, R, K, A, M]`` and ``recall[T, K, A, M]`` hold -1 where a class has no GT. ``labels`` is the K
    axis (``[-1]`` when class-agnostic, like pycocotools' ``catIds``).
    """

    stats: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    labels: np.ndarray
    iou_thresholds: np.ndarray
    rec_thresholds: np.ndarray
    max_dets: tuple[int, ...]
    area_labels: tuple[str, ...]
    area_ranges: np.ndarray
    class_ap: np.ndarray  # AP@[.5:.95] per class, area all, largest maxDets; -1 without GT
    class_ap50: np.ndarray
    class_ap75: np.ndarray
    objects: ObjectMatches
    confusion: ConfusionMatrix

    @property
    def stats_dict(self) -> dict[str, float]:
        return dict(zip(STAT_NAMES, map(float, self.stats)))

    def pr_curve(self, label: int, iou: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
        """COCO's 101-point interpolated PR curve of one class (area all, largest maxDets) for plotting."""
        t = np.flatnonzero(np.isclose(self.iou_thresholds, iou))
        k = np.flatnonzero(self.labels == label)
        if len(t) == 0 or len(k) == 0:
            raise KeyError(f"no PR curve for label={label} at IoU={iou}")
        return self.rec_thresholds, self.precision[t[0], :, k[0], self._all_area(), -1]

    def pr_curves(self, iou: float = 0.5) -> np.ndarray:
        """Interpolated precision of every class at one IoU, float64[K, R]; rows of -1 for classes without GT."""
        t = np.flatnonzero(np.isclose(self.iou_thresholds, iou))
        if len(t) == 0:
            raise KeyError(f"IoU {iou} is not one of the evaluated thresholds")
        return self.precision[t[0], :, :, self._all_area(), -1].T

    def _all_area(self) -> int:
        return self.area_labels.index("all") if "all" in self.area_labels else 0


def _area_table(area_ranges: Mapping[str, Sequence[float]] | None) -> tuple[tuple[str, ...], np.ndarray]:
    table = COCO_AREA_RANGES if area_ranges is None else area_ranges
    return tuple(table), np.array([table[k] for k in table], dtype=np.float64).reshape(-1, 2)


def _mean_valid(s: np.ndarray) -> float:
    valid = s[s > -1]
    return -1.0 if valid.size == 0 else float(np.mean(valid))


def _summarize_one(
    precision: np.ndarray,
    recall: np.ndarray,
    iou_thrs: np.ndarray,
    area_labels: Sequence[str],
    max_dets: Sequence[int],
    ap: bool,
    iou_thr: float | None = None,
    area: str = "all",
    max_det: int = 100,
) -> float:
    """COCOeval.summarize's _summarize, including its exact float comparison to pick an IoU threshold."""
    aind = [i for i, lbl in enumerate(area_labels) if lbl == area]
    mind = [i for i, m in enumerate(max_dets) if m == max_det]
    s = precision if ap else recall
    if iou_thr is not None:
        s = s[np.where(iou_thr == iou_thrs)[0]]
    s = s[:, :, :, aind, mind] if ap else s[:, :, aind, mind]
    return _mean_valid(s)


def summarize(
    precision: np.ndarray, recall: np.ndarray, iou_thrs: np.ndarray, area_labels: Sequence[str], max_dets: Sequence[int]
) -> np.ndarray:
    """The 12 numbers of COCOeval.summarize() for bbox, in its order (see STAT_NAMES)."""
    m_big = max_dets[2] if len(max_dets) > 2 else max_dets[-1]
    m = list(max_dets) + [max_dets[-1]] * 3

    def s(*args, **kw) -> float:
        return _summarize_one(precision, recall, iou_thrs, area_labels, max_dets, *args, **kw)

    return np.array(
        [
            s(True),
            s(True, iou_thr=0.5, max_det=m_big),
            s(True, iou_thr=0.75, max_det=m_big),
            s(True, area="small", max_det=m_big),
            s(True, area="medium", max_det=m_big),
            s(True, area="large", max_det=m_big),
            s(False, max_det=m[0]),
            s(False, max_det=m[1]),
            s(False, max_det=m_big),
            s(False, area="small", max_det=m_big),
            s(False, area="medium", max_det=m_big),
            s(False, area="large", max_det=m_big),
        ]
    )


def _class_mean(precision_tk: np.ndarray) -> np.ndarray:
    """Mean over all but the class axis (last) ignoring -1, per class; -1 when nothing is valid."""
    flat = precision_tk.reshape(-1, precision_tk.shape[-1])
    valid = flat > -1
    n = valid.sum(axis=0)
    total = np.where(valid, flat, 0.0).sum(axis=0)
    return np.where(n > 0, total / np.maximum(n, 1), -1.0)


def _class_ap(precision: np.ndarray, iou_thrs: np.ndarray, a: int, iou: float | None) -> np.ndarray:
    p = precision[:, :, :, a, -1]
    if iou is not None:
        t = np.flatnonzero(np.isclose(iou_thrs, iou))
        if len(t) == 0:
            return np.full(p.shape[2], -1.0)
        p = p[t]
    return _class_mean(p)


@dataclass(frozen=True)
class _Matched:
    """Sorted sides plus everything the match kernel produced; shared by ``evaluate`` and ``match_objects``."""

    img_universe: np.ndarray
    labels: np.ndarray
    gts: Side
    dts_all: Side  # every prediction on evaluated images/classes (the confusion matrix uses them all)
    dts: Side  # the first max_det per group, what COCO matches
    rank: np.ndarray  # rank of each of ``dts`` within its group
    dt_code: np.ndarray
    gt_ignore: np.ndarray
    objects: ObjectMatches


def _match(
    gt: Detections,
    dt: Detections,
    image_ids: np.ndarray,
    labels: np.ndarray | None,
    class_agnostic: bool,
    max_det: int,
    iou_thrs: np.ndarray,
    area_rng: np.ndarray,
    match_iou: float,
    obj_area: np.ndarray,
) -> _Matched:
    """Filter, sort, cut at ``max_det`` per group, then one kernel call for all thresholds and the per-object pass."""
    ids = np.asarray(image_ids, dtype=np.int64)
    img_universe = np.unique(ids)
    lbl = resolve_labels(gt, dt, labels)
    gts = prepare_side(gt, img_universe, lbl, is_gt=True, class_agnostic=class_agnostic)
    dts_all = prepare_side(dt, img_universe, lbl, is_gt=False, class_agnostic=class_agnostic)
    rank_all = rank_in_group(dts_all.group)
    kept = np.flatnonzero(rank_all < max_det)
    dts = take(dts_all, kept)
    gs, ge, ds, de = group_bounds(gts.group, dts.group)
    dt_code, gt_ignore, dt_match, gt_match, dt_iou, gt_iou, gt_obj_ignore = _kernels.coco_match(
        gts.box, gts.area, gts.crowd, dts.box, dts.area, gs, ge, ds, de,
        np.ascontiguousarray(iou_thrs, dtype=np.float64), np.ascontiguousarray(area_rng, dtype=np.float64),
        float(match_iou), np.ascontiguousarray(obj_area, dtype=np.float64),
    )  # fmt: skip
    objects = object_matches(
        gt, dt, gts, dts, img_universe, ids,
        dt_match, gt_match, dt_iou, gt_iou, gt_obj_ignore, obj_area, float(match_iou), class_agnostic,
    )  # fmt: skip
    return _Matched(img_universe, lbl, gts, dts_all, dts, rank_all[kept], dt_code, gt_ignore, objects)


def _accumulate(m: _Matched, n_k: int, class_agnostic: bool, max_dets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order predictions per class as COCOeval.accumulate does, then run the compiled envelope/interpolation.

    pycocotools concatenates each image's (score-sorted, truncated) list in image order and mergesorts on -score,
    so ties go to the lower image id and then to the earlier rank, i.e. to the earlier position in ``dts``.
    """
    k_dt = np.zeros(len(m.dts.row), np.int64) if class_agnostic else m.dts.cls
    k_gt = np.zeros(len(m.gts.row), np.int64) if class_agnostic else m.gts.cls
    order = stable_order((k_dt, n_k), (-m.dts.score, None))
    seg = np.concatenate([[0], np.cumsum(np.bincount(k_dt, minlength=n_k))]).astype(np.int64)
    npig = np.stack([np.bincount(k_gt[~ig], minlength=n_k) for ig in m.gt_ignore], axis=1).astype(np.int64)
    return _kernels.coco_accumulate(m.dt_code, m.rank, order, seg, npig, REC_THRESHOLDS, max_dets)


def evaluate(
    gt: Detections,
    dt: Detections,
    image_ids: np.ndarray,
    *,
    iou_thresholds: np.ndarray = COCO_IOU_THRESHOLDS,
    max_dets: Sequence[int] = (1, 10, 100),
    area_ranges: Mapping[str, Sequence[float]] | None = None,
    class_agnostic: bool = False,
    match_iou: float = 0.5,
    labels: np.ndarray | None = None,
    conf_threshold: float = 0.0,
) -> EvalResult:
    """COCO bbox evaluation of ``dt`` against ``gt`` on exactly ``image_ids`` (images without boxes count).

    Rows whose image is not in ``image_ids`` or whose class is not in ``labels`` (default: all classes seen) are
    left out, like pycocotools' ``imgIds``/``catIds``.  ``conf_threshold`` applies to the confusion matrix only.
    """
    iou_thrs = np.asarray(iou_thresholds, dtype=np.float64)
    md = np.array(sorted(int(m) for m in max_dets), dtype=np.int64)
    area_labels, area_rng = _area_table(area_ranges)
    a_all = area_labels.index("all") if "all" in area_labels else 0
    m = _match(gt, dt, image_ids, labels, class_agnostic, int(md[-1]), iou_thrs, area_rng, match_iou, area_rng[a_all])
    n_k = 1 if class_agnostic else len(m.labels)
    precision, recall = _accumulate(m, n_k, class_agnostic, md)
    confusion = confusion_matrix(
        gt, dt, m.img_universe, iou=match_iou, conf_threshold=conf_threshold, labels=m.labels,
        prepared=(m.gts, m.dts_all),
    )  # fmt: skip
    return EvalResult(
        stats=summarize(precision, recall, iou_thrs, area_labels, tuple(int(x) for x in md)),
        precision=precision,
        recall=recall,
        labels=np.array([-1]) if class_agnostic else m.labels,
        iou_thresholds=iou_thrs,
        rec_thresholds=REC_THRESHOLDS,
        max_dets=tuple(int(x) for x in md),
        area_labels=area_labels,
        area_ranges=area_rng,
        class_ap=_class_ap(precision, iou_thrs, a_all, None),
        class_ap50=_class_ap(precision, iou_thrs, a_all, 0.5),
        class_ap75=_class_ap(precision, iou_thrs, a_all, 0.75),
        objects=m.objects,
        confusion=confusion,
    )


def match_objects(
    gt: Detections,
    dt: Detections,
    image_ids: np.ndarray,
    *,
    match_iou: float = 0.5,
    max_det: int = 100,
    class_agnostic: bool = False,
    labels: np.ndarray | None = None,
) -> ObjectMatches:
    """Only the per-object verdicts (no AP): the cheap call for live filtering and for writing results to the store.

    Same semantics as ``evaluate(...).objects``: one COCO matching pass at ``match_iou``, area "all", ``max_det``.
    """
    all_area = np.array(COCO_AREA_RANGES["all"])
    no_thresholds, no_areas = np.zeros(0), np.zeros((0, 2))  # skip the AP passes, keep the per-object one
    m = _match(gt, dt, image_ids, labels, class_agnostic, max_det, no_thresholds, no_areas, match_iou, all_area)
    return m.objects
