"""Label-mistake candidates: ground truth that the models' predictions contradict, one finding per suspect box.

The reference is ObjectLab (Tkachenko et al. 2023; ``cleanlab.object_detection``). It scores each image's labels
with three subscores, each built from how confidently a prediction contradicts a label: *overlooked* (a confident
prediction no label resembles), *swapped* (a label whose matching prediction has another class) and *badly located*
(a label whose same-class prediction overlaps it poorly), pooled per image with a soft minimum. Here the same three
kinds are found per box, plus a fourth, and scored as a probability that the label is wrong (1 = surely wrong):

* ``missing``     -- a prediction overlapping no GT box of any class (IoU < ``BG_IOU``, not inside a crowd region).
  Predictions of several models on one spot (IoU >= ``FG_IOU``, any class) are one candidate. Score: noisy-OR of
  each model's best confidence there, ``1 - prod(1 - c_m)``.
* ``wrong_label`` -- a GT box covered by a prediction of another class: fully at IoU >= ``FG_IOU``, with a weight
  rising linearly from 0 at ``LOOSE_IOU`` (a box just under 0.5 is still about this object). Each model's evidence
  is discounted by how often that model calls this class the other one across the dataset, ``c_m * (1 - r_m(X→Y))``:
  a detector that calls a third of all trucks "car" says little about one truck, while a class it rarely confuses
  makes a disagreement telling. Against: ``A = 1 - prod(1 - c_m (1 - r_m))``; support: ``S = 1 - prod(1 - s_m)``
  over each model's best confidence for the GT's own class on that box. Score ``A * (1 - S)``: agreeing models
  raise it, a model that confirms the label lowers it (ObjectLab's swap score compares the two classes the same
  way).
* ``bad_box``     -- a GT box whose same-class prediction overlaps it only at IoU ``BG_IOU``..``FG_IOU``. Per model
  ``c * w(IoU)``, ``w`` falling linearly from 1 at ``LOOSE_IOU`` (0.3) to 0 at ``FG_IOU``: just under 0.5 is often
  a detector's own slack, well under it a confident detector disagrees with the box. Combined as ``A * (1 - S)``.
* ``never_found`` -- a GT box no covering model predicts anything near (IoU >= ``BG_IOU``, any class). Models miss
  real objects too, so this is Bayesian: with a prior ``SPURIOUS_PRIOR`` that a GT box is spurious and each
  model's miss rate ``1 - r_m`` on GT of that class and COCO size (Laplace-smoothed), the score is
  ``p / (p + (1 - p) * prod(1 - r_m))``. A big car every model misses, though they find 98% of big cars, is
  suspect; a small object at night that models often miss is not.

A prediction speaks for the GT box it overlaps most (a same-class one first when that one reaches ``FG_IOU``), so a
detection of a neighbouring object is no evidence about this one. Predictions below ``min_confidence`` are noise
and ignored. A model only votes on images it has predictions for, so a model run on one split is no evidence on
the others. cleanlab is not used: it takes one model, loops in Python per image, and returns per-image scores; this
is numpy/numba over whole columns. The per-sample field is the highest candidate score of each image (ObjectLab
pools with a soft minimum of quality; the maximum of issue probability is its hard-min counterpart).

No model (or a dataset without predictions) is an error (``NoPredictionsError``): an empty result would read as
"no mistakes found".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numba as nb
import numpy as np

from ..errors import VisionLensError
from ..formats.base import ProgressCallback, no_progress
from ..store.metadata import GROUND_TRUTH, MetadataStore
from .errors import BG_IOU, FG_IOU, best_overlaps
from .finding import Finding

MISTAKES = ("missing", "wrong_label", "bad_box", "never_found")
SPURIOUS_PRIOR = 0.05
LOOSE_IOU = 0.3  # bad_box evidence is the full confidence at or below this IoU, none at FG_IOU
SIZE_EDGES = (32.0**2, 96.0**2)  # COCO small / medium / large
FIELD = "label mistake score"


class NoPredictionsError(VisionLensError):
    """Label mistakes are found by models' predictions; there are none to use."""


# -- boxes -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Boxes:
    """One source's boxes as the store gives them (sample ids, not evaluation positions)."""

    ann_id: np.ndarray
    sample_id: np.ndarray
    label: np.ndarray
    box: np.ndarray  # float64[n, 4] xywh pixels
    conf: np.ndarray  # clipped to [0, 1]; zeros for ground truth
    crowd: np.ndarray
    area: np.ndarray
    ext_id: np.ndarray  # int64: the source file's annotation id
    has_ext_id: np.ndarray  # bool: the file gave one

    def __len__(self) -> int:
        return len(self.ann_id)

    def file_id(self, row: int) -> int | None:
        return int(self.ext_id[row]) if self.has_ext_id[row] else None


