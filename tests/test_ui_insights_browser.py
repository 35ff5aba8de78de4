"""The Insights tab in chromium: `panel serve apps/browse.py` on the demo with its findings computed. A card's click
filters the grid to exactly the finding's images, a label mistake opens its image, a report cites findings that
click through, and a finding whose title is HTML shows as text."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser_helpers import ARTIFACTS, ROOT, serve_app
from tests.browser_helpers import shown_count as _count

pytestmark = pytest.mark.browser

PAYLOAD = "<img src=x onerror=window.__xss=1>"

_PREPARE = """
import json, sys
import visionlens as vl
from visionlens.insights.finding import Finding, save_run
from visionlens.insights.runner import run_insights

ds = vl.load("demo")
store = ds.store
run_insights(store, ds.id)
ids = [int(i) for i in ds.sample_ids()[:2]]
save_run(store, ds.id, "near_duplicates:check", [Finding(
    kind="near_duplicate", title=sys.argv[1], definition=sys.argv[1], score=99.0, sample_ids=ids,
    evidence={"size": 2, "pairs": 1}, detail={"files": [sys.argv[1]]})])
rows = [{k: r[k] for k in ("id", "kind", "title", "n_samples", "evidence", "model")} for r in store.findings(ds.id)]
members = {r["id"]: store.finding_members(ds.id, r["id"])["sample_id"].to_pylist()
           for r in rows if r["kind"] == "label_mistake"}
paths = {int(s["id"]): s["filepath"] for s in store.samples_by_id(ds.id, ds.sample_ids()).to_pylist()}
print(json.dumps({"findings": rows, "members": {str(k): v for k, v in members.items()},
                  "paths": {str(k): v for k, v in paths.items()}}, default=str))
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A demo home with every kind of finding stored, and what the store says about them (read before the server
    takes the database: one process per DuckDB file)."""
    home = tmp_path_factory.mktemp("insightshome")
    env = {**os.environ, "VISIONLENS_HOME": str(home)}
    out = subprocess.run(
        [sys.executable, "-m", "visionlens.cli", "demo", "--n", "150", "--seed", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    out = subprocess.run(
        [sys.executable, "-c", _PREPARE, PAYLOAD],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return home, json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def server(demo: tuple[Path, dict[str, Any]]) -> Iterator[str]:
    proc, url = serve_app(demo[0])
    yield url
    proc.terminate()
    proc.wait(10)


VIEWPORT = {"width": 1500, "height": 1000}  # read by the page fixture (tests/conftest.py)


def _wait_count(page, expected: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    n = None
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # not rendered yet
            n = _count(page)
        if n == expected:
            return n
        time.sleep(0.2)
    raise AssertionError(f"the grid counts {n}, not {expected}")


def _expected(row: dict[str, Any]) -> int:
    """A finding's images: its stored members, or for a field condition the images its evidence counted."""
    return int(row["n_samples"]) if row["n_samples"] else int(row["evidence"]["images"])


def _open_insights(page, server: str) -> None:
    page.goto(server + "/browse")
    page.wait_for_selector(".vl-tile img", timeout=30000)
    page.locator(".bk-tab:text-is('Insights')").click()
    page.wait_for_selector(".vl-cards-slice .vl-card", timeout=30000)
    page.wait_for_selector(".vl-cards-near_duplicate .vl-card-thumb img", timeout=15000)


def _no_script_ran(page) -> None:
    assert page.evaluate("window.__xss") is None, "a finding's title ran as script"
    assert page.locator("img[src='x']").count() == 0


