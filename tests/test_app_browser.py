"""The served app in a real browser: `panel serve apps/browse.py` on the demo dataset, driven by Debian's chromium."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser_helpers import ARTIFACTS, serve_app
from tests.browser_helpers import shown_count as _count

pytestmark = pytest.mark.browser


NIGHT_CARS = {"fields": [{"field": "time_of_day", "values": ["night"]}], "annotations": [{"labels": ["car"]}]}
FEW_BOXES = {"fields": [{"field": "num_gt", "range": {"max": 3}}]}


def _serve(home: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    return serve_app(home, *extra)


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("apphome")
    env = {**os.environ, "VISIONLENS_HOME": str(home)}
    out = subprocess.run(
        [sys.executable, "-m", "visionlens.cli", "demo", "--n", "150", "--seed", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return home


@pytest.fixture(scope="module")
def expected(demo_home: Path) -> dict[str, int]:
    """Counts computed through the Python API before the server takes the database (one process per file)."""
    code = (
        "import json, visionlens as vl; ds = vl.load('demo'); "
        f"print(json.dumps({{'night_cars': ds.count(vl.Filters.model_validate({NIGHT_CARS!r})), "
        f"'few_boxes': ds.count(vl.Filters.model_validate({FEW_BOXES!r}))}}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "VISIONLENS_HOME": str(demo_home)},
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def server(demo_home: Path, expected: dict[str, int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # the Datasets page may read the test's temporary folders (a web user's ingest is limited to allowed roots)
    proc, url = serve_app(demo_home, env={"VISIONLENS_ALLOWED_ROOTS": str(tmp_path_factory.getbasetemp())})
    yield url
    proc.terminate()
    proc.wait(10)


def _wait_count(page, predicate, timeout: float = 15) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            n = _count(page)
            if predicate(n):
                return n
        except Exception:  # noqa: BLE001 - the element may not be there yet
            pass
        if time.monotonic() > deadline:
            raise AssertionError("count did not reach the expected value")
        time.sleep(0.2)


def _poll(page, selector: str, predicate_js: str, timeout: float = 15) -> None:
    """Wait for a JS predicate over the matching elements; locators see into the components' shadow roots."""
    deadline = time.monotonic() + timeout
    while not page.locator(selector).evaluate_all(predicate_js):
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector}: {predicate_js} never held")
        time.sleep(0.2)


def _wait_url(page, predicate, timeout: float = 10) -> None:
    """The app rewrites the URL (history API) after the server has handled a change: poll for it."""
    deadline = time.monotonic() + timeout
    # read the address bar from the page: Playwright's page.url can miss a history.replaceState
    while not predicate(page.evaluate("window.location.href")):
        if time.monotonic() > deadline:
            raise AssertionError(f"URL never matched: {page.evaluate('window.location.href')}")
        time.sleep(0.1)


def _tile_titles(page) -> list[str]:
    return page.locator(".vl-tile .vl-caption").evaluate_all("els => els.map(e => e.textContent)")


def test_grid_shows_tiles_with_solid_and_dashed_boxes(server, page):
    page.goto(server + "/browse")
    page.wait_for_selector(".vl-tile img", timeout=30000)
    assert _wait_count(page, lambda n: n == 150) == 150
    page.wait_for_selector(".vl-tile svg .vl-pred", timeout=15000)
    gt = page.locator(".vl-tile svg .vl-gt").count()
    pred_dash = page.locator(".vl-tile svg .vl-pred rect.vl-stroke").evaluate_all(
        "els => els.map(e => e.getAttribute('stroke-dasharray'))"
    )
    gt_dash = page.locator(".vl-tile svg .vl-gt rect.vl-stroke").evaluate_all(
        "els => els.map(e => e.getAttribute('stroke-dasharray'))"
    )
    assert gt > 0 and pred_dash and all(d and d != "none" for d in pred_dash)
    assert all(d in (None, "none") for d in gt_dash)
    # thumbnails are real images served by the route
    _poll(page, ".vl-tile img", "els => els.some(i => i.complete && i.naturalWidth > 0)")
    srcs = page.locator(".vl-tile img").evaluate_all("els => els.map(e => e.getAttribute('src'))")
    assert all("/vl/thumb/" in s for s in srcs if s)
    ARTIFACTS.mkdir(exist_ok=True)
    time.sleep(1)
    page.screenshot(path=str(ARTIFACTS / "app.png"))


def test_filter_changes_count_and_tiles_and_url(server, page):
    page.goto(server + "/browse")
    page.wait_for_selector(".vl-tile img", timeout=30000)
    _wait_count(page, lambda n: n == 150)
    before = _tile_titles(page)
    split = page.locator(".bk-input-group:has(label:text-is('split')) input").first
    split.click()
    page.keyboard.type("val")
    page.keyboard.press("Enter")
    n = _wait_count(page, lambda n: n < 150)
    assert n == 45  # 30% of 150 are val
    _poll(page, ".vl-tile .vl-caption", "els => els.length > 0")
    time.sleep(1)
    after = _tile_titles(page)
    assert after and after != before
    _wait_url(page, lambda url: "filters=" in url and "val" in urllib.parse.unquote(url))


