"""Box checks shared by every format."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import Issue


def clip_boxes(
    bbox: np.ndarray,
    sample_index: np.ndarray,
    width: np.ndarray,
    height: np.ndarray,
    file: str,
    filepaths: Sequence[str],
) -> tuple[np.ndarray, list[Issue]]:
    """Clip xywh boxes to their image, returning one summary issue rather than thousands of lines.

    Labelling tools often spill a pixel past the border; keeping such boxes unclipped would inflate areas and break
    IoU against clipped predictions. Images of unknown size (0) are left alone.
    """
    if len(bbox) == 0:
        return bbox, []
    w = width[sample_index].astype(np.float64)
    h = height[sample_index].astype(np.float64)
    known = (w > 0) & (h > 0)
    x0 = bbox[:, 0]
    y0 = bbox[:, 1]
    x1 = bbox[:, 0] + bbox[:, 2]
    y1 = bbox[:, 1] + bbox[:, 3]
    cx0 = np.where(known, np.clip(x0, 0, w), x0)
    cy0 = np.where(known, np.clip(y0, 0, h), y0)
    cx1 = np.where(known, np.clip(x1, 0, w), x1)
    cy1 = np.where(known, np.clip(y1, 0, h), y1)
    eps = 1e-3
    changed = known & (
        (np.abs(cx0 - x0) > eps) | (np.abs(cy0 - y0) > eps) | (np.abs(cx1 - x1) > eps) | (np.abs(cy1 - y1) > eps)
    )
    if not changed.any():
        return bbox, []
    out = np.stack([cx0, cy0, cx1 - cx0, cy1 - cy0], axis=1)
    idx = np.flatnonzero(changed)
    n_images = len(np.unique(sample_index[idx]))
    examples = ", ".join(filepaths[sample_index[i]] for i in idx[:3])
    issue = Issue(
        "clipped_boxes",
        file,
        f"{len(idx)} boxes",
        f"{len(idx)} boxes in {n_images} images extended past the image border and were clipped (e.g. {examples})",
    )
    return out, [issue]
