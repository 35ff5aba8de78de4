"""visionlens.evaluation against pycocotools (and faster-coco-eval) as oracles, plus hand-built error cases."""

from __future__ import annotations

import contextlib
import io
import itertools
from functools import lru_cache

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visionlens.evaluation import (
    Detections,
    FPError,
    Status,
    confusion_matrix,
    evaluate,
    match_objects,
)
from visionlens.evaluation.synthetic import make_dataset, to_coco

N_CLASSES = 10
ALL_AREA = [0.0, 1e10]


def coco_oracle(
    gt: Detections,
    dt: Detections,
    image_ids: np.ndarray,
    labels: np.ndarray,
    *,
    use_cats: bool = True,
    img_subset: np.ndarray | None = None,
) -> COCOeval:
    """pycocotools run on the same rows, in the same order (row order decides COCO's ties)."""
    gt_dict, res = to_coco(gt, dt, image_ids, labels)
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = gt_dict
        cg.createIndex()
        if res:
            cd = cg.loadRes(res)
        else:  # loadRes cannot take an empty list
            cd = COCO()
            cd.dataset = {"images": gt_dict["images"], "annotations": [], "categories": gt_dict["categories"]}
            cd.createIndex()
        e = COCOeval(cg, cd, "bbox")
        e.params.useCats = int(use_cats)
        if img_subset is not None:
            e.params.imgIds = [int(i) for i in img_subset]
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e


