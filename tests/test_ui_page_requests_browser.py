"""The page fetches everything from its own server and nothing fails (air-gapped teams, and viewers' privacy).

``panel serve apps/browse.py`` on a small demo in chromium; every request of the page is recorded (scripts, styles,
fonts, icons, thumbnails, the websocket) while the page loads, a sample's detail view opens and every tab is shown.
No request may leave the server, fail, or be answered with an error status. Before: every load asked for ``/grid.css``
(404) and for a Google Fonts stylesheet; Panel buttons with a named icon ask a CDN for the Tabler icon font.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from tests.browser_helpers import ROOT, serve_app

pytestmark = pytest.mark.browser

TABS = ("Map", "Evaluation", "Insights", "Datasets", "Browse")
SHOWN = {  # what each tab shows once it has been built and drawn
    "Map": ".vl-map-plot canvas",
    "Evaluation": ".vl-eval-pr canvas",
    "Insights": ".vl-insights-cards .vl-card",
    "Datasets": ".vl-datasets",
    "Browse": ".vl-tile img",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("pagereqhome")
    out = subprocess.run(
        [sys.executable, "-m", "visionlens.cli", "demo", "--n", "60", "--seed", "2"],
        cwd=ROOT,
        env={**os.environ, "VISIONLENS_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    proc, url = serve_app(Path(home))
    yield url
    proc.terminate()
    proc.wait(10)


def _images_loaded(page, selector: str, timeout: float = 20) -> None:
    """Until every image the selector matches has finished loading (so none is cut off by the next step)."""
    deadline = time.monotonic() + timeout
    while not page.locator(selector).evaluate_all("els => els.length > 0 && els.every(i => i.complete)"):
        assert time.monotonic() < deadline, f"{selector} never finished loading"
        time.sleep(0.2)


def test_page_requests_stay_on_the_server_and_none_fails(server, page):
    host = urlsplit(server).netloc
    requests: list[str] = []
    failed: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("websocket", lambda ws: requests.append(ws.url))
    page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)

    page.goto(server + "/browse", timeout=60000)
    page.wait_for_selector(".vl-tile img", timeout=60000)
    _images_loaded(page, ".vl-tile img")

    # the detail view of the first sample, then back to the grid
    page.locator(".vl-tile").first.click()
    page.wait_for_selector(".vl-detail-title", state="visible", timeout=20000)
    _images_loaded(page, ".vl-detail-img")
    page.keyboard.press("Escape")
    page.wait_for_selector(".vl-detail-title", state="hidden", timeout=10000)

    for tab in TABS:
        page.locator(f".bk-tab:text-is('{tab}')").click()
        page.locator(SHOWN[tab]).first.wait_for(state="visible", timeout=30000)
        time.sleep(1)  # what the tab asks for once drawn (thumbnails, icons, stylesheets)
    _images_loaded(page, ".vl-tile img")

    # the icons the page names are asked for by a browser with a tab strip (headless chromium never does)
    icons = page.locator("link[rel~='icon'], link[rel='apple-touch-icon']").evaluate_all(
        "els => els.map(e => e.getAttribute('href'))"
    )
    assert icons, "the page names no favicon"
    for href in icons:
        url = urljoin(page.url, href)
        requests.append(url)
        status = page.request.get(url).status
        if status >= 400:
            errors.append(f"{status} {url}")
    time.sleep(1)  # anything still in flight lands in the lists

    outside = sorted({u for u in requests if not u.startswith(("data:", "blob:")) and urlsplit(u).netloc != host})
    assert len(requests) > 20, requests  # the recording saw the page's own scripts and styles
    report = [
        (f"{title}:\n  " + "\n  ".join(items))
        for title, items in (
            ("requests that leave the server", outside),
            ("failed requests", failed),
            ("error responses", errors),
        )
        if items
    ]
    assert not report, "\n".join(report)
