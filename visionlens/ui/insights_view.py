"""The Insights tab: stored findings as ranked cards per kind, a button that (re)computes them, and agent reports.

A card is a way into the data, not a dead number: clicking one applies its filter through the session state
(``AppState.show_finding``), so the grid, the map and the evaluation panel all follow and Browse comes to the
front. Computing insights and writing reports are minutes-long and run on the long lane of ``jobs``; opening the
tab only reads what is stored.

Cards are drawn by one small JS component per section from plain data (title, definition, numbers, a bar chart,
thumbnails): text from a dataset reaches the page through ``textContent`` and ``setAttribute`` only, and a few
hundred cards cost one Bokeh model, not hundreds of widgets. Each section shows its best few and pages on.
"""

from __future__ import annotations

import base64
import logging
import math
import posixpath
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import panel as pn
import param
from panel.custom import JSComponent
from panel.viewable import Viewer

from .. import media
from ..insights.agents import InsightReport, explain
from ..insights.finding import KINDS, Finding
from ..insights.runner import MISTAKE_FIELD, run_insights
from ..query import FieldFilter, Filters, Range, Sort
from . import icons, resources
from .html import el, md, text
from .jobs import Jobs, user_message
from .overlays import url_prefix
from .permissions import guarded, hide_unless
from .routes import thumb_url
from .state import AppState

log = logging.getLogger(__name__)

ALL_MODELS = "all models"
SECTIONS: dict[str, tuple[str, str]] = {
    "slice": (
        "Blind spots",
        (
            "Subsets where a model misses more objects or makes more false positives than on the "
            "rest, significant after correcting for the number of subsets tried."
        ),
    ),
    "error_pattern": (
        "Error patterns",
        ("Where AP is lost, by TIDE error type and class confusion: dAP50 is what fixing those errors would gain."),
    ),
    "label_mistake": ("Label mistakes", "Ground truth that is probably wrong: confident predictions disagree with it."),
    "near_duplicate": (
        "Near-duplicates & leakage",
        ("Groups of near-identical images; across splits they leak training images into validation."),
    ),
}
"""Section heading and one line on what the kind is, in the order the tab shows them."""
RUN_PREFIX = {
    "slice": "slices:",
    "error_pattern": "errors:",
    "label_mistake": "label_mistakes",
    "near_duplicate": "near_duplicates",
}
"""The stored run (``store.insight_runs``) each kind comes from: tells "nothing found" from "not computed"."""
AGENTS: dict[str, str] = {"blind_spots": "Blind spots", "error_patterns": "Error patterns"}
FIRST_PAGE = 6
"""Cards per kind at first: the best few are what people act on; "show more" pages on."""
MORE = 12
MAX_THUMBS = 8
"""Thumbnails of one duplicate group on its card (the group may be larger; Browse shows all)."""
ABOVE_ZERO = 1e-9
"""Filters are inclusive and every sample has a label-mistake score (0 without a candidate): "score > 0"."""
SLICE_COLOR, REST_COLOR, FIXED_COLOR = "#e4572e", "#9ca3af", "#2a9d8f"
PERCENT_METRICS = {"recall", "precision", "fp_share"}

Card = dict[str, Any]
ThumbSrc = Callable[[dict[str, Any]], str]
"""sample row (id, filepath) -> an image URL for a card: the server's thumbnail route, or a data URI."""


# -- numbers a card shows --------------------------------------------------------------------------------------


