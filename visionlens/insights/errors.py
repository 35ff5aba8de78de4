"""Error patterns: how much AP each kind of detector error costs, overall, per class, and the top confusions.

The reference is TIDE (Bolya et al., ECCV 2020, github.com/dbolya/tide). Every false positive at IoU ``FG_IOU``
gets exactly one error type, tested in TIDE's order (IoUs are against non-crowd GT of the same image):

1. ``localization``  -- best same-class IoU in [``BG_IOU``, ``FG_IOU``): right class, poor box;
2. ``classification``-- IoU >= ``FG_IOU`` with a GT of another class: good box, wrong class;
3. ``duplicate``     -- IoU >= ``FG_IOU`` with a same-class GT that a higher-scored prediction already took;
4. ``background``    -- IoU <= ``BG_IOU`` with every GT;
5. ``both``          -- the rest: IoU in (``BG_IOU``, ``FG_IOU``) with a GT of another class (TIDE's "Both").

A ground-truth object no prediction matched is ``missed`` unless a localization or classification error points at
it (TIDE's "usable" GT: fixing that error would find it).

The AP lost to a type is ``AP50(fixed) - AP50(original)`` (clamped at 0, as TIDE does), where "fixed" applies that
type's oracle fix to the boxes and re-runs our COCO-exact evaluator (``evaluation.evaluate``: 101-point
interpolation, mean over classes with GT) at IoU 0.5 only -- TIDE's default ``pos_thresh``. The fixes are TIDE's:

* classification / localization: the error's target GT is its best other-class / same-class GT. If that GT was
  unmatched, the highest-scored error aiming at it (over both types, TIDE's ``BestGTMatch``) is corrected -- the
  prediction takes the GT's class (classification) or the GT's box (localization) and becomes a TP with its own
  score; every other such error is dropped;
* duplicate, background, both: the prediction is dropped;
* missed: the GT is dropped (TIDE lowers the GT count; it does not add a detection).

Unlike TIDE, which edits precision/recall data points, the fixes edit the box arrays and matching is redone; the
numbers agree because a corrected prediction only ever takes a GT nobody held. The maxDets cut is COCO's (100 per
image and class), not TIDE's (100 per image). Per-class numbers are the class's own AP50 change; a per-class
finding is scored by its share of the mean (``class dAP / classes with GT``) so it ranks against overall ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba as nb
import numpy as np

from ..errors import VisionLensError
from ..evaluation import COCO_AREA_RANGES, Detections, EvalResult, ObjectMatches, Status, evaluate
from ..formats.base import ProgressCallback, no_progress
from ..metrics import eval_key, load_boxes, to_sample_ids
from ..store.metadata import GROUND_TRUTH, MetadataStore
from .finding import Finding

FG_IOU = 0.5
BG_IOU = 0.1
METRIC = "AP50"

# error codes per prediction (0: not an error); the order is the order findings list them in
NONE, CLASSIFICATION, LOCALIZATION, BOTH, DUPLICATE, BACKGROUND, MISSED = range(7)
ERROR_NAMES = {
    CLASSIFICATION: "classification",
    LOCALIZATION: "localization",
    BOTH: "both",
    DUPLICATE: "duplicate",
    BACKGROUND: "background",
    MISSED: "missed",
}
ERROR_CODES = {v: k for k, v in ERROR_NAMES.items()}
_WHAT = {
    CLASSIFICATION: (
        "classification errors",
        "false positives with a good box (IoU ≥ 0.5) on an object of another class",
    ),
    LOCALIZATION: ("localization errors", "false positives of the right class whose box is off (best IoU 0.1–0.5)"),
    BOTH: ("wrong class and poor box", "false positives overlapping an object of another class at IoU 0.1–0.5"),
    DUPLICATE: ("duplicate detections", "second detections of an object another prediction already found"),
    BACKGROUND: ("background detections", "false positives overlapping no object (IoU ≤ 0.1)"),
    MISSED: ("missed objects", "ground-truth objects no prediction comes near (no localization or class error either)"),
}
_FIX = {
    CLASSIFICATION: "relabel each to the class of the object it covers",
    LOCALIZATION: "snap each box onto the object it was aiming at",
    BOTH: "drop them",
    DUPLICATE: "drop them",
    BACKGROUND: "drop them",
    MISSED: "remove those objects from the ground truth",
}


class MissingEvaluationError(VisionLensError):
    """Error patterns read a stored evaluation; the model has none (or no predictions at all)."""


# -- overlaps --------------------------------------------------------------------------------------------------


@nb.njit(cache=True)
def _best_overlaps(gt_box, gt_cls, gt_crowd, start, end, dt_box, dt_cls):
    """Per prediction: best same-class and best other-class IoU with regular GT (and which GT), best crowd cover.

    ``start[d]:end[d]`` is the prediction's image in the image-sorted GT. IoU is pycocotools' bbIou; a crowd
    region is measured against the prediction's own area, as COCO does.
    """
    n = dt_box.shape[0]
    same_iou = np.zeros(n)
    same_idx = np.full(n, -1, np.int64)
    other_iou = np.zeros(n)
    other_idx = np.full(n, -1, np.int64)
    crowd_cover = np.zeros(n)
    for d in range(n):
        dx = dt_box[d, 0]
        dy = dt_box[d, 1]
        dw = dt_box[d, 2]
        dh = dt_box[d, 3]
        da = dw * dh
        for j in range(start[d], end[d]):
            gx = gt_box[j, 0]
            gy = gt_box[j, 1]
            gw = gt_box[j, 2]
            gh = gt_box[j, 3]
            iw = min(dx + dw, gx + gw) - max(dx, gx)
            if iw <= 0:
                continue
            ih = min(dy + dh, gy + gh) - max(dy, gy)
            if ih <= 0:
                continue
            inter = iw * ih
            if gt_crowd[j]:
                if da > 0:
                    crowd_cover[d] = max(crowd_cover[d], inter / da)
                continue
            iou = inter / (da + gw * gh - inter)
            if gt_cls[j] == dt_cls[d]:
                if iou > same_iou[d]:
                    same_iou[d] = iou
                    same_idx[d] = j
            elif iou > other_iou[d]:
                other_iou[d] = iou
                other_idx[d] = j
    return same_iou, same_idx, other_iou, other_idx, crowd_cover


@dataclass(frozen=True)
class Overlaps:
    """``best_overlaps``' answer; indices are GT rows of the caller's arrays (-1: none)."""

    same_iou: np.ndarray
    same_gt: np.ndarray
    other_iou: np.ndarray
    other_gt: np.ndarray
    crowd_cover: np.ndarray

    @property
    def any_iou(self) -> np.ndarray:
        return np.maximum(self.same_iou, self.other_iou)


def best_overlaps(
    gt_image: np.ndarray,
    gt_label: np.ndarray,
    gt_box: np.ndarray,
    gt_crowd: np.ndarray,
    dt_image: np.ndarray,
    dt_label: np.ndarray,
    dt_box: np.ndarray,
) -> Overlaps:
    """Best same-class and other-class GT of every prediction, on its own image (any integer image key)."""
    order = np.argsort(np.asarray(gt_image, np.int64), kind="stable")
    g_img = np.asarray(gt_image, np.int64)[order]
    d_img = np.asarray(dt_image, np.int64)
    start = np.searchsorted(g_img, d_img, "left").astype(np.int64)
    end = np.searchsorted(g_img, d_img, "right").astype(np.int64)
    s_iou, s_idx, o_iou, o_idx, cover = _best_overlaps(
        np.ascontiguousarray(np.asarray(gt_box, np.float64)[order]).reshape(-1, 4),
        np.asarray(gt_label, np.int64)[order], np.asarray(gt_crowd, np.bool_)[order], start, end,
        np.ascontiguousarray(dt_box, np.float64).reshape(-1, 4), np.asarray(dt_label, np.int64),
    )  # fmt: skip
    back = np.append(order, -1)  # -1 stays -1
    return Overlaps(s_iou, back[s_idx], o_iou, back[o_idx], cover)


# -- TIDE on arrays --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorTypes:
    """Each prediction's error code and target GT row, whether its fix makes it a TP, and each GT's missed flag."""

    dt_error: np.ndarray  # int8 code (NONE unless an FP at FG_IOU)
    dt_target: np.ndarray  # int64 GT row a classification/localization error aims at, else -1
    dt_winner: np.ndarray  # bool: the fix turns this prediction into a TP (else a fixed error is dropped)
    gt_missed: np.ndarray  # bool per GT row


def _crowd(gt: Detections) -> np.ndarray:
    return np.zeros(len(gt), bool) if gt.iscrowd is None else np.asarray(gt.iscrowd, bool)


def classify_errors(
    gt: Detections, dt: Detections, objects: ObjectMatches, fg: float = FG_IOU, bg: float = BG_IOU
) -> ErrorTypes:
    """TIDE's error type of every false positive in ``objects`` (one COCO matching pass at ``fg``)."""
    n_dt = len(dt)
    fp = np.flatnonzero(objects.dt_status == Status.FP)
    ov = best_overlaps(gt.image_id, gt.label, gt.bbox, _crowd(gt), dt.image_id[fp], dt.label[fp], dt.bbox[fp])
    s, o = ov.same_iou, ov.other_iou
    loc = (s >= bg) & (s < fg)
    cls = ~loc & (o >= fg)
    dup = ~loc & ~cls & (s >= fg)
    bkg = ~loc & ~cls & ~dup & (o <= bg)
    code = np.select([loc, cls, dup, bkg], [LOCALIZATION, CLASSIFICATION, DUPLICATE, BACKGROUND], BOTH)
    target = np.where(loc, ov.same_gt, np.where(cls, ov.other_gt, -1))

    dt_error = np.zeros(n_dt, np.int8)
    dt_error[fp] = code
    dt_target = np.full(n_dt, -1, np.int64)
    dt_target[fp] = target
    used = objects.gt_status == Status.TP
    aims = np.flatnonzero(dt_target >= 0)
    aims = aims[~used[dt_target[aims]]]  # an error aiming at a matched GT can only be dropped
    score = np.asarray(dt.score, np.float64)
    order = aims[np.lexsort((-score[aims], dt_target[aims]))]  # per target, best score first (ties: row order)
    first = np.ones(len(order), bool)
    first[1:] = dt_target[order[1:]] != dt_target[order[:-1]]
    winner = np.zeros(n_dt, bool)
    winner[order[first]] = True
    usable = np.zeros(len(gt), bool)
    usable[dt_target[aims]] = True
    missed = (objects.gt_status == Status.FN) & ~usable
    return ErrorTypes(dt_error, dt_target, winner, missed)


