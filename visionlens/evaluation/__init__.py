"""COCO-exact detection evaluation with per-object matches, error types and a confusion matrix (no database)."""

from visionlens.evaluation.cocoeval import STAT_NAMES, EvalResult, evaluate, match_objects, summarize
from visionlens.evaluation.confusion import ConfusionMatrix, confusion_matrix
from visionlens.evaluation.detections import COCO_AREA_RANGES, Detections
from visionlens.evaluation.objects import FPError, ObjectMatches, Status

__all__ = [
    "COCO_AREA_RANGES",
    "STAT_NAMES",
    "ConfusionMatrix",
    "Detections",
    "EvalResult",
    "FPError",
    "ObjectMatches",
    "Status",
    "confusion_matrix",
    "evaluate",
    "match_objects",
    "summarize",
]
