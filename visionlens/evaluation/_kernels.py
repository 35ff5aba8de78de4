"""Numba loops that are inherently sequential: COCO's greedy matching, its precision envelope, and greedy IoU pairing.

Everything is written to reproduce pycocotools bit for bit: the IoU follows ``maskApi.c:bbIou`` operation for
operation (so boxes sitting exactly on a threshold land on the same side), and the matcher is a literal port of
``COCOeval.evaluateImg``.  Each kernel is one compiled function over all groups, so Python never loops per image.
``cache=True`` keeps the compile a one-off per environment.
"""

from __future__ import annotations

import numba as nb
import numpy as np

# match codes per (area range, IoU threshold, prediction), as COCOeval.accumulate reads dtMatches/dtIgnore
CODE_FP = 0
CODE_TP = 1
CODE_IGNORED = 2


@nb.njit(cache=True)
def _iou(db: np.ndarray, d: int, gb: np.ndarray, g: int, crowd: bool) -> float:
    """bbIou from pycocotools' maskApi.c for rows ``db[d]`` and ``gb[g]``; a crowd region is measured against the
    prediction's own area.  Rows are indexed in place: slicing a view per pair costs more than the arithmetic."""
    dx = db[d, 0]
    dy = db[d, 1]
    dw = db[d, 2]
    dh = db[d, 3]
    gx = gb[g, 0]
    gy = gb[g, 1]
    gw = gb[g, 2]
    gh = gb[g, 3]
    w = min(dw + dx, gw + gx) - max(dx, gx)
    if w <= 0:
        return 0.0
    h = min(dh + dy, gh + gy) - max(dy, gy)
    if h <= 0:
        return 0.0
    i = w * h
    da = dw * dh
    if crowd:
        return i / da
    return i / (da + gw * gh - i)


@nb.njit(cache=True)
def _iou_block(dt_box, gt_box, gt_crowd, d0, nd, g0, ng, out):
    for d in range(nd):
        for j in range(ng):
            out[d, j] = _iou(dt_box, d0 + d, gt_box, g0 + j, gt_crowd[g0 + j])


@nb.njit(cache=True)
def _greedy(ious, nd, ng, crowd, ignore, order, thr, gtm, dt_m):
    """COCOeval.evaluateImg's inner loop: best still-free GT, regular GTs before ignored ones, ties to the later GT."""
    for j in range(ng):
        gtm[j] = False
    base = min(thr, 1 - 1e-10)
    for d in range(nd):
        best = base
        m = -1
        for oi in range(ng):
            j = order[oi]
            if gtm[j] and not crowd[j]:
                continue
            if m > -1 and not ignore[m] and ignore[j]:
                break
            v = ious[d, j]
            if v < best:
                continue
            best = v
            m = j
        dt_m[d] = m
        if m > -1:
            gtm[m] = True


@nb.njit(cache=True)
def _ignore_order(area, crowd, g0, ng, lo, hi, ignore, order):
    """GT ignore flags for one area range, and the stable 'regular first' order pycocotools sorts them into."""
    k = 0
    for j in range(ng):
        a = area[g0 + j]
        ignore[j] = crowd[g0 + j] or a < lo or a > hi
        if not ignore[j]:
            order[k] = j
            k += 1
    for j in range(ng):
        if ignore[j]:
            order[k] = j
            k += 1


