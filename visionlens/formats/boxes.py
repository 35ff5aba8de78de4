"""Box and score checks shared by every format, so COCO, VOC and YOLO treat bad input the same way.

The policy, for ground truth and predictions alike:

* Coordinates are kept exactly as the file gives them (float64). Evaluation must see the boxes the file holds, as
  pycocotools does; only the display clips a box to its image.
* A box that extends past the image border is kept as given; one summary issue says how many there are.
* A zero width or height is kept: COCO allows it and pycocotools evaluates such boxes.
* A non-finite coordinate (NaN, inf) or a negative width or height cannot be evaluated or drawn: the box is
  dropped and one issue per box names its file and location.
* A NaN or infinite score cannot be ranked: the prediction is dropped, with an issue.
* A finite score outside [0, 1] is kept as given (pycocotools ranks by the raw score); one summary issue says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .base import Issue

Where = Callable[[int], tuple[str, str]]
"""``where(i)`` -> (file, location) of row ``i``; called only for the rows an issue names."""


def check_boxes(bbox: np.ndarray, where: Where, score: np.ndarray | None = None) -> tuple[np.ndarray, list[Issue]]:
    """Rows to keep (a bool mask) and one ``dropped_box`` issue per row that cannot be evaluated (see the module)."""
    n = len(bbox)
    keep = np.ones(n, bool)
    if n == 0:
        return keep, []
    finite = np.isfinite(bbox).all(axis=1)
    negative = finite & ((bbox[:, 2] < 0) | (bbox[:, 3] < 0))
    bad_score = ~np.isfinite(score) if score is not None else np.zeros(n, bool)
    drop = ~finite | negative | bad_score
    if not drop.any():
        return keep, []
    issues = []
    for i in np.flatnonzero(drop):
        box = "[" + ", ".join(repr(float(v)) for v in bbox[i]) + "]"
        if not finite[i]:
            why = f"box {box} has a non-finite coordinate"
        elif negative[i]:
            why = f"box {box} has a negative width or height"
        else:
            why = f"score {float(score[i])!r} is not a finite number"  # type: ignore[index]
        file, location = where(int(i))
        issues.append(Issue("dropped_box", file, location, f"{why}; dropped, it cannot be evaluated"))
    keep[drop] = False
    return keep, issues


def check_scores(score: np.ndarray, where: Where, file: str) -> list[Issue]:
    """One summary issue for finite scores outside [0, 1]: kept as given, since evaluation ranks by the raw score."""
    out = np.flatnonzero(np.isfinite(score) & ((score < 0) | (score > 1)))
    if not len(out):
        return []
    values = score[out]
    examples = ", ".join(":".join(p for p in where(int(i)) if p) for i in out[:3])
    return [
        Issue(
            "score_out_of_range",
            file,
            f"{len(out)} scores",
            f"{len(out)} scores are outside [0, 1] (lowest {float(values.min())!r}, highest {float(values.max())!r}); "
            f"kept as given, evaluation ranks by the raw score (e.g. {examples})",
        )
    ]


def note_past_border(
    bbox: np.ndarray,
    sample_index: np.ndarray,
    width: np.ndarray,
    height: np.ndarray,
    file: str,
    filepaths: Sequence[str],
) -> list[Issue]:
    """One summary issue for boxes that extend past their image's border; the boxes themselves are not changed.

    Labelling tools often spill a pixel past the border. Clipping at ingest would make evaluation differ from
    pycocotools on the same files, so boxes stay as given and the display clips them. Images of unknown size (0)
    are not judged.
    """
    if len(bbox) == 0:
        return []
    w = np.asarray(width, np.float64)[sample_index]
    h = np.asarray(height, np.float64)[sample_index]
    known = (w > 0) & (h > 0)
    eps = 1e-3  # float noise from normalised coordinates is not a box past the border
    past = known & (
        (bbox[:, 0] < -eps)
        | (bbox[:, 1] < -eps)
        | (bbox[:, 0] + bbox[:, 2] > w + eps)
        | (bbox[:, 1] + bbox[:, 3] > h + eps)
    )
    if not past.any():
        return []
    idx = np.flatnonzero(past)
    n_images = len(np.unique(sample_index[idx]))
    first_images = list(dict.fromkeys(sample_index[idx].tolist()))[:3]
    examples = ", ".join(repr(filepaths[s]) for s in first_images)
    return [
        Issue(
            "boxes_past_border",
            file,
            f"{len(idx)} boxes",
            f"{len(idx)} boxes in {n_images} images extend past the image border; kept as given, the display clips "
            f"them (e.g. {examples})",
        )
    ]