def apply_fixes(
    gt: Detections, dt: Detections, err: ErrorTypes, codes: set[int], select: np.ndarray | None = None
) -> tuple[Detections, Detections]:
    """The boxes with the oracle fix of every error type in ``codes`` applied (``select``: only these predictions)."""
    fixing = np.isin(err.dt_error, list(codes))
    if select is not None:
        fixing &= select
    winner = fixing & err.dt_winner
    relabel = winner & (err.dt_error == CLASSIFICATION)
    move = winner & (err.dt_error == LOCALIZATION)
    keep_dt = ~fixing | relabel | move
    label = np.asarray(dt.label).copy()
    label[relabel] = np.asarray(gt.label)[err.dt_target[relabel]]
    bbox = np.asarray(dt.bbox, np.float64).copy()
    bbox[move] = np.asarray(gt.bbox, np.float64)[err.dt_target[move]]
    new_dt = Detections(
        image_id=np.asarray(dt.image_id)[keep_dt],
        label=label[keep_dt],
        bbox=bbox[keep_dt],
        ann_id=np.asarray(dt.ann_id)[keep_dt],
        score=np.asarray(dt.score)[keep_dt],
    )
    if MISSED not in codes:
        return gt, new_dt
    keep = ~err.gt_missed
    new_gt = Detections(
        image_id=np.asarray(gt.image_id)[keep],
        label=np.asarray(gt.label)[keep],
        bbox=np.asarray(gt.bbox)[keep],
        ann_id=np.asarray(gt.ann_id)[keep],
        iscrowd=None if gt.iscrowd is None else np.asarray(gt.iscrowd)[keep],
        area=None if gt.area is None else np.asarray(gt.area)[keep],
    )
    return new_gt, new_dt