def load(store: MetadataStore, dataset_id: int, source: str) -> Boxes:
    cols = store.boxes(dataset_id, source)
    n = len(cols["id"])
    box = np.stack([cols["x"], cols["y"], cols["w"], cols["h"]], axis=1).astype(np.float64) if n else np.zeros((0, 4))
    area = np.asarray(cols["area"], np.float64) if n else np.zeros(0)
    area = np.where(np.isfinite(area), area, box[:, 2] * box[:, 3])
    return Boxes(
        ann_id=np.asarray(cols["id"], np.int64), sample_id=np.asarray(cols["sample_id"], np.int64),
        label=np.asarray(cols["label_id"], np.int64), box=box,
        conf=np.clip(np.nan_to_num(np.asarray(cols["confidence"], np.float64), nan=0.0), 0.0, 1.0),
        crowd=np.asarray(cols["iscrowd"], bool), area=area,
        **_ext_ids(cols["ext_id"]),
    )  # fmt: skip


def _ext_ids(values: np.ma.MaskedArray) -> dict[str, np.ndarray]:
    """The source file's annotation ids and where it had one (``store.boxes`` masks the boxes without)."""
    return {"ext_id": np.asarray(np.ma.getdata(values)).astype(np.int64), "has_ext_id": ~np.ma.getmaskarray(values)}


# -- per-model evidence ----------------------------------------------------------------------------------------