@nb.njit(cache=True)
def coco_match(gt_box, gt_area, gt_crowd, dt_box, dt_area, gs, ge, ds, de, iou_thrs, area_rng, obj_iou, obj_rng):
    """Match every (image, class) group at every area range and IoU threshold, plus one per-object pass.

    Returns ``dt_code[A, T, D]`` (FP/TP/ignored), ``gt_ignore[A, G]``, and for the per-object pass at ``obj_iou``
    over area ``obj_rng``: matched GT / prediction positions (-1 when none), the IoU of that match (or the best
    IoU with a regular GT of the group when unmatched) and the GT ignore flag.
    """
    n_groups = gs.shape[0]
    n_a = area_rng.shape[0]
    n_t = iou_thrs.shape[0]
    n_dt = dt_box.shape[0]
    n_gt = gt_box.shape[0]
    dt_code = np.zeros((n_a, n_t, n_dt), np.int8)
    gt_ignore = np.zeros((n_a, n_gt), np.bool_)
    dt_match = np.full(n_dt, -1, np.int64)
    gt_match = np.full(n_gt, -1, np.int64)
    dt_iou = np.zeros(n_dt)
    gt_iou = np.zeros(n_gt)
    gt_obj_ignore = np.zeros(n_gt, np.bool_)
    max_g = 1
    max_d = 1
    for i in range(n_groups):
        max_g = max(max_g, ge[i] - gs[i])
        max_d = max(max_d, de[i] - ds[i])
    ious = np.empty((max_d, max_g))
    ignore = np.empty(max_g, np.bool_)
    order = np.empty(max_g, np.int64)
    gtm = np.empty(max_g, np.bool_)
    dt_m = np.empty(max_d, np.int64)
    crowd = np.empty(max_g, np.bool_)
    for i in range(n_groups):
        g0 = gs[i]
        ng = ge[i] - g0
        d0 = ds[i]
        nd = de[i] - d0
        for j in range(ng):
            crowd[j] = gt_crowd[g0 + j]
        _iou_block(dt_box, gt_box, gt_crowd, d0, nd, g0, ng, ious)
        for a in range(n_a):
            lo = area_rng[a, 0]
            hi = area_rng[a, 1]
            _ignore_order(gt_area, gt_crowd, g0, ng, lo, hi, ignore, order)
            for j in range(ng):
                gt_ignore[a, g0 + j] = ignore[j]
            if nd == 0:
                continue
            for t in range(n_t):
                if ng > 0:
                    _greedy(ious, nd, ng, crowd, ignore, order, iou_thrs[t], gtm, dt_m)
                for d in range(nd):
                    m = dt_m[d] if ng > 0 else -1
                    if m > -1:
                        dt_code[a, t, d0 + d] = CODE_IGNORED if ignore[m] else CODE_TP
                    else:
                        ar = dt_area[d0 + d]
                        dt_code[a, t, d0 + d] = CODE_IGNORED if (ar < lo or ar > hi) else CODE_FP
        # per-object pass
        _ignore_order(gt_area, gt_crowd, g0, ng, obj_rng[0], obj_rng[1], ignore, order)
        for j in range(ng):
            gt_obj_ignore[g0 + j] = ignore[j]
            best = 0.0
            for d in range(nd):
                best = max(best, ious[d, j])
            gt_iou[g0 + j] = best
        if nd == 0 or ng == 0:
            continue
        _greedy(ious, nd, ng, crowd, ignore, order, obj_iou, gtm, dt_m)
        for d in range(nd):
            m = dt_m[d]
            if m > -1:
                dt_match[d0 + d] = g0 + m
                gt_match[g0 + m] = d0 + d
                dt_iou[d0 + d] = ious[d, m]
            else:
                best = 0.0
                for j in range(ng):
                    if not crowd[j]:
                        best = max(best, ious[d, j])
                dt_iou[d0 + d] = best
        for d in range(nd):
            m = dt_m[d]
            if m > -1 and not crowd[m]:
                gt_iou[g0 + m] = ious[d, m]
    return dt_code, gt_ignore, dt_match, gt_match, dt_iou, gt_iou, gt_obj_ignore


