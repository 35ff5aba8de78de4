"""`vl.launch_app` in a script's own process: the page and the API see what that process ingests afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from tests.browser_helpers import free_port, shown_count, wait_until
from visionlens.server.owner import read_owner, record_path

pytestmark = pytest.mark.browser

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import visionlens as vl
    from visionlens.demo import build_demo

    data, port = sys.argv[1], int(sys.argv[2])
    first = build_demo(data + "/first", n=10, seed=1)
    vl.ingest(first.root, "first")
    server = vl.launch_app(port=port)
    print(json.dumps({"url": server.url}), flush=True)
    later = build_demo(data + "/later", n=14, seed=2)
    ds = vl.ingest(later.root, "later", predictions={m: str(p) for m, p in later.predictions.items()})
    print(json.dumps({"ingested": ds.name, "type": type(ds).__name__}), flush=True)
    sys.stdin.read()  # serve until the test closes our stdin
    server.stop()
    print("stopped", flush=True)
    """
)


def test_launch_app_shares_the_store_with_its_process(tmp_path: Path, browser):
    home, port = tmp_path / "home", free_port()
    env = {**os.environ, "VISIONLENS_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "data"), str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        started = json.loads(proc.stdout.readline() or "{}")
        assert started.get("url") == f"http://127.0.0.1:{port}", proc.stderr.read() if proc.poll() else started
        ingested = json.loads(proc.stdout.readline())
        assert ingested == {"ingested": "later", "type": "Dataset"}  # the launching process uses its own store

        owner = read_owner(home / "visionlens.duckdb")
        assert owner is not None and owner.pid == proc.pid and owner.url == started["url"]
        names = httpx.get(
            owner.api + "/datasets", headers={"Authorization": f"Bearer {owner.token}"}, timeout=30
        ).json()
        assert {d["name"] for d in names} == {"first", "later"}
        assert httpx.get(owner.api + "/datasets", timeout=30).status_code == 401

        page = browser.new_page(viewport={"width": 1300, "height": 850})
        page.goto(started["url"] + "/browse?dataset=later")
        page.wait_for_selector(".vl-tile img", timeout=60000)
        wait_until(lambda: shown_count(page) == 14, timeout=30)
        wait_until(
            lambda: page.locator(".vl-tile img").evaluate_all(
                "els => els.length > 0 && els.every(i => i.complete && i.naturalWidth > 0)"
            ),
            timeout=30,
        )
        page.close()
    finally:
        out, err = proc.communicate(input="", timeout=60)
    assert "stopped" in out, err
    assert proc.returncode == 0, err
    assert not record_path(home / "visionlens.duckdb").exists()
