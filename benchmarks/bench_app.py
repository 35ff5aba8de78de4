"""What a user of the served app waits for, measured in Debian's chromium on a large dataset.

    .venv/bin/python benchmarks/bench_app.py [--samples 1000000] [--runs 3] [--cold-runs 1] [--home DIR]

Builds a dataset of ``--samples`` samples (10 boxes per sample: 5 ground truth, 5 of one model; fields split,
weather, brightness, ...) whose images cycle over 500 real demo JPEGs, once (``--home`` keeps it for the next
invocation), and serves it with ``panel serve apps/browse.py ... --plugins visionlens.ui.routes`` as
``make serve`` does. Every page is opened in a new chromium browser context (an empty HTTP cache, so every image
comes from the server) with a 1500x950 viewport. Times are taken in the page (``performance.now()``) by a poller
that checks the DOM every 10 ms; a phase ends when all its conditions hold and still hold 300 ms later (its time
is when they last became true). A tile is visible when its box intersects the grid's scroll area; a visible image
counts as loaded when ``img.complete && img.naturalWidth > 0`` and its URL is the thumbnail of the tile's sample.

- first thumbnails, cold (``--cold-runs`` server starts, each one sample): a fresh server process with an empty
  thumbnail directory (``VISIONLENS_THUMBNAIL_DIR``) and no session before this one (the server is polled with a
  404 URL, which builds no session and opens no store); the DuckDB file is reused between starts and the OS file
  cache is not dropped. Navigation start -> every visible tile shows the right sample (ids checked against the
  store, no ``.vl-placeholder``) and every visible image is loaded (target < 1.5 s).
- first thumbnails, warm (``--runs``): the same on a new page of the last cold server, in a new browser context:
  the thumbnails are on the server's disk, the browser has nothing cached, the server process has served before.
- jump to the middle row (``--runs``, on the same warm pages, before any filter): the grid's scroll area is set to
  the middle of its range, as dragging the scrollbar there does, in the full unfiltered result. Scroll -> the
  visible tiles cover row ``samples // 2`` and show the right samples, every visible image loaded (target < 1 s).
- filter change (``--runs``, after the jump): ``val`` is typed into the sidebar's ``split`` filter and Enter is
  pressed. Keydown of Enter -> all of: the sidebar count (``.vl-count-n``) shows the new number; every other
  sidebar field shows its counts under the new filter (the options of ``weather``, ``split``, ``tags`` and the
  histograms of the numeric fields equal what the app's own controls compute from the store); the grid is back at
  the top with the first samples of the new result in every visible tile and every visible image loaded (target
  < 300 ms). The server-side query time the app reports (``.vl-query-ms``, the number this used to report) is
  shown beside it.

Only visible tiles count: placeholders in the overscan rows above and below the view are not waited for. Phases are
``--pause`` seconds apart, as a user's would be. Thumbnails are cached by image file and the images cycle over 500
files, so the first warm run's jump and filter render their thumbnails on the server and later runs find them on
disk: the medians are times with thumbnails on disk, the max usually the one that rendered them. The table counts
the thumbnails the server rendered in each phase.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from bench_ingest_query import print_table  # noqa: E402
from browser_helpers import CHROMIUM, CHROMIUM_ARGS, free_port  # noqa: E402
from machine import machine  # noqa: E402

from visionlens.demo import build_demo  # noqa: E402
from visionlens.formats.base import AnnotationRecords, ParsedDataset, ParsedPredictions, SampleRecords  # noqa: E402
from visionlens.store.metadata import MetadataStore  # noqa: E402

LABELS = ["car", "truck", "bus", "person", "bicycle", "dog", "cat", "bird", "traffic_light", "stop_sign"]
DATASET = "large"
VIEWPORT = {"width": 1500, "height": 950}
FILTER_FIELD, FILTER_VALUE = "split", "val"
WINDOW = 2000  # expected sample ids sent to the page around each place the grid shows
POLL_MS = 10
SETTLE_MS = 300
TARGETS = {"first": 1500, "jump": 1000, "filter": 300}

# The in-page poller. Bokeh/Panel render into shadow roots, so lookups walk them.
WATCHER = """
(() => {
  if (window.__vlb) return
  const POLL = %(poll)d, SETTLE = %(settle)d
  const B = window.__vlb = { result: null, watching: null, last: {} }
  function deepAll(sel, root = document, out = []) {
    for (const e of root.querySelectorAll(sel)) out.push(e)
    for (const e of root.querySelectorAll('*')) if (e.shadowRoot) deepAll(sel, e.shadowRoot, out)
    return out
  }
  const roots = {}
  function cachedAll(key, sel, want, keep = () => true) {
    // lookups in the shadow roots where the last full walk found matches: a walk per poll would cost the page
    // a few ms every 10 ms; a full walk again when a root left the page or fewer than `want` matches remain
    const known = roots[key]
    if (known && known.every(r => r === document || r.host.isConnected)) {
      const out = []
      for (const r of known) for (const e of r.querySelectorAll(sel)) if (keep(e)) out.push(e)
      if (out.length >= want) return out
    }
    const found = deepAll(sel).filter(keep)
    roots[key] = [...new Set(found.map(e => e.getRootNode()))]
    return found
  }
  let scroller = null
  function grid() {
    if (!scroller || !scroller.isConnected) scroller = deepAll('.vl-scroller')[0] || null
    return scroller
  }
  function visibleTiles() {
    const sc = grid()
    if (!sc) return null
    const r = sc.getBoundingClientRect()
    const top = Math.max(r.top, 0), bottom = Math.min(r.bottom, innerHeight)
    if (bottom - top < 50) return null
    return [...sc.querySelectorAll('.vl-tile')].filter(t => {
      const b = t.getBoundingClientRect()
      return b.bottom > top + 1 && b.top < bottom - 1 && b.right > r.left + 1 && b.left < r.right - 1
    })
  }
  function imgOk(t) {
    const img = t.querySelector('img')
    if (!img || !img.complete || img.naturalWidth === 0 || !img.currentSrc) return false
    return new URL(img.currentSrc).pathname.split('/').pop() === t.dataset.id  // the thumbnail of this sample
  }
  function tileState(c) {
    const ts = visibleTiles()
    if (!ts || !ts.length) return { tiles: 0, ok: false, images: false }
    let lo = Infinity, hi = -1, placeholders = 0, wrong = 0, loading = 0, broken = 0
    for (const t of ts) {
      const i = +t.dataset.index
      lo = Math.min(lo, i); hi = Math.max(hi, i)
      if (t.classList.contains('vl-placeholder')) { placeholders++; continue }
      const k = i - c.offset
      if (k < 0 || k >= c.ids.length || c.ids[k] !== +t.dataset.id) wrong++
      if (t.classList.contains('vl-broken')) broken++
      if (!imgOk(t)) loading++
    }
    const where = c.cover == null || (lo <= c.cover && c.cover <= hi)
    const ok = where && placeholders === 0 && wrong === 0
    return { tiles: ts.length, lo, hi, placeholders, wrong, loading, broken, ok, images: ok && loading === 0 }
  }
  function sidebarState(fields, want) {
    const values = {}
    const label = g => { const lab = g.querySelector('label'); return lab ? lab.textContent.trim() : null }
    for (const g of cachedAll('groups', '.bk-input-group', fields.length, g => fields.includes(label(g)))) {
      const name = label(g)
      if (name in values) continue
      const items = [...g.querySelectorAll('.choices__item')]
        .filter(i => !i.classList.contains('has-no-choices') && !i.classList.contains('choices__placeholder'))
        .map(i => i.textContent.replace(/Remove item$/, '').trim())
      values[name] = [...new Set(items)].sort()
    }
    const hists = cachedAll('hists', 'svg.vl-hist', want)
      .map(s => [...s.querySelectorAll('rect')].map(r => r.getAttribute('height')).join(',')).sort()
    return { values, hists }
  }
  function shownCount() {
    const el = cachedAll('count', '.vl-count-n', 1)[0]
    return el ? Number(el.textContent.replace(/,/g, '')) : null
  }
  const checks = {
    first_image: c => { const ts = visibleTiles(); return !!ts && ts.some(t => !t.classList.contains('vl-placeholder') && imgOk(t)) },
    tiles: c => { const s = tileState(c); B.last.tiles = s; return s.ok },
    images: c => { const s = tileState(c); B.last.tiles = s; return s.images },
    count: c => { const n = shownCount(); B.last.count = n; return n === c.value },
    sidebar: c => {
      const s = sidebarState(Object.keys(c.values), c.hists.length); B.last.sidebar = s
      const same = (a, b) => JSON.stringify(a) === JSON.stringify(b)
      return same(s.hists, c.hists) && Object.keys(c.values).every(k => same(s.values[k], c.values[k]))
    },
  }
  B.watch = (spec, t0) => {
    B.result = null
    B.last = {}
    const st = { since: {}, polls: 0 }
    B.watching = st
    const tick = () => {
      if (B.watching !== st) return
      const now = performance.now()
      st.polls++
      let all = true
      for (const [name, c] of Object.entries(spec)) {
        let ok = false
        try { ok = checks[c.type](c) } catch (e) { B.last.error = String(e) }
        if (ok) { if (!(name in st.since)) st.since[name] = now }
        else { delete st.since[name]; all = false }
      }
      if (all && now - Math.max(...Object.values(st.since)) >= SETTLE) {
        const times = {}
        for (const [k, v] of Object.entries(st.since)) times[k] = Math.max(0, v - t0)
        B.result = { times, polls: st.polls, tiles: B.last.tiles || null }
        B.watching = null
        return
      }
      setTimeout(tick, POLL)
    }
    tick()
  }
  B.armEnter = spec => {
    B.result = null
    const on = ev => {
      if (ev.key !== 'Enter') return
      window.removeEventListener('keydown', on, true)
      B.watch(spec, performance.now())
    }
    window.addEventListener('keydown', on, true)
  }
  B.jump = spec => {
    const sc = grid()
    const t0 = performance.now()
    sc.scrollTop = (sc.scrollHeight - sc.clientHeight) / 2
    B.watch(spec, t0)
  }
})();
""" % {"poll": POLL_MS, "settle": SETTLE_MS}


# -- the dataset -------------------------------------------------------------------------------------------------


def build(home: Path, n: int) -> None:
    demo = build_demo(home / "demo-images", n=500, seed=1)
    files = sorted(str(p.relative_to(demo.root)) for p in (demo.root / "images").rglob("*.jpg"))
    rng = np.random.default_rng(0)
    samples = SampleRecords(
        filepath=[files[i % len(files)] for i in range(n)],
        width=np.full(n, 640, np.int32),
        height=np.full(n, 480, np.int32),
        split=list(rng.choice(["train", "val"], n, p=[0.8, 0.2])),
        ext_id=[str(i) for i in range(n)],
        missing=np.zeros(n, bool),
        custom={"weather": list(rng.choice(["clear", "rain", "fog"], n)), "brightness": list(rng.random(n).round(3))},
    )

    def boxes(m: int, conf: bool) -> AnnotationRecords:
        wh = rng.uniform(20, 200, (m, 2))
        return AnnotationRecords(
            np.sort(rng.integers(0, n, m)),
            rng.integers(0, len(LABELS), m).astype(np.int32),
            np.column_stack([rng.uniform(0, 400, m), rng.uniform(0, 260, m), wh]),
            confidence=rng.random(m) if conf else None,
        )

    store = MetadataStore(home / "visionlens.duckdb")
    parsed = ParsedDataset("coco", str(demo.root), LABELS, samples, boxes(n * 5, False), [], {})
    store.insert_dataset(DATASET, parsed, {"detector": ParsedPredictions(boxes(n * 5, True), [])})
    store.close()


def ensure_dataset(home: Path, n: int) -> float | None:
    """Build the dataset in ``home`` unless one of ``n`` samples is there; the build's seconds, or None if reused."""
    db = home / "visionlens.duckdb"
    if db.exists():
        store = MetadataStore(db)
        try:
            have = store.count(store.get_dataset(DATASET).id, _filters()) if store.has_dataset(DATASET) else -1
        finally:
            store.close()
        if have == n:
            return None
        db.unlink()
        shutil.rmtree(home / "demo-images", ignore_errors=True)
    t0 = time.perf_counter()
    build(home, n)
    return time.perf_counter() - t0