def _group_max(keys: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per key in [0, n): the largest value and the position holding it (-1: none); ties to the earlier position."""
    best = np.zeros(n)
    pos = np.full(n, -1, np.int64)
    if len(keys) == 0:
        return best, pos
    order = np.lexsort((-values, keys))
    k = keys[order]
    first = np.ones(len(k), bool)
    first[1:] = k[1:] != k[:-1]
    best[k[first]] = values[order[first]]
    pos[k[first]] = order[first]
    return best, pos


@dataclass(frozen=True)
class ModelEvidence:
    """What one model says about every GT box (arrays over GT rows) and which predictions touch no GT."""

    support: np.ndarray  # best confidence of a same-class prediction at IoU >= FG_IOU
    against: np.ndarray  # best c * w(IoU) of another-class prediction, w rising from LOOSE_IOU to FG_IOU (module doc)
    against_row: np.ndarray  # its prediction row (-1: none)
    against_label: np.ndarray  # its label (-1: none)
    bad: np.ndarray  # best c * w(IoU) of a same-class prediction at IoU in [BG_IOU, FG_IOU) (module doc)
    bad_row: np.ndarray
    bad_iou: np.ndarray
    found: np.ndarray  # bool: any prediction at IoU >= BG_IOU
    covered: np.ndarray  # bool: the model predicted anything on this GT's image
    lonely: np.ndarray  # prediction rows overlapping no GT (missing-box candidates)


def model_evidence(gt: Boxes, pred: Boxes, min_confidence: float) -> ModelEvidence:
    """Assign each confident prediction to the GT it overlaps most and collect, per GT, what the model says."""
    keep = np.flatnonzero(pred.conf >= min_confidence)
    n_gt = len(gt)
    ov = best_overlaps(gt.sample_id, gt.label, gt.box, gt.crowd, pred.sample_id[keep], pred.label[keep], pred.box[keep])
    take_same = (ov.same_iou >= FG_IOU) | (ov.same_iou >= ov.other_iou)
    target = np.where(take_same, ov.same_gt, ov.other_gt)
    iou = np.where(take_same, ov.same_iou, ov.other_iou)
    conf = pred.conf[keep]
    has = target >= 0
    same = has & take_same

    def per_gt(sel: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Best value per GT and the prediction row (in ``pred``) holding it."""
        best, pos = _group_max(target[sel], values[sel], n_gt)
        rows = np.append(keep[sel], -1)  # pos -1 -> row -1
        return best, rows[pos]

    support, _ = per_gt(same & (iou >= FG_IOU), conf)
    reach = np.clip((iou - LOOSE_IOU) / (FG_IOU - LOOSE_IOU), 0.0, 1.0)
    against, against_row = per_gt(has & ~take_same & (iou > LOOSE_IOU), conf * reach)
    against_label = np.where(against_row >= 0, pred.label[np.maximum(against_row, 0)], -1)
    middling = same & (iou >= BG_IOU) & (iou < FG_IOU)
    bad, bad_row = per_gt(middling, conf * np.clip((FG_IOU - iou) / (FG_IOU - LOOSE_IOU), 0.0, 1.0))
    bad_iou = np.zeros(n_gt)
    bad_iou[bad_row >= 0] = _iou_rows(gt.box[bad_row >= 0], pred.box[bad_row[bad_row >= 0]])
    found = np.zeros(n_gt, bool)
    found[target[has & (iou >= BG_IOU)]] = True
    covered = np.isin(gt.sample_id, np.unique(pred.sample_id[keep]))
    lonely = keep[(ov.any_iou < BG_IOU) & (ov.crowd_cover < FG_IOU)]
    return ModelEvidence(support, against, against_row, against_label, bad, bad_row, bad_iou, found, covered, lonely)


def _iou_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of row i of ``a`` with row i of ``b`` (xywh)."""
    w = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    h = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def noisy_or(conf: np.ndarray, axis: int = 0) -> np.ndarray:
    """``1 - prod(1 - c)``: the chance at least one independent witness is right."""
    return 1.0 - np.prod(1.0 - np.clip(conf, 0.0, 1.0), axis=axis)


# -- candidates ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidates:
    """One kind's candidates: the box they are about (a GT row, or a prediction of model ``model``) and scores."""

    kind: str
    row: np.ndarray  # GT row; for ``missing`` the representative prediction's row in its model's boxes
    model: np.ndarray  # model index of that prediction (-1 for GT candidates)
    score: np.ndarray
    extra: dict[str, np.ndarray]


def gt_candidates(gt: Boxes, ev: list[ModelEvidence]) -> list[Candidates]:
    """wrong_label, bad_box and never_found candidates over the GT rows (crowd regions are never candidates)."""
    regular = ~gt.crowd
    support = noisy_or(np.stack([e.support for e in ev]))
    against = np.stack([e.against * (1.0 - confusion_rate(gt, e)) for e in ev])
    bad = np.stack([e.bad for e in ev])
    wrong = noisy_or(against) * (1.0 - support)
    misplaced = noisy_or(bad) * (1.0 - support)
    out = []
    for kind, score, per_model in (("wrong_label", wrong, against), ("bad_box", misplaced, bad)):
        rows = np.flatnonzero(regular & (score > 0))
        out.append(Candidates(kind, rows, np.full(len(rows), -1), score[rows], {"per_model": per_model[:, rows]}))
    never = never_found_scores(gt, ev)
    rows = np.flatnonzero(regular & (never > 0))
    out.append(Candidates("never_found", rows, np.full(len(rows), -1), never[rows], {}))
    return out


def confusion_rate(gt: Boxes, e: ModelEvidence) -> np.ndarray:
    """Per GT row: how often this model calls GT of the row's class the class it predicts here, over the GT of
    that class on images it covers (Laplace-smoothed). 0 where the model does not contradict the row."""
    regular = ~gt.crowd & e.covered
    labels = np.unique(np.concatenate([gt.label, e.against_label[e.against_label >= 0]]))
    n_lab = len(labels)
    if n_lab == 0:
        return np.zeros(len(gt))
    x = np.searchsorted(labels, gt.label)
    contra = regular & (e.against_label >= 0) & (e.against > 0)
    y = np.searchsorted(labels, np.where(contra, e.against_label, labels[0]))
    per_class = np.bincount(x[regular], minlength=n_lab).astype(float)
    pairs = np.bincount(x[contra] * n_lab + y[contra], minlength=n_lab * n_lab).astype(float)
    rate = pairs[x * n_lab + y] / (per_class[x] + 2.0)
    return np.where(contra, rate, 0.0)


def never_found_scores(gt: Boxes, ev: list[ModelEvidence]) -> np.ndarray:
    """P(spurious | every covering model missed it), each model's miss rate by (class, COCO size); 0 if found."""
    size = np.digitize(gt.area, SIZE_EDGES)
    _, cls = np.unique(gt.label, return_inverse=True)
    key = cls.reshape(-1) * 3 + size
    n_keys = int(key.max()) + 1 if len(key) else 0
    regular = ~gt.crowd
    miss = np.ones(len(gt))
    any_found = np.zeros(len(gt), bool)
    any_cover = np.zeros(len(gt), bool)
    for e in ev:
        counted = regular & e.covered
        n = np.bincount(key[counted], minlength=n_keys)
        hits = np.bincount(key[counted & e.found], minlength=n_keys)
        recall = (hits + 1.0) / (n + 2.0)
        miss = np.where(e.covered, miss * (1.0 - recall[key]), miss)
        any_found |= e.found & e.covered
        any_cover |= e.covered
    p = SPURIOUS_PRIOR
    score = p / (p + (1.0 - p) * miss)
    return np.where(regular & any_cover & ~any_found, score, 0.0)


@nb.njit(cache=True)
def _cluster(box, start, end, thr):
    """Greedy grouping inside each [start, end) segment (rows by descending confidence): each row not yet taken
    seeds a group and takes every later untaken row overlapping it at IoU >= ``thr``. Returns each row's seed."""
    root = np.full(box.shape[0], -1, np.int64)
    for s in range(start.shape[0]):
        for i in range(start[s], end[s]):
            if root[i] >= 0:
                continue
            root[i] = i
            ax, ay, aw, ah = box[i, 0], box[i, 1], box[i, 2], box[i, 3]
            for j in range(i + 1, end[s]):
                if root[j] >= 0:
                    continue
                w = min(ax + aw, box[j, 0] + box[j, 2]) - max(ax, box[j, 0])
                h = min(ay + ah, box[j, 1] + box[j, 3]) - max(ay, box[j, 1])
                if w <= 0 or h <= 0:
                    continue
                inter = w * h
                if inter / (aw * ah + box[j, 2] * box[j, 3] - inter) >= thr:
                    root[j] = i
    return root


def missing_candidates(preds: list[Boxes], ev: list[ModelEvidence]) -> Candidates:
    """Predictions touching no GT, grouped across models by place; one candidate per group (its best box)."""
    model = np.concatenate([np.full(len(e.lonely), m, np.int64) for m, e in enumerate(ev)])
    row = np.concatenate([e.lonely for e in ev])
    if len(row) == 0:
        return Candidates("missing", row, model, np.zeros(0), {"per_model": np.zeros((len(ev), 0))})
    sample = np.concatenate([preds[m].sample_id[e.lonely] for m, e in enumerate(ev)])
    conf = np.concatenate([preds[m].conf[e.lonely] for m, e in enumerate(ev)])
    box = np.concatenate([preds[m].box[e.lonely] for m, e in enumerate(ev)])
    order = np.lexsort((-conf, sample))
    sample, conf, box, model, row = sample[order], conf[order], box[order], model[order], row[order]
    cuts = np.flatnonzero(np.diff(sample)) + 1
    start = np.concatenate([[0], cuts]).astype(np.int64)
    end = np.concatenate([cuts, [len(sample)]]).astype(np.int64)
    root = _cluster(np.ascontiguousarray(box), start, end, FG_IOU)
    seeds, group = np.unique(root, return_inverse=True)
    group = group.reshape(-1)
    n_models = len(ev)
    best, _ = _group_max(group * n_models + model, conf, len(seeds) * n_models)
    per_model = best.reshape(len(seeds), n_models).T
    return Candidates("missing", row[seeds], model[seeds], noisy_or(per_model), {"per_model": per_model})


# -- findings --------------------------------------------------------------------------------------------------


def pick(cands: list[Candidates], max_findings: int, min_score: float) -> list[tuple[Candidates, int]]:
    """The best candidates: each kind first gets up to an equal share (so none crowds out the others), then the
    remaining places go to the best of the rest. Returns (candidates, index) best first."""
    kind = np.concatenate([np.full(len(c.score), k, np.int64) for k, c in enumerate(cands)])
    idx = np.concatenate([np.arange(len(c.score)) for c in cands]).astype(np.int64)
    score = np.concatenate([c.score for c in cands]).astype(np.float64)
    ok = np.flatnonzero(score >= min_score)
    order = ok[np.lexsort((idx[ok], kind[ok], -score[ok]))]  # best first; ties by kind, then position
    by_kind = order[np.argsort(kind[order], kind="stable")]  # each kind's best first
    starts = np.searchsorted(kind[by_kind], np.arange(len(cands)))
    rank = np.arange(len(by_kind)) - starts[kind[by_kind]]
    share = max_findings // max(len(cands), 1)
    first = by_kind[rank < share]
    rest = order[~np.isin(order, first)][: max(max_findings - len(first), 0)]
    chosen = np.concatenate([first, rest])
    chosen = chosen[np.lexsort((idx[chosen], kind[chosen], -score[chosen]))]
    return [(cands[int(kind[c])], int(idx[c])) for c in chosen]


def find_label_mistakes(
    store: MetadataStore,
    dataset_id: int,
    models: Sequence[str] | None = None,
    progress: ProgressCallback = no_progress,
    max_findings: int = 500,
    min_confidence: float = 0.1,
    min_score: float = 0.05,
) -> tuple[list[Finding], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Label-mistake candidates from the predictions of ``models`` (default: every model of the dataset).

    Returns up to ``max_findings`` findings (kind ``label_mistake``, one per suspect box, best first, each at least
    ``min_score``) and the per-sample field ``{"label mistake score": (sample_ids, values)}`` for ``save_run``:
    every sample's highest candidate score over *all* candidates (0 where none), so the grid can sort by it.
    """
    models = _models(store, dataset_id, models)
    steps = len(models) + 2
    progress("label mistakes", 0, steps)
    gt = load(store, dataset_id, GROUND_TRUTH)
    preds, ev = [], []
    for k, m in enumerate(models, start=1):
        preds.append(load(store, dataset_id, m))
        ev.append(model_evidence(gt, preds[-1], min_confidence))
        progress("label mistakes", k, steps)
    cands = [missing_candidates(preds, ev), *gt_candidates(gt, ev)]
    field = _sample_field(store, dataset_id, gt, preds, cands)
    chosen = pick(cands, max_findings, min_score)
    builder = _Builder(store, dataset_id, models, gt, preds, ev, {i: n for n, i in store.label_ids(dataset_id).items()})
    findings = builder.build(chosen)
    progress("label mistakes", steps, steps)
    return findings, {FIELD: field}


def _models(store: MetadataStore, dataset_id: int, models: Sequence[str] | None) -> list[str]:
    known = [s for s in store.source_ids(dataset_id) if s != GROUND_TRUTH]
    if models is None:
        models = known
    models = list(dict.fromkeys(models))
    unknown = [m for m in models if m not in known]
    if unknown:
        raise NoPredictionsError(
            f"not a model of this dataset: {', '.join(map(repr, unknown))}; "
            f"models: {', '.join(map(repr, known)) or 'none'}"
        )
    if not models:
        raise NoPredictionsError(
            "label mistakes are found through model predictions and this dataset has none; "
            "add a model's predictions first (ds.add_predictions)"
        )
    return models


def _sample_field(
    store: MetadataStore, dataset_id: int, gt: Boxes, preds: list[Boxes], cands: list[Candidates]
) -> tuple[np.ndarray, np.ndarray]:
    samples = np.sort(store.evaluation_image_order(dataset_id))
    values = np.zeros(len(samples))
    for c in cands:
        if len(c.row) == 0:
            continue
        if c.kind == "missing":
            sid = np.concatenate([preds[m].sample_id[c.row[c.model == m]] for m in range(len(preds))])
            score = np.concatenate([c.score[c.model == m] for m in range(len(preds))])
        else:
            sid, score = gt.sample_id[c.row], c.score
        np.maximum.at(values, np.searchsorted(samples, sid), score)
    return samples, values


@dataclass
class _Builder:
    """Turns picked candidates into findings with the box, file and per-model evidence each one needs."""

    store: MetadataStore
    dataset_id: int
    models: list[str]
    gt: Boxes
    preds: list[Boxes]
    ev: list[ModelEvidence]
    names: dict[int, str]

    def name(self, label: int) -> str:
        return self.names.get(int(label), str(label))

    def build(self, chosen: list[tuple[Candidates, int]]) -> list[Finding]:
        sids = [self._sample(c, i) for c, i in chosen]
        files = self._files(sids)
        return [self._finding(c, i, sid, files.get(sid)) for (c, i), sid in zip(chosen, sids)]

    def _sample(self, c: Candidates, i: int) -> int:
        if c.kind == "missing":
            return int(self.preds[c.model[i]].sample_id[c.row[i]])
        return int(self.gt.sample_id[c.row[i]])

    def _files(self, sids: list[int]) -> dict[int, str]:
        if not sids:
            return {}
        t = self.store.samples_by_id(self.dataset_id, np.unique(np.asarray(sids, np.int64)))
        return dict(zip(t["id"].to_pylist(), t["filepath"].to_pylist()))

    def _finding(self, c: Candidates, i: int, sid: int, file: str | None) -> Finding:
        score = float(c.score[i])
        per_model = c.extra.get("per_model")
        votes = {m: float(per_model[k, i]) for k, m in enumerate(self.models)} if per_model is not None else {}
        detail: dict[str, Any] = {"mistake": c.kind, "file": file, "models": [m for m, v in votes.items() if v > 0]}
        evidence: dict[str, Any] = {"score": score, "per_model": votes}
        if c.kind == "missing":
            p = self.preds[c.model[i]]
            r = int(c.row[i])
            pred = self.name(p.label[r])
            detail |= {
                "bbox": _box(p.box[r]),
                "gt_id": None,
                "label": None,
                "predicted": pred,
                "pred_id": int(p.ann_id[r]),
                "confidence": float(p.conf[r]),
            }
            who = ", ".join(detail["models"])
            verb = "sees" if len(detail["models"]) == 1 else "see"
            title = f"Missing box? {who} {verb} '{pred}' where nothing is labelled"
            ann = int(p.ann_id[r])
        else:
            g = int(c.row[i])
            label = self.name(self.gt.label[g])
            detail |= {"bbox": _box(self.gt.box[g]), "gt_id": self.gt.file_id(g), "label": label}
            ann = int(self.gt.ann_id[g])
            title, more = self._gt_text(c.kind, g, label, votes)
            detail |= more
            evidence["support"] = {m: float(e.support[g]) for m, e in zip(self.models, self.ev)}
        return Finding(
            kind="label_mistake",
            model=self.models[0] if len(self.models) == 1 else None,
            score=score,
            title=title,
            description=_DESCRIBE[c.kind],
            definition=f"{c.kind.replace('_', ' ')} candidate",
            evidence=evidence,
            detail=detail,
            sample_ids=[sid],
            object_ids=[ann],
            member_scores=[score],
        )

    def _gt_text(self, kind: str, g: int, label: str, votes: dict[str, float]) -> tuple[str, dict[str, Any]]:
        if kind == "never_found":
            looked = [m for m, e in zip(self.models, self.ev) if e.covered[g]]
            return f"'{label}' box no model finds", {"predicted": None, "models": looked}
        strongest = max(range(len(self.models)), key=lambda k: votes[self.models[k]])
        e = self.ev[strongest]
        if kind == "wrong_label":
            r = int(e.against_row[g])
            pred = self.name(self.preds[strongest].label[r])
            return (
                f"Labelled '{label}', predicted '{pred}'",
                {
                    "predicted": pred,
                    "pred_id": int(self.preds[strongest].ann_id[r]),
                    "predicted_by": {
                        m: self.name(self.preds[k].label[self.ev[k].against_row[g]])
                        for k, m in enumerate(self.models)
                        if self.ev[k].against_row[g] >= 0
                    },
                },
            )
        r = int(e.bad_row[g])
        return (
            f"Box of '{label}' may be misplaced (IoU {e.bad_iou[g]:.2f} with {self.models[strongest]})",
            {
                "predicted": label,
                "pred_id": int(self.preds[strongest].ann_id[r]),
                "predicted_bbox": _box(self.preds[strongest].box[r]),
                "iou": float(e.bad_iou[g]),
            },
        )


def _box(b: np.ndarray) -> list[float]:
    return [float(v) for v in b]


_DESCRIBE = {
    "missing": (
        "Confident predictions overlap no labelled box here (IoU < 0.1 with every ground-truth box): the "
        "object may be missing from the labels. Score: 1 − Π(1 − confidence) over the models that see "
        "it."
    ),
    "wrong_label": (
        "Models cover this box with another class (fully at IoU ≥ 0.5, partly from 0.3) and do not "
        "confirm its own. Each model's confidence is discounted by how often it confuses these two "
        "classes elsewhere. Score: (1 − Π(1 − c_other·(1 − r))) × Π(1 − c_same) over the models."
    ),
    "bad_box": (
        "A same-class prediction overlaps this box only at IoU 0.1–0.5 and none fits it well: the box may "
        "be misplaced or the wrong size. Score: (1 − Π(1 − c·w)) × Π(1 − c_same), w = 1 at IoU ≤ 0.3 "
        "falling to 0 at 0.5."
    ),
    "never_found": (
        "No model predicts anything near this box (IoU ≥ 0.1, any class), although they find most "
        "objects of this class and size: the box may be spurious. Score: the posterior that it is, "
        f"from a {SPURIOUS_PRIOR:.0%} prior and each model's miss rate on such objects."
    ),
}

__all__ = ["FIELD", "MISTAKES", "NoPredictionsError", "find_label_mistakes", "model_evidence", "noisy_or"]
