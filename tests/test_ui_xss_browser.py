"""The page never runs text from a dataset or a link: a dataset whose file name, label, field names and values, model
and dataset name are HTML with an ``onerror`` handler is browsed in chromium, every view is opened, and the handler
never runs while the text shows literally. Broken shared links show an error and the whole dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator

import pytest

from tests.browser_helpers import ARTIFACTS, ROOT, serve_app
from tests.browser_helpers import shown_count as _count

pytestmark = pytest.mark.browser

PAYLOAD = "<img src=x onerror=window.__xss={}>"
FILE, FIELD, VALUE, NUMERIC, FLAG, LABEL, MODEL, DATASET = (PAYLOAD.format(i) for i in range(1, 9))
N = 6

_INGEST = """
import json, sys
from pathlib import Path
from tests.factories import coco_doc, write_coco
import visionlens as vl

FILE, FIELD, VALUE, NUMERIC, FLAG, LABEL, MODEL, DATASET = json.loads(sys.argv[1])
root, n = Path(sys.argv[2]), int(sys.argv[3])
images = [{"id": i, "file_name": FILE + ".jpg" if i == 1 else f"img{i}.jpg", "width": 64, "height": 48,
           FIELD: VALUE if i % 2 else "plain", NUMERIC: float(i), FLAG: bool(i % 2)} for i in range(1, n + 1)]
anns = [{"id": 100 + i, "image_id": i, "category_id": 1 if i % 2 else 2, "bbox": [5, 5, 30, 20], "area": 600,
         "iscrowd": 0} for i in range(1, n + 1)]
write_coco(root / "data", coco_doc(images, anns, categories=[LABEL, "car"]))
preds = [{"image_id": i, "category_id": 1 if i % 2 else 2, "bbox": [6, 6, 28, 20], "score": 0.9} for i in range(1, n + 1)]
(root / "preds.json").write_text(json.dumps(preds))
vl.ingest(str(root / "data"), DATASET, predictions={MODEL: str(root / "preds.json")})
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("xsshome")
    payloads = json.dumps([FILE, FIELD, VALUE, NUMERIC, FLAG, LABEL, MODEL, DATASET])
    out = subprocess.run(
        [sys.executable, "-c", _INGEST, payloads, str(home), str(N)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "VISIONLENS_HOME": str(home / "vl")},
    )
    assert out.returncode == 0, out.stderr
    proc, url = serve_app(home / "vl")
    yield url
    proc.terminate()
    proc.wait(10)


def _no_script_ran(page) -> None:
    """No payload's handler ran, and no payload became an element (locators see into shadow roots)."""
    ran = page.evaluate("window.__xss")
    assert ran is None, f"the handler of payload {ran} ran"
    assert page.locator("img[src='x']").count() == 0


def _literal(page, text: str, timeout: float = 15000):
    """The payload shows as text, exactly as written."""
    loc = page.get_by_text(text, exact=False).filter(visible=True).first
    loc.wait_for(state="visible", timeout=timeout)
    return loc