def ap50(gt: Detections, dt: Detections, image_ids: np.ndarray, labels: np.ndarray) -> EvalResult:
    """Our COCO-exact evaluator at IoU 0.5 only (area all, 100 detections): the one number TIDE works with."""
    return evaluate(
        gt,
        dt,
        image_ids,
        iou_thresholds=np.array([FG_IOU]),
        max_dets=(100,),
        area_ranges={"all": COCO_AREA_RANGES["all"]},
        labels=labels,
        match_iou=FG_IOU,
    )


@dataclass
class TideResult:
    """AP50 before and after each fix, overall (mAP) and per class (on ``labels``; -1 where a class has no GT)."""

    labels: np.ndarray
    ap: float
    class_ap: np.ndarray
    fixed_ap: dict[int, float]
    fixed_class_ap: dict[int, np.ndarray]
    all_fixed_ap: float
    errors: ErrorTypes
    counts: dict[int, int]
    objects: ObjectMatches

    def dap(self, code: int) -> float:
        return max(self.fixed_ap[code] - self.ap, 0.0)

    def class_dap(self, code: int) -> np.ndarray:
        """Each class's own AP50 gain; 0 where the class has no AP before or after (no GT left)."""
        after = self.fixed_class_ap[code]
        ok = (self.class_ap >= 0) & (after >= 0)
        return np.where(ok, np.maximum(after - self.class_ap, 0.0), 0.0)

    @property
    def n_classes(self) -> int:
        return int(np.sum(self.class_ap >= 0))


