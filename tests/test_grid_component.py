"""Label colours and the virtualized ImageGrid component (Python side, then in chromium)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from PIL import Image

from visionlens.thumbnails import ThumbnailCache
from visionlens.ui.colors import PALETTE, label_color
from visionlens.ui.grid_component import ImageGrid, window_json, window_rows

try:  # tests/ is on sys.path (pytest's default rootdir import mode) or is a package
    from browser_helpers import ARTIFACTS, chromium, serve_panel, wait_until
except ImportError:  # pragma: no cover
    from tests.browser_helpers import ARTIFACTS, chromium, serve_panel, wait_until


def test_label_color_is_a_stable_palette_colour() -> None:
    labels = ["person", "car", "dog", "traffic light", "ünïcode", ""]
    colors = [label_color(name) for name in labels]
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in colors)
    assert all(c in PALETTE for c in colors)
    assert len(set(PALETTE)) == len(PALETTE) >= 24
    # Different labels spread over the palette instead of collapsing on a few colours.
    assert len({label_color(f"class_{i}") for i in range(200)}) > len(PALETTE) // 2

    # Same colours in a fresh interpreter with a different str hash seed.
    code = "from visionlens.ui.colors import label_color;print(' '.join(label_color(n) for n in %r))" % labels
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == colors


def test_palette_is_readable_on_dark_and_light() -> None:
    def luminance(c: str) -> float:
        r, g, b = (
            (v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4)
            for v in (int(c[i : i + 2], 16) / 255 for i in (1, 3, 5))
        )
        return 0.2126 * r + 0.7152 * g + 0.0722 * b  # WCAG relative luminance

    # neither near-black nor near-white: contrast >= 1.5 against both black and white
    assert all((luminance(c) + 0.05) / 0.05 >= 1.5 and 1.05 / (luminance(c) + 0.05) >= 1.5 for c in PALETTE)


# ---- ImageGrid, Python side (no browser) --------------------------------------------------------

ID_BASE = 10_000_000  # sample ids differ from row indices, so the tests can tell them apart


def synthetic_item(index: int, prefix: str = "img") -> dict[str, Any]:
    portrait = (index % 8) % 3 == 0  # matches the source image the thumbnail route serves
    w, h = (480, 640) if portrait else (640, 480)
    return {
        "id": ID_BASE + index,
        "thumb": f"/thumb/{index % 8}.jpg",
        "width": w,
        "height": h,
        "title": f"{prefix}_{index:07d}",
        "badges": ["val"] if index % 2 else [{"text": "train", "color": "#2f6f3e"}],
        "boxes": [
            {
                "x": 60,
                "y": 80,
                "w": 260,
                "h": 200,
                "label": "person",
                "color": "#ff7ed1",
                "kind": "gt",
                "score": None,
                "status": "fn" if index % 4 == 0 else None,
            },
            {
                "x": 80,
                "y": 100,
                "w": 240,
                "h": 190,
                "label": "person",
                "color": "#ff7ed1",
                "kind": "pred",
                "score": 0.87,
                "status": "tp",
            },
            {
                "x": 300,
                "y": 300,
                "w": 120,
                "h": 90,
                "label": "car",
                "color": "#00acc6",
                "kind": "pred",
                "score": 0.31,
                "status": "fp",
            },
        ],
    }


class RecordingProvider:
    """1,000,000 synthetic items; remembers every (offset, limit) it was asked for."""

    def __init__(self, prefix: str = "img") -> None:
        self.prefix = prefix
        self.calls: list[tuple[int, int]] = []
        self.lock = threading.Lock()

    def __call__(self, offset: int, limit: int) -> list[dict[str, Any]]:
        with self.lock:
            self.calls.append((offset, limit))
        return [synthetic_item(i, self.prefix) for i in range(offset, offset + limit)]


def test_request_is_answered_with_one_window() -> None:
    provider = RecordingProvider()
    grid = ImageGrid(provider=provider, total=1_000_000, max_window=100)
    grid.request = {"generation": 0, "offset": 500_000, "limit": 5000, "seq": 1}
    wait_until(lambda: grid.items)
    assert provider.calls == [(500_000, 100)]  # clamped to max_window
    assert grid.items["offset"] == 500_000 and grid.items["seq"] == 1
    assert [it["id"] for it in window_rows(grid.items)] == [ID_BASE + i for i in range(500_000, 500_100)]

    grid.request = {"generation": 0, "offset": 999_998, "limit": 50, "seq": 2}
    wait_until(lambda: grid.items["seq"] == 2)
    assert provider.calls[-1] == (999_998, 2)  # clamped to the end of the result


def test_stale_and_superseded_requests_are_dropped() -> None:
    release = threading.Event()
    entered = threading.Event()
    calls: list[tuple[int, int]] = []

    def slow(offset: int, limit: int) -> list[dict[str, Any]]:
        calls.append((offset, limit))
        entered.set()
        release.wait(10)
        return [{"id": i} for i in range(offset, offset + limit)]

    single = ThreadPoolExecutor(max_workers=1)  # one busy worker makes the queueing deterministic
    grid = ImageGrid(provider=slow, total=1000, executor=single)
    grid.request = {"generation": 0, "offset": 0, "limit": 10, "seq": 1}
    assert entered.wait(10)
    grid.show_result(total=500)  # the result set changes while the provider runs
    release.set()
    grid._last_future.result(10)
    assert grid.items == {}  # the generation-0 answer was dropped

    # A request still carrying the old generation is not even sent to the provider.
    grid.request = {"generation": 0, "offset": 0, "limit": 10, "seq": 2}
    assert calls == [(0, 10)]

    # Of a burst of requests queued behind a busy worker, only the newest reaches the provider.
    release.clear()
    entered.clear()
    grid.request = {"generation": 1, "offset": 0, "limit": 10, "seq": 3}
    assert entered.wait(10)
    grid.request = {"generation": 1, "offset": 400, "limit": 10, "seq": 4}
    grid.request = {"generation": 1, "offset": 450, "limit": 10, "seq": 5}
    release.set()
    grid._last_future.result(10)
    assert calls == [(0, 10), (0, 10), (450, 10)]
    assert grid.items["seq"] == 5 and window_rows(grid.items)[0]["id"] == 450


def test_provider_errors_do_not_break_the_grid(caplog: pytest.LogCaptureFixture) -> None:
    def broken(offset: int, limit: int) -> list[dict[str, Any]]:
        raise RuntimeError("database went away")

    grid = ImageGrid(provider=broken, total=10)
    grid.request = {"generation": 0, "offset": 0, "limit": 10, "seq": 1}
    grid._last_future.result(10)
    assert grid.items == {}
    assert "database went away" in caplog.text


def test_click_messages_set_clicked_even_when_repeated() -> None:
    grid = ImageGrid(total=10)
    seen: list[int] = []
    grid.param.watch(lambda e: seen.append(e.new), "clicked")
    grid._handle_msg({"type": "click", "id": 42, "index": 3})
    grid._handle_msg({"type": "click", "id": 42, "index": 3})
    grid._handle_msg({"type": "other"})
    assert grid.clicked == 42 and seen == [42, 42]


# ---- ImageGrid in chromium ----------------------------------------------------------------------

TOTAL = 1_000_000


def make_sources(folder: Any) -> list[str]:
    """Eight real JPEGs (landscape and portrait) that the thumbnail route serves for every item."""
    colors = [
        (70, 110, 160),
        (150, 90, 60),
        (60, 130, 90),
        (120, 120, 130),
        (170, 150, 80),
        (90, 70, 140),
        (40, 60, 70),
        (200, 200, 190),
    ]
    uris = []
    for k, c in enumerate(colors):
        w, h = (480, 640) if k % 3 == 0 else (640, 480)
        im = Image.new("RGB", (w, h), c)
        im.paste(tuple(min(255, v + 60) for v in c), (w // 4, h // 4, w // 2, h // 2))
        path = folder / f"src{k}.jpg"
        im.save(path, "JPEG")
        uris.append(str(path))
    return uris


@pytest.fixture(scope="module")
def grid_app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import panel as pn
    import tornado.web

    folder = tmp_path_factory.mktemp("grid")
    uris = make_sources(folder)
    thumbs = ThumbnailCache(folder / "cache", size=256)
    thumb_requests: list[int] = []

    class ThumbHandler(tornado.web.RequestHandler):
        def get(self, key: str) -> None:
            thumb_requests.append(int(key))
            res = thumbs.get(uris[int(key) % len(uris)], int(key))
            self.set_header("Content-Type", "image/jpeg")
            self.write(res.data)

    state: dict[str, Any] = {"provider": RecordingProvider(), "grids": [], "thumb_requests": thumb_requests}

    def app() -> Any:
        grid = ImageGrid(
            provider=state["provider"], total=TOTAL, tile_size=180, height=640, sizing_mode="stretch_width"
        )
        state["grids"].append(grid)
        return pn.Column(grid, sizing_mode="stretch_width")

    with serve_panel(app, extra_patterns=[(r"/thumb/(\d+)\.jpg", ThumbHandler)]) as url:
        state["url"] = url
        yield state


@pytest.fixture(scope="module")
def grid_browser(grid_app: Any) -> Any:
    with chromium() as b:
        yield b


@pytest.fixture
def grid_page(grid_app: Any, grid_browser: Any) -> Any:
    """A fresh session: (page, its ImageGrid, the shared app state). Records page errors."""
    n_before = len(grid_app["grids"])
    grid_app["provider"].calls.clear()
    page = grid_browser.new_page(viewport={"width": 1200, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(grid_app["url"])
    grid = wait_until(lambda: len(grid_app["grids"]) > n_before and grid_app["grids"][-1])
    try:
        page.locator(".vl-tile[data-id]").first.wait_for(timeout=20_000)
    except Exception:
        # Python-side state only: if the page hung, asking it would hang too
        print("no tiles; provider calls", grid_app["provider"].calls, "request", grid.request, "errors", errors)
        raise
    # Track the largest number of tiles the DOM ever holds during the test.
    page.locator(".vl-spacer").evaluate(
        """sp => {
            window.__maxTiles = sp.childElementCount
            new MutationObserver(() => {
                window.__maxTiles = Math.max(window.__maxTiles, sp.childElementCount)
            }).observe(sp, { childList: true })
        }"""
    )
    yield page, grid, grid_app
    try:
        assert not errors, errors
        assert page.evaluate("window.__maxTiles") < 200
    finally:
        page.close()


def tiles(page: Any) -> list[dict[str, Any]]:
    """Tiles inside the scroll viewport, top-left first."""
    return page.locator(".vl-scroller").evaluate(
        """sc => {
            const box = sc.getBoundingClientRect()
            return [...sc.querySelectorAll('.vl-tile')].map(t => {
                const r = t.getBoundingClientRect()
                return { index: Number(t.dataset.index), id: t.dataset.id === undefined ? null : Number(t.dataset.id),
                         title: t.querySelector('.vl-caption').textContent, top: r.top, left: r.left,
                         visible: r.bottom > box.top && r.top < box.bottom, selected: t.classList.contains('vl-selected') }
            }).filter(t => t.visible).sort((a, b) => a.index - b.index)
        }"""
    )


def loaded_tiles(page: Any) -> list[dict[str, Any]]:
    return wait_until(lambda: (ts := tiles(page)) and all(t["id"] is not None for t in ts) and ts)


@pytest.mark.browser
def test_tiles_show_thumbnails_and_boxes(grid_page: Any) -> None:
    page, grid, app = grid_page
    ts = loaded_tiles(page)
    assert ts[0]["index"] == 0 and ts[0]["id"] == ID_BASE and ts[0]["title"] == "img_0000000"
    assert all(t["id"] == ID_BASE + t["index"] and t["title"] == f"img_{t['index']:07d}" for t in ts)
    assert 6 <= len(ts) < 60
    assert page.locator(".vl-count").text_content() == "1,000,000 items"

    # thumbnails come through the route and decode
    wait_until(lambda: page.locator('.vl-tile[data-index="0"] img').evaluate("i => i.complete && i.naturalWidth") > 0)
    assert app["thumb_requests"]
    assert page.locator('.vl-tile[data-index="0"] img').get_attribute("loading") == "lazy"

    tile = page.locator('.vl-tile[data-index="1"]')
    gt = tile.locator(".vl-gt rect.vl-stroke")
    preds = tile.locator(".vl-pred rect.vl-stroke")
    assert gt.count() == 1 and preds.count() == 2
    assert gt.get_attribute("stroke-dasharray") == "none"
    assert all(preds.nth(k).get_attribute("stroke-dasharray") not in (None, "none", "") for k in range(2))
    assert preds.first.get_attribute("stroke") == "#ff7ed1"
    labels = tile.locator(".vl-pred text").all_text_contents()
    assert labels == ["person 0.87 TP", "car 0.31 FP"]
    # the SVG uses the original pixel space, letterboxed like the image (object-fit: contain)
    svg = tile.locator("svg.vl-boxes")
    assert svg.get_attribute("viewBox") == "0 0 640 480"
    frame = tile.locator(".vl-frame").bounding_box()
    rect = gt.bounding_box()
    scale = frame["width"] / 640
    assert abs(rect["x"] - (frame["x"] + 60 * scale)) < 3
    assert abs(rect["y"] - (frame["y"] + (frame["height"] - 480 * scale) / 2 + 80 * scale)) < 3
    assert abs(rect["width"] - 260 * scale) < 4

    # only small windows were asked for
    calls = app["provider"].calls
    assert calls and all(limit <= 120 for _, limit in calls)


@pytest.mark.browser
def test_scrolling_to_the_middle_shows_the_middle(grid_page: Any) -> None:
    page, grid, app = grid_page
    loaded_tiles(page)
    scroller = page.locator(".vl-scroller")
    heights = scroller.evaluate("sc => [sc.scrollHeight, sc.clientHeight]")
    assert heights[0] <= 8_000_100  # scaled below the browsers' element height caps

    # drag-like: many intermediate positions, then the middle of the scrollbar
    for frac in [0.05, 0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.48, 0.5]:
        scroller.evaluate("(sc, f) => { sc.scrollTop = (sc.scrollHeight - sc.clientHeight) * f }", frac)
        page.wait_for_timeout(30)
    ts = loaded_tiles(page)
    middle = sum(t["index"] for t in ts) / len(ts)
    assert abs(middle - TOTAL / 2) < 30, middle
    assert all(t["id"] == ID_BASE + t["index"] and t["title"] == f"img_{t['index']:07d}" for t in ts)
    # the visible tiles sit in a proper grid (no gaps from the scaled scroll offset)
    cols = len({t["left"] for t in ts})
    rows = sorted({round(t["top"]) for t in ts})
    assert cols >= 4 and len(ts) == cols * len(rows)

    calls = list(app["provider"].calls)
    assert all(limit <= 120 for _, limit in calls)
    assert sum(limit for _, limit in calls) < 1500  # windows, never the whole result
    assert any(abs(off - TOTAL // 2) < 200 for off, _ in calls)
    wait_until(lambda: abs(grid.first_visible - ts[0]["index"]) < 20)

    # the wheel moves 1:1 even though the scrollbar is scaled: 500 px is about two rows, not ten
    page.mouse.move(600, 400)
    page.mouse.wheel(0, 500)
    ts2 = wait_until(lambda: (t2 := loaded_tiles(page))[0]["index"] > ts[0]["index"] and t2)
    row_h = rows[1] - rows[0]
    moved_rows = (ts2[0]["index"] - ts[0]["index"]) // cols
    assert 500 / row_h - 1 <= moved_rows <= 500 / row_h + 1
    assert [t["index"] for t in ts2] == list(range(ts2[0]["index"], ts2[0]["index"] + len(ts2)))


@pytest.mark.browser
def test_python_drives_the_grid(grid_page: Any) -> None:
    page, grid, app = grid_page
    loaded_tiles(page)

    grid.scroll_to = 123_456
    wait_until(lambda: grid.scroll_to == -1)  # the browser acknowledges the jump
    ts = loaded_tiles(page)
    assert ts[0]["index"] <= 123_456 < ts[0]["index"] + 12
    assert 123_456 in {t["index"] for t in ts}

    old_calls = len(app["provider"].calls)
    grid.provider = RecordingProvider("fresh")
    grid.show_result(total=50, scroll_to_top=True)
    wait_until(lambda: tiles(page) and all(t["title"].startswith("fresh_") for t in tiles(page)))
    assert page.locator(".vl-count").text_content() == "50 items"
    assert page.locator(".vl-tile").count() <= 50
    assert grid.provider.calls and all(off < 50 for off, _ in grid.provider.calls)
    assert len(app["provider"].calls) == old_calls  # the old provider is no longer asked

    cols_before = len({t["left"] for t in tiles(page)})
    grid.tile_size = 100
    wait_until(lambda: len({t["left"] for t in tiles(page)}) > cols_before)
    page.locator(".vl-slider").evaluate("s => { s.value = '240'; s.dispatchEvent(new Event('input')) }")
    wait_until(lambda: grid.tile_size == 240)


@pytest.mark.browser
def test_clicks_and_selection(grid_page: Any) -> None:
    page, grid, app = grid_page
    loaded_tiles(page)
    page.locator('.vl-tile[data-index="7"] .vl-frame').click()
    wait_until(lambda: grid.clicked == ID_BASE + 7)
    assert grid.selected == []

    page.locator('.vl-tile[data-index="8"] .vl-frame').click(modifiers=["Shift"])
    page.locator('.vl-tile[data-index="10"] .vl-frame').click(modifiers=["Shift"])
    page.locator('.vl-tile[data-index="3"] .vl-frame').click(modifiers=["Control"])
    wait_until(lambda: grid.selected == [ID_BASE + 8, ID_BASE + 10, ID_BASE + 3])
    page.locator('.vl-tile[data-index="10"] .vl-frame').click(modifiers=["Shift"])
    wait_until(lambda: grid.selected == [ID_BASE + 8, ID_BASE + 3])
    assert grid.clicked == ID_BASE + 7  # modifier clicks do not "open" a sample
    assert [t["index"] for t in tiles(page) if t["selected"]] == [3, 8]
    assert page.locator(".vl-selinfo").text_content() == "2 selected"

    grid.selected = [ID_BASE + 1]  # Python can set the selection too
    wait_until(lambda: [t["index"] for t in tiles(page) if t["selected"]] == [1])

    # while scrolled to the middle, select something for the screenshot
    grid.scroll_to = TOTAL // 2
    wait_until(lambda: grid.scroll_to == -1)
    ts = loaded_tiles(page)
    cols = len({t["left"] for t in ts})
    pick, show = ts[cols + 1], ts[cols + 4]  # second row: fully inside the viewport
    page.locator(f'.vl-tile[data-index="{pick["index"]}"] .vl-frame').click(modifiers=["Shift"])
    page.locator(f'.vl-tile[data-index="{show["index"]}"] .vl-frame').click()
    wait_until(lambda: grid.clicked == show["id"])
    assert grid.selected == [ID_BASE + 1, pick["id"]]
    page.wait_for_timeout(300)  # let the thumbnails fade in
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "grid.png"))


def test_a_resent_click_is_taken_once():
    """The browser sends a click again until it sees ``click_seq`` reach it (a click made while the page's
    connection comes up can be dropped): copies of a click already taken are ignored, a new click is not."""
    from visionlens.ui.grid_component import ImageGrid

    grid = ImageGrid()
    seen: list[int] = []
    grid.param.watch(lambda e: seen.append(e.new), "clicked")
    grid._handle_msg({"type": "click", "id": 7, "seq": 1})
    grid._handle_msg({"type": "click", "id": 7, "seq": 1})  # the same click, re-sent
    assert seen == [7] and grid.click_seq == 1
    grid._handle_msg({"type": "click", "id": 7, "seq": 2})  # the same tile clicked again: a new click
    grid._handle_msg({"type": "click", "id": 9, "seq": 3})
    grid._handle_msg({"type": "click", "id": 4, "seq": 2})  # a late copy of an older click
    assert seen == [7, 7, 9] and grid.click_seq == 3


def test_a_window_travels_as_json_text_and_non_finite_numbers_as_null():
    """The browser parses a window with JSON.parse, which refuses NaN: such a value (a score never computed) goes
    as null, and the rest of the window as it was."""
    rows = [{"id": 1, "boxes": [{"score": float("nan"), "x": 2.5}], "badges": ["val"]}, {"id": 2, "w": float("inf")}]
    text = window_json(rows)
    assert isinstance(text, str) and "NaN" not in text and "Infinity" not in text
    assert window_rows({"items": text}) == [
        {"id": 1, "boxes": [{"score": None, "x": 2.5}], "badges": ["val"]},
        {"id": 2, "w": None},
    ]
    assert window_rows({"items": window_json(rows[:1][:0])}) == [] and window_rows({}) == []