def _filters(**fields: Any) -> Any:
    from visionlens.query import FieldFilter, Filters

    return Filters(fields=tuple(FieldFilter(field=k, values=(v,)) for k, v in fields.items()))


def expectations(home: Path, n: int) -> dict[str, Any]:
    """What the page must show at each place, read from the store and computed by the app's own sidebar controls."""
    from visionlens.dataset import Dataset
    from visionlens.ui.field_controls import RangeControl, ValuesControl, control_for
    from visionlens.ui.filters_view import compute_counts

    store = MetadataStore(home / "visionlens.duckdb")
    try:
        ds = Dataset(store, store.get_dataset(DATASET))
        ids = ds.sample_ids()
        mid = n // 2
        flt = _filters(**{FILTER_FIELD: FILTER_VALUE})
        fids = ds.sample_ids(flt)
        controls = {}
        for name, info in ds.fields().items():
            if info.level == "sample" and name not in ("id", "filepath"):
                control = control_for(name, info.kind, ds, flt, lambda *_: None)
                if control is not None:
                    controls[name] = control
        values: dict[str, list[str]] = {}
        hists: list[str] = []
        for name, data in compute_counts(ds, controls, flt).items():
            control = controls[name]
            if isinstance(control, ValuesControl):
                if name == FILTER_FIELD:
                    control.widget.value = [FILTER_VALUE]
                control.apply(data)
                opts = control.widget.options
                labels = opts.keys() if isinstance(opts, dict) else map(str, opts)
                values[name] = sorted({html.unescape(label) for label in labels})
            elif isinstance(control, RangeControl):
                control.apply(data)
                svg = control.widget.hist
                if 'class="vl-hist"' in svg:
                    hists.append(",".join(re.findall(r'<rect[^>]*?\bheight="([^"]+)"', svg)))
        lo = max(0, mid - WINDOW // 2)
        return {
            "first": {"offset": 0, "ids": ids[:WINDOW].tolist(), "cover": 0},
            "jump": {"offset": lo, "ids": ids[lo : lo + WINDOW].tolist(), "cover": mid},
            "filter": {
                "count": len(fids),
                "tiles": {"offset": 0, "ids": fids[:WINDOW].tolist(), "cover": 0},
                "sidebar": {"values": values, "hists": sorted(hists)},
            },
            "mid": mid,
        }
    finally:
        store.close()


# -- the server --------------------------------------------------------------------------------------------------


def serve(home: Path, thumbs: Path, port: int, log: Path) -> subprocess.Popen:
    """``panel serve`` as ``make serve`` runs it, on ``home`` with thumbnails in ``thumbs``; back once it listens."""
    env = {**os.environ, "VISIONLENS_HOME": str(home), "VISIONLENS_THUMBNAIL_DIR": str(thumbs)}
    cmd = [
        sys.executable,
        "-m",
        "panel",
        "serve",
        "apps/browse.py",
        "--port",
        str(port),
        "--address",
        "127.0.0.1",
        "--allow-websocket-origin",
        f"127.0.0.1:{port}",
        "--plugins",
        "visionlens.ui.routes",
        "--num-threads",
        "4",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:  # a path nothing serves: the answer builds no session and opens no store
            urllib.request.urlopen(f"http://127.0.0.1:{port}/bench-app-not-a-page", timeout=2)
            return proc
        except urllib.error.HTTPError:
            return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server did not start; its log:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def thumbnail_files(thumbs: Path) -> int:
    return sum(1 for _ in thumbs.rglob("*.jpg")) if thumbs.exists() else 0


# -- the browser -------------------------------------------------------------------------------------------------

PARTS = {
    "first_image": "first image",
    "tiles": "tiles filled",
    "images": "all images",
    "count": "count",
    "sidebar": "sidebar counts",
}


class Page:
    """One page in its own browser context; each phase returns {part: ms}, ``total`` being the phase's end."""

    def __init__(self, browser: Any, url: str, timeout: float, log: Path):
        self.ctx = browser.new_context(viewport=VIEWPORT)
        self.ctx.add_init_script(WATCHER)
        self.page = self.ctx.new_page()
        self.url = url
        self.timeout = timeout
        self.log = log

    def close(self) -> None:
        self.ctx.close()

    def _result(self, what: str) -> dict[str, Any]:
        try:
            self.page.wait_for_function(
                "() => window.__vlb && window.__vlb.result", polling=50, timeout=self.timeout * 1000
            )
        except Exception as e:  # noqa: BLE001 - say what the page showed instead of a bare timeout
            last = self.page.evaluate("() => window.__vlb && window.__vlb.last")
            raise SystemExit(
                f"{what}: not done after {self.timeout:.0f} s; page state: {json.dumps(last)}\n"
                f"server log (end):\n{self.log.read_text(errors='replace')[-3000:]}"
            ) from e
        res = self.page.evaluate("() => window.__vlb.result")
        times: dict[str, Any] = dict(res["times"])
        times["total"] = max(times.values())
        tiles = res.get("tiles") or {}
        times["visible"] = (tiles.get("tiles", 0), tiles.get("lo"), tiles.get("hi"))
        return times

    def open(self, exp: dict[str, Any]) -> dict[str, Any]:
        spec = {
            "first_image": {"type": "first_image"},
            "tiles": {"type": "tiles", **exp},
            "images": {"type": "images", **exp},
        }
        # the poller starts with the document, so its times count from the navigation start
        self.ctx.add_init_script(f"window.__vlb.watch({json.dumps(spec)}, 0)")
        self.page.goto(self.url + "/browse", wait_until="commit")
        return self._result("first thumbnails")

    def jump(self, exp: dict[str, Any]) -> dict[str, Any]:
        spec = {"tiles": {"type": "tiles", **exp}, "images": {"type": "images", **exp}}
        self.page.evaluate("spec => window.__vlb.jump(spec)", spec)
        return self._result("jump to the middle row")

    def filter(self, exp: dict[str, Any]) -> dict[str, Any]:
        spec = {
            "count": {"type": "count", "value": exp["count"]},
            "sidebar": {"type": "sidebar", **exp["sidebar"]},
            "tiles": {"type": "tiles", **exp["tiles"]},
            "images": {"type": "images", **exp["tiles"]},
        }
        self.page.locator(f".bk-input-group:has(label:text-is('{FILTER_FIELD}')) input").first.click()
        self.page.keyboard.type(FILTER_VALUE)
        self.page.evaluate("spec => window.__vlb.armEnter(spec)", spec)
        self.page.keyboard.press("Enter")
        times = self._result("filter change")
        times["server_ms"] = float(self.page.locator(".vl-query-ms").first.inner_text())
        return times


# -- the run -----------------------------------------------------------------------------------------------------


def stats(values: list[float], target: float | None = None) -> str:
    med, top = statistics.median(values), max(values)
    text = f"median {med:.0f} ms, max {top:.0f} ms (n={len(values)})"
    if target is not None:
        verdict = "ok" if top < target else "median ok, max over" if med < target else "OVER"
        text += f"; target < {target:.0f} ms: {verdict}"
    return text


def parts(runs: list[dict[str, Any]], keys: list[str]) -> str:
    return (
        " / ".join(PARTS[k] for k in keys)
        + ": "
        + " / ".join(f"{statistics.median(r[k] for r in runs):.0f}" for k in keys)
        + " ms (medians)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3, help="warm pages; each: first thumbnails, jump, filter change")
    ap.add_argument("--cold-runs", type=int, default=1, help="server starts with an empty thumbnail cache")
    ap.add_argument("--home", type=Path, help="keep the dataset here and reuse it next time (default: a temp dir)")
    ap.add_argument("--pause", type=float, default=1.0, help="seconds a user waits between phases")
    ap.add_argument("--timeout", type=float, default=120, help="seconds a phase may take before the run fails")
    args = ap.parse_args()
    if args.runs < 1 or args.cold_runs < 1:
        ap.error("--runs and --cold-runs must be at least 1")
    print(f"machine: {machine()}", flush=True)
    cold: list[dict[str, Any]] = []
    warm: list[dict[str, Any]] = []
    jumps: list[dict[str, Any]] = []
    filters: list[dict[str, Any]] = []
    rendered: dict[str, list[int]] = {"cold": [], "warm": [], "jump": [], "filter": []}
    with tempfile.TemporaryDirectory(prefix="bench-app-") as tmp:
        home = args.home or Path(tmp) / "home"
        home.mkdir(parents=True, exist_ok=True)
        built = ensure_dataset(home, args.samples)
        dataset = f"built in {built:.0f} s" if built is not None else f"reused from {home}"
        print(f"dataset: {args.samples:,} samples, {dataset}", flush=True)
        exp = expectations(home, args.samples)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                for k in range(args.cold_runs):
                    thumbs, log, port = Path(tmp) / f"thumbs-{k}", Path(tmp) / f"server-{k}.log", free_port()
                    proc = serve(home, thumbs, port, log)
                    url = f"http://127.0.0.1:{port}"
                    try:
                        page = Page(browser, url, args.timeout, log)
                        cold.append(page.open(exp["first"]))
                        page.close()
                        rendered["cold"].append(thumbnail_files(thumbs))
                        print(f"cold start {k + 1}: first thumbnails {cold[-1]['total']:.0f} ms", flush=True)
                        if k < args.cold_runs - 1:
                            continue
                        # the warm pages: on the last cold server, thumbnails of the first rows on its disk
                        for run in range(args.runs):
                            page = Page(browser, url, args.timeout, log)
                            n0 = thumbnail_files(thumbs)
                            warm.append(page.open(exp["first"]))
                            time.sleep(args.pause)
                            n1 = thumbnail_files(thumbs)
                            jumps.append(page.jump(exp["jump"]))
                            time.sleep(args.pause)
                            n2 = thumbnail_files(thumbs)
                            filters.append(page.filter(exp["filter"]))
                            time.sleep(args.pause)
                            n3 = thumbnail_files(thumbs)
                            page.close()
                            for key, n in zip(("warm", "jump", "filter"), (n1 - n0, n2 - n1, n3 - n2), strict=True):
                                rendered[key].append(n)
                            print(
                                f"warm run {run + 1}: first thumbnails {warm[-1]['total']:.0f} ms, "
                                f"jump {jumps[-1]['total']:.0f} ms, filter {filters[-1]['total']:.0f} ms",
                                flush=True,
                            )
                    finally:
                        stop(proc)
            finally:
                browser.close()

    n, f = args.samples, exp["filter"]
    seen = [r["visible"] for r in (warm[0], jumps[0], filters[0])]
    rows = [
        ("first thumbnails, cold server", stats([r["total"] for r in cold], TARGETS["first"])),
        ("  navigation ->", parts(cold, ["first_image", "tiles", "images"])),
        ("first thumbnails, warm", stats([r["total"] for r in warm], TARGETS["first"])),
        ("  navigation ->", parts(warm, ["first_image", "tiles", "images"])),
        (f"jump to row {exp['mid']:,} (full result)", stats([r["total"] for r in jumps], TARGETS["jump"])),
        ("  scroll ->", parts(jumps, ["tiles", "images"])),
        (f"filter {FILTER_FIELD}={FILTER_VALUE}, round trip", stats([r["total"] for r in filters], TARGETS["filter"])),
        ("  Enter ->", parts(filters, ["count", "sidebar", "tiles", "images"])),
        ("  server-side query (.vl-query-ms)", stats([r["server_ms"] for r in filters])),
        (
            "visible tiles: first / jump / filter",
            " / ".join(f"{v[0]} (rows {v[1]:,}-{v[2]:,})" for v in seen)
            + f"; filter result {f['count']:,} samples; {VIEWPORT['width']}x{VIEWPORT['height']} window",
        ),
        (
            "thumbnails rendered by the server",
            "cold pages {}; in each warm run: page {}, jump {}, filter {}".format(
                *("/".join(map(str, rendered[k])) for k in ("cold", "warm", "jump", "filter"))
            ),
        ),
        ("dataset", dataset),
    ]
    print_table(f"app in chromium: {n:,} samples, {n * 10:,} boxes; {machine()}", rows)


if __name__ == "__main__":
    main()