def _num(value: Any) -> float | None:
    """A finite float, or None: evidence is JSON written by several analyses and its keys differ per kind."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _interval(value: Any) -> tuple[float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        lo, hi = _num(value[0]), _num(value[1])
        if lo is not None and hi is not None:
            return lo, hi
    return None


def _fmt(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value * 100:.0f}%" if percent else f"{value:.2f}"


def _with_interval(value: float | None, ci: tuple[float, float] | None, percent: bool) -> str:
    if ci is None:
        return _fmt(value, percent)
    return f"{_fmt(value, percent)} ({_fmt(ci[0], percent)}–{_fmt(ci[1], percent)})"


def _bar(
    label: str, value: float | None, color: str, ci: tuple[float, float] | None = None, percent: bool = False
) -> dict[str, Any] | None:
    if value is None:
        return None
    bar: dict[str, Any] = {"label": label, "value": value, "color": color, "text": _fmt(value, percent)}
    if ci is not None:
        bar["lo"], bar["hi"] = ci
    return bar


def _chart(bars: Sequence[dict[str, Any] | None], top: float | None = None) -> dict[str, Any] | None:
    """Bars on one scale (``top``, default the largest value or interval end), or None when none has a value."""
    kept = [b for b in bars if b is not None]
    if not kept:
        return None
    scale = top if top is not None else max(max(b["value"], b.get("hi", 0.0)) for b in kept) * 1.05
    return {"bars": kept, "max": scale if scale and scale > 0 else 1.0}


def sample_count(row: dict[str, Any]) -> int | None:
    """Images a finding covers: its stored members, or, for a field condition, the images its evidence counted."""
    n = row.get("n_samples")
    if n:
        return int(n)
    images = _num((row.get("evidence") or {}).get("images"))
    return int(images) if images is not None else None


def slice_parts(ev: dict[str, Any]) -> tuple[list[list[str]], dict[str, Any] | None]:
    """A blind spot: its metric with interval against the rest, support, corrected p, and AP on both sides."""
    metric = str(ev.get("metric") or "recall")
    part, rest = ev.get("slice") or {}, ev.get("rest") or {}
    percent = metric in PERCENT_METRICS
    name = metric.replace("_", " ").replace("fp per image", "FP/image")
    value, ci = _num(part.get(metric)), _interval(part.get(f"{metric}_ci"))
    rest_value, rest_ci = _num(rest.get(metric)), _interval(rest.get(f"{metric}_ci"))
    stats = [[name, _with_interval(value, ci, percent)], ["rest", _with_interval(rest_value, rest_ci, percent)]]
    if _num(ev.get("gt_objects")) is not None:
        stats.append(["GT objects", f"{int(ev['gt_objects']):,}"])
    ap, rest_ap = _num(part.get("ap")), _num(rest.get("ap"))
    if ap is not None:
        stats.append(["AP", f"{ap:.2f} vs {_fmt(rest_ap)}"])
    p = _num(ev.get("p_adjusted", ev.get("p_value")))
    if p is not None:
        stats.append(["p (adj.)", f"{p:.2g}"])
    chart = _chart(
        [_bar("slice", value, SLICE_COLOR, ci, percent), _bar("rest", rest_value, REST_COLOR, rest_ci, percent)],
        top=1.0 if percent else None,
    )
    return stats, chart


def error_parts(ev: dict[str, Any]) -> tuple[list[list[str]], dict[str, Any] | None]:
    """An error pattern: the AP50 points it costs, and AP50 now against AP50 with those errors fixed."""
    stats: list[list[str]] = []
    dap, class_dap = _num(ev.get("dap")), _num(ev.get("class_dap"))
    if class_dap is not None:
        stats.append(["dAP50 (class)", f"{class_dap * 100:.1f} pts"])
    if dap is not None:
        stats.append(["dAP50", f"{dap * 100:.1f} pts"])
    if _num(ev.get("count")) is not None:
        stats.append(["errors", f"{int(ev['count']):,}"])
    if ev.get("error"):
        stats.append(["type", str(ev["error"])])
    scope = "class_" if _num(ev.get("class_ap50")) is not None else ""
    now, fixed = _num(ev.get(f"{scope}ap50")), _num(ev.get(f"{scope}ap50_fixed"))
    label = "class AP50" if scope else "AP50"
    chart = _chart([_bar(label, now, SLICE_COLOR), _bar("if fixed", fixed, FIXED_COLOR)], top=1.0)
    return stats, chart


def mistake_parts(ev: dict[str, Any], detail: dict[str, Any]) -> tuple[list[list[str]], dict[str, Any] | None]:
    """A label-mistake candidate: its score, what kind of mistake, labelled vs predicted, and per-model evidence."""
    stats: list[list[str]] = []
    score = _num(ev.get("score"))
    if score is not None:
        stats.append(["score", f"{score:.3f}"])
    if detail.get("mistake"):
        stats.append(["mistake", str(detail["mistake"]).replace("_", " ")])
    if detail.get("label") or detail.get("predicted"):
        stats.append(["labelled → predicted", f"{detail.get('label') or '∅'} → {detail.get('predicted') or '∅'}"])
    if _num(detail.get("iou")) is not None:
        stats.append(["IoU", f"{float(detail['iou']):.2f}"])
    per_model = ev.get("per_model") if isinstance(ev.get("per_model"), dict) else {}
    bars = [_bar(str(m), _num(v), SLICE_COLOR) for m, v in list(per_model.items())[:4]]
    return stats, _chart(bars or [_bar("score", score, SLICE_COLOR)], top=1.0)


def duplicate_parts(ev: dict[str, Any], detail: dict[str, Any]) -> list[list[str]]:
    """A duplicate group: its size, how close its images are, and the splits it spans."""
    stats: list[list[str]] = []
    for key, label in (("size", "images"), ("pairs", "pairs")):
        if _num(ev.get(key)) is not None:
            stats.append([label, f"{int(ev[key]):,}"])
    if _num(ev.get("closeness")) is not None:
        stats.append(["closeness", f"{float(ev['closeness']):.2f}"])
    if _num(ev.get("lowest_cosine")) is not None:
        stats.append(["lowest cosine", f"{float(ev['lowest_cosine']):.3f}"])
    if _num(ev.get("highest_hamming")) is not None:
        stats.append(["hash distance ≤", f"{int(ev['highest_hamming'])} bits"])
    splits = ev.get("splits") if isinstance(ev.get("splits"), dict) else {}
    if splits:
        stats.append(["splits", " · ".join(f"{k} {v}" for k, v in splits.items())])
    return stats


def card_data(row: dict[str, Any], rank: int, thumbs: list[dict[str, Any]] | None = None) -> Card:
    """What the browser draws for one stored finding (``store.findings`` row). Plain text, never markup: the
    component puts every string in with ``textContent``."""
    kind, ev, detail = row["kind"], row.get("evidence") or {}, row.get("detail") or {}
    stats: list[list[str]]
    chart = None
    badge = ""
    action = "Show in Browse →"
    if kind == "slice":
        stats, chart = slice_parts(ev)
    elif kind == "error_pattern":
        stats, chart = error_parts(ev)
    elif kind == "label_mistake":
        stats, chart = mistake_parts(ev, detail)
        action = "Open the image →"
    elif kind == "near_duplicate":
        stats = duplicate_parts(ev, detail)
        badge = "leak across splits" if ev.get("leakage") or detail.get("leakage") else ""
    else:
        stats = []
    n = sample_count(row)
    if n is not None and kind != "near_duplicate":
        stats.insert(0, ["images", f"{n:,}"])
    return {
        "id": int(row["id"]),
        "kind": kind,
        "rank": rank,
        "title": str(row.get("title") or ""),
        "definition": str(row.get("definition") or ""),
        "description": str(row.get("description") or ""),
        "model": str(row.get("model") or ""),
        "stats": stats,
        "chart": chart,
        "thumbs": thumbs or [],
        "badge": badge,
        "action": action,
    }


def as_finding(row: dict[str, Any]) -> Finding:
    """A stored row as the ``Finding`` whose ``app_filters`` the app applies."""
    return Finding(
        kind=row["kind"],
        title=row["title"],
        score=_num(row.get("score")) or 0.0,
        definition=row.get("definition") or "",
        model=row.get("model"),
        id=row["id"],
        run=row.get("run"),
        filters=Filters.model_validate_json(row["filters"]) if row.get("filters") else None,
    )


def review_filters() -> Filters:
    """Every image with a label-mistake candidate (the run stores each image's best score as a sample field)."""
    return Filters(fields=(FieldFilter(field=MISTAKE_FIELD, range=Range(min=ABOVE_ZERO)),))


# -- loading (on a worker) -------------------------------------------------------------------------------------


@dataclass
class Section:
    """One kind's cards as loaded: the shown rows (best first), how many are stored, whether it was computed."""

    kind: str
    total: int = 0
    computed: bool = False
    cards: list[Card] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    samples: dict[int, int] = field(default_factory=dict)
    """Finding id -> its (first) sample: the image a label-mistake card opens."""


def _computed(runs: set[str], kind: str, model: str | None) -> bool:
    prefix = RUN_PREFIX[kind]
    if kind in ("slice", "error_pattern"):
        return any(r == prefix + model if model else r.startswith(prefix) for r in runs)
    return prefix in runs


def load_sections(
    store: Any,
    ds_id: int,
    root: str,
    model: str | None,
    limits: dict[str, int],
    thumb: ThumbSrc,
    kinds: Sequence[str] = KINDS,
) -> dict[str, Section]:
    """The stored findings of ``kinds`` (of one model and the model-free kinds, or of all), best first, cut to
    ``limits``; thumbnails only for the cards shown (a duplicate group's images, a label mistake's image)."""
    rows = store.findings(ds_id)
    if model:
        rows = [r for r in rows if r["model"] in (model, None)]
    runs = {run for run, _ in store.insight_runs(ds_id)}
    out: dict[str, Section] = {}
    members: dict[int, list[int]] = {}
    for kind in kinds:
        mine = [r for r in rows if r["kind"] == kind]
        mine.sort(key=lambda r: -(_num(r.get("score")) or 0.0))  # the store orders so too; ties keep its rank
        shown = mine[: limits.get(kind, FIRST_PAGE)]
        out[kind] = Section(kind, total=len(mine), computed=_computed(runs, kind, model), rows=shown)
        if kind in ("near_duplicate", "label_mistake"):
            for r in shown:
                ids = store.finding_members(ds_id, r["id"])["sample_id"].to_pylist()
                members[r["id"]] = list(dict.fromkeys(int(i) for i in ids))[:MAX_THUMBS]
    wanted = sorted({i for ids in members.values() for i in ids})
    samples = {int(s["id"]): s for s in store.samples_by_id(ds_id, wanted).to_pylist()} if wanted else {}
    for kind, section in out.items():
        for rank, r in enumerate(section.rows, 1):
            ids = [i for i in members.get(r["id"], []) if i in samples]
            if ids:
                section.samples[r["id"]] = ids[0]
            thumbs = [_thumb(samples[i], thumb, r if kind == "label_mistake" else None) for i in ids]
            section.cards.append(card_data(r, rank, thumbs))
    return out


def _thumb(sample: dict[str, Any], src: ThumbSrc, mistake: dict[str, Any] | None) -> dict[str, Any]:
    """One thumbnail of a card; a label mistake's suspect box (solid) and the prediction against it (dashed)."""
    boxes = []
    if mistake is not None:
        detail = mistake.get("detail") or {}
        for key, color, dash in (("bbox", "#f59e0b", False), ("predicted_bbox", "#3b82f6", True)):
            box = detail.get(key)
            if isinstance(box, (list, tuple)) and len(box) == 4 and all(_num(v) is not None for v in box):
                boxes.append(
                    {
                        "x": float(box[0]),
                        "y": float(box[1]),
                        "w": float(box[2]),
                        "h": float(box[3]),
                        "color": color,
                        "dash": dash,
                    }
                )
    return {
        "src": src(sample),
        "name": posixpath.basename(str(sample.get("filepath") or "")),
        "width": int(sample.get("width") or 1),
        "height": int(sample.get("height") or 1),
        "boxes": boxes,
    }


# -- the cards component ---------------------------------------------------------------------------------------

CSS = """
.vl-cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr)); gap: 10px; width: 100%;
            box-sizing: border-box; padding: 2px 2px 6px 2px; font-family: inherit; }
.vl-card { border: 1px solid #d9dee7; border-radius: 8px; padding: 9px 11px; background: #fff; cursor: pointer;
           display: flex; flex-direction: column; gap: 6px; min-width: 0; transition: box-shadow .12s, border-color .12s; }
.vl-card:hover, .vl-card:focus { border-color: #3b6fb6; box-shadow: 0 2px 10px rgba(59,111,182,.18); outline: none; }
.vl-card-head { display: flex; gap: 6px; align-items: baseline; }
.vl-card-rank { color: #6b7280; font-size: 12px; flex: none; }
.vl-card-title { font-weight: 600; font-size: 14px; color: #111827; overflow-wrap: anywhere; }
.vl-card-badge { flex: none; font-size: 11px; color: #b91c1c; border: 1px solid #fca5a5; border-radius: 9px;
                 padding: 0 6px; margin-left: auto; white-space: nowrap; }
.vl-card-def { font-size: 12px; color: #374151; background: #f3f4f6; border-radius: 4px; padding: 2px 6px;
               overflow-wrap: anywhere; }
.vl-card-body { display: flex; gap: 10px; align-items: flex-start; flex-wrap: wrap; }
.vl-card-stats { display: grid; grid-template-columns: max-content 1fr; column-gap: 8px; row-gap: 1px; margin: 0;
                 font-size: 12px; flex: 1 1 150px; min-width: 0; }
.vl-card-stats dt { color: #6b7280; white-space: nowrap; }
.vl-card-stats dd { margin: 0; color: #111827; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
.vl-card-chart { flex: none; }
.vl-card-thumbs { display: flex; gap: 6px; flex-wrap: wrap; }
.vl-card-thumb { margin: 0; display: flex; flex-direction: column; max-width: 150px; }
.vl-card-stage { position: relative; height: 84px; background: #111; border-radius: 3px; overflow: hidden; }
.vl-card-stage img { display: block; width: 100%; height: 100%; object-fit: fill; }
.vl-card-stage svg { position: absolute; inset: 0; width: 100%; height: 100%; pointer-events: none; }
.vl-card-thumb figcaption { font-size: 11px; color: #4b5563; white-space: nowrap; overflow: hidden;
                            text-overflow: ellipsis; }
.vl-card-foot { display: flex; justify-content: space-between; font-size: 12px; color: #6b7280; margin-top: auto; }
.vl-card-action { color: #3b6fb6; font-weight: 600; }
.vl-cards-empty { color: #6b7280; font-size: 13px; padding: 4px 2px; }
.vl-cites { display: flex; flex-direction: column; gap: 4px; width: 100%; }
.vl-cite { cursor: pointer; font-size: 13px; padding: 3px 6px; border-radius: 4px; border-left: 3px solid #3b6fb6;
           background: #f5f7fb; }
.vl-cite:hover, .vl-cite:focus { background: #e8eef8; outline: none; }
.vl-cite-title { color: #1d4ed8; text-decoration: underline; }
.vl-cite-note { color: #4b5563; margin-left: 6px; }
"""


class FindingCards(JSComponent):
    """Cards (or, ``compact``, citation links) of findings; a click sets ``clicked`` to the finding's id.

    Card dicts: id, rank, title, definition, description, model, badge, action, stats ([label, text] pairs),
    chart ({bars: [{label, value, text, color, lo?, hi?}], max} or None), thumbs ([{src, name, width, height,
    boxes: [{x, y, w, h, color, dash}]}]); a citation: id, title, note.
    """

    cards = param.List(default=[], doc="What to draw, best first (plain text: it is never parsed as markup).")
    compact = param.Boolean(default=False, doc="One link per finding (a report's citations) instead of cards.")
    empty = param.String(default="", doc="Shown when there are no cards.")
    clicked = param.Integer(default=None, allow_None=True, doc="Id of the finding last clicked.")

    _esm = """
const NS = "http://www.w3.org/2000/svg"
function h(tag, cls, parent, text) {
  const e = document.createElement(tag)
  if (cls) e.className = cls
  if (text !== undefined && text !== null) e.textContent = String(text)
  if (parent) parent.appendChild(e)
  return e
}
function s(tag, attrs, parent) {
  const e = document.createElementNS(NS, tag)
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v))
  if (parent) parent.appendChild(e)
  return e
}
function chart(c, parent) {
  const W = 210, ROW = 18, LW = 70, VW = 40, BW = W - LW - VW
  const svg = s("svg", {class: "vl-card-chart", width: W, height: c.bars.length * ROW + 2}, parent)
  const x = v => LW + BW * Math.max(0, Math.min(1, v / (c.max || 1)))
  c.bars.forEach((b, i) => {
    const y = i * ROW + 1
    const label = s("text", {x: 0, y: y + 12, "font-size": 11, fill: "#4b5563"}, svg)
    label.textContent = String(b.label).length > 11 ? String(b.label).slice(0, 10) + "…" : String(b.label)
    s("rect", {x: LW, y: y + 3, width: BW, height: 11, fill: "#eef0f3", rx: 2}, svg)
    s("rect", {x: LW, y: y + 3, width: Math.max(1, x(b.value) - LW), height: 11, fill: b.color, rx: 2}, svg)
    if (b.lo !== undefined && b.hi !== undefined) {
      const yy = y + 8.5
      s("line", {x1: x(b.lo), x2: x(b.hi), y1: yy, y2: yy, stroke: "#111827", "stroke-width": 1.2}, svg)
      for (const v of [b.lo, b.hi]) s("line", {x1: x(v), x2: x(v), y1: yy - 3, y2: yy + 3, stroke: "#111827"}, svg)
    }
    const t = s("text", {x: LW + BW + 4, y: y + 12, "font-size": 11, fill: "#111827"}, svg)
    t.textContent = b.text
  })
}
function thumbs(list, parent) {
  const row = h("div", "vl-card-thumbs", parent)
  for (const t of list) {
    const fig = h("figure", "vl-card-thumb", row)
    const stage = h("div", "vl-card-stage", fig)
    const W = t.width || 1, H = t.height || 1
    stage.style.width = `${Math.min(150, Math.round(84 * W / H))}px`
    const img = h("img", null, stage)
    img.setAttribute("loading", "lazy")
    img.setAttribute("alt", t.name)
    img.setAttribute("src", t.src)
    if (t.boxes && t.boxes.length) {
      const svg = s("svg", {viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none"}, stage)
      for (const b of t.boxes) {
        const r = s("rect", {x: b.x, y: b.y, width: b.w, height: b.h, fill: "none", stroke: b.color,
                             "stroke-width": 3, "vector-effect": "non-scaling-stroke"}, svg)
        if (b.dash) r.setAttribute("stroke-dasharray", "4 3")
      }
    }
    const cap = h("figcaption", null, fig, t.name)
    cap.setAttribute("title", t.name)
  }
}
function card(c) {
  const root = h("div", "vl-card")
  root.dataset.finding = String(c.id)
  root.setAttribute("role", "button")
  root.tabIndex = 0
  if (c.description) root.setAttribute("title", c.description)
  const head = h("div", "vl-card-head", root)
  h("span", "vl-card-rank", head, `#${c.rank}`)
  h("span", "vl-card-title", head, c.title)
  if (c.badge) h("span", "vl-card-badge", head, c.badge)
  if (c.definition && c.definition !== c.title) h("div", "vl-card-def", root, c.definition)
  const body = h("div", "vl-card-body", root)
  if (c.stats && c.stats.length) {
    const dl = h("dl", "vl-card-stats", body)
    for (const [k, v] of c.stats) { h("dt", null, dl, k); h("dd", null, dl, v) }
  }
  if (c.chart) chart(c.chart, body)
  if (c.thumbs && c.thumbs.length) thumbs(c.thumbs, root)
  const foot = h("div", "vl-card-foot", root)
  h("span", "vl-card-model", foot, c.model || "")
  h("span", "vl-card-action", foot, c.action || "Show in Browse →")
  return root
}
function cite(c) {
  const root = h("div", "vl-cite")
  root.dataset.finding = String(c.id)
  root.setAttribute("role", "link")
  root.tabIndex = 0
  h("span", "vl-cite-title", root, c.title)
  if (c.note) h("span", "vl-cite-note", root, c.note)
  return root
}
export function render({ model, el }) {
  const root = h("div", null, el)
  function draw() {
    root.className = model.compact ? "vl-cites" : "vl-cards"
    root.replaceChildren(...(model.cards || []).map(c => model.compact ? cite(c) : card(c)))
    if (!(model.cards || []).length && model.empty) h("div", "vl-cards-empty", root, model.empty)
  }
  function pick(e) {
    const t = e.target.closest("[data-finding]")
    if (t && root.contains(t)) model.send_msg({ type: "click", id: Number(t.dataset.finding) })
  }
  root.addEventListener("click", pick)
  root.addEventListener("keydown", e => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pick(e) } })
  model.on(["cards", "compact", "empty"], draw)
  draw()
}
"""

    def __init__(self, **params: Any) -> None:
        params.setdefault("sizing_mode", "stretch_width")
        params.setdefault("stylesheets", [CSS])
        super().__init__(**params)

    def _handle_msg(self, data: Any) -> None:
        if not isinstance(data, dict) or data.get("type") != "click":
            return
        self.click(int(data["id"]))

    def click(self, finding_id: int) -> None:
        """As if the card of ``finding_id`` were clicked (a second click on the same card is a click again)."""
        if self.clicked == finding_id:
            self.param.trigger("clicked")
        else:
            self.clicked = finding_id


# -- the view --------------------------------------------------------------------------------------------------


class InsightsView(Viewer):
    """Find insights (long lane, progress bar), ranked cards per kind, agent reports; clicks go to the state."""

    state = param.ClassSelector(class_=AppState)
    thumbnails = param.Selector(
        default="route",
        objects=["route", "data"],
        doc="'route': the server's thumbnail URLs; 'data': inline data URIs (notebooks).",
    )
    kinds = param.List(default=list(KINDS), item_type=str, doc="What 'Find insights' computes.")

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._prefix = url_prefix()
        self._jobs = Jobs("insights", state=self.state)
        self._limits = {k: FIRST_PAGE for k in KINDS}
        self._rows: dict[int, dict[str, Any]] = {}
        self._samples: dict[int, int] = {}
        self.sections: dict[str, Section] = {}
        self.reports: dict[str, InsightReport] = {}
        self.loaded = 0  # bumped whenever cards were applied (scripts and tests wait on it)
        self._nothing_stored = False  # the "nothing stored yet" message is up

        self._model = pn.widgets.Select(label="Model", options=[ALL_MODELS], value=ALL_MODELS, width=220)
        self._find = pn.widgets.Button(
            label="Find insights",
            color="primary",
            icon=icons.BULB,
            margin=(24, 10, 0, 10),
            css_classes=["vl-find-insights"],
        )
        self._progress = pn.indicators.Progress(
            value=-1,
            max=100,
            visible=False,
            width=220,
            height=16,
            margin=(34, 10, 0, 10),
            css_classes=["vl-insights-progress"],
        )
        self._step = pn.pane.HTML("", margin=(30, 5, 0, 5), css_classes=["vl-insights-step"])
        self._message = pn.pane.Alert(
            "", alert_type="info", visible=False, sizing_mode="stretch_width", css_classes=["vl-insights-message"]
        )
        self._find.on_click(guarded(self.state, "insights", lambda _: self.find()))
        hide_unless(self.state, "insights", self._find)
        self._model.param.watch(lambda _: self._load(), "value")

        self._heads: dict[str, pn.pane.HTML] = {}
        self._cards: dict[str, FindingCards] = {}
        self._more: dict[str, pn.widgets.Button] = {}
        sections = []
        for kind in KINDS:
            self._heads[kind] = pn.pane.HTML(
                "",
                sizing_mode="stretch_width",
                margin=(14, 10, 0, 10),
                css_classes=["vl-insights-head", f"vl-head-{kind}"],
            )
            cards = FindingCards(css_classes=["vl-insights-cards", f"vl-cards-{kind}"], margin=(0, 10))
            cards.param.watch(lambda e: self.open_finding(e.new) if e.new is not None else None, "clicked")
            self._cards[kind] = cards
            more = pn.widgets.Button(
                label="Show more", color="light", visible=False, margin=(0, 10), css_classes=[f"vl-more-{kind}"]
            )
            more.on_click(lambda _, k=kind: self.show_more(k))
            self._more[kind] = more
            extra: list[Any] = []
            if kind == "label_mistake":
                self._review = pn.widgets.Button(
                    label="Review all label mistakes",
                    color="default",
                    icon=icons.LIST_SEARCH,
                    margin=(0, 10, 6, 10),
                    css_classes=["vl-review-mistakes"],
                )
                self._review.on_click(lambda _: self.review_label_mistakes())
                extra.append(self._review)
            sections.append(pn.Column(self._heads[kind], *extra, cards, more, sizing_mode="stretch_width"))

        self._report_buttons: dict[str, pn.widgets.Button] = {}
        self._report_text: dict[str, pn.pane.HTML] = {}
        self._report_cites: dict[str, FindingCards] = {}
        reports = []
        for agent, title in AGENTS.items():
            button = pn.widgets.Button(
                label=f"Write report: {title.lower()}",
                color="default",
                icon=icons.WRITING,
                css_classes=[f"vl-report-{agent}"],
            )
            button.on_click(guarded(self.state, "insights", lambda _, a=agent: self.write_report(a)))
            hide_unless(self.state, "insights", button)
            self._report_buttons[agent] = button
            self._report_text[agent] = pn.pane.HTML(
                "", sizing_mode="stretch_width", css_classes=["vl-report-text", f"vl-report-text-{agent}"]
            )
            cites = FindingCards(
                compact=True, css_classes=["vl-report-cites", f"vl-cites-{agent}"], margin=(0, 10, 8, 10)
            )
            cites.param.watch(lambda e: self.open_finding(e.new) if e.new is not None else None, "clicked")
            self._report_cites[agent] = cites
            reports.append(
                pn.Column(
                    button,
                    self._report_text[agent],
                    cites,
                    sizing_mode="stretch_width",
                    styles={"border": "1px solid #e5e7eb", "border-radius": "8px"},
                    margin=(5, 10),
                    css_classes=["vl-report", f"vl-report-box-{agent}"],
                )
            )

        self._layout = pn.Column(
            pn.Row(self._model, self._find, self._progress, self._step, sizing_mode="stretch_width"),
            self._message,
            pn.pane.HTML(
                "<b>Reports</b> <small>(a language model when one is configured, else templates; "
                "click a cited finding to see it)</small>",
                margin=(8, 10, 0, 10),
            ),
            pn.Row(*reports, sizing_mode="stretch_width"),
            *sections,
            # its own scrollbar, under the tabs: scrolled down here, the page would stay scrolled in Browse and
            # hide the tabs and the toolbar after a card's click
            sizing_mode="stretch_width",
            css_classes=["vl-insights"],
            scroll=True,
            styles={"height": "calc(100vh - 130px)", "min-height": "400px"},
        )
        self.state.param.watch(lambda _: self._on_dataset(), "dataset")
        self.state.param.watch(lambda e: self._load() if e.new == "Insights" else None, "active_view")
        self._on_dataset()

    # -- plumbing ------------------------------------------------------------------------------------------------

    def _say(self, markdown: str, kind: str = "info") -> None:
        """Show a message; data in ``markdown`` must already be escaped with ``html.md``."""
        self._message.param.update(object=markdown, alert_type=kind, visible=bool(markdown))
        self._nothing_stored = False  # set again by the one message it stands for

    @property
    def model(self) -> str | None:
        """The model chosen for computing, showing and reporting (None: all of them)."""
        value = self._model.value
        return None if value in (None, ALL_MODELS) else str(value)

    def wait(self, timeout: float = 120.0) -> None:
        """Block until this view's background work ended and was applied (scripts and tests)."""
        self._jobs.wait(timeout)

    def _thumb_src(self) -> ThumbSrc:
        ds = self.state.ds
        ds_id, root = (ds.id, ds.root) if ds is not None else (0, "")
        if self.thumbnails == "route":
            prefix = self._prefix
            return lambda row: thumb_url(ds_id, int(row["id"]), prefix=prefix)

        def inline(row: dict[str, Any]) -> str:
            data = resources.thumbnails().get(media.join(root, row["filepath"]), int(row["id"])).data
            return "data:image/jpeg;base64," + base64.b64encode(data).decode()

        return inline

    # -- loading what is stored ----------------------------------------------------------------------------------

    def _on_dataset(self) -> None:
        ds = self.state.ds
        models = ds.models() if ds is not None else []
        self._limits = {k: FIRST_PAGE for k in KINDS}
        self._rows, self._samples, self.sections, self.reports = {}, {}, {}, {}
        for agent in AGENTS:
            self._report_text[agent].object = ""
            self._report_cites[agent].cards = []
        self._find.disabled = ds is None
        for button in self._report_buttons.values():
            button.disabled = ds is None
        self._model.options = [ALL_MODELS, *models]
        if self._model.value != ALL_MODELS:
            self._model.value = ALL_MODELS  # the watcher loads
        else:
            self._load()

    def _load(self, kinds: Sequence[str] = KINDS) -> None:
        """Read the stored findings on the quick lane (no recomputation) and show them; while the tab is hidden,
        only when it is next opened."""
        if self.state.active_view not in (None, "Insights"):
            return  # the active_view watcher loads on the next visit
        ds = self.state.ds
        if ds is None:
            self._apply({}, None)
            self._say("No dataset yet: add one on the **Datasets** tab.")
            return
        store, ds_id, root, model = ds.store, ds.id, ds.root, self.model
        limits, thumb, name = dict(self._limits), self._thumb_src(), ds.name
        kinds = list(kinds)
        self._jobs.submit(
            lambda: load_sections(store, ds_id, root, model, limits, thumb, kinds),
            lambda sections: self._apply(sections, name),
            key=("load", tuple(kinds)),
            name="load insights",
        )

    def _apply(self, sections: dict[str, Section], dataset: str | None) -> None:
        """On the session's loop: the cards, headings and "show more" of every loaded kind."""
        if dataset != self.state.dataset:
            return  # loaded for a dataset the session has left meanwhile
        self.sections.update(sections)
        for kind, section in sections.items():
            for row in section.rows:
                self._rows[int(row["id"])] = row
            self._samples.update(section.samples)
            title, about = SECTIONS[kind]
            count = f"{section.total:,}" if section.computed or section.total else "not computed"
            self._heads[kind].object = (
                f"<h3 style='margin:0'>{text(title)} <small style='color:#6b7280;"
                f"font-weight:normal'>· {count}</small></h3>{el('small', about)}"
            )
            empty = (
                "Nothing found: no stored finding of this kind."
                if section.computed
                else "Not computed yet: press Find insights."
            )
            self._cards[kind].param.update(cards=section.cards, empty=empty)
            left = section.total - len(section.cards)
            self._more[kind].param.update(visible=left > 0, label=f"Show {min(left, MORE):,} more ({left:,} left)")
        mistakes = self.sections.get("label_mistake")
        self._review.disabled = mistakes is None or not mistakes.total
        stored = any(s.computed or s.total for s in self.sections.values())
        ds = self.state.ds
        if ds is not None and not stored and not self._jobs.running("find"):
            self._say(
                f"No insights stored for **{md(ds.name)}** yet. **Find insights** looks for blind spots, "
                "error patterns, label mistakes and near-duplicates (about a minute per 10,000 images)."
            )
            self._nothing_stored = True
        elif stored and self._nothing_stored:
            self._say("")
            self._nothing_stored = False
        self.loaded += 1

    def show_more(self, kind: str) -> None:
        """The next page of one kind's cards."""
        self._limits[kind] = self._limits.get(kind, FIRST_PAGE) + MORE
        self._load([kind])

    # -- computing -----------------------------------------------------------------------------------------------

    def find(self) -> None:
        """Run every analysis of ``kinds`` for the chosen model(s) on the long lane; the cards refresh when done."""
        ds = self.state.ds
        if ds is None:
            return
        if self._jobs.running("find"):
            self._say("Insights of this session are still being computed.", "warning")
            return
        store, ds_id, name = ds.store, ds.id, ds.name
        models = None if self.model is None else [self.model]
        kinds = list(self.kinds)
        self._find.disabled = True
        self._progress.param.update(visible=True, value=-1)
        self._step.object = ""
        self._say(f"Finding insights in **{md(name)}** …")
        started = time.perf_counter()

        def progress(step: str, done: int, total: int) -> None:
            value = int(100 * done / total) if total else -1
            words = f"{step}: {done:,}/{total:,}" if total else step
            self._jobs.post(lambda: self._show_progress(value, words), every=0.2)

        def work() -> list[Finding]:
            return run_insights(store, ds_id, models=models, kinds=kinds, progress=progress)

        self._jobs.submit(
            work,
            lambda found: self._found(found, time.perf_counter() - started),
            self._find_failed,
            key="find",
            lane="long",
            name="find insights",
        )

    def _show_progress(self, value: int, words: str) -> None:
        if self._jobs.running("find"):  # a late tick must not reopen a finished run's bar
            self._progress.param.update(visible=True, value=value)
            self._step.object = el("small", words)

    def _found(self, found: list[Finding], seconds: float) -> None:
        self._find.disabled = False
        self._progress.visible = False
        self._step.object = ""
        counts = {kind: sum(1 for f in found if f.kind == kind) for kind in self.kinds}
        parts = ", ".join(f"{n:,} {SECTIONS[k][0].lower()}" for k, n in counts.items())
        self._say(
            f"Found {len(found):,} insights in {seconds:.1f} s: {parts}. Click a card to see its images.", "success"
        )
        st = self.state
        # the run may have evaluated models and always adds the label-mistake score: views that list fields
        # (the sidebar) rebuild on an evaluation change
        ds = st.ds
        done = {e["key"] for e in ds.evaluations()} if ds is not None else set()
        if st.evaluation is None and st.models and st.models[0] in done:
            st.evaluation = st.models[0]
        else:
            st.param.trigger("evaluation")
        self._load()

    def _find_failed(self, exc: BaseException) -> None:
        self._find.disabled = False
        self._progress.visible = False
        self._step.object = ""
        self._say(f"Finding insights failed: {md(user_message(exc))}", "danger")

    # -- reports -------------------------------------------------------------------------------------------------

    def write_report(self, agent: str) -> None:
        """The agent's report (a language model when configured, else templates) on the long lane."""
        ds = self.state.ds
        if ds is None or agent not in AGENTS:
            return
        store, ds_id, model = ds.store, ds.id, self.model
        button = self._report_buttons[agent]
        button.disabled = True
        self._report_text[agent].object = el("i", "Writing the report …")
        self._report_cites[agent].cards = []

        def work() -> tuple[InsightReport, list[Card]]:
            report = explain(store, ds_id, agent, model=model)  # type: ignore[arg-type]
            cites = []
            for c in report.cited:
                row = store.finding(ds_id, c.finding_id)
                if row is not None:
                    cites.append({"id": int(row["id"]), "title": str(row["title"]), "note": c.why})
            return report, cites

        def failed(exc: BaseException) -> None:
            button.disabled = False
            self._report_text[agent].object = el(
                "span", f"The report failed: {user_message(exc)}", style="color:#b91c1c"
            )

        self._jobs.submit(
            work,
            lambda out: self._show_report(agent, *out),
            failed,
            key=("report", agent),
            lane="long",
            name=f"report {agent}",
        )

    def _show_report(self, agent: str, report: InsightReport, cites: list[Card]) -> None:
        self._report_buttons[agent].disabled = False
        self.reports[agent] = report
        by = report.written_by or "template"
        who = "written by template" if by == "template" else f"written by {by.replace('model:', 'model ')}"
        steps = "".join(el("li", s) for s in report.next_steps)
        self._report_text[agent].object = (
            f"<div><b>{text(AGENTS[agent])}</b> · "
            + el("small", who, class_="vl-report-by", style="color:#6b7280")
            + "</div>"
            + el("p", report.summary, style="margin:4px 0")
            + (f"<b>Next steps</b><ol style='margin:2px 0 4px 0;padding-left:20px'>{steps}</ol>" if steps else "")
            + ("<div><b>Cited findings</b></div>" if cites else "")
        )
        self._report_cites[agent].cards = cites

    # -- clicks -> state -----------------------------------------------------------------------------------------

    def open_finding(self, finding_id: int) -> None:
        """A card or a cited finding was clicked: its samples in Browse (a label mistake: its image opened)."""
        ds = self.state.ds
        if ds is None:
            return
        row = self._rows.get(int(finding_id)) or ds.store.finding(ds.id, int(finding_id))
        if row is None:
            self._say(f"Finding {int(finding_id)} is no longer stored: find insights again.", "warning")
            return
        if row["kind"] == "label_mistake":
            sample = self._samples.get(int(row["id"]))
            if sample is None:
                ids = ds.store.finding_members(ds.id, int(row["id"]))["sample_id"].to_pylist()
                sample = int(ids[0]) if ids else None
            self.review_label_mistakes(open_sample=sample)
            return
        finding = as_finding(row)
        self.state.show_finding(finding.app_filters(), finding.title, model=finding.model)

    def review_label_mistakes(self, open_sample: int | None = None) -> None:
        """Every image with a label-mistake candidate, worst first, in Browse (``open_sample`` opened in it)."""
        ds = self.state.ds
        if ds is None:
            return
        if MISTAKE_FIELD not in ds.fields():
            self._say("No label-mistake scores stored yet: press **Find insights** first.", "warning")
            return
        self.state.show_finding(
            review_filters(),
            "Label mistake candidates",
            sort=Sort(field=MISTAKE_FIELD, descending=True),
            open_sample=open_sample,
        )

    def __panel__(self) -> pn.Column:
        return self._layout
