// Virtualized image grid for VisionLens (ESM for panel.custom.JSComponent, no build step).
//
// Only the visible rows (plus a small overscan) exist in the DOM. Items live in a per-generation cache
// filled by windows that Python sends in answer to `model.request`; Python never sends the whole list.
// Very tall results are scaled: the scroll spacer is capped at MAX_SCROLL_PX. Jumps (dragging the
// scrollbar, Home/End) map scrollTop proportionally onto the virtual height, so the middle of the
// scrollbar shows the middle item; small moves (wheel, keys, scrollIntoView) stay 1:1 by keeping an
// offset between virtual and real scroll positions (the "paged" technique of SlickGrid and others).

const MAX_SCROLL_PX = 8_000_000  // below every browser's element-height cap (Chrome ~33M, Firefox ~17M)
const GAP = 6
const OVERSCAN_ROWS = 2          // DOM rows kept above/below the viewport
const REQUEST_THROTTLE_MS = 120  // while scrolling, at most one window request per this interval
const REQUEST_RETRY_MS = 4000    // re-ask when an answer never came (e.g. superseded on the server)
const CACHE_LIMIT = 20000        // items kept in the browser before far-away ones are dropped
const MAX_DOM_TILES = 800        // hard cap, whatever the viewport claims to be
const SVG_NS = "http://www.w3.org/2000/svg"

function h(tag, cls, parent) {
  const e = document.createElement(tag)
  if (cls) e.className = cls
  if (parent) parent.appendChild(e)
  return e
}

function s(tag, attrs, parent) {
  const e = document.createElementNS(SVG_NS, tag)
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v))
  if (parent) parent.appendChild(e)
  return e
}

