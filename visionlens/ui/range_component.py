"""RangeFilter: a numeric field's sidebar control (label, two typed bounds, a two-handle slider, a histogram) as one
Bokeh model.

Panel's ``EditableRangeSlider`` is a composite of about ten models (two spinners, a slider, labels, layouts) and
takes ~7 ms of Python to build; a sidebar has one per numeric field and every new session builds them all on the
event loop that every other session shares. This component is one model, built in a fraction of a millisecond.
The browser reports a committed range (handle released, a bound typed and Enter or focus lost) as one message, which
sets ``value`` and ``value_throttled`` together, the way a slider's ``value_throttled`` follows a release.
"""

from __future__ import annotations

from typing import Any

import param
from panel.custom import JSComponent


class RangeFilter(JSComponent):
    """``value`` is (lo, hi) within [start, end]; ``value_throttled`` changes only when the user commits a range."""

    label = param.String(default="", doc="The field's name, shown as text (never HTML).")
    start = param.Number(default=0.0)
    end = param.Number(default=1.0)
    step = param.Number(default=0.01)
    value = param.NumericTuple(default=(0.0, 1.0), length=2)
    value_throttled = param.NumericTuple(default=(0.0, 1.0), length=2)
    hist = param.String(default="", doc="The histogram as SVG markup built by the server from counts only.")

    _rename = {"value_throttled": None}

    _stylesheets = [
        """
:host { display: block; }
.vl-rf { font: 13px sans-serif; padding: 2px 4px 0 4px; }
.vl-rf-top { display: flex; align-items: center; gap: 4px; margin-bottom: 2px; }
.vl-rf-label { flex: 1 1 auto; font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.vl-rf-num { width: 5.5em; font: inherit; padding: 1px 3px; border: 1px solid #c8c8c8; border-radius: 3px; }
.vl-rf-track { position: relative; height: 18px; }
.vl-rf-track input[type=range] { position: absolute; left: 0; top: 0; width: 100%; margin: 0; height: 18px;
  background: none; pointer-events: none; -webkit-appearance: none; appearance: none; }
.vl-rf-track input[type=range]::-webkit-slider-thumb { pointer-events: all; -webkit-appearance: none;
  width: 12px; height: 12px; border-radius: 50%; background: #3b6fb6; border: 1px solid #fff; cursor: pointer; }
.vl-rf-track input[type=range]::-moz-range-thumb { pointer-events: all; width: 12px; height: 12px;
  border-radius: 50%; background: #3b6fb6; border: 1px solid #fff; cursor: pointer; }
.vl-rf-rail { position: absolute; left: 6px; right: 6px; top: 8px; height: 3px; background: #d9d9d9; }
.vl-rf-fill { position: absolute; top: 0; height: 3px; background: #3b6fb6; }
.vl-rf-hist svg { display: block; margin: 0 6px; }
"""
    ]

    _esm = """
function fmt(v, step) {
  if (!isFinite(v)) return ""
  const d = step >= 1 ? 0 : Math.min(6, Math.max(0, Math.ceil(-Math.log10(step))))
  return (+v).toFixed(d)
}
export function render({ model, el }) {
  const root = document.createElement("div"); root.className = "vl-rf"
  const top = document.createElement("div"); top.className = "vl-rf-top"
  const label = document.createElement("span"); label.className = "vl-rf-label"
  const lo = document.createElement("input"); lo.type = "number"; lo.className = "vl-rf-num vl-rf-lo"
  const hi = document.createElement("input"); hi.type = "number"; hi.className = "vl-rf-num vl-rf-hi"
  const dots = document.createElement("span"); dots.textContent = "…"
  top.append(label, lo, dots, hi)
  const track = document.createElement("div"); track.className = "vl-rf-track"
  const rail = document.createElement("div"); rail.className = "vl-rf-rail"
  const fill = document.createElement("div"); fill.className = "vl-rf-fill"; rail.append(fill)
  const a = document.createElement("input"); a.type = "range"; a.className = "vl-rf-a"
  const b = document.createElement("input"); b.type = "range"; b.className = "vl-rf-b"
  track.append(rail, a, b)
  const hist = document.createElement("div"); hist.className = "vl-rf-hist"
  root.append(top, track, hist); el.append(root)

  let cur = [model.value[0], model.value[1]]
  function clamp(v) { return Math.min(model.end, Math.max(model.start, v)) }
  function paint() {
    label.textContent = model.label
    for (const s of [a, b]) { s.min = model.start; s.max = model.end; s.step = model.step }
    for (const n of [lo, hi]) { n.min = model.start; n.max = model.end; n.step = model.step }
    a.value = cur[0]; b.value = cur[1]
    if (document.activeElement !== lo) lo.value = fmt(cur[0], model.step)
    if (document.activeElement !== hi) hi.value = fmt(cur[1], model.step)
    const span = (model.end - model.start) || 1
    fill.style.left = `${(cur[0] - model.start) / span * 100}%`
    fill.style.width = `${(cur[1] - cur[0]) / span * 100}%`
  }
  function commit() {
    model.send_msg({type: "commit", value: [cur[0], cur[1]]})
  }
  function slide(which) {
    let x = +a.value, y = +b.value
    if (x > y) { if (which === a) x = y; else y = x }
    cur = [x, y]; paint()
  }
  a.addEventListener("input", () => slide(a)); b.addEventListener("input", () => slide(b))
  a.addEventListener("change", commit); b.addEventListener("change", commit)
  function typed() {
    let x = lo.value === "" ? model.start : clamp(+lo.value)
    let y = hi.value === "" ? model.end : clamp(+hi.value)
    if (!isFinite(x) || !isFinite(y)) { paint(); return }
    if (x > y) [x, y] = [y, x]
    const changed = x !== cur[0] || y !== cur[1]
    cur = [x, y]; lo.blur(); hi.blur(); paint()
    if (changed) commit()
  }
  for (const n of [lo, hi]) {
    n.addEventListener("keydown", (ev) => { if (ev.key === "Enter") typed() })
    n.addEventListener("blur", () => { if (+n.value !== (n === lo ? cur[0] : cur[1])) typed() })
  }
  model.on(["value", "start", "end", "step", "label"], () => { cur = [model.value[0], model.value[1]]; paint() })
  function drawHist() { hist.innerHTML = model.hist }  // SVG the server built from counts: no dataset text in it
  model.on("hist", drawHist)
  paint(); drawHist()
}
"""

    def _handle_msg(self, data: Any) -> None:
        if not isinstance(data, dict) or data.get("type") != "commit":
            return
        try:
            lo, hi = (float(v) for v in data.get("value", ()))
        except (TypeError, ValueError):
            return
        lo, hi = max(self.start, min(lo, hi)), min(self.end, max(lo, hi))
        self.param.update(value=(lo, hi), value_throttled=(lo, hi))