def assert_same_as_coco(ours, e: COCOeval) -> None:
    np.testing.assert_allclose(ours.stats, e.stats, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours.precision, e.eval["precision"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours.recall, e.eval["recall"], rtol=0, atol=1e-9)


@lru_cache(maxsize=None)
def random_case(seed: int, decimals: int | None) -> tuple[Detections, Detections, np.ndarray]:
    return make_dataset(300, seed=seed, n_classes=N_CLASSES, dt_per_gt=4.0, score_decimals=decimals)


@lru_cache(maxsize=None)
def random_oracle(seed: int, decimals: int | None, use_cats: bool = True) -> COCOeval:
    gt, dt, ids = random_case(seed, decimals)
    return coco_oracle(gt, dt, ids, np.arange(N_CLASSES), use_cats=use_cats)


# --------------------------------------------------------------------------------------------- COCO numbers


@pytest.mark.parametrize("seed,decimals", [(0, None), (1, None), (2, 2), (3, 1)])
def test_random_datasets_match_pycocotools(seed: int, decimals: int | None) -> None:
    gt, dt, ids = random_case(seed, decimals)
    areas = gt.area[~gt.iscrowd]
    assert (areas < 32**2).any() and ((areas > 32**2) & (areas < 96**2)).any() and (areas > 96**2).any()
    result = evaluate(gt, dt, ids, labels=np.arange(N_CLASSES))
    e = random_oracle(seed, decimals)
    assert_same_as_coco(result, e)
    assert 0.1 < result.stats[0] < 0.9  # a real, non-degenerate score


def test_random_dataset_matches_faster_coco_eval() -> None:
    from faster_coco_eval import COCO as FCOCO
    from faster_coco_eval import COCOeval_faster

    gt, dt, ids = random_case(0, None)
    gt_dict, res = to_coco(gt, dt, ids, np.arange(N_CLASSES))
    cg = FCOCO(gt_dict)
    e = COCOeval_faster(cg, cg.loadRes(res), "bbox", print_function=lambda *a, **k: None)
    e.evaluate()
    e.accumulate()
    e.summarize()
    np.testing.assert_allclose(evaluate(gt, dt, ids).stats, np.asarray(e.stats[:12]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 3])
def test_class_agnostic_matches_pycocotools_use_cats_0(seed: int) -> None:
    decimals = None if seed == 0 else 1
    gt, dt, ids = random_case(seed, decimals)
    result = evaluate(gt, dt, ids, class_agnostic=True, labels=np.arange(N_CLASSES))
    assert_same_as_coco(result, random_oracle(seed, decimals, use_cats=False))
    assert result.labels.tolist() == [-1]
    assert result.stats[0] > evaluate(gt, dt, ids).stats[0]  # wrong-class hits now count


def test_image_subset_matches_pycocotools_img_ids() -> None:
    """The live-filter path: evaluating a subset equals pycocotools with params.imgIds restricted."""
    gt, dt, ids = random_case(1, None)
    subset = np.random.default_rng(5).choice(ids, 60, replace=False)
    result = evaluate(gt, dt, subset, labels=np.arange(N_CLASSES))
    e = coco_oracle(gt, dt, ids, np.arange(N_CLASSES), img_subset=subset)
    assert_same_as_coco(result, e)
    assert not np.allclose(result.stats, evaluate(gt, dt, ids).stats)


def _edge_case() -> tuple[Detections, Detections, np.ndarray]:
    """Each image holds one COCO rule; see the comments.  Class 5 has predictions but no GT."""
    g: list[tuple[int, int, list[float], bool, float | None]] = [  # image, class, box, crowd, area
        (1, 0, [10, 10, 300, 300], True, None),  # crowd region ...
        (1, 0, [20, 20, 40, 40], False, None),  # ... with regular objects inside it
        (1, 0, [200, 200, 50, 60], False, None),
        (1, 1, [50, 50, 100, 100], False, None),
        (4, 2, [5, 5, 30, 30], False, None),  # image with GT only
        (5, 0, [100, 100, 50, 50], False, None),  # score ties
        (5, 0, [110, 100, 50, 50], False, None),
        (6, 1, [0, 0, 64, 48], False, None),  # touching the top-left border
        (6, 1, [576, 432, 64, 48], False, None),  # touching the bottom-right border
        (8, 0, [0, 0, 10, 10], False, 32.0**2),  # area exactly on the small/medium edge (mask area, not w*h)
        (8, 0, [50, 0, 30, 10], False, 96.0**2),  # exactly on medium/large
        (8, 2, [300, 300, 80, 80], False, 5000.0),
    ]
    d: list[tuple[int, int, list[float], float]] = [
        (1, 0, [22, 22, 38, 38], 0.9),
        (1, 0, [100, 100, 30, 30], 0.8),  # inside the crowd: ignored, not FP
        (1, 0, [150, 150, 20, 20], 0.7),
        (1, 0, [200, 200, 50, 60], 0.6),
        (1, 1, [55, 55, 100, 100], 0.95),
        (1, 3, [55, 55, 100, 100], 0.5),  # wrong class
        (3, 0, [10, 10, 50, 50], 0.9),  # image with predictions only
        (3, 2, [100, 10, 50, 50], 0.3),
        (5, 0, [105, 100, 50, 50], 0.5),  # three predictions with the same score
        (5, 0, [100, 100, 50, 50], 0.5),
        (5, 0, [110, 100, 50, 50], 0.5),
        (5, 0, [400, 100, 50, 50], 0.5),
        (6, 1, [0, 0, 60, 48], 0.7),
        (6, 1, [580, 432, 60, 48], 0.6),
        (8, 0, [0, 0, 10, 20], 0.9),  # IoU exactly 0.5
        (8, 0, [50, 0, 40, 10], 0.8),  # IoU exactly 0.75
        (8, 2, [300, 300, 80, 80], 0.2),
        (8, 5, [300, 300, 80, 80], 0.6),  # class 5: no GT anywhere
        (4, 5, [5, 5, 30, 30], 0.4),
    ]
    rng = np.random.default_rng(0)
    # image 7: 20 objects of one class and 150 predictions -> maxDets (100) truncation
    for i in range(20):
        g.append((7, 4, [float(30 * (i % 10)), float(40 * (i // 10)), 25.0, 35.0], False, None))
    for i in range(150):
        x, y = 30 * (i % 10) + rng.normal(0, 4), 40 * ((i // 10) % 2) + rng.normal(0, 4)
        d.append((7, 4, [float(x), float(y), 25.0, 35.0], float(rng.uniform(0.01, 1.0))))
    image_ids = np.arange(1, 9, dtype=np.int64)  # image 2 has neither GT nor predictions
    gt = Detections(
        image_id=np.array([r[0] for r in g], np.int64),
        label=np.array([r[1] for r in g], np.int32),
        bbox=np.array([r[2] for r in g], np.float64),
        ann_id=np.arange(1, len(g) + 1, dtype=np.int64),
        iscrowd=np.array([r[3] for r in g]),
        area=np.array([r[4] if r[4] is not None else r[2][2] * r[2][3] for r in g], np.float64),
    )
    dt = Detections(
        image_id=np.array([r[0] for r in d], np.int64),
        label=np.array([r[1] for r in d], np.int32),
        bbox=np.array([r[2] for r in d], np.float64),
        ann_id=np.arange(1, len(d) + 1, dtype=np.int64),
        score=np.array([r[3] for r in d], np.float64),
    )
    return gt, dt, image_ids


@pytest.mark.parametrize("class_agnostic", [False, True])
def test_edge_cases_match_pycocotools(class_agnostic: bool) -> None:
    gt, dt, ids = _edge_case()
    labels = np.arange(6)
    result = evaluate(gt, dt, ids, labels=labels, class_agnostic=class_agnostic)
    assert_same_as_coco(result, coco_oracle(gt, dt, ids, labels, use_cats=not class_agnostic))
    if not class_agnostic:
        assert result.class_ap[[3, 5]].tolist() == [-1, -1] and result.class_ap50[5] == -1  # classes without GT
        assert (result.class_ap[[0, 1, 2, 4]] > -1).all()
    truncated = (dt.image_id == 7) & (result.objects.dt_status == Status.SKIPPED)
    assert truncated.sum() == 50  # 150 predictions, maxDets 100


def test_maxdets_truncation_changes_the_numbers() -> None:
    """Guard that the truncation test above is not vacuous: ranks past 100 would otherwise add recall."""
    gt, dt, ids = _edge_case()
    keep = dt.image_id == 7
    sub_gt = Detections(**{f: getattr(gt, f)[gt.image_id == 7] for f in ("image_id", "label", "bbox", "ann_id",
                                                                         "iscrowd", "area")})  # fmt: skip
    sub_dt = Detections(**{f: getattr(dt, f)[keep] for f in ("image_id", "label", "bbox", "ann_id", "score")})
    r100 = evaluate(sub_gt, sub_dt, np.array([7]))
    r200 = evaluate(sub_gt, sub_dt, np.array([7]), max_dets=(1, 10, 200))
    assert r200.recall[0, :, 0, -1].max() >= r100.recall[0, :, 0, -1].max()
    assert not np.array_equal(r100.precision[..., -1], r200.precision[..., -1])


def test_no_predictions_at_all() -> None:
    gt, _, ids = _edge_case()
    empty = Detections(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros((0, 4)), np.zeros(0, np.int64),
                       score=np.zeros(0))  # fmt: skip
    result = evaluate(gt, empty, ids, labels=np.arange(6))
    assert_same_as_coco(result, coco_oracle(gt, empty, ids, np.arange(6)))
    assert (result.objects.gt_status[~gt.iscrowd] == Status.FN).all()
    assert result.confusion.matrix[:-1, -1].sum() == (~gt.iscrowd).sum()


# --------------------------------------------------------------------------------------------- per-object


def _coco_object_verdicts(e: COCOeval, n_gt: int, n_dt: int, t_index: int) -> tuple[np.ndarray, ...]:
    """Statuses and matched ids from COCOeval.evalImgs (area all, maxDet 100) at one IoU threshold."""
    dt_status = np.full(n_dt, Status.SKIPPED, np.int8)
    dt_match = np.full(n_dt, -1, np.int64)
    gt_status = np.full(n_gt, Status.SKIPPED, np.int8)
    gt_match = np.full(n_gt, -1, np.int64)
    for ev in e.evalImgs:
        if ev is None or list(ev["aRng"]) != ALL_AREA:
            continue
        for i, did in enumerate(ev["dtIds"]):
            m, ig = int(ev["dtMatches"][t_index, i]), bool(ev["dtIgnore"][t_index, i])
            dt_status[did - 1] = Status.IGNORED if ig else (Status.TP if m > 0 else Status.FP)
            dt_match[did - 1] = m if m > 0 else -1
        for i, gid in enumerate(ev["gtIds"]):
            m, ig = int(ev["gtMatches"][t_index, i]), bool(ev["gtIgnore"][i])
            gt_status[gid - 1] = Status.IGNORED if ig else (Status.TP if m > 0 else Status.FN)
            gt_match[gid - 1] = m if m > 0 else -1
    return dt_status, dt_match, gt_status, gt_match


@pytest.mark.parametrize("seed,decimals,use_cats", [(0, None, True), (3, 1, True), (0, None, False)])
@pytest.mark.parametrize("match_iou,t_index", [(0.5, 0), (0.75, 5)])
def test_per_object_matches_agree_with_coco_eval_imgs(
    seed: int, decimals: int | None, use_cats: bool, match_iou: float, t_index: int
) -> None:
    gt, dt, ids = random_case(seed, decimals)
    e = random_oracle(seed, decimals, use_cats)
    obj = evaluate(gt, dt, ids, match_iou=match_iou, class_agnostic=not use_cats, labels=np.arange(N_CLASSES)).objects
    dt_status, dt_match, gt_status, gt_match = _coco_object_verdicts(e, len(gt), len(dt), t_index)
    assert (gt.ann_id == np.arange(1, len(gt) + 1)).all() and (dt.ann_id == np.arange(1, len(dt) + 1)).all()
    np.testing.assert_array_equal(obj.dt_status, dt_status)
    np.testing.assert_array_equal(obj.dt_match_id, dt_match)
    np.testing.assert_array_equal(obj.gt_status, gt_status)
    np.testing.assert_array_equal(obj.gt_match_id, gt_match)
    assert {Status.TP, Status.FP, Status.IGNORED} <= set(obj.dt_status.tolist())
    # per-image counts add up and align with image_ids
    assert obj.image_tp.sum() == (obj.dt_status == Status.TP).sum()
    assert obj.image_fn.sum() == (obj.gt_status == Status.FN).sum()
    i = 17
    on = obj.dt_status[dt.image_id == ids[i]]
    assert obj.image_fp[i] == (on == Status.FP).sum() and obj.image_tp[i] == (on == Status.TP).sum()
    # TP IoU is the pair's IoU, so never below the threshold
    assert (obj.dt_iou[obj.dt_status == Status.TP] >= match_iou).all()


def test_match_objects_equals_evaluate_objects() -> None:
    gt, dt, ids = random_case(2, 2)
    full = evaluate(gt, dt, ids).objects
    fast = match_objects(gt, dt, ids)
    for name in ("dt_status", "dt_match_id", "dt_iou", "dt_error", "gt_status", "gt_match_id", "gt_iou", "image_fp"):
        np.testing.assert_array_equal(getattr(full, name), getattr(fast, name), err_msg=name)
    dt_cols, gt_cols, img_cols = fast.tables()
    assert set(dt_cols) == {"ann_id", "status", "match_id", "iou", "error"}
    assert len(dt_cols["status"]) == len(dt) and len(gt_cols["status"]) == len(gt) and len(img_cols["fp"]) == len(ids)


def _tiny(gts: list[tuple[int, list[float]]], dts: list[tuple[int, list[float], float]], image: int = 1):
    gt = Detections(
        image_id=np.full(len(gts), image, np.int64),
        label=np.array([c for c, _ in gts], np.int32),
        bbox=np.array([b for _, b in gts], np.float64).reshape(-1, 4),
        ann_id=np.arange(101, 101 + len(gts), dtype=np.int64),
    )
    dt = Detections(
        image_id=np.full(len(dts), image, np.int64),
        label=np.array([c for c, _, _ in dts], np.int32),
        bbox=np.array([b for _, b, _ in dts], np.float64).reshape(-1, 4),
        ann_id=np.arange(201, 201 + len(dts), dtype=np.int64),
        score=np.array([s for _, _, s in dts], np.float64),
    )
    return gt, dt, np.array([image], np.int64)


def test_fp_error_types_on_hand_built_cases() -> None:
    gt, dt, ids = _tiny(
        [(0, [0, 0, 100, 100]), (1, [300, 300, 100, 100])],
        [
            (0, [0, 0, 100, 100], 0.9),  # TP
            (0, [2, 2, 100, 100], 0.8),  # duplicate of the same object
            (0, [60, 60, 100, 100], 0.7),  # same class, IoU ~0.09 -> background
            (0, [40, 0, 100, 100], 0.6),  # same class, IoU 0.43 -> localization
            (0, [330, 300, 100, 100], 0.5),  # class 0 on a class-1 object, IoU 0.54 -> confusion
            (2, [1000, 1000, 50, 50], 0.4),  # nowhere near anything -> background
        ],
    )
    obj = evaluate(gt, dt, ids).objects
    assert obj.dt_status.tolist() == [Status.TP] + [Status.FP] * 5
    assert obj.dt_error.tolist() == [
        FPError.NONE, FPError.DUPLICATE, FPError.BACKGROUND, FPError.LOCALIZATION, FPError.CONFUSION,
        FPError.BACKGROUND,
    ]  # fmt: skip
    assert obj.dt_match_id.tolist() == [101, -1, -1, -1, -1, -1]
    assert obj.gt_status.tolist() == [Status.TP, Status.FN] and obj.gt_match_id.tolist() == [201, -1]
    np.testing.assert_allclose(obj.dt_iou[3], 60 * 100 / (2 * 100 * 100 - 60 * 100))
    assert (obj.image_tp.tolist(), obj.image_fp.tolist(), obj.image_fn.tolist()) == ([1], [5], [1])
    # class-agnostic: the class-0 box on the class-1 object is now a TP, no confusion can exist
    agn = evaluate(gt, dt, ids, class_agnostic=True).objects
    assert agn.dt_status[4] == Status.TP and agn.dt_match_id[4] == 102
    assert FPError.CONFUSION not in agn.dt_error.tolist()


def test_crowd_gt_ignores_predictions_inside_it() -> None:
    gt, dt, ids = _tiny([(0, [0, 0, 200, 200])], [(0, [10, 10, 20, 20], 0.9), (0, [150, 150, 100, 100], 0.8)])
    gt = Detections(gt.image_id, gt.label, gt.bbox, gt.ann_id, iscrowd=np.array([True]))
    obj = evaluate(gt, dt, ids).objects
    assert obj.dt_status.tolist() == [Status.IGNORED, Status.FP]  # crowd IoU: 400/400 vs 2500/10000
    assert obj.gt_status.tolist() == [Status.IGNORED]
    cm = confusion_matrix(gt, dt, ids)
    assert cm.matrix.tolist() == [[0, 0], [1, 0]]  # only the prediction mostly outside the crowd counts


# --------------------------------------------------------------------------------------------- confusion matrix


def _brute_confusion(gt: Detections, dt: Detections, ids, labels, iou: float, conf: float) -> np.ndarray:
    """The documented rule written the slow, obvious way."""

    def box_iou(a, b, crowd=False):
        w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
        h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
        if w <= 0 or h <= 0:
            return 0.0
        return w * h / (a[2] * a[3] if crowd else a[2] * a[3] + b[2] * b[3] - w * h)

    k = len(labels)
    li = {int(c): i for i, c in enumerate(labels)}
    cm = np.zeros((k + 1, k + 1), np.int64)
    crowd = gt.iscrowd if gt.iscrowd is not None else np.zeros(len(gt), bool)
    for img in ids:
        g = [i for i in range(len(gt)) if gt.image_id[i] == img and not crowd[i]]
        c = [i for i in range(len(gt)) if gt.image_id[i] == img and crowd[i]]
        d = sorted((i for i in range(len(dt)) if dt.image_id[i] == img and dt.score[i] >= conf),
                   key=lambda i: (-dt.score[i], i))  # fmt: skip
        pairs = [(-box_iou(dt.bbox[x], gt.bbox[y]), n, x, y) for n, (x, y) in enumerate(itertools.product(d, g))]
        used_d, used_g = set(), set()
        for v, _, x, y in sorted(pairs):
            if -v >= iou and x not in used_d and y not in used_g:
                used_d.add(x), used_g.add(y)
                cm[li[int(gt.label[y])], li[int(dt.label[x])]] += 1
        for y in g:
            if y not in used_g:
                cm[li[int(gt.label[y])], k] += 1
        for x in d:
            inside = any(gt.label[y] == dt.label[x] and box_iou(dt.bbox[x], gt.bbox[y], True) >= iou for y in c)
            if x not in used_d and not inside:
                cm[k, li[int(dt.label[x])]] += 1
    return cm


@pytest.mark.parametrize("conf", [0.0, 0.5])
def test_confusion_matrix_matches_brute_force_and_sums(conf: float) -> None:
    gt, dt, ids = random_case(0, None)
    ids = ids[:40]
    labels = np.arange(N_CLASSES)
    result = evaluate(gt, dt, ids, labels=labels, conf_threshold=conf)
    cm = result.confusion.matrix
    np.testing.assert_array_equal(cm, _brute_confusion(gt, dt, ids, labels, 0.5, conf))
    on = np.isin(gt.image_id, ids)
    assert cm[:-1].sum() == (on & ~gt.iscrowd).sum()  # every non-crowd GT exactly once
    assert cm.sum() == (on & ~gt.iscrowd).sum() + result.confusion.background_fp
    assert cm[-1, -1] == 0 and np.trace(cm[:-1, :-1]) > 0 and cm[:-1, :-1].sum() > np.trace(cm[:-1, :-1])


def test_confusion_matrix_hand_built() -> None:
    gt, dt, ids = _tiny(
        [(0, [0, 0, 100, 100]), (1, [300, 300, 100, 100]), (1, [600, 0, 50, 50])],
        [
            (0, [0, 0, 100, 100], 0.9),  # 0 -> 0
            (0, [300, 300, 100, 100], 0.8),  # 1 -> 0 (confusion)
            (1, [1, 1, 100, 100], 0.7),  # duplicate on the first object -> background FP of class 1
            (1, [900, 900, 10, 10], 0.1),  # low score
        ],
    )
    cm = confusion_matrix(gt, dt, ids, conf_threshold=0.5).matrix
    assert cm.tolist() == [[1, 0, 0], [1, 0, 1], [0, 1, 0]]
    cm0 = confusion_matrix(gt, dt, ids).matrix
    assert cm0[2].tolist() == [0, 2, 0]


# --------------------------------------------------------------------------------------------- derived outputs


def test_per_class_ap_and_pr_curves() -> None:
    gt, dt, ids = random_case(1, None)
    result = evaluate(gt, dt, ids, labels=np.arange(N_CLASSES))
    p = random_oracle(1, None).eval["precision"][:, :, :, 0, 2]
    for k in range(N_CLASSES):
        np.testing.assert_allclose(result.class_ap[k], np.mean(p[:, :, k][p[:, :, k] > -1]), atol=1e-12)
        np.testing.assert_allclose(result.class_ap50[k], np.mean(p[0, :, k]), atol=1e-12)
    assert np.isclose(np.mean(result.class_ap), result.stats[0])
    recall, precision = result.pr_curve(3, iou=0.75)
    assert recall.shape == precision.shape == (101,)
    assert (np.diff(precision) <= 0).all() and precision[0] > 0
    assert result.pr_curves(0.5).shape == (N_CLASSES, 101)
    with pytest.raises(KeyError):
        result.pr_curve(3, iou=0.33)