def test_url_with_filters_restores_them(server, page, expected):
    page.goto(server + "/browse?" + urllib.parse.urlencode({"dataset": "demo", "filters": json.dumps(NIGHT_CARS)}))
    page.wait_for_selector(".vl-tile", timeout=30000)
    n = _wait_count(page, lambda n: n < 150)
    assert n == expected["night_cars"] > 0
    # the widgets show the restored filter, so the user can see and undo it
    page.wait_for_selector(".choices__list--multiple .choices__item:has-text('night')", timeout=10000)
    page.wait_for_selector(".choices__list--multiple .choices__item:has-text('car')", timeout=10000)


def test_click_opens_detail_and_keys_page_through(server, page):
    page.goto(server + "/browse")
    page.wait_for_selector(".vl-tile[data-id] img", timeout=30000)
    first = page.locator(".vl-tile[data-id]").nth(2)
    title = first.locator(".vl-caption").inner_text()
    following = page.locator(".vl-tile[data-id]").nth(3).locator(".vl-caption").inner_text()
    first.click()
    page.wait_for_selector(".vl-detail-title", state="visible", timeout=15000)
    assert page.locator(".vl-detail-title").inner_text() == title
    _poll(page, ".vl-detail-img", "els => els.length && els[0].complete && els[0].naturalWidth > 0")
    _wait_url(page, lambda url: "sample=" in url)
    # a click on a box picks it (highlighted, and the tag button counts it); a second click un-picks it
    page.locator(".vl-box-hit").first.click(force=True)
    page.wait_for_selector(".vl-box-picked", timeout=10000)
    _poll(page, ".vl-box-tag-add button", "els => els.length && els[0].textContent.includes('Tag 1 box')")
    page.locator(".vl-box-hit").first.click(force=True)
    page.wait_for_selector(".vl-box-picked", state="detached", timeout=10000)
    page.keyboard.press("ArrowRight")  # one press, one step: the next tile's sample, not the one after it
    _poll(page, ".vl-detail-title", f"els => els.length && els[0].textContent === {json.dumps(following)}")
    page.keyboard.press("Escape")
    page.wait_for_selector(".vl-detail-title", state="hidden", timeout=10000)
    _wait_url(page, lambda url: "sample=" not in url)


def test_thumbnail_route_refuses_without_login_when_auth_is_on(tmp_path):
    home = tmp_path / "authhome"  # its own database: DuckDB lets one server process hold a file
    out = subprocess.run(
        [sys.executable, "-m", "visionlens.cli", "demo", "--n", "8"],
        capture_output=True,
        text=True,
        env={**os.environ, "VISIONLENS_HOME": str(home)},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    proc, url = _serve(home, "--basic-auth", "s3cret-pass", "--cookie-secret", "x" * 32)
    try:
        import http.cookiejar

        # log in through the server's own form and open the page: its first session mounts the routes
        jar = http.cookiejar.CookieJar()
        session = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect())
        data = urllib.parse.urlencode({"username": "user", "password": "s3cret-pass"}).encode()
        with pytest.raises(urllib.error.HTTPError) as login:
            session.open(url + "/login", data=data, timeout=10)
        assert login.value.code == 302 and "error" not in (login.value.headers.get("Location") or "")
        assert any(c.name == "user" for c in jar)
        assert session.open(url + "/browse", timeout=120).status == 200
        # without the login cookie the mounted route refuses
        opener = urllib.request.build_opener(_NoRedirect())
        with pytest.raises(urllib.error.HTTPError) as e:
            opener.open(url + "/vl/thumb/1/1", timeout=10)
        assert e.value.code in (302, 401, 403)
        assert "login" in (e.value.headers.get("Location") or "login")
        # and answers with it
        resp = session.open(url + "/vl/thumb/1/1", timeout=10)
        assert resp.status == 200 and resp.headers["Content-Type"] == "image/jpeg"
        assert resp.read()[:2] == b"\xff\xd8"
    finally:
        proc.terminate()
        proc.wait(10)


def test_route_serves_only_dataset_samples(server):
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(server + "/vl/thumb/1/999999", timeout=10)
    assert e.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(server + "/vl/thumb/1/..%2F..%2Fetc%2Fpasswd", timeout=10)
    assert e.value.code == 404


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003
        return None


