"""One owner of the database: `panel serve apps/browse.py` (no other flag) serving a page while the `visionlens`
command, in another process, lists, ingests and evaluates through the app's API; the open page and a new browser
session see the result without a restart, and the command prints the same as it does without the app."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.browser_helpers import ARTIFACTS, serve_app, shown_count, wait_until
from visionlens.server.owner import read_owner, record_path

pytestmark = pytest.mark.browser


def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VISIONLENS_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "visionlens.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


def _all_images_decoded(page) -> bool:
    return page.locator(".vl-tile img").evaluate_all(
        "els => els.length > 0 && els.every(i => i.complete && i.naturalWidth > 0)"
    )


def test_cli_beside_the_served_app(tmp_path: Path, browser):
    from visionlens.demo import build_demo

    home = tmp_path / "home"
    assert cli(home, "demo", "--n", "30", "--seed", "2").returncode == 0
    fresh = build_demo(tmp_path / "data" / "fresh", n=24, seed=9)
    model = sorted(fresh.predictions)[0]

    proc, url = serve_app(home, env={"VISIONLENS_ALLOWED_ROOTS": str(tmp_path / "data")})
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url + "/browse")
        page.wait_for_selector(".vl-tile img", timeout=60000)
        owner = wait_until(lambda: read_owner(home / "visionlens.duckdb"), timeout=30)
        assert owner.pid == proc.pid
        page.locator(".bk-tab:text-is('Datasets')").click()
        page.wait_for_selector(".vl-jobs", timeout=30000)

        listed = cli(home, "list")
        assert listed.returncode == 0, listed.stderr
        assert "demo" in listed.stdout and "open in another process" not in listed.stderr

        out = cli(home, "ingest", str(fresh.root), "--name", "fresh", "-p", f"{model}={fresh.predictions[model]}")
        assert out.returncode == 0, out.stderr
        assert "ingested 'fresh'" in out.stderr and "24 samples" in out.stderr
        out = cli(home, "evaluate", "fresh", model)
        assert out.returncode == 0, out.stderr
        assert "AP50" in out.stdout and f"stored per-object results as {model}" in out.stderr.replace("\n", "")
        info_via_api = cli(home, "info", "fresh")
        list_via_api = cli(home, "list")
        assert info_via_api.returncode == 0 and "fresh" in list_via_api.stdout

        # The page that was open all along: its jobs panel shows the CLI's jobs, its list the new dataset.
        page.locator(".vl-jobs").get_by_text("ingest 'fresh'").wait_for(timeout=15000)
        page.locator(".vl-jobs").get_by_text(f"evaluate '{model}' on 'fresh'").wait_for(timeout=15000)
        page.get_by_role("gridcell", name="fresh", exact=True).wait_for(timeout=15000)

        # A new session opens the new dataset, with its thumbnails served by the mounted route.
        fresh_page = browser.new_page(viewport={"width": 1400, "height": 900})
        fresh_page.goto(url + "/browse?dataset=fresh")
        fresh_page.wait_for_selector(".vl-tile img", timeout=60000)
        wait_until(lambda: shown_count(fresh_page) == 24, timeout=30)
        wait_until(lambda: _all_images_decoded(fresh_page), timeout=30)
        srcs = fresh_page.locator(".vl-tile img").evaluate_all("els => els.map(e => e.getAttribute('src'))")
        assert srcs and all("/vl/thumb/" in s for s in srcs)
        ARTIFACTS.mkdir(exist_ok=True)
        time.sleep(0.5)
        fresh_page.screenshot(path=str(ARTIFACTS / "api_cli_new_dataset.png"))
        page.screenshot(path=str(ARTIFACTS / "api_cli_jobs_panel.png"))
        fresh_page.close()
        page.close()
    finally:
        proc.terminate()
        proc.wait(30)

    # The app is gone (and removed its record): the same commands open the file here and print the same.
    assert not record_path(home / "visionlens.duckdb").exists()
    assert cli(home, "info", "fresh").stdout == info_via_api.stdout
    assert cli(home, "list").stdout == list_via_api.stdout


def test_a_stale_owner_record_is_cleaned_and_the_file_opened_here(tmp_path: Path):
    from visionlens.server.owner import write_owner

    home = tmp_path / "home"
    assert cli(home, "demo", "--n", "10").returncode == 0
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_owner(home / "visionlens.duckdb", "http://127.0.0.1:9", "t" * 40)
    record = record_path(home / "visionlens.duckdb")
    doc = record.read_text().replace(f'"pid": {os.getpid()}', f'"pid": {dead.pid}')
    record.write_text(doc)
    out = cli(home, "list")
    assert out.returncode == 0 and "demo" in out.stdout, out.stderr
    assert not record.exists()
