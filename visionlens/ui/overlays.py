"""What views draw over images: boxes filtered by the overlay options, and where the image routes are."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Protocol

import panel as pn

from ..store.metadata import GROUND_TRUTH
from .colors import label_color


class OverlayOptions(Protocol):
    min_confidence: float
    labels: list[str]
    box_status: list[str]


def boxes_for(rows: list[dict[str, Any]], state: OverlayOptions, ids: bool = False) -> dict[int, list[dict[str, Any]]]:
    """Annotation rows -> drawable boxes per sample, honouring the overlay options of the state. ``ids`` adds each
    box's annotation id and tags (the detail view picks boxes to tag; the grid's windows stay small without)."""
    wanted = set(state.labels)
    statuses = set(getattr(state, "box_status", None) or ())
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for a in rows:
        pred = a["source"] != GROUND_TRUTH
        if pred and (a["confidence"] or 0) < state.min_confidence:
            continue
        if wanted and a["label"] not in wanted:
            continue
        if statuses and a.get("status") not in statuses:
            continue
        out[a["sample_id"]].append(
            {
                "x": a["x"],
                "y": a["y"],
                "w": a["w"],
                "h": a["h"],
                "label": a["label"],
                "color": label_color(a["label"]),
                "kind": "pred" if pred else "gt",
                "score": a["confidence"],
                "status": a.get("status"),
                "source": a["source"],
                "error": a.get("error"),
            }
        )
        if ids:
            out[a["sample_id"]][-1].update(id=a["id"], tags=list(a.get("tags") or ()))
    return out


def url_prefix() -> str:
    """Where the server's routes are, relative to the page (an app may be served under a prefix)."""
    try:
        rel = pn.state.rel_path
    except Exception:  # noqa: BLE001 - outside a server session there is no request to be relative to
        rel = None
    return rel.rstrip("/") if rel and rel != "." else ""