def test_datasets_page_ingests_shows_errors_and_deletes(server, page, tmp_path):
    from tests.factories import coco_doc, simple_coco, write_coco

    good = simple_coco(tmp_path / "good")
    bad = write_coco(
        tmp_path / "bad",
        coco_doc(
            [{"id": 1, "file_name": "a.jpg", "width": 9, "height": 9}],
            [{"id": 1, "image_id": 1, "category_id": 77, "bbox": [0, 0, 1, 1]}],
        ),
    )
    page.goto(server + "/browse")
    page.wait_for_selector(".vl-tile", timeout=30000)
    page.locator(".bk-tab:text-is('Datasets')").click()
    path = page.get_by_placeholder("/data/coco or gs://bucket/dataset")
    name = page.get_by_placeholder("my-dataset")

    path.fill(str(bad))
    name.fill("zz-bad")
    time.sleep(0.5)  # --num-threads handles a session's events on a pool: let the typing land before the click
    page.get_by_role("button", name="Ingest").click()
    page.get_by_text("Ingest failed").wait_for(timeout=30000)
    message = page.get_by_text("unknown category_id 77").first  # also in the jobs panel's message column
    message.wait_for(timeout=5000)
    assert str(bad) in message.text_content()

    path.fill(str(good))
    name.fill("zz-good")
    time.sleep(0.5)
    page.get_by_role("button", name="Ingest").click()
    page.get_by_text("Ingested").wait_for(timeout=30000)
    page.get_by_role("gridcell", name="zz-good", exact=True).wait_for(timeout=10000)
    assert _wait_count(page, lambda n: n == 3) == 3  # the new dataset becomes the active one
    assert page.get_by_text("unknown field").count() == 0

    select = page.locator(".vl-target select").first
    select.select_option("zz-good")
    time.sleep(0.5)  # let the choice reach the server before the click that reads it
    page.get_by_role("button", name="Delete…").click()
    page.get_by_role("button", name="Really delete zz-good?").click()
    page.get_by_text("Deleted").wait_for(timeout=15000)
    assert page.get_by_text("3 samples").count() >= 1  # the delete went through every store and says so
    page.get_by_role("gridcell", name="zz-good", exact=True).wait_for(state="detached", timeout=10000)


def test_range_filter_typed_bound_and_slider(server, page, expected):
    """A numeric field's control (one component: label, typed bounds, two-handle slider, histogram): a bound typed
    and Enter filters; the slider's handle, dragged to its end and released, takes the bound off again."""
    page.goto(server + "/browse")
    page.wait_for_selector(".vl-tile[data-id] img", timeout=30000)
    total = _wait_count(page, lambda n: n > 0)  # the sidebar arrives just after the first thumbnails
    control = page.locator(".vl-range-filter", has=page.locator(".vl-rf-label", has_text="num_gt"))
    control.locator("svg.vl-hist rect").first.wait_for(timeout=10000)  # the histogram is drawn
    upper = control.locator(".vl-rf-hi")
    upper.fill("3")
    upper.press("Enter")
    assert _wait_count(page, lambda n: n < total) == expected["few_boxes"] > 0
    _wait_url(page, lambda url: "num_gt" in urllib.parse.unquote(url))
    # what a drag of the upper handle to the end and its release fire
    control.locator(".vl-rf-b").evaluate(
        "el => { el.value = el.max; el.dispatchEvent(new Event('input')); el.dispatchEvent(new Event('change')) }"
    )
    assert _wait_count(page, lambda n: n == total) == total


def test_export_card_body_arrives_when_opened(server, page):
    """The collapsed export card is sent empty (a new session skips its models); opening it brings the form."""
    page.goto(server + "/browse")
    page.wait_for_selector(".vl-tile[data-id] img", timeout=30000)
    assert page.locator(".vl-export-summary").count() == 0
    page.locator(".vl-export-panel .card-header").first.click()
    page.locator(".vl-export-summary").locator("text=/150 samples/").wait_for(timeout=10000)
    assert page.locator(".vl-export button").inner_text().strip() == "Export"


def test_controls_arrive_after_the_grid_in_a_placeholder_of_their_height(server, page):
    """The rows above the grid come after the page loads (``ui/deferred.py``), in a placeholder as tall as they
    will be: the first tile is where it stays, so a click made at once lands on the tile the user saw."""
    from visionlens.ui.actions_view import ActionsView
    from visionlens.ui.tags_view import TagsView
    from visionlens.ui.toolbar_view import ToolbarView

    class Owner:  # this server has no roles file: every page may tag and run actions
        @staticmethod
        def can(action: str) -> bool:
            return True

    page.goto(server + "/browse")
    first = page.locator(".vl-tile[data-id]").first
    first.wait_for(timeout=30000)
    tops = [first.bounding_box()["y"]]
    page.locator(".vl-browse-toolbar").wait_for(timeout=30000)
    page.locator(".vl-tag-input input").wait_for(timeout=10000)
    tops.append(first.bounding_box()["y"])
    heights = [page.locator(css).first.bounding_box()["height"] for css in (".vl-browse-toolbar", ".vl-tags")]
    heights.append(page.locator(".vl-actions").first.bounding_box()["height"])
    promised = [view.height_for(Owner()) for view in (ToolbarView, TagsView, ActionsView)]
    assert heights == pytest.approx(promised, abs=1) and all(promised)
    assert tops[0] == pytest.approx(tops[1], abs=1)
