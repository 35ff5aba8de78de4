"""Helpers for browser tests: serve a Panel app in-process and drive Debian's chromium with Playwright."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll a Python-side condition (e.g. a param the browser sets) until it holds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


@contextmanager
def serve_panel(app: Callable[[], Any], extra_patterns: list[tuple] | None = None) -> Iterator[str]:
    """Serve `app` on a free localhost port in a background thread; yields the URL."""
    import panel as pn

    port = free_port()
    server = pn.serve(
        {"app": app},
        port=port,
        address="127.0.0.1",
        websocket_origin=f"127.0.0.1:{port}",
        threaded=True,
        show=False,
        verbose=False,
        extra_patterns=extra_patterns or [],
    )
    try:
        # the server thread binds asynchronously; wait until it accepts connections
        wait_until(lambda: _accepts(port), timeout=20)
        yield f"http://127.0.0.1:{port}/app"
    finally:
        server.stop()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's chromium through Playwright; closed afterwards."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is required for browser tests (make browser)"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def chromium_page(width: int = 1200, height: int = 800) -> Iterator[Any]:
    """A fresh chromium page in its own browser."""
    with chromium() as browser:
        page = browser.new_page(viewport={"width": width, "height": height})
        yield page


def wait_http(url: str, timeout: float = 60) -> None:
    """Until the server answers at all (an HTTP error status counts as an answer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not come up")


def serve_app(
    home: Path, *extra: str, env: dict[str, str] | None = None, log_file: Path | None = None
) -> tuple[subprocess.Popen, str]:
    """``panel serve apps/browse.py`` on a VisionLens home, as a user types it (no ``--plugins``: the app mounts
    its image routes and API itself when its first page opens); returns (process, base URL). The server's output
    goes to ``log_file`` when given (a test reading its log lines), else to a pipe.

    A separate process: DuckDB lets one process hold a database file, so the home must not be open here.
    """
    port = free_port()
    env = {**os.environ, "VISIONLENS_HOME": str(home), **(env or {})}
    proc = subprocess.Popen(
        [
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
            "--num-threads",
            "4",
            *extra,
        ],
        cwd=ROOT,
        env=env,
        stdout=open(log_file, "ab") if log_file is not None else subprocess.PIPE,  # noqa: SIM115 - the child's
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/favicon.ico")  # answers as soon as the server listens, without building a session
    except AssertionError:
        proc.kill()
        output = log_file.read_text() if log_file is not None else proc.stdout.read().decode() if proc.stdout else ""
        raise AssertionError(output or "server failed") from None
    return proc, url


def shown_count(page: Any, timeout: float = 30.0) -> int:
    """The result count the sidebar shows (``12,345`` -> 12345). A served page's sidebar arrives just after its
    first thumbnails (``visionlens/ui/deferred.py``): this waits for it."""
    count = page.locator(".vl-count-n").first
    count.wait_for(timeout=timeout * 1000)
    text = wait_until(lambda: count.inner_text().replace(",", "").strip(), timeout=timeout)
    return int(text)
