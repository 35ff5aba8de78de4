"""Shared fixtures: an isolated VisionLens home and a real DuckDB file per test, plus a small demo dataset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "vlhome"
    monkeypatch.setenv("VISIONLENS_HOME", str(h))
    for var in ("VISIONLENS_DB_PATH", "VISIONLENS_QDRANT_PATH", "VISIONLENS_QDRANT_URL", "VISIONLENS_THUMBNAIL_DIR"):
        monkeypatch.delenv(var, raising=False)
    yield h
    from visionlens.embedding_jobs import close_vector_stores
    from visionlens.store.metadata import close_all_stores

    close_vector_stores()  # the embedded engine locks its folder; a test's home must not stay held
    close_all_stores()


@pytest.fixture
def store(home: Path):
    from visionlens.store.metadata import open_store

    return open_store()


@pytest.fixture(scope="session")
def demo_files(tmp_path_factory: pytest.TempPathFactory):
    """A 120-image demo (real JPEGs, COCO GT, two models), generated once per test run."""
    from visionlens.demo import build_demo

    return build_demo(tmp_path_factory.mktemp("demo"), n=120, seed=3)


@pytest.fixture
def demo_ds(store, demo_files):
    import visionlens as vl

    return vl.ingest(
        demo_files.root, "demo", predictions={m: str(p) for m, p in demo_files.predictions.items()}, store=store
    )


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium for a module's browser tests (Playwright, the system's own binary). Per module,
    not per session: Playwright's sync API allows one running instance, and some tests start their own."""
    from playwright.sync_api import sync_playwright

    from tests.browser_helpers import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    """A fresh page; a test module may set ``VIEWPORT`` for another window size."""
    ctx = browser.new_context(viewport=getattr(request.module, "VIEWPORT", {"width": 1500, "height": 950}))
    pg = ctx.new_page()
    yield pg
    ctx.close()