@nb.njit(cache=True)
def coco_accumulate(codes, rank, order, seg, npig, rec_thrs, max_dets):
    """COCOeval.accumulate over all classes, area ranges, IoU thresholds and maxDets in one scan per (k, a, t).

    ``order`` lists predictions in (class, -score, image, rank) order -- pycocotools' mergesort over the per-image
    lists -- with class segments at ``seg``; ``codes[A, T, D]`` and ``rank[D]`` are indexed by prediction.
    Precision stays -1 where a class has no regular GT in an area range, exactly like pycocotools.

    Only the first entry and TP entries are kept as curve points: recall rises only at a TP, so COCO's
    ``searchsorted`` always lands on one of them, and precision only rises at a TP, so the right-to-left max
    envelope over these points equals pycocotools' envelope there.  Same divisions, same values, far fewer.
    """
    n_a = codes.shape[0]
    n_t = codes.shape[1]
    n_k = seg.shape[0] - 1
    n_r = rec_thrs.shape[0]
    n_m = max_dets.shape[0]
    eps = np.spacing(1.0)
    precision = -np.ones((n_t, n_r, n_k, n_a, n_m))
    recall = -np.ones((n_t, n_k, n_a, n_m))
    max_len = 1
    for k in range(n_k):
        max_len = max(max_len, seg[k + 1] - seg[k])
    rc = np.empty((n_m, max_len))
    pr = np.empty((n_m, max_len))
    tp = np.empty(n_m)
    fp = np.empty(n_m)
    nd = np.empty(n_m, np.int64)
    n_pts = np.empty(n_m, np.int64)
    for k in range(n_k):
        for a in range(n_a):
            n_pos = npig[k, a]
            if n_pos == 0:
                continue
            for t in range(n_t):
                tp[:] = 0.0
                fp[:] = 0.0
                nd[:] = 0
                n_pts[:] = 0
                for i in range(seg[k], seg[k + 1]):
                    d = order[i]
                    r = rank[d]
                    c = codes[a, t, d]
                    for m in range(n_m):
                        if r >= max_dets[m]:
                            continue
                        if c == CODE_TP:
                            tp[m] += 1.0
                        elif c == CODE_FP:
                            fp[m] += 1.0
                        if c == CODE_TP or nd[m] == 0:
                            rc[m, n_pts[m]] = tp[m] / n_pos
                            pr[m, n_pts[m]] = tp[m] / (fp[m] + tp[m] + eps)
                            n_pts[m] += 1
                        nd[m] += 1
                for m in range(n_m):
                    n_p = n_pts[m]
                    recall[t, k, a, m] = tp[m] / n_pos if nd[m] else 0.0
                    for i in range(n_p - 1, 0, -1):
                        if pr[m, i] > pr[m, i - 1]:
                            pr[m, i - 1] = pr[m, i]
                    j = 0  # np.searchsorted(rc, rec_thrs, "left") as a merge: both sides ascending
                    for ri in range(n_r):
                        while j < n_p and rc[m, j] < rec_thrs[ri]:
                            j += 1
                        precision[t, ri, k, a, m] = pr[m, j] if j < n_p else 0.0
    return precision, recall


@nb.njit(cache=True)
def other_class_iou(gt_box, gt_cls, gt_crowd, gt_start, gt_end, dt_box, dt_cls, dt_img):
    """Best IoU of each prediction with a regular GT of a *different* class on its image (for confusion errors)."""
    n = dt_box.shape[0]
    out = np.zeros(n)
    for d in range(n):
        i = dt_img[d]
        best = 0.0
        for j in range(gt_start[i], gt_end[i]):
            if gt_crowd[j] or gt_cls[j] == dt_cls[d]:
                continue
            best = max(best, _iou(dt_box, d, gt_box, j, False))
        out[d] = best
    return out


@nb.njit(cache=True)
def _grow_f(a, cap):
    out = np.empty(cap)
    out[: a.shape[0]] = a
    return out


@nb.njit(cache=True)
def _grow_i(a, cap):
    out = np.empty(cap, np.int64)
    out[: a.shape[0]] = a
    return out


