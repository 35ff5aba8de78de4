"""An embedder that needs no weights, so the offline demo still gets a meaningful similarity map.

It describes how an image *looks*, not what it shows: colour distribution, coarse colour layout and the
direction of edges (stripes vs blobs, horizontal vs vertical structure). Images that look alike land together
on the map and in similarity search; semantic similarity needs CLIP.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
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
    """PIL image -> uint8 tensor [3, 64, 64]. A class (not a lambda) so DataLoader workers can pickle it."""

    def __init__(self, side: int = _SIDE):
        self.side = side

    def __call__(self, image: Image.Image) -> torch.Tensor:
        small = image.convert("RGB").resize((self.side, self.side), Image.Resampling.BILINEAR)
        return torch.from_numpy(np.array(small, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def _unit(block: torch.Tensor) -> torch.Tensor:
    return block / block.norm(dim=1, keepdim=True).clamp_min(1e-8)


def _colour_histogram(x: torch.Tensor) -> torch.Tensor:
    """Joint RGB histogram, square-rooted so a small red object still counts next to a large grey sky."""
    b = x.shape[0]
    q = (x * _COLOUR_BINS).long().clamp(max=_COLOUR_BINS - 1)
    idx = (q[:, 0] * _COLOUR_BINS + q[:, 1]) * _COLOUR_BINS + q[:, 2]
    hist = torch.zeros(b, _COLOUR_BINS**3).scatter_add_(1, idx.view(b, -1), torch.ones(b, idx[0].numel()))
    return (hist / idx[0].numel()).sqrt()


def _gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel magnitude and unsigned orientation bin of the luminance."""
    luma = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    gx = F.conv2d(F.pad(luma, (1, 1, 1, 1), mode="replicate"), sobel.view(1, 1, 3, 3))
    gy = F.conv2d(F.pad(luma, (1, 1, 1, 1), mode="replicate"), sobel.t().reshape(1, 1, 3, 3))
    magnitude = (gx**2 + gy**2).sqrt()
    angle = torch.atan2(gy, gx).remainder(math.pi)
    bins = (angle / math.pi * _ORIENT_BINS).long().clamp(max=_ORIENT_BINS - 1)
    return magnitude, bins


def _orientation_histograms(magnitude: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Magnitude-weighted edge-direction histograms for the whole image and a 2x2 grid (stripes vs texture)."""
    onehot = torch.zeros(magnitude.shape[0], _ORIENT_BINS, *magnitude.shape[2:])
    onehot.scatter_(1, bins, magnitude)
    cells = F.adaptive_avg_pool2d(onehot, _ORIENT_GRID)  # [B, 8, 2, 2]
    cells = cells / cells.sum(1, keepdim=True).clamp_min(1e-8)
    whole = onehot.mean((2, 3))
    whole = whole / whole.sum(1, keepdim=True).clamp_min(1e-8)
    return torch.cat([whole, cells.flatten(1)], 1)


class BuiltinEmbedder:
    """Colour histogram + colour layout + edge-orientation statistics of a 64x64 thumbnail (140 dims)."""

    name = NAME
    image_size = _SIDE

    def __init__(self) -> None:
        self.transform = ThumbnailTransform(_SIDE)
        self.dim = int(self.embed_batch(torch.zeros(1, 3, _SIDE, _SIDE, dtype=torch.uint8)).shape[1])

    def __repr__(self) -> str:
        return f"BuiltinEmbedder({self.name!r}, dim={self.dim})"

    @torch.inference_mode()
    def embed_batch(self, pixels: torch.Tensor) -> np.ndarray:
        x = pixels.float() / 255.0
        magnitude, bins = _gradients(x)
        blocks = {
            "colour": _colour_histogram(x),
            "layout": F.adaptive_avg_pool2d(x - 0.5, _LAYOUT_GRID).flatten(1),
            "orient": _orientation_histograms(magnitude, bins),
            "edges": F.adaptive_avg_pool2d(magnitude, _LAYOUT_GRID).flatten(1),
        }
        out = torch.cat([_unit(blocks[k]) * w for k, w in _WEIGHTS.items()], 1)
        return _unit(out).numpy().astype(np.float32, copy=False)
