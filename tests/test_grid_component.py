"""Label colours and the virtualized ImageGrid component."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from visionlens.ui.colors import PALETTE, label_color


def test_label_color_is_a_stable_palette_colour() -> None:
    labels = ["person", "car", "dog", "traffic light", "ünïcode", ""]
    colors = [label_color(name) for name in labels]
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in colors)
    assert all(c in PALETTE for c in colors)
    assert len(set(PALETTE)) == len(PALETTE) >= 24
    # Different labels spread over the palette instead of collapsing on a few colours.
    assert len({label_color(f"class_{i}") for i in range(200)}) > len(PALETTE) // 2

    # Same colours in a fresh interpreter with a different str hash seed.
    code = "from visionlens.ui.colors import label_color;print(' '.join(label_color(n) for n in %r))" % labels
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [c for c in colors if c] and len(out.stdout.split()) == len(labels)


def test_palette_is_readable_on_dark_and_light() -> None:
    def luminance(c: str) -> float:
        r, g, b = ((v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4) for v in
                   (int(c[i : i + 2], 16) / 255 for i in (1, 3, 5)))
        return 0.2126 * r + 0.7152 * g + 0.0722 * b  # WCAG relative luminance

    # neither near-black nor near-white: contrast >= 1.5 against both black and white
    assert all((luminance(c) + 0.05) / 0.05 >= 1.5 and 1.05 / (luminance(c) + 0.05) >= 1.5 for c in PALETTE)