@nb.njit(cache=True)
def confusion_counts(gt_box, gt_cls, gt_crowd, gs, ge, dt_box, dt_cls, ds, de, iou_thr, n_cls):
    """Class-agnostic greedy pairing per image by descending IoU; returns the (K+1)x(K+1) count matrix.

    Row/column ``n_cls`` is background.  Unmatched predictions covered by a same-class crowd region are dropped,
    as COCO ignores them, so they are neither a confusion nor a background error.
    """
    cm = np.zeros((n_cls + 1, n_cls + 1), np.int64)
    max_g = 1
    max_d = 1
    for i in range(gs.shape[0]):
        max_g = max(max_g, ge[i] - gs[i])
        max_d = max(max_d, de[i] - ds[i])
    cap = 16
    pair_iou = np.empty(cap)
    pair_d = np.empty(cap, np.int64)
    pair_g = np.empty(cap, np.int64)
    gt_used = np.empty(max_g, np.bool_)
    dt_used = np.empty(max_d, np.bool_)
    crowd_idx = np.empty(max_g, np.int64)
    for i in range(gs.shape[0]):
        g0 = gs[i]
        ng = ge[i] - g0
        d0 = ds[i]
        nd = de[i] - d0
        n_pairs = 0
        for d in range(nd):  # predictions arrive in descending score: ties in IoU go to the higher score
            if n_pairs + ng > cap:  # grow outside the hot loop; a dense nd x ng buffer could be gigabytes
                cap = 2 * (n_pairs + ng)
                pair_iou = _grow_f(pair_iou, cap)
                pair_d = _grow_i(pair_d, cap)
                pair_g = _grow_i(pair_g, cap)
            for j in range(ng):
                if gt_crowd[g0 + j]:
                    continue
                v = _iou(dt_box, d0 + d, gt_box, g0 + j, False)
                if v >= iou_thr:
                    pair_iou[n_pairs] = -v
                    pair_d[n_pairs] = d
                    pair_g[n_pairs] = j
                    n_pairs += 1
        gt_used[:ng] = False
        dt_used[:nd] = False
        order = np.argsort(pair_iou[:n_pairs], kind="mergesort")
        for p in order:
            d = pair_d[p]
            j = pair_g[p]
            if dt_used[d] or gt_used[j]:
                continue
            dt_used[d] = True
            gt_used[j] = True
            cm[gt_cls[g0 + j], dt_cls[d0 + d]] += 1
        n_crowd = 0
        for j in range(ng):
            if gt_crowd[g0 + j]:
                crowd_idx[n_crowd] = j
                n_crowd += 1
            elif not gt_used[j]:
                cm[gt_cls[g0 + j], n_cls] += 1
        for d in range(nd):
            if dt_used[d]:
                continue
            in_crowd = False
            for c in range(n_crowd):
                j = crowd_idx[c]
                if gt_cls[g0 + j] == dt_cls[d0 + d]:
                    if _iou(dt_box, d0 + d, gt_box, g0 + j, True) >= iou_thr:
                        in_crowd = True
                        break
            if not in_crowd:
                cm[n_cls, dt_cls[d0 + d]] += 1
    return cm


@nb.njit(cache=True)
def counting_order(keys, n_keys):
    """Stable argsort of small non-negative integer keys in O(n + n_keys), one pass of an LSD radix sort."""
    starts = np.zeros(n_keys + 1, np.int64)
    for i in range(keys.shape[0]):
        starts[keys[i] + 1] += 1
    for k in range(n_keys):
        starts[k + 1] += starts[k]
    out = np.empty(keys.shape[0], np.int64)
    for i in range(keys.shape[0]):
        k = keys[i]
        out[starts[k]] = i
        starts[k] += 1
    return out


@nb.njit(cache=True)
def merged_group_bounds(gt_group, dt_group):
    """Offsets of every group present in either sorted array (a merge, instead of union1d + four searchsorted)."""
    n_g = gt_group.shape[0]
    n_d = dt_group.shape[0]
    cap = n_g + n_d
    gs = np.empty(cap, np.int64)
    ge = np.empty(cap, np.int64)
    ds = np.empty(cap, np.int64)
    de = np.empty(cap, np.int64)
    i = 0
    j = 0
    n = 0
    while i < n_g or j < n_d:
        if j >= n_d or (i < n_g and gt_group[i] <= dt_group[j]):
            g = gt_group[i]
        else:
            g = dt_group[j]
        gs[n] = i
        while i < n_g and gt_group[i] == g:
            i += 1
        ge[n] = i
        ds[n] = j
        while j < n_d and dt_group[j] == g:
            j += 1
        de[n] = j
        n += 1
    return gs[:n], ge[:n], ds[:n], de[:n]