def tide(gt: Detections, dt: Detections, image_ids: np.ndarray, progress: ProgressCallback = no_progress) -> TideResult:
    """TIDE's main errors on plain arrays (no store): the AP50 each error type costs, overall and per class."""
    both = np.concatenate([np.asarray(gt.label, np.int64), np.asarray(dt.label, np.int64)])
    labels = np.unique(both)
    steps = len(ERROR_NAMES) + 2
    progress("error patterns", 0, steps)
    base = ap50(gt, dt, image_ids, labels)
    err = classify_errors(gt, dt, base.objects)
    progress("error patterns", 1, steps)
    fixed_ap, fixed_class = {}, {}
    for k, code in enumerate(ERROR_NAMES, start=2):
        res = ap50(*apply_fixes(gt, dt, err, {code}), image_ids, labels)
        fixed_ap[code], fixed_class[code] = float(res.stats[0]), res.class_ap50
        progress("error patterns", k, steps)
    all_fixed = ap50(*apply_fixes(gt, dt, err, set(ERROR_NAMES)), image_ids, labels)
    progress("error patterns", steps, steps)
    counts = {c: int(np.sum(err.dt_error == c)) for c in ERROR_NAMES if c != MISSED}
    counts[MISSED] = int(err.gt_missed.sum())
    return TideResult(
        labels=labels,
        ap=float(base.stats[0]),
        class_ap=base.class_ap50,
        fixed_ap=fixed_ap,
        fixed_class_ap=fixed_class,
        all_fixed_ap=float(all_fixed.stats[0]),
        errors=err,
        counts=counts,
        objects=base.objects,
    )