def _best(findings: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(r for r in findings if r["kind"] == kind)


def test_a_card_filters_the_grid_to_its_images(server, page, demo):
    findings = demo[1]["findings"]
    _open_insights(page, server)
    ARTIFACTS.mkdir(exist_ok=True)
    time.sleep(1.5)  # thumbnails on screen load (the others wait until scrolled to: loading=lazy)
    page.screenshot(path=str(ARTIFACTS / "insights.png"))
    page.locator(".vl-cards-near_duplicate").scroll_into_view_if_needed()
    deadline = time.monotonic() + 15
    while not page.locator(".vl-cards-near_duplicate .vl-card-thumb img").evaluate_all(
        "els => els.length && els.every(i => i.complete && i.naturalWidth)"
    ):
        assert time.monotonic() < deadline, "duplicate thumbnails did not load"
        time.sleep(0.2)
    page.screenshot(path=str(ARTIFACTS / "insights_duplicates.png"))
    page.locator(".vl-cards-slice").scroll_into_view_if_needed()
    titles = page.locator(".vl-cards-slice .vl-card-title").all_inner_texts()
    slices = [r for r in findings if r["kind"] == "slice"]
    assert titles == [r["title"] for r in slices][: len(titles)] and titles
    first = slices[0]
    page.locator(".vl-cards-slice .vl-card").first.click()
    page.wait_for_selector(".vl-tile img", state="visible", timeout=15000)  # Browse came to the front
    assert _wait_count(page, _expected(first)) == _expected(first) < 150
    page.wait_for_selector(".vl-finding-title", state="visible", timeout=10000)
    assert first["title"] in page.locator(".vl-finding-title").inner_text()
    time.sleep(1)
    page.screenshot(path=str(ARTIFACTS / "insights_applied.png"))
    # an error pattern is a stored member set: the grid shows exactly its images
    page.locator(".bk-tab:text-is('Insights')").click()
    errors = _best(findings, "error_pattern")
    page.locator(".vl-cards-error_pattern .vl-card").first.click()
    _wait_count(page, _expected(errors))
    page.locator(".vl-clear-finding button").click()
    _wait_count(page, 150)


def test_a_label_mistake_opens_its_image(server, page, demo):
    data = demo[1]
    mistake = _best(data["findings"], "label_mistake")
    sample = data["members"][str(mistake["id"])][0]
    _open_insights(page, server)
    page.locator(".vl-cards-label_mistake .vl-card").first.click()
    page.wait_for_selector(".vl-detail-title", state="visible", timeout=15000)
    assert page.locator(".vl-detail-title").inner_text() == data["paths"][str(sample)].rsplit("/", 1)[-1]
    page.keyboard.press("Escape")
    page.wait_for_selector(".vl-detail-title", state="hidden", timeout=10000)
    assert "Label mistake candidates" in page.locator(".vl-finding-title").inner_text()


def test_report_cites_findings_that_click_through(server, page, demo):
    findings = demo[1]["findings"]
    _open_insights(page, server)
    page.locator(".vl-report-blind_spots button").click()
    page.wait_for_selector(".vl-report-by", timeout=30000)
    assert "written by template" in page.locator(".vl-report-by").first.inner_text()
    page.wait_for_selector(".vl-cites-blind_spots .vl-cite", timeout=10000)
    page.screenshot(path=str(ARTIFACTS / "insights_report.png"), full_page=True)
    cite = page.locator(".vl-cites-blind_spots .vl-cite").first
    title = cite.locator(".vl-cite-title").inner_text()
    row = next(r for r in findings if r["title"] == title)
    cite.click()
    _wait_count(page, _expected(row))
    _no_script_ran(page)


def test_a_title_that_is_html_shows_as_text(server, page):
    _open_insights(page, server)
    titles = page.locator(".vl-cards-near_duplicate .vl-card-title").all_inner_texts()
    assert PAYLOAD in titles
    _no_script_ran(page)
    page.locator(".vl-cards-near_duplicate .vl-card").first.click()
    _wait_count(page, 2)
    assert PAYLOAD in page.locator(".vl-finding-title").inner_text()
    _no_script_ran(page)


def test_find_insights_recomputes_and_refreshes_the_cards(server, page):
    """Last in this module: it replaces the stored findings the tests above read."""
    _open_insights(page, server)
    page.locator(".vl-find-insights button").click()
    page.wait_for_selector("text=/Found [0-9,]+ insights/", timeout=120000)
    page.wait_for_selector(".vl-cards-slice .vl-card", timeout=15000)
    assert page.locator(".vl-cards-error_pattern .vl-card").count() > 0
    assert page.locator(".vl-find-insights button").is_enabled()
    _no_script_ran(page)
