"""AnnotatedImage: one image at viewport resolution with its boxes drawn over it, and keyboard navigation."""

from __future__ import annotations

from typing import Any

import param
from panel.custom import JSComponent


class AnnotatedImage(JSComponent):
    """Sends ``{"type": "key", "key": ...}`` for arrow keys and Escape so the detail view can page and close, and
    ``{"type": "box", "id": ...}`` when a box with an annotation id is clicked (the detail view picks it to tag)."""

    src = param.String(default="")
    image_width = param.Integer(default=0)
    image_height = param.Integer(default=0)
    boxes = param.List(default=[], doc="Same box dicts as the grid: x, y, w, h, label, color, kind, score, status.")
    key = param.String(default="", doc="Last navigation key pressed (ArrowLeft, ArrowRight, Escape).")
    selected = param.List(default=[], doc="Annotation ids of the picked boxes, drawn highlighted.")
    clicked = param.Integer(default=None, allow_None=True, doc="Annotation id of the last box clicked.")

    _esm = """
const NS = "http://www.w3.org/2000/svg"
function svgEl(tag, attrs, parent) {
  const e = document.createElementNS(NS, tag)
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v))
  parent.appendChild(e); return e
}
export function render({ model, el }) {
  const wrap = document.createElement("div")
  wrap.className = "vl-detail-wrap"
  wrap.style.cssText = "position:relative;width:100%;height:100%;display:flex;align-items:center;justify-content:center;background:#111;overflow:hidden;"
  const stage = document.createElement("div")
  stage.style.cssText = "position:relative;"
  const img = document.createElement("img")
  img.className = "vl-detail-img"
  img.style.cssText = "display:block;width:100%;height:100%;"
  const svg = document.createElementNS(NS, "svg")
  svg.setAttribute("class", "vl-detail-svg")
  svg.style.cssText = "position:absolute;left:0;top:0;width:100%;height:100%;pointer-events:none;"
  stage.append(img, svg); wrap.append(stage); el.append(wrap)
  // Fit the image (and its SVG, which shares its box) into the available space, upscaling small images too.
  function fit() {
    const W = model.image_width || 1, H = model.image_height || 1
    const scale = Math.min(wrap.clientWidth / W, wrap.clientHeight / H) || 1
    stage.style.width = `${Math.floor(W * scale)}px`
    stage.style.height = `${Math.floor(H * scale)}px`
  }
  new ResizeObserver(fit).observe(wrap)
  function draw() {
    img.src = model.src
    const W = model.image_width || 1, H = model.image_height || 1
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`)
    svg.replaceChildren()
    fit()
    const px = Math.max(W, H) / 900
    const picked = new Set(model.selected)
    for (const b of model.boxes) {
      const pred = b.kind === "pred"
      const dash = pred ? `${6 * px} ${4 * px}` : "none"
      const on = b.id != null && picked.has(b.id)
      const g = svgEl("g", {class: (pred ? "vl-pred" : "vl-gt") + (on ? " vl-box-picked" : "")}, svg)
      const a = {x: b.x, y: b.y, width: Math.max(b.w, 1), height: Math.max(b.h, 1), fill: "none"}
      if (on) svgEl("rect", {...a, fill: "rgba(255,255,255,0.18)", stroke: "#fff", "stroke-width": 7 * px}, g)
      svgEl("rect", {...a, stroke: "rgba(0,0,0,0.6)", "stroke-width": 4 * px, "stroke-dasharray": dash}, g)
      svgEl("rect", {...a, stroke: b.color, "stroke-width": 2 * px, "stroke-dasharray": dash}, g)
      if (b.id != null) {
        // the outline (and the inside, lightly) takes clicks; the svg itself lets them through to the image
        const hit = svgEl("rect", {...a, class: "vl-box-hit", fill: "transparent", stroke: "transparent",
                                   "stroke-width": 10 * px, "data-ann": b.id}, g)
        hit.style.cssText = "pointer-events:all;cursor:pointer;"
        hit.addEventListener("click", (ev) => { ev.stopPropagation(); model.send_msg({type: "box", id: b.id}) })
      }
      let text = b.label + (b.score != null ? ` ${(+b.score).toFixed(2)}` : "") + (b.status ? ` ${b.status.toUpperCase()}` : "")
      if (b.tags && b.tags.length) text += " #" + b.tags.join(" #")
      const fs = 13 * px
      const t = svgEl("text", {x: b.x + 2 * px, y: Math.max(fs, b.y - 3 * px), "font-size": fs, fill: "#fff",
                               stroke: "#000", "stroke-width": 3 * px, "paint-order": "stroke", "font-family": "sans-serif"}, g)
      t.textContent = text
    }
  }
  draw()
  model.on(["src", "boxes", "image_width", "image_height", "selected"], draw)
  function onKey(ev) {
    if (!el.isConnected || el.offsetParent === null) return
    if (ev.target && ["INPUT", "TEXTAREA", "SELECT"].includes(ev.target.tagName)) return
    if (["ArrowLeft", "ArrowRight", "Escape"].includes(ev.key)) {
      ev.preventDefault()
      model.send_msg({type: "key", key: ev.key})
    }
  }
  document.addEventListener("keydown", onKey)
  model.on("remove", () => document.removeEventListener("keydown", onKey))
}
"""

    def _handle_msg(self, data: Any) -> None:
        # one event per press: the value is set quietly and then triggered, so a repeated key (or box) fires too
        # and a new one does not fire twice (set + trigger)
        if isinstance(data, dict) and data.get("type") == "key":
            with param.discard_events(self):
                self.key = str(data.get("key", ""))
            self.param.trigger("key")
        elif isinstance(data, dict) and data.get("type") == "box" and isinstance(data.get("id"), int):
            with param.discard_events(self):
                self.clicked = data["id"]
            self.param.trigger("clicked")