def _wait_count(page, n: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if _count(page) == n:
                return
        except Exception:  # noqa: BLE001 - not rendered yet
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the count never became {n}")
        time.sleep(0.2)


def _open(page, url: str) -> None:
    page.goto(url, timeout=60000)
    page.wait_for_selector(".vl-tile img", timeout=40000)


def test_dataset_text_shows_literally_and_never_runs(server, page):
    _open(page, server + "/browse")
    _wait_count(page, N)
    # grid: the file name is the tile's caption
    page.locator(".vl-tile .vl-caption", has_text=FILE).first.wait_for(timeout=15000)
    assert page.locator(".vl-tile .vl-caption", has_text=FILE).count() == 1
    # sidebar: field names (categorical, numeric, bool) and a field value in the open choices
    for text in (FIELD, NUMERIC, FLAG):
        _literal(page, text)
    page.locator(f".bk-input-group:has(label:text-is('{FIELD}')) input").first.click()
    _literal(page, f"{VALUE} (3)")
    page.keyboard.press("Escape")
    # toolbar: the model's chip; the label among the labels to draw
    _literal(page, MODEL)
    page.locator(".bk-input-group:has(label:text-is('Show labels')) input").first.click()
    _literal(page, LABEL)
    page.keyboard.press("Escape")
    assert DATASET in page.locator("select option").all_text_contents()
    _no_script_ran(page)

    # detail view of the sample named by the payload, with its label, model and fields in the tables
    page.locator(".vl-tile", has_text=FILE).first.click()
    title = page.locator(".vl-detail-title")
    title.wait_for(state="visible", timeout=15000)
    assert title.inner_text() == FILE + ".jpg"
    detail = page.locator(".vl-detail")
    detail.get_by_role("gridcell", name=LABEL, exact=True).first.wait_for(timeout=15000)  # the objects table
    detail.get_by_role("gridcell", name=MODEL, exact=True).first.wait_for(timeout=15000)
    detail.get_by_text(MODEL, exact=True).filter(visible=True).first.wait_for(timeout=5000)  # the model toggle
    boxes = page.locator(".vl-detail-svg text").all_text_contents()
    assert LABEL in boxes and f"{LABEL} 0.90" in boxes  # ground truth and prediction, drawn as SVG text
    page.locator(".vl-detail .bk-tab:text-is('Metadata')").click()
    detail.get_by_role("gridcell", name=f"images/{FILE}.jpg", exact=True).wait_for(timeout=15000)
    time.sleep(1)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "xss_detail.png"))
    _no_script_ran(page)
    page.keyboard.press("Escape")
    title.wait_for(state="hidden", timeout=10000)

    # evaluation: the model in the picker, the summary, the per-class table's group title; store results
    page.locator(".bk-tab:text-is('Evaluation')").click()
    page.locator(".vl-eval-summary").first.wait_for(state="visible", timeout=30000)
    page.locator(".vl-eval-summary", has_text=MODEL).first.wait_for(timeout=30000)
    page.locator(".vl-eval-classes", has_text=MODEL).first.wait_for(timeout=30000)
    page.locator(".vl-eval-classes", has_text=LABEL).first.wait_for(timeout=30000)
    page.get_by_role("button", name="Evaluate / store per-object results").click()
    _literal(page, "Stored per-object results", timeout=60000)
    _literal(page, MODEL)
    time.sleep(1)
    page.screenshot(path=str(ARTIFACTS / "xss_evaluation.png"))
    _no_script_ran(page)

    # map: no map yet, and the message names the dataset; datasets page: the table lists name and model
    page.locator(".bk-tab:text-is('Map')").click()
    _literal(page, "has no map yet")
    page.locator(".vl-map-message", has_text="has no map yet").filter(has_text=DATASET).first.wait_for(timeout=5000)
    page.locator(".bk-tab:text-is('Datasets')").click()
    page.get_by_role("gridcell", name=DATASET, exact=True).wait_for(timeout=15000)
    page.get_by_role("gridcell", name=MODEL, exact=True).wait_for(timeout=15000)
    _no_script_ran(page)

    # back in Browse the grid marks TP/FP boxes of the payload label (drawn as SVG text, not markup)
    page.locator(".bk-tab:text-is('Browse')").click()
    page.wait_for_selector(".vl-tile svg .vl-label", timeout=15000)
    labels = page.locator(".vl-tile svg .vl-label").all_text_contents()
    assert any(t.startswith(LABEL) for t in labels)
    time.sleep(1)
    page.screenshot(path=str(ARTIFACTS / "xss_browse.png"))
    _no_script_ran(page)


def _link(server: str, **query: str) -> str:
    return server + "/browse?" + urllib.parse.urlencode(query)


def test_shared_link_payloads_show_as_text(server, page):
    bad_field = json.dumps({"fields": [{"field": PAYLOAD.format(9), "values": ["a"]}]})
    _open(page, _link(server, filters=bad_field, sort=PAYLOAD.format(10), sample=PAYLOAD.format(11)))
    _literal(page, "Could not restore all of the link")
    for text in (PAYLOAD.format(9), PAYLOAD.format(10), PAYLOAD.format(11)):
        _literal(page, text)
    _wait_count(page, N)  # the dataset, unfiltered
    time.sleep(1)
    page.screenshot(path=str(ARTIFACTS / "xss_link.png"))
    _no_script_ran(page)

    _open(page, _link(server, dataset=PAYLOAD.format(12), filters=PAYLOAD.format(13)))
    _literal(page, f"there is no dataset named '{PAYLOAD.format(12)}'")
    _wait_count(page, N)
    _no_script_ran(page)


@pytest.mark.parametrize(
    "filters, why",
    [
        ('{"fields": [{"field": "split", "values": ["train"]}', "Invalid JSON"),
        ('{"fields": [{"field": "no_such_field", "values": ["a"]}]}', "unknown field 'no_such_field'"),
        ('{"fields": [{"field": "width", "values": ["abc"]}]}', "'abc' is not a number"),
        ('{"fields": [{"field": "width", "range": {"min": "wide"}}]}', "fields.0.range.min"),
    ],
)
def test_malformed_filter_link_shows_an_error_and_the_whole_dataset(server, page, filters, why):
    _open(page, _link(server, filters=filters))
    _literal(page, "Could not restore all of the link")
    _literal(page, why)
    _wait_count(page, N)
    assert page.locator(".vl-tile[data-id]").count() == N
    # the link is rewritten without the broken part, so copying it on does not pass the error along
    deadline = time.monotonic() + 10
    while "filters=" in page.evaluate("window.location.href"):
        assert time.monotonic() < deadline, page.evaluate("window.location.href")
        time.sleep(0.2)
