"""2-D maps of embeddings for the scatter view: UMAP for the real map, PCA as an instant preview.

Vectors are compared by cosine everywhere else (similarity search), so they are L2-normalised here too; on the
unit sphere Euclidean neighbours are cosine neighbours. UMAP first gets a 50-d PCA reduction: the neighbour
graph of 512-d vectors costs ten times more to build and the map barely changes.

UMAP's numba kernels are compiled on first use (tens of seconds). Numba's on-disk cache is pointed at
``<VisionLens home>/numba-cache`` (or ``cache_dir``) so later processes load compiled code instead.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = ["Method", "enable_numba_cache", "pca", "project"]

Method = Literal["umap", "pca"]
Progress = Callable[[int, int], None]

_UMAP_INPUT_DIMS = 50


def enable_numba_cache(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Point numba's cache at a writable VisionLens directory; works before or after numba is imported.

    An explicit ``NUMBA_CACHE_DIR`` in the environment wins, so operators can still move it.
    """
    if cache_dir is None and os.environ.get("NUMBA_CACHE_DIR"):
        path = Path(os.environ["NUMBA_CACHE_DIR"])
    else:
        if cache_dir is None:
            from visionlens.config import get_settings

            cache_dir = get_settings().home / "numba-cache"
        path = Path(cache_dir)
        os.environ["NUMBA_CACHE_DIR"] = str(path)
    path.mkdir(parents=True, exist_ok=True)
    if "numba" in sys.modules:
        from numba.core import config

        config.reload_config()
    return path


_umap_lock = threading.Lock()
_umap_cached = False


def _import_umap_cached():  # noqa: ANN202 - returns the umap module
    """Import umap-learn and turn on numba's on-disk cache for its kernels, one dispatcher at a time.

    pynndescent caches its kernels but umap-learn does not, so every new process would spend ~7 s recompiling the
    same layout code (2,000 x 50 points on 2 cores: 12.8 s without a cache, 5.3 s with it). An earlier version
    swapped ``numba.njit``/``numba.jit`` for caching wrappers while umap was imported; that changed the global
    numba module under every other thread compiling at the same moment (Datashader's kernels in the map view).
    ``Dispatcher.enable_caching()`` on umap's own dispatchers gives the same speed (measured: 5.3 s warm) and
    touches nothing but umap's functions. Kernels compiled eagerly at import (explicit signatures) stay uncached,
    which costs about nothing (1.5 s import either way); a kernel numba cannot cache is left as it is.
    """
    global _umap_cached
    with _umap_lock:
        import umap
        from numba.core.caching import NullCache
        from numba.core.dispatcher import Dispatcher

        if not _umap_cached:
            for name, module in list(sys.modules.items()):
                if module is None or not (name == "umap" or name.startswith("umap.")):
                    continue
                for obj in list(vars(module).values()):
                    if isinstance(obj, Dispatcher) and isinstance(obj._cache, NullCache):
                        try:
                            obj.enable_caching()
                        except RuntimeError:  # no writable cache locator for this function: compile as before
                            pass
            _umap_cached = True
    return umap


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"vectors must be a 2-D array [n, dim], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("vectors contain NaN or infinity")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def pca(vectors: np.ndarray, components: int = 2, chunk: int = 200_000) -> np.ndarray:
    """Top principal components via the d x d covariance, in chunks: 1M x 512 in a few seconds, no copy.

    Each axis's sign is fixed (largest loading positive) so the same data always gives the same picture.
    """
    x = np.asarray(vectors, dtype=np.float32)
    n, d = x.shape
    components = min(components, d)
    mean = x.mean(axis=0, dtype=np.float64)
    cov = np.zeros((d, d), np.float64)
    for start in range(0, n, chunk):
        block = x[start : start + chunk].astype(np.float64) - mean
        cov += block.T @ block
    _, eigvecs = np.linalg.eigh(cov)
    axes = eigvecs[:, ::-1][:, :components]
    axes *= np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(components)])
    out = np.empty((n, components), np.float32)
    for start in range(0, n, chunk):
        out[start : start + chunk] = (x[start : start + chunk] - mean) @ axes
    return out


def project(
    vectors: np.ndarray,
    method: Method = "umap",
    progress: Progress | None = None,
    seed: int | None = 0,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
) -> np.ndarray:
    """``[n, dim]`` vectors -> float32 ``[n, 2]`` map coordinates.

    ``seed`` makes UMAP reproducible (it then runs single-threaded); ``seed=None`` lets it use every core.
    ``progress(step, total)`` reports the coarse stages: started, reduced to 50-d (UMAP only), done.
    """
    if method not in ("umap", "pca"):
        raise ValueError(f"unknown projection method {method!r}; use 'umap' or 'pca'")
    steps = 2
    report = progress or (lambda step, total: None)
    report(0, steps)
    x = _unit_rows(vectors)
    n = len(x)
    if n == 0:
        report(steps, steps)
        return np.empty((0, 2), np.float32)
    if method == "pca" or n <= n_neighbors + 1:  # too few points for a neighbour graph: PCA says as much
        out = pca(x, 2)
        if out.shape[1] < 2:
            out = np.pad(out, ((0, 0), (0, 2 - out.shape[1])))
        report(steps, steps)
        return out
    if x.shape[1] > _UMAP_INPUT_DIMS:
        x = pca(x, _UMAP_INPUT_DIMS)
    report(1, steps)
    enable_numba_cache(cache_dir)
    umap = _import_umap_cached()

    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        random_state=seed,
        n_jobs=1 if seed is not None else -1,
    )
    out = reducer.fit_transform(x).astype(np.float32)
    report(steps, steps)
    return out