@dataclass(frozen=True)
class Confusion:
    """Classification errors with GT class ``gt_label`` predicted as ``pred_label`` (label ids)."""

    gt_label: int
    pred_label: int
    count: int
    rows: np.ndarray  # prediction rows
    dap: float  # mAP50 gained by fixing only these


def confusions(
    gt: Detections, dt: Detections, image_ids: np.ndarray, res: TideResult, top: int = 10
) -> list[Confusion]:
    """The ``top`` (GT class, predicted class) pairs by count, each with the exact mAP50 its own fix gains.

    Fixing one pair changes only the two classes' APs, so each is evaluated on those two classes alone.
    """
    err = res.errors
    rows = np.flatnonzero(err.dt_error == CLASSIFICATION)
    if len(rows) == 0:
        return []
    g_lbl = np.asarray(gt.label, np.int64)[err.dt_target[rows]]
    p_lbl = np.asarray(dt.label, np.int64)[rows]
    pairs, inverse, counts = np.unique(
        np.stack([g_lbl, p_lbl], axis=1), axis=0, return_inverse=True, return_counts=True
    )
    inverse = inverse.reshape(-1)
    best = np.lexsort((pairs[:, 1], pairs[:, 0], -counts))[:top]
    pos = {int(lbl): i for i, lbl in enumerate(res.labels)}
    out = []
    for p in best:
        x, y = int(pairs[p, 0]), int(pairs[p, 1])
        member = rows[inverse == p]
        select = np.zeros(len(dt), bool)
        select[member] = True
        two = np.array(sorted({x, y}), np.int64)
        fixed = ap50(*apply_fixes(gt, dt, err, {CLASSIFICATION}, select), image_ids, two).class_ap50
        gain = 0.0
        for lbl, after in zip(two, fixed):
            before = res.class_ap[pos[int(lbl)]]
            if before >= 0 and after >= 0:
                gain += max(float(after) - float(before), 0.0)
        out.append(Confusion(x, y, int(counts[p]), member, gain / max(res.n_classes, 1)))
    return out


# -- findings --------------------------------------------------------------------------------------------------


def _pct(v: float) -> str:
    return f"{100 * v:.1f}"


def find_error_patterns(
    store: MetadataStore,
    dataset_id: int,
    model: str,
    progress: ProgressCallback = no_progress,
    max_confusions: int = 10,
    max_class_findings: int = 30,
    min_class_dap: float = 0.01,
) -> list[Finding]:
    """TIDE's AP50 breakdown of ``model``'s errors as findings (kind ``error_pattern``), best first.

    One finding per error type with any errors (score: mAP50 lost), per (class, type) where the class loses at
    least ``min_class_dap`` of its own AP50 (score: that loss / number of classes, its share of the mean), and per
    top class confusion (score: mAP50 its fix gains). Members are the objects concerned (predictions; missed GT;
    for a confusion each prediction and the GT it covers), so ``Filters(finding=id)`` shows exactly them.
    Needs the model's stored default evaluation (``ds.evaluate(model)``), so the grid's TP/FP/FN agree.
    """
    if model == GROUND_TRUTH or model not in store.source_ids(dataset_id):
        raise MissingEvaluationError(f"{model!r} is not a model of this dataset")
    key = eval_key(model)
    if not any(e["key"] == key for e in store.evaluations(dataset_id)):
        raise MissingEvaluationError(
            f"model {model!r} has no evaluation yet; evaluate it first (ds.evaluate({model!r}) or `visionlens "
            f"evaluate`) so error patterns match the TP/FP/FN the app shows"
        )
    gt = load_boxes(store, dataset_id, GROUND_TRUTH)
    dt = load_boxes(store, dataset_id, model)
    if len(gt) == 0:
        raise MissingEvaluationError("the dataset has no ground-truth boxes: there is no AP to break down")
    image_ids = np.arange(len(store.evaluation_image_order(dataset_id)), dtype=np.int64)
    res = tide(gt, dt, image_ids, progress)
    names = {i: n for n, i in store.label_ids(dataset_id).items()}
    conf = confusions(gt, dt, image_ids, res, max_confusions)
    ctx = _Context(store, dataset_id, model, gt, dt, res, names)
    out = [f for code in ERROR_NAMES if (f := ctx.overall(code)) is not None]
    out += ctx.per_class(min_class_dap, max_class_findings)
    out += [ctx.confusion(c) for c in conf]
    # scores are rounded so float noise between equal gains cannot reorder them in the store; ties: broader first
    out = [f.model_copy(update={"score": round(f.score, 9)}) for f in out]
    shape = {"overall": 0, "confusion": 1, "class": 2}
    return sorted(out, key=lambda f: (-f.score, shape[_shape(f)], -int(f.evidence.get("count", 0))))


