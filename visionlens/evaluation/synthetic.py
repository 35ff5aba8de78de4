"""COCO-like synthetic ground truth and predictions, for tests, benchmarks and demos without real data.

Images hold clusters of overlapping objects of mixed sizes (small, medium and large all occur), a few crowd
regions, annotation areas smaller than their boxes (like masks), boxes clipped at the image border, images with
no objects and images with no predictions.  Predictions are jittered copies of GT (sometimes with the wrong
class), duplicates and background boxes, so every COCO rule and every error type gets exercised.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from visionlens.evaluation.detections import Detections


def _boxes(rng: np.random.Generator, n: int, width: float, height: float, centers: np.ndarray) -> np.ndarray:
    side = np.exp(rng.uniform(np.log(4.0), np.log(0.9 * min(width, height)), n))
    aspect = np.exp(rng.normal(0.0, 0.4, n))
    w = side * np.sqrt(aspect)
    h = side / np.sqrt(aspect)
    c = centers[rng.integers(0, len(centers), n)] + rng.normal(0.0, 40.0, (n, 2))
    return _clip(np.stack([c[:, 0] - w / 2, c[:, 1] - h / 2, w, h], axis=1), width, height)


def _clip(b: np.ndarray, width: float, height: float) -> np.ndarray:
    x0 = np.clip(b[:, 0], 0, width)
    y0 = np.clip(b[:, 1], 0, height)
    x1 = np.clip(b[:, 0] + b[:, 2], 0, width)
    y1 = np.clip(b[:, 1] + b[:, 3], 0, height)
    return np.stack([x0, y0, np.maximum(x1 - x0, 1.0), np.maximum(y1 - y0, 1.0)], axis=1)


def make_dataset(
    n_images: int,
    *,
    seed: int = 0,
    n_classes: int = 80,
    gt_per_image: float = 7.3,
    dt_per_gt: float = 2.95,
    crowd_rate: float = 0.01,
    empty_rate: float = 0.03,
    no_pred_rate: float = 0.02,
    score_decimals: int | None = None,
    width: float = 640.0,
    height: float = 480.0,
) -> tuple[Detections, Detections, np.ndarray]:
    """(gt, predictions, image_ids); ~``gt_per_image * dt_per_gt`` predictions per image on average."""
    rng = np.random.default_rng(seed)
    image_ids = np.arange(1, n_images + 1, dtype=np.int64) * 3  # sparse ids, like real datasets
    n_gt_img = rng.poisson(gt_per_image, n_images)
    n_gt_img[rng.random(n_images) < empty_rate] = 0
    n_gt = int(n_gt_img.sum())
    gt_img = np.repeat(image_ids, n_gt_img)
    class_p = 1.0 / np.arange(1, n_classes + 1) ** 0.8
    class_p /= class_p.sum()
    gt_label = rng.choice(n_classes, n_gt, p=class_p).astype(np.int32)
    centers = rng.uniform([0, 0], [width, height], (n_images, 3, 2))
    img_index = np.repeat(np.arange(n_images), n_gt_img)
    gt_box = np.concatenate(
        [_boxes(rng, k, width, height, centers[i]) for i, k in enumerate(n_gt_img) if k]
    ) if n_gt else np.zeros((0, 4))  # fmt: skip
    crowd = rng.random(n_gt) < crowd_rate
    gt_area = gt_box[:, 2] * gt_box[:, 3] * rng.uniform(0.5, 0.95, n_gt)
    gt = Detections(
        image_id=gt_img,
        label=gt_label,
        bbox=gt_box,
        ann_id=np.arange(1, n_gt + 1, dtype=np.int64),
        iscrowd=crowd,
        area=gt_area,
    )
    dt = _predictions(rng, gt_img, img_index, gt_label, gt_box, image_ids, centers, n_classes, dt_per_gt, width, height)
    no_pred = np.isin(dt.image_id, image_ids[rng.random(n_images) < no_pred_rate])
    score = dt.score if score_decimals is None else np.round(dt.score, score_decimals)
    keep = ~no_pred
    dt = Detections(
        image_id=dt.image_id[keep],
        label=dt.label[keep],
        bbox=dt.bbox[keep],
        ann_id=np.arange(1, int(keep.sum()) + 1, dtype=np.int64),
        score=score[keep],
    )
    return gt, dt, image_ids


def _predictions(
    rng: np.random.Generator,
    gt_img: np.ndarray,
    img_index: np.ndarray,
    gt_label: np.ndarray,
    gt_box: np.ndarray,
    image_ids: np.ndarray,
    centers: np.ndarray,
    n_classes: int,
    dt_per_gt: float,
    width: float,
    height: float,
) -> Detections:
    """Hits (jittered GT, some relabelled), duplicates and background boxes, shuffled into one column set."""
    n_gt = len(gt_img)
    hit = rng.random(n_gt) < 0.85
    n_dup = rng.poisson(max(dt_per_gt - 1.0, 0.0) * 0.5, n_gt)
    src = np.concatenate([np.flatnonzero(hit), np.repeat(np.arange(n_gt), n_dup)])
    quality = rng.uniform(0.0, 1.0, len(src))
    b = gt_box[src]
    jitter = rng.normal(0.0, 0.25 * (1.0 - quality)[:, None] + 0.02, (len(src), 4)) * b[:, [2, 3, 2, 3]]
    box = _clip(b + jitter, width, height)
    label = gt_label[src].copy()
    wrong = rng.random(len(src)) < 0.08
    label[wrong] = rng.integers(0, n_classes, int(wrong.sum()))
    score = np.clip(0.3 * quality + 0.6 * rng.random(len(src)) + 0.05, 0.001, 1.0)
    n_bg = max(int(n_gt * max(dt_per_gt - 1.0, 0.0) * 0.5), 1)
    bg_img = rng.integers(0, len(image_ids), n_bg)
    bg_side = np.exp(rng.uniform(np.log(4.0), np.log(300.0), (n_bg, 2)))
    bg_xy = rng.uniform([0.0, 0.0], [width, height], (n_bg, 2))
    bg_box = _clip(np.concatenate([bg_xy, bg_side], axis=1), width, height)
    image = np.concatenate([gt_img[src], image_ids[bg_img]])
    perm = rng.permutation(len(image))
    return Detections(
        image_id=image[perm],
        label=np.concatenate([label, rng.integers(0, n_classes, n_bg).astype(np.int32)])[perm].astype(np.int32),
        bbox=np.concatenate([box, bg_box])[perm],
        ann_id=np.arange(1, len(image) + 1, dtype=np.int64),
        score=np.concatenate([score, rng.uniform(0.001, 0.4, n_bg)])[perm],
    )


def to_coco(
    gt: Detections, dt: Detections, image_ids: np.ndarray, labels: np.ndarray
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The same data as a COCO ground-truth dict and a loadRes list, row order preserved (order decides ties)."""
    images = [{"id": int(i), "width": 640, "height": 480} for i in image_ids]
    crowd = np.zeros(len(gt), bool) if gt.iscrowd is None else gt.iscrowd
    area = gt.bbox[:, 2] * gt.bbox[:, 3] if gt.area is None else gt.area
    anns = [
        {"id": int(a), "image_id": int(i), "category_id": int(c), "bbox": [float(v) for v in b],
         "area": float(ar), "iscrowd": int(cr)}
        for a, i, c, b, ar, cr in zip(gt.ann_id, gt.image_id, gt.label, gt.bbox.tolist(), area, crowd)
    ]  # fmt: skip
    categories = [{"id": int(c), "name": f"c{int(c)}"} for c in labels]
    res = [
        {"image_id": int(i), "category_id": int(c), "bbox": [float(v) for v in b], "score": float(s)}
        for i, c, b, s in zip(dt.image_id, dt.label, dt.bbox.tolist(), dt.score)
    ]
    return {"images": images, "annotations": anns, "categories": categories}, res
