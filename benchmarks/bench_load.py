"""Many sessions at once on one served app while a long job runs: what each user waits for, p50/p95 per action.

    .venv/bin/python benchmarks/bench_load.py [--samples 100000] [--sessions 20] [--seconds 60] [--home DIR]
                                              [--job embed|evaluate|none] [--cold] [--ws-sessions N]

Builds (or reuses with ``--home``) bench_app's dataset of ``--samples`` samples and serves it as bench_app does
(``panel serve apps/browse.py --num-threads 4 ...``). A thumbnail request through the ``--plugins`` route makes the
process the database's owner, and a long job is started through the HTTP API with the owner record's token
(``--job embed``: builtin embeddings of every image into a fresh vector folder, no projection, one decoding
worker; ``evaluate``: the model against ground truth; the job's progress is read at the end). Unless ``--cold``,
one page is opened and closed first so that the server process has served a session before (its imports and the
store are warm; thumbnails of the first rows are on its disk).

First ``--ws-sessions`` (default: ``--sessions``) websocket clients open sessions at the same moment
(``ws_clients.py``): each asks for a session over Bokeh's protocol, receives its document and fetches and decodes
the thumbnails of its first ``--visible`` tiles. That is the server's part of opening a page, with no browser
rendering on the same cores.

Then ``--sessions`` chromium pages (one browser, a context each: an empty HTTP cache) are opened at the same moment.
Each page's first thumbnails are timed as in bench_app: navigation start -> every visible tile shows the right
sample and every visible image is decoded, still true 300 ms later (one sample per page). Then for ``--seconds``
every session loops over its actions, ``--pause`` seconds apart, as a user's would be:

- filter: type ``val`` into the sidebar's ``split`` filter + Enter, or Backspace to remove it again. Key -> the
  sidebar count shows the new number, the grid is back at the top with the right samples, every visible image
  decoded.
- scroll: the grid's scroll area jumps to a random place of its range. Scroll -> the visible tiles show the right
  samples of the current result (ids checked against the store), every visible image decoded.
- detail: a click on a random visible tile. Click -> the detail view shows that sample's title and its image is
  decoded; then Escape closes it (not timed).

Each page's wait is split by the Navigation/Resource Timing entries: the page's HTML (Bokeh builds the session's
document before it answers, on the event loop every session shares), the last script, the first image, the tiles.
The page pollers check the DOM every 100 ms (bench_app: 10 ms), so 20 pages leave the cores to what they time.
The browsers run on the server's machine: on a small one their own work is most of what each page waits for.

Errors are page errors, console errors, failed requests (aborted image loads excluded: a scroll replaces them),
HTTP answers >= 400, actions that time out, and tracebacks in the server log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import bench_app
import ws_clients
from bench_app import DATASET, FILTER_FIELD, FILTER_VALUE, VIEWPORT, WATCHER, _filters, ensure_dataset, serve, stop
from bench_ingest_query import print_table
from browser_helpers import CHROMIUM, CHROMIUM_ARGS, free_port
from machine import machine

from visionlens.store.metadata import MetadataStore

# 20 pages polling every 10 ms (a walk of every shadow root until the grid is found) would take the 2 cores
# the pages wait for: every 100 ms is still fine against a 5 s target
LOAD_WATCHER = WATCHER.replace(f"POLL = {bench_app.POLL_MS},", "POLL = 100,")
assert LOAD_WATCHER != WATCHER

# ids of the two results the sessions move between, the tile checks of a scroll/filter read them from the page
ARM = """
(() => {
  const B = window.__vlb
  B.spec = (key, cover, extra = {}) => {
    const ids = window.__vlids[key]
    return { ...extra, tiles: { type: 'tiles', offset: 0, ids, cover }, images: { type: 'images', offset: 0, ids, cover } }
  }
  B.armKey = (key, name, count) => {
    B.result = null
    const on = ev => {
      if (ev.key !== name) return
      window.removeEventListener('keydown', on, true)
      B.watch(B.spec(key, 0, { count: { type: 'count', value: count } }), performance.now())
    }
    window.addEventListener('keydown', on, true)
  }
  B.scrollTo = (key, frac) => {
    const sc = document.querySelector('.vl-scroller') || null
    let s = sc
    if (!s) {
      const all = []
      const walk = r => { for (const e of r.querySelectorAll('*')) { if (e.classList.contains('vl-scroller')) all.push(e); if (e.shadowRoot) walk(e.shadowRoot) } }
      walk(document)
      s = all[0]
    }
    const t0 = performance.now()
    s.scrollTop = Math.round(frac * (s.scrollHeight - s.clientHeight))
    B.watch(B.spec(key, null), t0)
  }
})();
"""

DETAIL = """
async ([id, title, before, timeout]) => {
  const t0 = performance.now()
  const deep = (sel, root = document, out = []) => {
    for (const e of root.querySelectorAll(sel)) out.push(e)
    for (const e of root.querySelectorAll('*')) if (e.shadowRoot) deep(sel, e.shadowRoot, out)
    return out
  }
  while (performance.now() - t0 < timeout) {
    const t = deep('.vl-detail-title').find(e => e.offsetParent !== null)
    const img = deep('.vl-detail-img')[0]
    if (t && t.textContent === title && img && img.complete && img.naturalWidth > 0 && img.currentSrc
        && img.currentSrc !== before) return performance.now() - t0
    await new Promise(r => setTimeout(r, 20))
  }
  return null
}
"""


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def summary(values: list[float], target: float | None = None) -> str:
    if not values:
        return "none"
    p50, p95 = statistics.median(values), pct(values, 0.95)
    text = f"p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {max(values):.0f} ms (n={len(values)})"
    if target is not None:
        text += f"; target p95 < {target:.0f} ms: {'ok' if p95 < target else 'OVER'}"
    return text


def results(home: Path) -> dict[str, Any]:
    store = MetadataStore(home / "visionlens.duckdb")
    try:
        from visionlens.dataset import Dataset

        info = store.get_dataset(DATASET)
        ds = Dataset(store, info)
        return {
            "dataset_id": info.id,
            "all": ds.sample_ids().tolist(),
            "val": ds.sample_ids(_filters(**{FILTER_FIELD: FILTER_VALUE})).tolist(),
        }
    finally:
        store.close()


class Session:
    def __init__(self, k: int, browser: Any, url: str, ids: dict[str, Any], timeout: float):
        self.k, self.browser, self.url, self.ids, self.timeout = k, browser, url, ids, timeout
        self.errors: list[str] = []
        self.aborted = 0
        self.times: dict[str, list[float]] = {"filter": [], "scroll": [], "detail": []}
        self.filtered = False
        self.rng = random.Random(k)
        self.detail_src = ""

    async def start(self) -> None:
        self.ctx = await self.browser.new_context(viewport=VIEWPORT)
        await self.ctx.add_init_script(LOAD_WATCHER)
        await self.ctx.add_init_script(ARM)
        first = {"offset": 0, "ids": self.ids["all"][: bench_app.WINDOW], "cover": 0}
        spec = {
            "first_image": {"type": "first_image"},
            "tiles": {"type": "tiles", **first},
            "images": {"type": "images", **first},
        }
        await self.ctx.add_init_script(f"window.__vlb.watch({json.dumps(spec)}, 0)")
        self.page = await self.ctx.new_page()
        p = self.page
        p.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        p.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text[:200]}"))
        p.on("requestfailed", self._failed)
        p.on("response", lambda r: r.status >= 400 and self.errors.append(f"HTTP {r.status} {r.url[:120]}"))

    def _failed(self, req: Any) -> None:
        if "ERR_ABORTED" in (req.failure or "") and req.resource_type == "image":
            self.aborted += 1
        else:
            self.errors.append(f"requestfailed: {req.url[:120]} {req.failure}")

    async def result(self, what: str) -> float | None:
        try:
            await self.page.wait_for_function(
                "() => window.__vlb && window.__vlb.result", polling=100, timeout=self.timeout * 1000
            )
        except Exception:  # noqa: BLE001 - a session that waits too long is an error, the others go on
            last = await self.page.evaluate("() => window.__vlb && window.__vlb.last")
            self.errors.append(f"{what}: not done after {self.timeout:.0f} s; {json.dumps(last)[:300]}")
            return None
        res = await self.page.evaluate("() => window.__vlb.result")
        if what == "first thumbnails":  # where the wait went: the page's HTML, its scripts, the session's first tile
            self.parts = await self.page.evaluate(
                """() => {
                  const nav = performance.getEntriesByType('navigation')[0]
                  const js = performance.getEntriesByType('resource').filter(e => e.initiatorType === 'script')
                  return { html: nav ? nav.responseEnd : null,
                           scripts: js.length ? Math.max(...js.map(e => e.responseEnd)) : null }
                }"""
            )
            self.parts["first_image"] = res["times"].get("first_image")
            self.parts["tiles"] = res["times"].get("tiles")
        return max(res["times"].values())

    async def open(self) -> float | None:
        await self.page.goto(self.url + "/browse", wait_until="commit", timeout=self.timeout * 1000)
        await self.page.evaluate("ids => { window.__vlids = ids }", {"all": self.ids["all"], "val": self.ids["val"]})
        return await self.result("first thumbnails")

    async def filter(self) -> float | None:
        if not self.filtered:
            await self.page.locator(f".bk-input-group:has(label:text-is('{FILTER_FIELD}')) input").first.click()
            await self.page.keyboard.type(FILTER_VALUE)
            await self.page.evaluate("n => window.__vlb.armKey('val', 'Enter', n)", len(self.ids["val"]))
            await self.page.keyboard.press("Enter")
        else:
            await self.page.locator(f".bk-input-group:has(label:text-is('{FILTER_FIELD}')) input").first.click()
            await self.page.evaluate("n => window.__vlb.armKey('all', 'Backspace', n)", len(self.ids["all"]))
            await self.page.keyboard.press("Backspace")
        self.filtered = not self.filtered
        t = await self.result("filter")
        await self.page.keyboard.press("Escape")  # close the dropdown
        return t

    async def scroll(self) -> float | None:
        key = "val" if self.filtered else "all"
        await self.page.evaluate("([k, f]) => window.__vlb.scrollTo(k, f)", [key, self.rng.random()])
        return await self.result("scroll")

    async def detail(self) -> float | None:
        tiles = self.page.locator(".vl-tile[data-id]:not(.vl-placeholder)")
        n = await tiles.count()
        if not n:
            self.errors.append("detail: no tile to click")
            return None
        tile = tiles.nth(self.rng.randrange(min(n, 12)))
        title = await tile.locator(".vl-caption").inner_text()
        t0 = time.perf_counter()
        await tile.click()
        ms = await self.page.evaluate(DETAIL, [0, title, self.detail_src, self.timeout * 1000])
        if ms is None:
            self.errors.append(f"detail: {title!r} not shown after {self.timeout:.0f} s")
            await self.page.keyboard.press("Escape")
            return None
        self.detail_src = await self.page.evaluate(
            "() => { const f = (r) => { const i = r.querySelector('.vl-detail-img'); if (i) return i;"
            " for (const e of r.querySelectorAll('*')) if (e.shadowRoot) { const x = f(e.shadowRoot); if (x) return x }"
            " return null }; const i = f(document); return i ? i.currentSrc : '' }"
        )
        await self.page.keyboard.press("Escape")
        return (time.perf_counter() - t0) * 1000  # click (including Playwright's dispatch) -> image decoded

    async def loop(self, until: float, pause: float) -> None:
        actions = ["filter", "scroll", "detail"]
        i = self.k % len(actions)
        await asyncio.sleep(self.rng.random() * pause)
        while time.monotonic() < until:
            name = actions[i % len(actions)]
            i += 1
            try:
                ms = await getattr(self, name)()
            except Exception as e:  # noqa: BLE001
                self.errors.append(f"{name}: {type(e).__name__}: {str(e)[:200]}")
                ms = None
            if ms is not None:
                self.times[name].append(ms)
            await asyncio.sleep(pause)

    async def close(self) -> None:
        await self.ctx.close()


def api(owner: dict[str, Any], method: str, path: str, body: Any = None) -> dict[str, Any]:
    req = urllib.request.Request(
        owner["url"].rstrip("/") + "/vl/api/v1" + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {owner['token']}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def start_job(kind: str, home: Path, url: str, dataset_id: int, last: int) -> tuple[dict[str, Any], str]:
    # an image request through the --plugins route: the server becomes the database's owner and writes its record
    urllib.request.urlopen(f"{url}/vl/thumb/{dataset_id}/{last}", timeout=60).read()
    rec = home / "visionlens.duckdb.owner.json"
    deadline = time.monotonic() + 30
    while not rec.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    owner = json.loads(rec.read_text())
    if kind == "embed":
        body = {"embedder": "builtin", "project": "none", "workers": 1, "batch_size": 64}
    else:
        body = {"model": "detector"}
    job = api(owner, "POST", f"/datasets/{DATASET}/{kind}", body)["job"]
    return owner, job["id"]


def job_state(owner: dict[str, Any], job_id: str) -> str:
    job = api(owner, "GET", f"/jobs/{job_id}")["job"]
    steps = ", ".join(f"{k} {v['done']}/{v['total']}" for k, v in job["steps"].items())
    took = f", {job['finished'] - job['started']:.0f} s" if job.get("finished") and job.get("started") else ""
    return (
        f"{job['kind']} {job['state']}{took}"
        + (f" ({steps})" if steps else "")
        + (f" error: {job['error']}" if job.get("error") else "")
    )


async def run(args: argparse.Namespace, url: str, ids: dict[str, Any]) -> list[Session]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            if not args.cold:  # one session before: the process's imports, the store and the first thumbnails warm
                s = Session(-1, browser, url, ids, args.timeout)
                await s.start()
                t = await s.open()
                # closed once the whole page is there (the controls and the sidebar come after the thumbnails, in
                # spare time): a page closed while a part of it is being written makes Panel log the socket's
                # WebSocketClosedError as a task exception (holoviz/panel#3341), which would count as an error here
                await s.page.locator(".vl-browse-toolbar").first.wait_for(timeout=args.timeout * 1000)
                await s.page.locator(".vl-sidebar-loading").wait_for(state="detached", timeout=args.timeout * 1000)
                await s.close()
                print(f"warm-up page: first thumbnails {t:.0f} ms", flush=True)
                await asyncio.sleep(1)
            if args.ws_sessions:
                opened = await ws_clients.open_many(url, args.ws_sessions, visible=args.visible, timeout=args.timeout)
                args.ws_results = opened
                done = [o.thumbnails_ms for o in opened if o.thumbnails_ms is not None]
                print(
                    f"{len(done)}/{len(opened)} websocket sessions open: first thumbnails {summary(done)}", flush=True
                )
                await asyncio.sleep(2)
            sessions = [Session(k, browser, url, ids, args.timeout) for k in range(args.sessions)]
            await asyncio.gather(*(s.start() for s in sessions))
            firsts = await asyncio.gather(*(s.open() for s in sessions))
            for s, t in zip(sessions, firsts, strict=True):
                s.first = t
            ok = [t for t in firsts if t is not None]
            print(f"{len(ok)}/{len(sessions)} sessions open: first thumbnails {summary(ok)}", flush=True)
            until = time.monotonic() + args.seconds
            await asyncio.gather(*(s.loop(until, args.pause) for s in sessions))
            for s in sessions:
                await s.close()
            return sessions
        finally:
            await browser.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60, help="how long the sessions loop over their actions")
    ap.add_argument("--pause", type=float, default=1.0, help="seconds a user waits between actions")
    ap.add_argument("--job", choices=["embed", "evaluate", "none"], default="embed")
    ap.add_argument("--cold", action="store_true", help="no page before the sessions open (thumbnails rendered too)")
    ap.add_argument("--home", type=Path, help="keep the dataset here and reuse it next time (default: a temp dir)")
    ap.add_argument("--timeout", type=float, default=120, help="seconds one action may take before it is an error")
    ap.add_argument(
        "--ws-sessions",
        type=int,
        default=None,
        help="websocket clients opened at once before the pages (default: --sessions; 0: none); see ws_clients.py",
    )
    ap.add_argument("--visible", type=int, default=24, help="tiles a websocket client fetches thumbnails of")
    args = ap.parse_args()
    args.ws_sessions = args.sessions if args.ws_sessions is None else args.ws_sessions
    args.ws_results = []
    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        home = args.home or Path(tmp) / "home"
        home.mkdir(parents=True, exist_ok=True)
        built = ensure_dataset(home, args.samples)
        dataset = f"built in {built:.0f} s" if built is not None else f"reused from {home}"
        print(f"dataset: {args.samples:,} samples, {dataset}", flush=True)
        ids = results(home)
        # the job's vectors go to a fresh folder: with --home reused, an embed would find every image done already
        os.environ["VISIONLENS_QDRANT_PATH"] = str(Path(tmp) / "qdrant")
        thumbs, log, port = Path(tmp) / "thumbs", Path(tmp) / "server.log", free_port()
        proc = serve(home, thumbs, port, log)
        url = f"http://127.0.0.1:{port}"
        try:
            owner, job_id = (None, None)
            if args.job != "none":
                owner, job_id = start_job(args.job, home, url, ids["dataset_id"], ids["all"][-1])
                print(f"long job started: {job_state(owner, job_id)}", flush=True)
            load0 = os.getloadavg()
            t0 = time.perf_counter()
            sessions = asyncio.run(run(args, url, ids))
            wall = time.perf_counter() - t0
            load1 = os.getloadavg()
            job = job_state(owner, job_id) if owner else "none"
            server_log = log.read_text(errors="replace")  # before the stop: a job cut short there is no error
            if owner and "running" in job:
                api(owner, "DELETE", f"/jobs/{job_id}")
        finally:
            stop(proc)
    tracebacks = server_log.count("Traceback")
    firsts = [s.first for s in sessions if s.first is not None]
    errors = [e for s in sessions for e in s.errors]
    # a page of a session opened among many asks cdn.holoviz.org for Panel's stylesheets: request + console error
    offsite = sum(1 for e in errors if "cdn.holoviz.org" in e or "ERR_NAME_NOT_RESOLVED" in e)
    rows = []
    if args.ws_sessions:
        opened = args.ws_results
        done = [o.thumbnails_ms for o in opened if o.thumbnails_ms is not None]
        failed = [o.error for o in opened if o.error]
        rows += [
            (
                f"first thumbnails, {args.ws_sessions} websocket clients at once ({args.visible} tiles)",
                summary(done, 5000) + (f"; {len(failed)} failed: {failed[0]}" if failed else ""),
            ),
            ("  start -> session built (ACK)", summary([o.parts["session"] for o in opened if "session" in o.parts])),
            ("  start -> document received", summary([o.document_ms for o in opened if o.document_ms is not None])),
        ]
    rows += [
        (
            f"first thumbnails, {args.sessions} chromium pages opened at once",
            summary(firsts, 5000) + (f"; {args.sessions - len(firsts)} never" if len(firsts) < args.sessions else ""),
        ),
    ]
    for key, label in (
        ("html", "page HTML"),
        ("scripts", "scripts loaded"),
        ("first_image", "first image"),
        ("tiles", "tiles filled"),
    ):
        got = [s.parts[key] for s in sessions if getattr(s, "parts", None) and s.parts.get(key) is not None]
        rows.append((f"  navigation -> {label}", summary(got)))
    for name in ("filter", "scroll", "detail"):
        rows.append(
            (
                f"{name} ({'split=val / back' if name == 'filter' else name})",
                summary([t for s in sessions for t in s.times[name]]),
            )
        )
    rows += [
        (
            "errors",
            f"{len(errors)} in pages ({offsite} of them stylesheets asked of Panel's CDN, unreachable here), "
            f"{tracebacks} tracebacks in the server log; "
            f"{sum(s.aborted for s in sessions)} image loads aborted by scrolling (not errors)",
        ),
        ("long job", job),
        ("load average (1 min) before / after", f"{load0[0]:.2f} / {load1[0]:.2f}"),
        (
            "run",
            f"{wall:.0f} s: open + {args.seconds:.0f} s of actions, {args.pause:.1f} s apart; "
            f"{'cold server' if args.cold else 'one page served before'}",
        ),
        ("dataset", dataset),
    ]
    print_table(f"load: {args.sessions} sessions, {args.samples:,} samples; {machine()}", rows)
    shown = [e for e in errors if "cdn.holoviz.org" not in e and "ERR_NAME_NOT_RESOLVED" not in e]
    shown += [e for e in errors if e not in shown][:4]
    for e in shown[:15]:
        print("  error:", e)
    if tracebacks:
        i = server_log.find("Traceback")
        start = server_log.rfind("\n", 0, max(0, i - 1)) + 1  # the line that says what failed, then its traceback
        print(server_log[start : i + 2500])


if __name__ == "__main__":
    main()
