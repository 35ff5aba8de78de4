"""Model evaluation over the store: load boxes, run the COCO-exact evaluator, store per-object results.

``evaluate_model`` computes and saves an evaluation (per-object TP/FP/FN, per-sample counts as filterable fields,
summary stats). ``subset_metrics`` recomputes metrics for any filtered subset without writing, fast enough to
follow the user's filters live: the boxes of a source are loaded once per store generation and reused.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .evaluation import STAT_NAMES, Detections, EvalResult, Status, evaluate
from .formats.base import ProgressCallback, no_progress
from .query import Filters
from .store.metadata import GROUND_TRUTH, MetadataStore

_cache_lock = threading.Lock()
_cache: dict[tuple[str, int, int, str], Detections] = {}


def eval_key(model: str, iou: float = 0.5, class_agnostic: bool = False) -> str:
    """``model`` for the default (IoU 0.5, per class); otherwise ``model@0.75`` / ``model@0.5-agnostic``."""
    if abs(iou - 0.5) < 1e-9 and not class_agnostic:
        return model
    return f"{model}@{iou:g}" + ("-agnostic" if class_agnostic else "")


def load_boxes(store: MetadataStore, dataset_id: int, source: str) -> Detections:
    """All boxes of one source, with ``image_id`` the image's position in ``evaluation_image_order``.

    The evaluator walks images in ascending ``image_id``, as pycocotools walks ascending COCO image ids, and that
    order breaks score ties across images: positions in the source's image-id order make the two agree on any
    file. ``to_sample_ids`` maps positions back.
    """
    key = (str(store.path), store.generation, dataset_id, source)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    cols = store.boxes(dataset_id, source)
    bbox = (
        np.stack([cols["x"], cols["y"], cols["w"], cols["h"]], axis=1).astype(np.float64)
        if len(cols["id"])
        else np.zeros((0, 4))
    )
    gt = source == GROUND_TRUTH
    det = Detections(
        image_id=to_positions(store, dataset_id, np.asarray(cols["sample_id"], np.int64)),
        label=np.asarray(cols["label_id"], np.int32),
        bbox=bbox,
        ann_id=np.asarray(cols["id"], np.int64),
        score=None if gt else np.nan_to_num(np.asarray(cols["confidence"], np.float64), nan=0.0),
        iscrowd=np.asarray(cols["iscrowd"], bool) if gt else None,
        area=np.asarray(cols["area"], np.float64) if gt else None,
    )
    with _cache_lock:
        for k in [k for k in _cache if k[0] == key[0] and k[1] != key[1]]:
            del _cache[k]  # an older generation of this store can never be asked for again
        _cache[key] = det
    return det


def to_positions(store: MetadataStore, dataset_id: int, sample_ids: np.ndarray) -> np.ndarray:
    """Sample ids -> positions in the evaluation image order (see ``load_boxes``)."""
    order = store.evaluation_image_order(dataset_id)
    if len(sample_ids) == 0:
        return np.zeros(0, np.int64)
    sorter = np.argsort(order, kind="stable")
    return sorter[np.searchsorted(order, sample_ids, sorter=sorter)].astype(np.int64)


def to_sample_ids(store: MetadataStore, dataset_id: int, positions: np.ndarray) -> np.ndarray:
    return store.evaluation_image_order(dataset_id)[np.asarray(positions, np.int64)]


@dataclass
class Metrics:
    """Metrics of one model on one set of samples, with label names resolved."""

    model: str
    key: str
    iou: float
    class_agnostic: bool
    samples: int
    stats: dict[str, float]
    per_class: list[dict[str, Any]] = field(default_factory=list)
    confusion: np.ndarray | None = None
    confusion_labels: list[str] = field(default_factory=list)
    result: EvalResult | None = None
    seconds: float = 0.0

    @property
    def map(self) -> float:
        return self.stats["AP"]


def _names(store: MetadataStore, dataset_id: int) -> dict[int, str]:
    return {i: n for n, i in store.label_ids(dataset_id).items()}


def _metrics(
    store: MetadataStore, dataset_id: int, model: str, ids: np.ndarray, iou: float, class_agnostic: bool
) -> Metrics:
    start = time.perf_counter()
    gt = load_boxes(store, dataset_id, GROUND_TRUTH)
    dt = load_boxes(store, dataset_id, model)
    ids = to_positions(store, dataset_id, np.asarray(ids, np.int64))
    res = evaluate(gt, dt, ids, class_agnostic=class_agnostic, match_iou=iou)
    names = _names(store, dataset_id)
    per_class = []
    if not class_agnostic:
        for k, label in enumerate(res.labels):
            n_gt = int(np.sum((gt.label == label) & np.isin(gt.image_id, ids) & ~gt.iscrowd)) if len(ids) else 0
            per_class.append(
                {
                    "label": names.get(int(label), str(label)),
                    "AP": float(res.class_ap[k]),
                    "AP50": float(res.class_ap50[k]),
                    "AP75": float(res.class_ap75[k]),
                    "gt": n_gt,
                }
            )
    labels = [names.get(int(lbl), str(lbl)) for lbl in res.confusion.labels] + ["background"]
    return Metrics(
        model=model,
        key=eval_key(model, iou, class_agnostic),
        iou=iou,
        class_agnostic=class_agnostic,
        samples=len(ids),
        stats=dict(zip(STAT_NAMES, map(float, res.stats))),
        per_class=per_class,
        confusion=res.confusion.matrix,
        confusion_labels=labels,
        result=res,
        seconds=time.perf_counter() - start,
    )


def subset_metrics(
    store: MetadataStore,
    dataset_id: int,
    model: str,
    filters: Filters | None = None,
    iou: float = 0.5,
    class_agnostic: bool = False,
) -> Metrics:
    """Metrics on the samples matching ``filters`` (sidebar + map selection); nothing is written."""
    ids = store.matching_ids(dataset_id, filters or Filters())
    return _metrics(store, dataset_id, model, ids, iou, class_agnostic)


def evaluate_model(
    store: MetadataStore,
    dataset_id: int,
    model: str,
    iou: float = 0.5,
    class_agnostic: bool = False,
    progress: ProgressCallback = no_progress,
) -> Metrics:
    """Evaluate ``model`` on the whole dataset and store per-object results under ``eval_key(...)``."""
    progress("evaluate", 0, 3)
    ids = store.matching_ids(dataset_id, Filters())
    m = _metrics(store, dataset_id, model, ids, iou, class_agnostic)
    progress("evaluate", 1, 3)
    obj = m.result.objects  # type: ignore[union-attr]
    gt = load_boxes(store, dataset_id, GROUND_TRUTH)
    dt = load_boxes(store, dataset_id, model)
    keep_dt = obj.dt_status != Status.SKIPPED
    keep_gt = obj.gt_status != Status.SKIPPED
    objects = {
        "ann_id": np.concatenate([obj.dt_ann_id[keep_dt], obj.gt_ann_id[keep_gt]]),
        "sample_id": to_sample_ids(store, dataset_id, np.concatenate([dt.image_id[keep_dt], gt.image_id[keep_gt]])),
        "is_pred": np.concatenate([np.ones(keep_dt.sum(), bool), np.zeros(keep_gt.sum(), bool)]),
        "status": np.concatenate([obj.dt_status[keep_dt], obj.gt_status[keep_gt]]).astype(np.int8),
        "match_id": np.concatenate([obj.dt_match_id[keep_dt], obj.gt_match_id[keep_gt]]),
        "iou": np.concatenate([obj.dt_iou[keep_dt], obj.gt_iou[keep_gt]]),
        "error": np.concatenate([obj.dt_error[keep_dt], np.zeros(keep_gt.sum(), np.int8)]),
    }
    per_sample = {
        "sample_id": to_sample_ids(store, dataset_id, obj.image_ids),
        "tp": obj.image_tp,
        "fp": obj.image_fp,
        "fn": obj.image_fn,
    }
    progress("evaluate", 2, 3)
    store.write_evaluation(dataset_id, m.key, model, iou, class_agnostic, m.stats, objects, per_sample)
    progress("evaluate", 3, 3)
    return m