def _shape(f: Finding) -> str:
    if f.detail.get("error") == "confusion":
        return "confusion"
    return "class" if "label" in f.detail else "overall"


@dataclass
class _Context:
    """What every finding of one run needs; builds the three finding shapes."""

    store: MetadataStore
    dataset_id: int
    model: str
    gt: Detections
    dt: Detections
    res: TideResult
    names: dict[int, str]

    def name(self, label: int) -> str:
        return self.names.get(int(label), str(label))

    def members(self, dt_rows: np.ndarray, gt_rows: np.ndarray) -> dict[str, Any]:
        """Prediction rows then GT rows as finding members (sample ids, annotation ids, prediction scores)."""
        score = np.asarray(self.dt.score, np.float64)
        img = np.concatenate([self.dt.image_id[dt_rows], self.gt.image_id[gt_rows]])
        ann = np.concatenate([self.dt.ann_id[dt_rows], self.gt.ann_id[gt_rows]])
        if len(gt_rows) and len(dt_rows) == 0:
            scores = None  # missed objects have no score
        else:
            scores = np.concatenate([score[dt_rows], np.zeros(len(gt_rows))]).tolist()
        return {
            "sample_ids": to_sample_ids(self.store, self.dataset_id, img).tolist(),
            "object_ids": ann.tolist(),
            "member_scores": scores,
        }

    def rows(self, code: int, label: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(prediction rows, GT rows) of one error type, optionally those touching one class."""
        err = self.res.errors
        if code == MISSED:
            sel = err.gt_missed if label is None else err.gt_missed & (self.gt.label == label)
            return np.zeros(0, np.int64), np.flatnonzero(sel)
        sel = err.dt_error == code
        if label is not None:
            target = np.where(err.dt_target >= 0, np.asarray(self.gt.label)[np.maximum(err.dt_target, 0)], -1)
            sel &= (self.dt.label == label) | (target == label)
        return np.flatnonzero(sel), np.zeros(0, np.int64)

    def base_evidence(self) -> dict[str, Any]:
        return {
            "metric": METRIC,
            "ap50": self.res.ap,
            "ap50_all_fixed": self.res.all_fixed_ap,
            "fg_iou": FG_IOU,
            "bg_iou": BG_IOU,
            "reference": "TIDE (Bolya et al. 2020)",
        }

    def overall(self, code: int) -> Finding | None:
        count = self.res.counts[code]
        if count == 0:
            return None
        what, define = _WHAT[code]
        dap = self.res.dap(code)
        dt_rows, gt_rows = self.rows(code)
        unit = "objects" if code == MISSED else "predictions"
        return Finding(
            kind="error_pattern",
            model=self.model,
            score=dap,
            title=f"{self.model}: {what} cost {_pct(dap)} AP50 points ({count} {unit})",
            description=(
                f"{count} {unit} are {what}: {define}. Fixing them with an oracle ({_FIX[code]}) "
                f"raises mAP50 from {_pct(self.res.ap)} to {_pct(self.res.fixed_ap[code])}."
            ),
            definition=f"{unit} of {self.model} with TIDE error type '{ERROR_NAMES[code]}' at IoU {FG_IOU}",
            evidence={
                **self.base_evidence(),
                "error": ERROR_NAMES[code],
                "dap": dap,
                "count": count,
                "ap50_fixed": self.res.fixed_ap[code],
            },
            detail={"error": ERROR_NAMES[code]},
            **self.members(dt_rows, gt_rows),
        )

    def per_class(self, min_dap: float, limit: int) -> list[Finding]:
        k = max(self.res.n_classes, 1)
        cands = []
        for code in ERROR_NAMES:
            gains = self.res.class_dap(code)
            for i in np.flatnonzero(gains >= min_dap):
                cands.append((float(gains[i]) / k, code, int(i)))
        cands.sort(key=lambda c: -c[0])
        out = []
        for share, code, i in cands[:limit]:
            label = int(self.res.labels[i])
            dt_rows, gt_rows = self.rows(code, label)
            count = len(dt_rows) + len(gt_rows)
            if count == 0:
                continue
            name = self.name(label)
            what, define = _WHAT[code]
            gain = float(self.res.class_dap(code)[i])
            before = float(self.res.class_ap[i])
            out.append(
                Finding(
                    kind="error_pattern",
                    model=self.model,
                    score=share,
                    title=f"{self.model} on '{name}': {what} cost {_pct(gain)} AP50 points of the class",
                    description=(
                        f"On class '{name}', {count} {what} ({define}) hold its AP50 at {_pct(before)}; "
                        f"fixed with an oracle ({_FIX[code]}) it would be {_pct(before + gain)}. That is "
                        f"{_pct(share)} points of mAP50."
                    ),
                    definition=f"{ERROR_NAMES[code]} errors of {self.model} predicted as or aimed at class '{name}'",
                    evidence={
                        **self.base_evidence(),
                        "error": ERROR_NAMES[code],
                        "label": name,
                        "count": count,
                        "class_ap50": before,
                        "class_ap50_fixed": before + gain,
                        "class_dap": gain,
                        "dap": share,
                    },
                    detail={"error": ERROR_NAMES[code], "label": name},
                    **self.members(dt_rows, gt_rows),
                )
            )
        return out

    def confusion(self, c: Confusion) -> Finding:
        x, y = self.name(c.gt_label), self.name(c.pred_label)
        targets = self.res.errors.dt_target[c.rows]
        return Finding(
            kind="error_pattern",
            model=self.model,
            score=c.dap,
            title=f"{self.model} calls '{x}' '{y}' ({c.count}×)",
            description=(
                f"{c.count} predictions of {self.model} say '{y}' with a good box (IoU ≥ {FG_IOU}) on a "
                f"'{x}' object. Relabelling them raises mAP50 by {_pct(c.dap)} points."
            ),
            definition=f"predictions of {self.model} labelled '{y}' covering a ground-truth '{x}' (and those objects)",
            evidence={
                **self.base_evidence(),
                "error": "confusion",
                "gt_label": x,
                "predicted": y,
                "count": c.count,
                "dap": c.dap,
            },
            detail={"error": "confusion", "gt_label": x, "predicted": y},
            **self._pair_members(c.rows, targets),
        )

    def _pair_members(self, dt_rows: np.ndarray, gt_rows: np.ndarray) -> dict[str, Any]:
        """Each prediction then the GT it covers (a GT covered twice is listed once)."""
        _, first = np.unique(gt_rows, return_index=True)
        return self.members(dt_rows, gt_rows[np.sort(first)])


__all__ = [
    "BG_IOU",
    "ERROR_NAMES",
    "FG_IOU",
    "Confusion",
    "ErrorTypes",
    "MissingEvaluationError",
    "Overlaps",
    "TideResult",
    "apply_fixes",
    "best_overlaps",
    "classify_errors",
    "confusions",
    "find_error_patterns",
    "tide",
]
