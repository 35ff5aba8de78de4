"""Stable label colours, so "person" has the same colour in every session, process and screenshot."""

from __future__ import annotations

import hashlib
from functools import lru_cache

import colorcet

__all__ = ["PALETTE", "label_color"]

# Lightness band (CIE L*) readable on dark and on light photos; the grid also draws a dark halo under
# every box, which covers the light end.
_MIN_L, _MAX_L = 50.0, 80.0
_PALETTE_SIZE = 48


def _lightness(hex_color: str) -> float:
    """CIE L* of an sRGB colour (D65), enough to keep too dark or too pale colours out of the palette."""
    lin = []
    for i in (1, 3, 5):
        c = int(hex_color[i : i + 2], 16) / 255.0
        lin.append(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
    y = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    return 116.0 * y ** (1.0 / 3.0) - 16.0 if y > 0.008856 else 903.3 * y


def _build_palette() -> tuple[str, ...]:
    # Glasbey palettes are ordered so that every prefix is maximally distinct; keeping the order after
    # filtering keeps that property for the first colours, which the most common labels will mostly hit.
    picked = [c for c in colorcet.palette["glasbey_bw_minc_20"] if _MIN_L <= _lightness(c) <= _MAX_L]
    return tuple(c.lower() for c in picked[:_PALETTE_SIZE])


PALETTE: tuple[str, ...] = _build_palette()


@lru_cache(maxsize=4096)
def label_color(label: str) -> str:
    """'#rrggbb' for a label. blake2b, not hash(): Python salts str hashes per process."""
    digest = hashlib.blake2b(str(label).encode("utf-8"), digest_size=8).digest()
    return PALETTE[int.from_bytes(digest, "big") % len(PALETTE)]
