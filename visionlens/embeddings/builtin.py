"""An embedder that needs no weights, so the offline demo still gets a meaningful similarity map.

It describes how an image *looks*, not what it shows: colour distribution, coarse colour layout and the
direction of edges (stripes vs blobs, horizontal vs vertical structure). Images that look alike land together
on the map and in similarity search; semantic similarity needs CLIP.

Plain numpy, so the core install (no torch) has a working embedder, the similarity map and search.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

NAME = "builtin-colorstats-v1"  # bump the version whenever the features change: it names the collection

_SIDE = 64
_COLOUR_BINS = 4  # per channel -> 64 joint RGB bins
_ORIENT_BINS = 8
_LAYOUT_GRID = 3
_ORIENT_GRID = 2
# Block weights: colour dominates, structure refines; tuned by eye on the demo images.
_WEIGHTS = {"colour": 1.0, "layout": 0.7, "orient": 0.8, "edges": 0.5}


class ThumbnailTransform:
    """PIL image -> uint8 array [3, 64, 64]. A class (not a lambda) so it pickles. Plain numpy: no torch."""

    def __init__(self, side: int = _SIDE):
        self.side = side

    def __call__(self, image: Image.Image) -> Any:
        small = image.convert("RGB").resize((self.side, self.side), Image.Resampling.BILINEAR)
        return np.ascontiguousarray(np.asarray(small, dtype=np.uint8).transpose(2, 0, 1))


def _unit(block: np.ndarray) -> np.ndarray:
    return block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), np.float32(1e-8))


def _adaptive_avg_pool(x: np.ndarray, out: int) -> np.ndarray:
    """[B, C, H, W] -> [B, C, out, out] with the same (possibly overlapping) windows as torch's adaptive pool."""
    h, w = x.shape[2:]
    rows = [(i * h // out, -(-(i + 1) * h // out)) for i in range(out)]
    cols = [(j * w // out, -(-(j + 1) * w // out)) for j in range(out)]
    pooled = np.empty((*x.shape[:2], out, out), dtype=np.float32)
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            pooled[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return pooled


def _colour_histogram(x: np.ndarray) -> np.ndarray:
    """Joint RGB histogram, square-rooted so a small red object still counts next to a large grey sky."""
    b = x.shape[0]
    q = np.minimum((x * _COLOUR_BINS).astype(np.int64), _COLOUR_BINS - 1)
    idx = ((q[:, 0] * _COLOUR_BINS + q[:, 1]) * _COLOUR_BINS + q[:, 2]).reshape(b, -1)
    n = idx.shape[1]
    offsets = (np.arange(b, dtype=np.int64) * _COLOUR_BINS**3)[:, None]
    hist = np.bincount((idx + offsets).ravel(), minlength=b * _COLOUR_BINS**3).reshape(b, -1).astype(np.float32)
    return np.sqrt(hist / np.float32(n))


def _gradients(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sobel magnitude and unsigned orientation bin of the luminance."""
    luma = (np.float32(0.299) * x[:, 0] + np.float32(0.587) * x[:, 1] + np.float32(0.114) * x[:, 2])[:, None]
    p = np.pad(luma, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    dx = p[..., :, 2:] - p[..., :, :-2]  # horizontal difference, rows still padded
    dy = p[..., 2:, :] - p[..., :-2, :]  # vertical difference, columns still padded
    gx = dx[..., :-2, :] + 2 * dx[..., 1:-1, :] + dx[..., 2:, :]
    gy = dy[..., :, :-2] + 2 * dy[..., :, 1:-1] + dy[..., :, 2:]
    magnitude = np.sqrt(gx**2 + gy**2)
    angle = np.remainder(np.arctan2(gy, gx), np.float32(math.pi))
    bins = np.minimum((angle / np.float32(math.pi) * _ORIENT_BINS).astype(np.int64), _ORIENT_BINS - 1)
    return magnitude, bins


def _orientation_histograms(magnitude: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Magnitude-weighted edge-direction histograms for the whole image and a 2x2 grid (stripes vs texture)."""
    onehot = np.zeros((magnitude.shape[0], _ORIENT_BINS, *magnitude.shape[2:]), dtype=np.float32)
    np.put_along_axis(onehot, bins, magnitude, axis=1)
    cells = _adaptive_avg_pool(onehot, _ORIENT_GRID)  # [B, 8, 2, 2]
    cells = cells / np.maximum(cells.sum(1, keepdims=True), np.float32(1e-8))
    whole = onehot.mean((2, 3))
    whole = whole / np.maximum(whole.sum(1, keepdims=True), np.float32(1e-8))
    return np.concatenate([whole, cells.reshape(len(cells), -1)], 1)


class BuiltinEmbedder:
    """Colour histogram + colour layout + edge-orientation statistics of a 64x64 thumbnail (140 dims)."""

    name = NAME
    image_size = _SIDE

    def __init__(self) -> None:
        self.transform = ThumbnailTransform(_SIDE)
        self.dim = int(self.embed_batch(np.zeros((1, 3, _SIDE, _SIDE), dtype=np.uint8)).shape[1])

    def __repr__(self) -> str:
        return f"BuiltinEmbedder({self.name!r}, dim={self.dim})"

    def embed_batch(self, pixels: Any) -> np.ndarray:
        """uint8 ``[batch, 3, 64, 64]`` (numpy array or CPU tensor) -> float32 ``[batch, dim]``, L2-normalised."""
        x = np.asarray(pixels).astype(np.float32) / np.float32(255.0)
        magnitude, bins = _gradients(x)
        blocks = {
            "colour": _colour_histogram(x),
            "layout": _adaptive_avg_pool(x - np.float32(0.5), _LAYOUT_GRID).reshape(len(x), -1),
            "orient": _orientation_histograms(magnitude, bins),
            "edges": _adaptive_avg_pool(magnitude, _LAYOUT_GRID).reshape(len(x), -1),
        }
        out = np.concatenate([_unit(blocks[k]) * np.float32(w) for k, w in _WEIGHTS.items()], 1)
        return _unit(out).astype(np.float32, copy=False)