export function render({ model, el }) {
  const root = h("div", "vl-grid")
  const toolbar = h("div", "vl-toolbar", root)
  const count = h("span", "vl-count", toolbar)
  const selInfo = h("span", "vl-selinfo", toolbar)
  const clearBtn = h("button", "vl-clear", toolbar)
  clearBtn.type = "button"
  clearBtn.textContent = "clear selection"
  const sizeLabel = h("label", "vl-size", toolbar)
  sizeLabel.append("tile ")
  const slider = h("input", "vl-slider", sizeLabel)
  slider.type = "range"
  slider.min = "64"
  slider.max = "400"
  slider.step = "8"
  slider.value = String(model.tile_size)
  const scroller = h("div", "vl-scroller", root)
  scroller.tabIndex = 0
  const spacer = h("div", "vl-spacer", scroller)
  // Layout-critical styles inline: grid.css arrives asynchronously, and before it does an unstyled
  // scroller would be as tall as the spacer and "show" every row at once.
  root.style.cssText = "display:flex;flex-direction:column;width:100%;height:100%;min-height:0"
  scroller.style.cssText = "position:relative;flex:1 1 auto;min-height:0;overflow-y:auto;overflow-x:hidden"
  spacer.style.cssText = "position:relative;width:100%;overflow:hidden"

  let cache = new Map()        // index -> item, for model.generation only
  let cacheGen = model.generation
  let pending = null           // {generation, offset, limit, seq, at}
  let seq = 0
  const tiles = new Map()      // index -> tile element
  const free = []              // recycled tile elements
  let geo = null
  let lastRequestAt = 0
  let requestTimer = null
  let reportTimer = null
  let selected = new Set(model.selected || [])
  let offset = 0               // virtual minus real scroll position (0 unless scaled)
  let lastTop = 0              // scrollTop seen by the previous virtualTop() call
  let alive = true

  function geometry() {
    const width = Math.max(1, scroller.clientWidth - GAP)
    const tile = Math.max(32, model.tile_size)
    const cols = Math.max(1, Math.floor(width / (tile + GAP)))
    const cell = Math.floor(width / cols)
    const img = cell - GAP
    const caption = model.show_titles ? 20 : 0
    const rowH = img + caption + GAP
    const total = Math.max(0, model.total)
    const rows = Math.ceil(total / cols)
    const virtualH = rows * rowH + GAP
    const realH = Math.min(virtualH, MAX_SCROLL_PX)
    const viewH = scroller.clientHeight
    const maxReal = Math.max(0, realH - viewH)
    const maxVirtual = Math.max(0, virtualH - viewH)
    const ratio = maxReal > 0 ? maxVirtual / maxReal : 1
    return { width, cols, cell, img, caption, rowH, total, rows, virtualH, realH, viewH, ratio }
  }

  function virtualTop(g) {
    const top = scroller.scrollTop
    const maxReal = Math.max(0, g.realH - g.viewH)
    const maxVirtual = Math.max(0, g.virtualH - g.viewH)
    if (g.ratio === 1 || top <= 0) offset = 0
    else if (top >= maxReal - 1) offset = maxVirtual - top
    else if (Math.abs(top - lastTop) > g.viewH) offset = top * (g.ratio - 1)
    lastTop = top
    const v = Math.min(maxVirtual, Math.max(0, top + offset))
    offset = v - top
    return v
  }

  function visibleRange(g) {
    const vTop = virtualTop(g)
    const first = Math.max(0, Math.floor(vTop / g.rowH))
    const last = Math.min(g.rows - 1, Math.floor((vTop + g.viewH) / g.rowH))
    return { vTop, first, last }
  }

  function resetCache() {
    cache = new Map()
    cacheGen = model.generation
    pending = null
  }

  function fmt(n) {
    return Number(n).toLocaleString("en-US")
  }

  function updateToolbar() {
    count.textContent = `${fmt(model.total)} items`
    const n = selected.size
    selInfo.textContent = n ? `${fmt(n)} selected` : ""
    clearBtn.style.display = n ? "" : "none"
    toolbar.style.display = model.show_toolbar ? "" : "none"
  }

  // ---- tiles -------------------------------------------------------------------------------------

  function makeTile() {
    const t = free.pop()
    if (t) return t
    const tile = h("div", "vl-tile")
    tile.style.cssText = "position:absolute;top:0;left:0"
    const frame = h("div", "vl-frame", tile)
    const img = h("img", "vl-img", frame)
    img.loading = "lazy"
    img.decoding = "async"
    img.draggable = false
    img.alt = ""
    img.addEventListener("load", () => tile.classList.remove("vl-loading"))
    img.addEventListener("error", () => tile.classList.add("vl-broken"))
    const svg = s("svg", { class: "vl-boxes", preserveAspectRatio: "xMidYMid meet" }, frame)
    h("div", "vl-badges", frame)
    h("div", "vl-caption", tile)
    tile._img = img
    tile._svg = svg
    return tile
  }

  function drawBoxes(svg, item, g) {
    svg.replaceChildren()
    const W = item.width || 1
    const H = item.height || 1
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`)
    if (!model.show_boxes || !item.boxes || !item.boxes.length) return
    // one screen pixel in image units: matches the letterboxing of object-fit: contain
    const px = Math.max(W, H) / Math.max(1, g.img)
    const withText = g.img >= 120
    for (const b of item.boxes) {
      const pred = b.kind === "pred"
      const color = b.color || "#ffcc00"
      const grp = s("g", { class: `vl-box ${pred ? "vl-pred" : "vl-gt"}${b.status ? " vl-" + b.status : ""}` }, svg)
      const attrs = { x: b.x, y: b.y, width: Math.max(0, b.w), height: Math.max(0, b.h), fill: "none" }
      const dash = pred ? `${4 * px} ${3 * px}` : "none"
      s("rect", { ...attrs, class: "vl-halo", stroke: "rgba(0,0,0,0.55)", "stroke-width": 3.5 * px, "stroke-dasharray": dash }, grp)
      s("rect", { ...attrs, class: "vl-stroke", stroke: color, "stroke-width": 1.75 * px, "stroke-dasharray": dash }, grp)
      if (withText) {
        let text = b.label == null ? "" : String(b.label)
        if (pred && b.score != null) text += ` ${Number(b.score).toFixed(2)}`
        if (b.status) text += ` ${String(b.status).toUpperCase()}`
        if (text) {
          // predictions label above the box, ground truth below it, so a matched pair stays readable
          const fs = 10 * px
          const bottom = b.y + Math.max(0, b.h)
          const ty = pred ? (b.y > fs * 1.2 ? b.y - 2 * px : b.y + fs)
                          : (bottom + fs * 1.1 < H ? bottom + fs : bottom - 2 * px)
          const t = s("text", { x: b.x + px, y: ty, "font-size": fs, fill: color, stroke: "rgba(0,0,0,0.8)",
                                "stroke-width": 2.5 * px, "paint-order": "stroke", class: "vl-label" }, grp)
          t.textContent = text
        }
      }
    }
  }

  function fillTile(tile, index, item, g) {
    const key = item ? `${cacheGen}:${index}:${item.id}:${model.show_boxes}:${g.img}` : `empty:${index}`
    if (tile._key === key) return
    tile._key = key
    tile.dataset.index = String(index)
    const caption = tile.lastChild
    const badges = tile.firstChild.lastChild
    if (!item) {
      tile.classList.add("vl-placeholder")
      tile.classList.remove("vl-selected", "vl-clicked", "vl-loading", "vl-broken")
      delete tile.dataset.id
      tile._img.removeAttribute("src")
      tile._svg.replaceChildren()
      badges.replaceChildren()
      caption.textContent = `#${fmt(index)}`
      return
    }
    tile.classList.remove("vl-placeholder", "vl-broken")
    tile.dataset.id = String(item.id)
    if (tile._img.getAttribute("src") !== item.thumb) {
      tile.classList.add("vl-loading")
      if (item.thumb) tile._img.src = item.thumb
      else tile._img.removeAttribute("src")
    }
    drawBoxes(tile._svg, item, g)
    badges.replaceChildren()
    for (const b of item.badges || []) {
      const chip = h("span", "vl-badge", badges)
      if (typeof b === "object" && b !== null) {
        chip.textContent = b.text ?? ""
        if (b.color) chip.style.background = b.color
      } else {
        chip.textContent = String(b)
      }
    }
    caption.textContent = item.title ?? String(item.id)
    caption.title = caption.textContent
    markTile(tile)
  }

  function markTile(tile) {
    const id = tile.dataset.id === undefined ? null : Number(tile.dataset.id)
    tile.classList.toggle("vl-selected", id !== null && selected.has(id))
    tile.classList.toggle("vl-clicked", id !== null && id === model.clicked)
  }

  function layout() {
    geo = geometry()
    const g = geo
    spacer.style.height = `${g.realH}px`
    root.style.setProperty("--vl-img", `${g.img}px`)
    root.style.setProperty("--vl-caption", `${g.caption}px`)
    if (g.viewH === 0 && g.total > 0) return  // a passing re-layout of the page (another part arriving): keep the tiles
    if (g.total === 0) {
      for (const [i, t] of tiles) { t.remove(); t._key = null; free.push(t); tiles.delete(i) }
      return
    }
    const { vTop, first, last } = visibleRange(g)
    const r0 = Math.max(0, first - OVERSCAN_ROWS)
    const r1 = Math.min(g.rows - 1, last + OVERSCAN_ROWS)
    const i0 = r0 * g.cols
    const i1 = Math.min(g.total - 1, (r1 + 1) * g.cols - 1, i0 + MAX_DOM_TILES - 1)
    for (const [i, t] of tiles) {
      if (i < i0 || i > i1) { t.remove(); t._key = null; free.push(t); tiles.delete(i) }
    }
    const base = scroller.scrollTop - vTop  // real px offset of virtual 0 in spacer coordinates
    for (let i = i0; i <= i1; i++) {
      let t = tiles.get(i)
      if (!t) {
        t = makeTile()
        tiles.set(i, t)
        spacer.appendChild(t)
      }
      const row = Math.floor(i / g.cols)
      const col = i % g.cols
      const x = GAP + col * g.cell
      const y = base + GAP + row * g.rowH
      t.style.transform = `translate(${x}px, ${y}px)`
      t.style.width = `${g.img}px`
      fillTile(t, i, cache.get(i), g)
    }
    scheduleRequest()
    scheduleReport(first * g.cols)
  }

  // ---- windows -----------------------------------------------------------------------------------

  function missingRange() {
    const g = geo
    if (!g || g.total === 0 || g.viewH === 0) return null
    const { first, last } = visibleRange(g)
    const visRows = last - first + 1
    const maxItems = Math.max(g.cols, model.max_window)
    // prefetch about one screen above and below, within the server's window limit
    const extra = Math.max(OVERSCAN_ROWS, Math.min(visRows, Math.floor((maxItems / g.cols - visRows) / 2)))
    const i0 = Math.max(0, (first - extra) * g.cols)
    const i1 = Math.min(g.total - 1, (last + extra + 1) * g.cols - 1)
    // the visible part first: if it is loaded, only fill the prefetch margins
    const v0 = first * g.cols
    const v1 = Math.min(g.total - 1, (last + 1) * g.cols - 1)
    let lo = -1, hi = -1
    for (let i = v0; i <= v1; i++) if (!cache.has(i)) { if (lo < 0) lo = i; hi = i }
    if (lo < 0) {
      for (let i = i0; i <= i1; i++) if (!cache.has(i)) { if (lo < 0) lo = i; hi = i }
      if (lo < 0) return null
    } else {
      while (lo > i0 && !cache.has(lo - 1)) lo--
      while (hi < i1 && !cache.has(hi + 1)) hi++
    }
    let limit = hi - lo + 1
    if (limit > maxItems) {
      lo = Math.max(i0, Math.min(lo, v0 - Math.floor((maxItems - (v1 - v0 + 1)) / 2)))
      limit = maxItems
    }
    return { offset: lo, limit: Math.min(limit, g.total - lo) }
  }

  function sendRequest() {
    requestTimer = null
    if (!alive) return
    const want = missingRange()
    if (!want) return
    const now = Date.now()
    if (pending && pending.generation === model.generation && now - pending.at < REQUEST_RETRY_MS &&
        want.offset >= pending.offset && want.offset + want.limit <= pending.offset + pending.limit) {
      return  // already asked for this
    }
    lastRequestAt = now
    seq += 1
    pending = { generation: model.generation, offset: want.offset, limit: want.limit, seq, at: now }
    model.request = { generation: model.generation, offset: want.offset, limit: want.limit, seq }
    // if no answer comes (provider error, lost message), ask again once the request counts as stale
    setTimeout(scheduleRequest, REQUEST_RETRY_MS + 50)
  }

  function scheduleRequest() {
    if (requestTimer !== null) return
    const wait = Math.max(0, REQUEST_THROTTLE_MS - (Date.now() - lastRequestAt))
    requestTimer = setTimeout(sendRequest, wait)
  }

  function scheduleReport(index) {
    clearTimeout(reportTimer)
    reportTimer = setTimeout(() => {
      if (model.first_visible !== index) model.first_visible = index
    }, 250)
  }

  function trimCache() {
    if (cache.size <= CACHE_LIMIT || !geo) return
    const { first } = visibleRange(geo)
    const center = first * geo.cols
    const keep = CACHE_LIMIT / 2
    for (const i of cache.keys()) if (Math.abs(i - center) > keep) cache.delete(i)
  }

  function onItems() {
    const msg = model.items || {}
    if (msg.generation !== model.generation || typeof msg.items !== "string") return  // stale answer
    const rows = JSON.parse(msg.items)  // the window's tiles travel as one JSON text (grid_component.py)
    if (cacheGen !== model.generation) resetCache()
    const off = msg.offset | 0
    rows.forEach((item, k) => cache.set(off + k, item))
    if (pending && msg.seq === pending.seq) pending = null
    trimCache()
    layout()
  }

  // ---- events ------------------------------------------------------------------------------------

  let frame = null
  scroller.addEventListener("scroll", () => {
    if (frame === null) frame = requestAnimationFrame(() => { frame = null; layout() })
  }, { passive: true })

  scroller.addEventListener("click", (ev) => {
    const tile = ev.target.closest(".vl-tile")
    if (!tile || tile.dataset.id === undefined) return
    const id = Number(tile.dataset.id)
    if (ev.shiftKey || ev.ctrlKey || ev.metaKey) {
      ev.preventDefault()
      const next = new Set(selected)
      if (next.has(id)) next.delete(id)
      else next.add(id)
      selected = next
      model.selected = [...next]
      for (const t of tiles.values()) markTile(t)
      updateToolbar()
    } else {
      clickSeq += 1
      pendingClick = { type: "click", id, index: Number(tile.dataset.index), seq: clickSeq }
      clickTries = 0
      sendClick()
    }
  })
  // A click made while the page's connection is still coming up is dropped on the way: it is sent again until the
  // server's click_seq says it arrived (the server ignores a copy it already took)
  let clickSeq = 0, pendingClick = null, clickTries = 0, clickTimer = null
  function sendClick() {
    clearTimeout(clickTimer)
    if (pendingClick === null) return
    model.send_msg(pendingClick)
    if (++clickTries < 20) clickTimer = setTimeout(sendClick, 400)
  }
  model.on("click_seq", () => {
    if (pendingClick !== null && model.click_seq >= pendingClick.seq) { pendingClick = null; clearTimeout(clickTimer) }
  })
  // shift-click would otherwise select the captions' text
  scroller.addEventListener("mousedown", (ev) => { if (ev.shiftKey) ev.preventDefault() })

  clearBtn.addEventListener("click", () => {
    selected = new Set()
    model.selected = []
    for (const t of tiles.values()) markTile(t)
    updateToolbar()
  })

  slider.addEventListener("input", () => { model.tile_size = Number(slider.value) })

  function scrollToIndex(index) {
    const g = geo = geometry()
    spacer.style.height = `${g.realH}px`  // before scrolling, or the browser clamps scrollTop
    if (index < 0 || g.total === 0) return
    const row = Math.floor(Math.min(index, g.total - 1) / g.cols)
    const target = row * g.rowH
    scroller.scrollTop = target / g.ratio
    // land exactly on the row and keep the next small scroll 1:1
    lastTop = scroller.scrollTop
    offset = g.ratio === 1 ? 0 : target - lastTop
    layout()
  }

  model.on("scroll_to", () => {
    if (model.scroll_to >= 0) {
      scrollToIndex(model.scroll_to)
      model.scroll_to = -1  // so that Python can jump to the same index again
    }
  })
  model.on("generation", () => { resetCache(); layout() })
  model.on("items", onItems)
  model.on(["total", "show_boxes", "show_titles", "max_window"], () => layout())
  model.on("tile_size", () => {
    // keep the first visible item in view while the tiles change size
    const anchor = geo ? visibleRange(geo).first * geo.cols : 0
    slider.value = String(model.tile_size)
    scrollToIndex(anchor)
  })
  model.on("selected", () => {
    selected = new Set(model.selected || [])
    for (const t of tiles.values()) markTile(t)
    updateToolbar()
  })
  model.on("clicked", () => { for (const t of tiles.values()) markTile(t) })
  model.on(["total", "show_toolbar"], updateToolbar)

  const observer = new ResizeObserver(() => {
    // a width change reflows the columns: keep the first visible item in view
    if (geo && geometry().cols !== geo.cols) scrollToIndex(visibleRange(geo).first * geo.cols)
    else layout()
  })
  observer.observe(scroller)
  model.on("remove", () => {
    clearTimeout(clickTimer)
    alive = false
    observer.disconnect()
    clearTimeout(requestTimer)
    clearTimeout(reportTimer)
  })
  model.on("after_layout", () => {
    if (model.scroll_to >= 0) {
      scrollToIndex(model.scroll_to)
      model.scroll_to = -1
    } else {
      layout()
    }
  })

  updateToolbar()
  el.appendChild(root)
  onItems()  // the first window came with the document: tiles are filled (and clickable) without a round trip
}
