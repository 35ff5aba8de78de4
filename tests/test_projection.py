"""2-D projection: shape, determinism, and that clusters stay clusters on the map."""

from __future__ import annotations

import os

import numpy as np
import pytest

from visionlens.projection import enable_numba_cache, pca, project


def blobs(n_per: int, clusters: int, dim: int, spread: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim)).astype(np.float32)
    labels = np.repeat(np.arange(clusters), n_per)
    x = centers[labels] + spread * rng.standard_normal((len(labels), dim)).astype(np.float32)
    return x, labels


def knn_agreement(coords: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    d = ((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nearest = np.argsort(d, axis=1)[:, :k]
    return float((labels[nearest] == labels[:, None]).mean())


@pytest.fixture(scope="module")
def umap_run(tmp_path_factory):
    x, labels = blobs(120, 6, 96, spread=0.35)
    cache = tmp_path_factory.mktemp("numba")
    steps = []
    coords = project(x, "umap", progress=lambda s, t: steps.append((s, t)), seed=0, cache_dir=cache)
    return x, labels, coords, steps, cache


def test_umap_shape_progress_and_separation(umap_run):
    x, labels, coords, steps, _ = umap_run
    assert coords.shape == (len(x), 2) and coords.dtype == np.float32
    assert np.isfinite(coords).all()
    assert steps[0] == (0, 2) and steps[-1] == (2, 2)
    assert knn_agreement(coords, labels) > 0.9


def test_umap_is_deterministic_with_a_seed(umap_run):
    x, _, coords, _, cache = umap_run
    np.testing.assert_array_equal(project(x, "umap", seed=0, cache_dir=cache), coords)


def test_numba_cache_points_at_the_given_directory(umap_run, monkeypatch):
    *_, cache = umap_run
    from numba.core import config

    assert os.environ["NUMBA_CACHE_DIR"] == str(cache) and config.CACHE_DIR == str(cache)
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setenv("VISIONLENS_HOME", str(cache / "home"))
    assert enable_numba_cache() == cache / "home" / "numba-cache"
    assert config.CACHE_DIR == str(cache / "home" / "numba-cache")
    enable_numba_cache(cache)  # leave the session's cache where the fixture put it


def test_pca_preview_separates_and_is_stable():
    x, labels = blobs(100, 3, 64, spread=0.3, seed=1)
    coords = project(x, "pca")
    assert coords.shape == (300, 2) and coords.dtype == np.float32
    np.testing.assert_array_equal(coords, project(x, "pca"))
    assert knn_agreement(coords, labels) > 0.9
    # the first axis carries the most variance
    assert coords[:, 0].var() >= coords[:, 1].var()


def test_pca_matches_numpy_svd_up_to_sign():
    x = np.random.default_rng(3).standard_normal((500, 20)).astype(np.float32) * np.linspace(3, 0.1, 20)
    ours = pca(x, 3, chunk=128)
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    ref = centred @ vt[:3].T
    np.testing.assert_allclose(np.abs(ours), np.abs(ref), rtol=1e-3, atol=1e-3)


def test_edge_cases():
    assert project(np.empty((0, 8)), "umap").shape == (0, 2)
    tiny = project(np.random.default_rng(0).standard_normal((5, 8)), "umap")  # too few for UMAP: PCA instead
    assert tiny.shape == (5, 2)
    assert project(np.ones((3, 1)), "pca").shape == (3, 2)
    with pytest.raises(ValueError, match="unknown projection method"):
        project(np.ones((4, 4)), "tsne")
    with pytest.raises(ValueError, match="NaN"):
        project(np.full((4, 4), np.nan), "pca")


def test_umap_kernels_cache_without_touching_numba_for_other_threads(tmp_path):
    """Caching is switched on per umap dispatcher: ``numba.njit``/``numba.jit`` stay the same objects for every
    thread while umap is imported (another thread may be compiling Datashader's kernels meanwhile)."""
    import subprocess
    import sys

    code = f"""
import threading, numba
from visionlens.projection import _import_umap_cached, enable_numba_cache
enable_numba_cache({str(tmp_path)!r})
njit, jit = numba.njit, numba.jit
changed, stop = [], threading.Event()
def watch():
    while not stop.is_set():
        if numba.njit is not njit or numba.jit is not jit:
            changed.append(1)
t = threading.Thread(target=watch); t.start()
umap = _import_umap_cached()
stop.set(); t.join()
from numba.core.caching import NullCache
from numba.core.dispatcher import Dispatcher
kernels = [o for o in vars(umap.umap_).values() if isinstance(o, Dispatcher)]
print(len(changed), len(kernels), sum(not isinstance(k._cache, NullCache) for k in kernels))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    changed, kernels, cached = (int(v) for v in out.stdout.split()[-3:])
    assert changed == 0 and kernels > 0 and cached == kernels
