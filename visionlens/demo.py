"""An offline demo dataset with planted, documented model failures.

Nothing can be downloaded on many machines, so the demo draws its own street-like scenes: real JPEG files with
objects of ten classes, COCO ground truth split into train/val files, and COCO results of two simulated
detectors. The failures below are planted on purpose and listed in ``planted.json`` so that tests (and users
trying the tool) can check that error analysis finds them:

1. ``small_dark_missed``: both detectors miss most small objects (area < 32²) on night images.
2. ``truck_as_car``: ``detector_a`` labels a third of trucks as cars (similar shapes and colours).
3. ``wrong_gt_label``: a few dogs are labelled ``cat`` in the ground truth; both detectors say ``dog``.
4. ``near_duplicates``: some val images are near-copies (shifted, brightened) of train images.
5. ``duplicate_detections``: ``detector_b`` emits a second, slightly shifted box for ~10% of its detections.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from .errors import VisionLensError
from .formats.base import ProgressCallback, no_progress

CLASSES = ["car", "truck", "bus", "person", "bicycle", "dog", "cat", "bird", "traffic_light", "stop_sign"]
_CLASS_P = np.array([0.22, 0.09, 0.05, 0.2, 0.07, 0.08, 0.08, 0.08, 0.07, 0.06])
_BASE_COLOR = {
    "car": (40, 90, 200),
    "truck": (55, 100, 185),
    "bus": (235, 190, 30),
    "person": (200, 120, 90),
    "bicycle": (30, 160, 90),
    "dog": (150, 95, 50),
    "cat": (160, 160, 165),
    "bird": (80, 60, 140),
    "traffic_light": (30, 30, 30),
    "stop_sign": (205, 30, 35),
}
_ASPECT = {  # width / height
    "car": 1.8,
    "truck": 2.4,
    "bus": 3.0,
    "person": 0.4,
    "bicycle": 1.6,
    "dog": 1.4,
    "cat": 1.2,
    "bird": 1.3,
    "traffic_light": 0.35,
    "stop_sign": 1.0,
}
TIMES = ["day", "dusk", "night"]
_TIME_P = [0.55, 0.25, 0.2]
_TIME_LIGHT = {"day": 1.0, "dusk": 0.6, "night": 0.22}
SCENES = ["urban", "highway", "park"]
WEATHER = ["clear", "fog", "rain"]
MODELS = ("detector_a", "detector_b")
SMALL_AREA = 32 * 32


# Written first into every folder the demo fills: only a folder holding it (or an empty one) is ever cleared.
DEMO_MARKER = ".visionlens-demo"
# What the demo writes, and so all that a rebuild removes; anything else a user put in the folder stays.
DEMO_ENTRIES = ("images", "annotations", "predictions", "planted.json")


class DemoDirError(VisionLensError):
    """The output folder holds files the demo did not write, so it will not write there."""


@dataclass
class DemoPaths:
    root: Path
    annotations: Path
    predictions: dict[str, Path]
    planted: Path


def _draw_object(draw: Any, label: str, box: tuple[float, float, float, float], color: tuple[int, ...]) -> None:
    x, y, w, h = box
    x1, y1 = x + w, y + h
    if label in ("car", "truck"):
        body_top = y + h * (0.25 if label == "car" else 0.05)
        draw.rounded_rectangle([x, body_top, x1, y1 - h * 0.2], radius=max(1, h * 0.15), fill=color)
        if label == "car":
            draw.rectangle([x + w * 0.25, y, x + w * 0.75, body_top + 1], fill=color)
        else:
            draw.rectangle([x1 - w * 0.28, y + h * 0.05, x1, y1 - h * 0.2], fill=tuple(int(c * 0.75) for c in color))
        r = h * 0.2
        for cx in (x + w * 0.22, x1 - w * 0.22):
            draw.ellipse([cx - r, y1 - 2 * r, cx + r, y1], fill=(20, 20, 20))
    elif label == "bus":
        draw.rectangle([x, y, x1, y1 - h * 0.12], fill=color)
        for k in range(5):
            wx = x + w * (0.06 + k * 0.18)
            draw.rectangle([wx, y + h * 0.15, wx + w * 0.12, y + h * 0.45], fill=(180, 220, 240))
        r = h * 0.12
        for cx in (x + w * 0.15, x1 - w * 0.15):
            draw.ellipse([cx - r, y1 - 2 * r, cx + r, y1], fill=(20, 20, 20))
    elif label == "person":
        draw.ellipse([x + w * 0.25, y, x1 - w * 0.25, y + h * 0.22], fill=(230, 190, 160))
        draw.rectangle([x, y + h * 0.22, x1, y + h * 0.65], fill=color)
        draw.rectangle([x + w * 0.1, y + h * 0.65, x1 - w * 0.1, y1], fill=(40, 40, 80))
    elif label == "bicycle":
        r = min(h * 0.45, w * 0.25)
        lw = max(1, int(r * 0.2))
        for cx in (x + r, x1 - r):
            draw.ellipse([cx - r, y1 - 2 * r, cx + r, y1], outline=color, width=lw)
        draw.line([x + r, y1 - r, x + w / 2, y, x1 - r, y1 - r], fill=color, width=lw)
    elif label in ("dog", "cat"):
        draw.ellipse([x, y + h * 0.3, x + w * 0.8, y1 - h * 0.15], fill=color)
        head = [x + w * 0.65, y + h * 0.05, x1, y + h * 0.5]
        draw.ellipse(head, fill=color)
        if label == "cat":
            for ex in (x + w * 0.7, x + w * 0.85):
                draw.polygon([(ex, y + h * 0.15), (ex + w * 0.07, y), (ex + w * 0.14, y + h * 0.15)], fill=color)
        else:
            draw.ellipse(
                [x + w * 0.62, y + h * 0.1, x + w * 0.72, y + h * 0.45], fill=tuple(int(c * 0.6) for c in color)
            )
        for lx in (x + w * 0.1, x + w * 0.55):
            draw.rectangle([lx, y1 - h * 0.25, lx + w * 0.08, y1], fill=color)
    elif label == "bird":
        draw.ellipse([x, y + h * 0.3, x + w * 0.75, y1], fill=color)
        draw.polygon([(x + w * 0.2, y + h * 0.5), (x + w * 0.5, y), (x + w * 0.6, y + h * 0.5)], fill=color)
        draw.polygon([(x + w * 0.75, y + h * 0.5), (x1, y + h * 0.6), (x + w * 0.75, y + h * 0.7)], fill=(230, 160, 30))
    elif label == "traffic_light":
        draw.rectangle([x, y, x1, y1], fill=color)
        for k, c in enumerate(((220, 40, 40), (230, 200, 40), (40, 200, 80))):
            cy = y + h * (0.17 + k * 0.33)
            r = min(w * 0.35, h * 0.13)
            draw.ellipse([x + w / 2 - r, cy - r, x + w / 2 + r, cy + r], fill=c)
    else:  # stop_sign
        cx, cy, r = x + w / 2, y + h / 2, min(w, h) / 2
        pts = [
            (cx + r * math.cos(math.pi / 8 + k * math.pi / 4), cy + r * math.sin(math.pi / 8 + k * math.pi / 4))
            for k in range(8)
        ]
        draw.polygon(pts, fill=color)
        draw.rectangle([cx - r * 0.6, cy - r * 0.12, cx + r * 0.6, cy + r * 0.12], fill=(240, 240, 240))


_GRAIN: Any = None


def _grain() -> np.ndarray:
    """A fixed tile of sensor-like grain (int16), cropped at a random offset per image: cheaper than fresh noise."""
    global _GRAIN
    if _GRAIN is None:
        _GRAIN = np.random.default_rng(12345).normal(0, 4, (768, 896, 3)).astype(np.int16)
    return _GRAIN


def _noise(rng: np.random.Generator, shape: tuple[int, int], octaves: tuple[int, ...] = (3, 6, 12, 24)) -> np.ndarray:
    """Seeded low-frequency noise in [0, 1] of ``shape`` (h, w): random grids of a few cells, bilinearly upsampled
    and summed with halving weight, so each image gets its own clouds, ground texture and skyline."""
    from PIL import Image

    h, w = shape
    out = np.zeros((h, w), np.float32)
    weight, total = 1.0, 0.0
    for cells in octaves:
        grid = rng.random((max(2, cells * h // max(h, w)), max(2, cells * w // max(h, w)))).astype(np.float32)
        out += weight * np.asarray(Image.fromarray(grid, "F").resize((w, h), Image.Resampling.BILINEAR))
        total += weight
        weight *= 0.5
    return out / total


def _background(rng: np.random.Generator, size: tuple[int, int], scene: str, light: float) -> tuple[Any, float]:
    """A scene's own sky and ground (per-image colours, clouds, texture, horizon height): (image, horizon y)."""
    from PIL import Image, ImageDraw

    w, h = size
    sw, sh = w // 4, h // 4  # the smooth parts are made at quarter size and upsampled
    horizon = float(rng.uniform(0.32, 0.58))
    sky = np.array({"urban": (150, 170, 200), "highway": (120, 170, 230), "park": (140, 200, 230)}[scene], np.float32)
    ground = np.array({"urban": (110, 110, 115), "highway": (80, 80, 85), "park": (70, 140, 60)}[scene], np.float32)
    sky = sky * rng.uniform(0.75, 1.2, 3).astype(np.float32)  # per-image colour jitter
    ground = ground * rng.uniform(0.7, 1.3, 3).astype(np.float32)
    yy = (np.arange(sh, dtype=np.float32) / sh)[:, None, None]
    clouds = _noise(rng, (sh, sw))[..., None]
    cover = float(rng.uniform(0.0, 1.0))
    top = sky * (0.65 + 0.35 * yy / horizon) + np.clip(clouds - 0.55 + 0.35 * cover, 0, 1) * 260 * cover
    texture = _noise(rng, (sh, sw), (4, 8, 16, 32))[..., None]
    bottom = ground * (0.75 + 0.3 * (yy - horizon) + 0.5 * (texture - 0.5))
    small = np.where(yy < horizon, top, bottom) * light
    im = Image.fromarray(np.clip(small, 0, 255).astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(im)
    hy = horizon * h

    def shade(c: Any, f: float = 1.0) -> tuple[int, ...]:
        return tuple(int(np.clip(v * light * f, 0, 255)) for v in c)

    if scene == "urban":  # buildings of random width and height along the horizon, some with lit windows
        x = float(rng.uniform(-40, 0))
        while x < w:
            bw, bh = float(rng.uniform(30, 110)), float(rng.uniform(0.08, 0.4) * h)
            c = rng.uniform(70, 190) * rng.uniform(0.85, 1.15, 3)
            draw.rectangle([x, hy - bh, x + bw, hy + 2], fill=shade(c))
            if rng.random() < 0.6:
                wc = shade((230, 220, 150), 1.6 if light < 0.5 else 0.9)
                for wy in np.arange(hy - bh + 6, hy - 8, 14):
                    for wx in np.arange(x + 5, x + bw - 8, 12):
                        if rng.random() < 0.5:
                            draw.rectangle([wx, wy, wx + 5, wy + 6], fill=wc)
            x += bw + float(rng.uniform(0, 25))
    elif scene == "park":  # trees of random height and crown size
        for _ in range(int(rng.integers(3, 12))):
            tx, th = float(rng.uniform(0, w)), float(rng.uniform(0.06, 0.3) * h)
            r = th * float(rng.uniform(0.3, 0.6))
            draw.rectangle([tx - r * 0.12, hy - th, tx + r * 0.12, hy + 4], fill=shade((90, 60, 35)))
            draw.ellipse(
                [tx - r, hy - th - r, tx + r, hy - th + r], fill=shade(rng.uniform(30, 90) * np.array((0.6, 1.4, 0.5)))
            )
    else:  # highway: a hill line and guard-rail posts
        pts = np.cumsum(rng.normal(0, 6, 12)) + hy - rng.uniform(5, 40)
        xs = np.linspace(0, w, 12)
        draw.polygon([(0, hy + 2), *zip(xs.tolist(), pts.tolist()), (w, hy + 2)], fill=shade(rng.uniform(60, 120, 3)))
    if scene in ("urban", "highway"):  # a road to a random vanishing point, with dashed markings
        vx = float(rng.uniform(0.2, 0.8) * w)
        spread = float(rng.uniform(0.3, 0.9) * w)
        draw.polygon(
            [(vx - 4, hy), (vx + 4, hy), (vx + spread, h), (vx - spread, h)],
            fill=shade(rng.uniform(50, 90) * np.ones(3)),
        )
        lanes = int(rng.integers(1, 4))
        for lane in range(1, lanes + 1):
            f = lane / (lanes + 1) * 2 - 1
            for t0 in np.arange(float(rng.uniform(0, 0.1)), 1, 0.16):
                t1 = t0 + 0.08
                y0, y1 = hy + (h - hy) * t0**1.5, hy + (h - hy) * t1**1.5
                draw.line(
                    [(vx + f * spread * t0**1.5, y0), (vx + f * spread * t1**1.5, y1)],
                    fill=shade((235, 230, 200)),
                    width=max(1, int(6 * t1)),
                )
    return im, hy


def _render(
    rng: np.random.Generator,
    size: tuple[int, int],
    time: str,
    scene: str,
    weather: str,
    objects: list[tuple[str, tuple[float, float, float, float]]],
) -> Any:
    """One scene drawn from ``rng`` alone (its own generator, so images=False writes the same annotations)."""
    from PIL import Image, ImageFilter

    w, h = size
    light = _TIME_LIGHT[time]
    im, _ = _background(rng, size, scene, light)
    from PIL import ImageDraw

    draw = ImageDraw.Draw(im)
    for label, (x, y, bw, bh) in objects:
        color = tuple(int(np.clip(c * light * rng.uniform(0.85, 1.15), 0, 255)) for c in _BASE_COLOR[label])
        _draw_object(draw, label, (x, y, bw, bh), color)
    grain = _grain()
    oy, ox = int(rng.integers(0, grain.shape[0] - h + 1)), int(rng.integers(0, grain.shape[1] - w + 1))
    arr = np.asarray(im, np.int16) + grain[oy : oy + h, ox : ox + w]
    im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if weather == "fog":
        im = Image.blend(im, Image.new("RGB", im.size, tuple(int(200 * light) for _ in range(3))), 0.35)
    elif weather == "rain":
        im = im.filter(ImageFilter.GaussianBlur(0.8))
    return im


def _shifted_box(
    box: tuple[float, float, float, float], shift: tuple[int, int], size: tuple[int, int]
) -> tuple[float, float, float, float]:
    """A box moved with its image's pixels by ``shift``, cut to the image."""
    x, y, bw, bh = box
    x0, y0 = max(0.0, x + shift[0]), max(0.0, y + shift[1])
    x1, y1 = min(float(size[0]), x + bw + shift[0]), min(float(size[1]), y + bh + shift[1])
    return (round(x0, 1), round(y0, 1), round(max(1.0, x1 - x0), 1), round(max(1.0, y1 - y0), 1))


def _near_copy(path: Path, shift: tuple[int, int], gain: float) -> Any:
    """A real near-copy of the image at ``path``: its pixels shifted by ``shift`` (edges repeated), brightened by
    ``gain``; the caller re-encodes it at a lower JPEG quality."""
    from PIL import Image

    with Image.open(path) as f:
        arr = np.asarray(f.convert("RGB"), np.float32)
    h, w = arr.shape[:2]
    dx, dy = shift
    ys = np.clip(np.arange(h) - dy, 0, h - 1)
    xs = np.clip(np.arange(w) - dx, 0, w - 1)
    return Image.fromarray(np.clip(arr[ys][:, xs] * gain, 0, 255).astype(np.uint8))


def _layout(
    rng: np.random.Generator, size: tuple[int, int], scene: str
) -> list[tuple[str, tuple[float, float, float, float]]]:
    w, h = size
    n = int(rng.integers(1, 9))
    p = _CLASS_P.copy()
    if scene == "highway":
        p[[0, 1, 2]] *= 2.5
        p[[5, 6, 7]] *= 0.3
    elif scene == "park":
        p[[3, 5, 6, 7]] *= 2.2
        p[[1, 2]] *= 0.3
    p /= p.sum()
    out = []
    for _ in range(n):
        label = CLASSES[int(rng.choice(len(CLASSES), p=p))]
        area = float(np.exp(rng.uniform(np.log(14 * 14), np.log(0.12 * w * h))))
        bw = min(w * 0.9, math.sqrt(area * _ASPECT[label]))
        bh = min(h * 0.9, area / bw)
        x = float(rng.uniform(0, w - bw))
        y = float(rng.uniform(h * 0.3, h - bh)) if bh < h * 0.7 else float(rng.uniform(0, h - bh))
        out.append((label, (round(x, 1), round(y, 1), round(bw, 1), round(bh, 1))))
    return out


def _simulate(
    rng: np.random.Generator,
    model: str,
    image_id: int,
    time: str,
    size: tuple[int, int],
    objects: list[tuple[str, tuple[float, float, float, float]]],
    true_labels: list[str],
    planted: dict[str, list[Any]],
    gt_ids: list[int],
) -> list[dict[str, Any]]:
    w, h = size
    strong = model == "detector_a"
    out = []
    for (_, (x, y, bw, bh)), true, gid in zip(objects, true_labels, gt_ids):
        small = bw * bh < SMALL_AREA
        p_detect = 0.96 if strong else 0.86
        if small:
            p_detect -= 0.25
        if small and time == "night":
            p_detect = 0.08
        if rng.random() > p_detect:
            if small and time == "night":
                planted["small_dark_missed"].append({"model": model, "gt_id": gid})
            continue
        pred = true
        if strong and true == "truck" and rng.random() < 0.35:
            pred = "car"
            planted["truck_as_car"].append({"gt_id": gid})
        elif not strong and rng.random() < 0.06:
            pred = CLASSES[int(rng.integers(len(CLASSES)))]
        jitter = 0.04 if strong else 0.12
        nx = x + rng.normal(0, jitter) * bw
        ny = y + rng.normal(0, jitter) * bh
        nw = bw * math.exp(rng.normal(0, jitter))
        nh = bh * math.exp(rng.normal(0, jitter))
        nx, ny = max(0.0, nx), max(0.0, ny)
        nw, nh = min(nw, w - nx), min(nh, h - ny)
        score = float(np.clip(rng.beta(8, 2) if strong else rng.beta(5, 3), 0.01, 0.999))
        out.append(
            {
                "image_id": image_id,
                "category_id": CLASSES.index(pred) + 1,
                "bbox": [round(nx, 2), round(ny, 2), round(nw, 2), round(nh, 2)],
                "score": round(score, 4),
            }
        )
        if not strong and rng.random() < 0.1:
            out.append(
                {
                    "image_id": image_id,
                    "category_id": CLASSES.index(pred) + 1,
                    "bbox": [
                        round(nx + 0.08 * nw, 2),
                        round(ny + 0.05 * nh, 2),
                        round(nw * 0.9, 2),
                        round(nh * 0.9, 2),
                    ],
                    "score": round(score * 0.7, 4),
                }
            )
            planted["duplicate_detections"].append({"gt_id": gid})
    for _ in range(int(rng.poisson(0.3 if strong else 1.0))):
        bw = float(rng.uniform(15, w * 0.3))
        bh = float(rng.uniform(15, h * 0.3))
        out.append(
            {
                "image_id": image_id,
                "category_id": int(rng.integers(1, len(CLASSES) + 1)),
                "bbox": [
                    round(float(rng.uniform(0, w - bw)), 2),
                    round(float(rng.uniform(0, h - bh)), 2),
                    round(bw, 2),
                    round(bh, 2),
                ],
                "score": round(float(rng.uniform(0.02, 0.45)), 4),
            }
        )
    return out


def _is_legacy_demo(root: Path, names: set[str]) -> bool:
    """A folder filled by a demo from before the marker: only demo entries, and the demo's own planted.json."""
    if not names <= set(DEMO_ENTRIES) or "planted.json" not in names:
        return False
    try:
        doc = orjson.loads((root / "planted.json").read_bytes()).get("doc")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(doc, str) and doc == __doc__


def prepare_demo_dir(out_dir: str | Path) -> Path:
    """Make ``out_dir`` ready for a (re)build, never at the cost of a user's files.

    A missing or empty folder is claimed with the marker. A folder an earlier demo run filled (the marker, or a
    pre-marker demo recognised by its ``planted.json``) loses only the entries the demo writes, so a rebuild with
    fewer images leaves no stale ones. Any other non-empty folder is refused before anything is written: a typo
    in ``--out`` must not delete someone's data.
    """
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise DemoDirError(f"demo output {str(root)!r} is a file, not a folder; choose another --out")
    names = {p.name for p in root.iterdir()} if root.exists() else set()
    if names and DEMO_MARKER not in names and not _is_legacy_demo(root, names):
        raise DemoDirError(
            f"demo output folder {str(root)!r} is not empty and was not made by `visionlens demo`; it was left "
            "untouched: choose another --out, or empty that folder first"
        )
    for name in DEMO_ENTRIES:
        path = root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    root.mkdir(parents=True, exist_ok=True)
    (root / DEMO_MARKER).write_text("Made by `visionlens demo`, which may replace what it wrote here.\n")
    return root


def build_demo(
    out_dir: str | Path,
    n: int = 1000,
    seed: int = 0,
    images: bool = True,
    progress: ProgressCallback = no_progress,
    val_fraction: float = 0.3,
) -> DemoPaths:
    """Write the demo dataset under ``out_dir`` and return where each part is.

    ``out_dir`` must be missing, empty or an earlier demo's folder (see ``prepare_demo_dir``); otherwise
    ``DemoDirError`` is raised and nothing is written.
    """
    rng = np.random.default_rng(seed)
    root = prepare_demo_dir(out_dir)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "predictions").mkdir(parents=True, exist_ok=True)
    categories = [{"id": i + 1, "name": c, "supercategory": "object"} for i, c in enumerate(CLASSES)]
    docs = {
        split: {"info": {"description": "VisionLens demo"}, "categories": categories, "images": [], "annotations": []}
        for split in ("train", "val")
    }
    preds: dict[str, list[dict[str, Any]]] = {m: [] for m in MODELS}
    planted: dict[str, list[Any]] = {
        k: []
        for k in ("small_dark_missed", "truck_as_car", "wrong_gt_label", "near_duplicates", "duplicate_detections")
    }
    n_val = int(round(n * val_fraction))
    n_train = n - n_val
    train_scenes: list[dict[str, Any]] = []
    ann_id = 1
    for i in range(n):
        if i % 50 == 0:
            progress("generate demo images", i, n)
        split = "train" if i < n_train else "val"
        image_id = i + 1
        dup_of = None
        if split == "val" and train_scenes and rng.random() < 0.03:
            dup_of = train_scenes[int(rng.integers(len(train_scenes)))]
            size, time, scene, weather = dup_of["size"], dup_of["time"], dup_of["scene"], dup_of["weather"]
            shift = (int(rng.integers(-6, 7)), int(rng.integers(-6, 7)))
            objects = [(lab, _shifted_box(box, shift, size)) for lab, box in dup_of["objects"]]
        else:
            size = (640, 480) if rng.random() < 0.8 else (512, 512)
            time = TIMES[int(rng.choice(3, p=_TIME_P))]
            scene = SCENES[int(rng.integers(3))]
            weather = WEATHER[int(rng.choice(3, p=[0.7, 0.15, 0.15]))]
            objects = _layout(rng, size, scene)
            shift = (0, 0)
        file_name = f"{split}/{image_id:07d}.jpg"
        gt_labels = [lab for lab, _ in objects]
        gt_ids = []
        for k, (lab, box) in enumerate(objects):
            gt_label = lab
            if lab == "dog" and rng.random() < 0.08:
                gt_label = "cat"
                planted["wrong_gt_label"].append({"gt_id": ann_id, "file_name": file_name, "gt": "cat", "true": "dog"})
            gt_labels[k] = gt_label
            docs[split]["annotations"].append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": CLASSES.index(gt_label) + 1,
                    "bbox": list(box),
                    "area": round(box[2] * box[3], 2),
                    "iscrowd": 0,
                }
            )
            gt_ids.append(ann_id)
            ann_id += 1
        gain = float(rng.uniform(1.1, 1.3)) if dup_of else 1.0
        if images:
            if dup_of:  # a real copy of the train image's pixels: shifted, brightened, re-encoded at a lower quality
                im = _near_copy(root / "images" / dup_of["file_name"], shift, gain)
                quality = 40
            else:
                im = _render(np.random.default_rng([seed, image_id]), size, time, scene, weather, objects)
                quality = 85
            path = root / "images" / file_name
            path.parent.mkdir(parents=True, exist_ok=True)
            im.save(path, "JPEG", quality=quality)
            brightness = float(np.asarray(im.convert("L").resize((32, 32))).mean() / 255.0)
        else:
            brightness = _TIME_LIGHT[time] * 0.55 * gain
        docs[split]["images"].append(
            {
                "id": image_id,
                "file_name": f"{image_id:07d}.jpg",
                "width": size[0],
                "height": size[1],
                "time_of_day": time,
                "scene": scene,
                "weather": weather,
                "brightness": round(brightness, 4),
            }
        )
        if dup_of:
            planted["near_duplicates"].append({"train": dup_of["file_name"], "val": file_name})
        elif split == "train":
            train_scenes.append(
                {
                    "size": size,
                    "time": time,
                    "scene": scene,
                    "weather": weather,
                    "objects": objects,
                    "file_name": file_name,
                }
            )
        for model in MODELS:
            preds[model] += _simulate(
                rng, model, image_id, time, size, objects, [lab for lab, _ in objects], planted, gt_ids
            )
    progress("generate demo images", n, n)
    ann_paths = {}
    for split, doc in docs.items():
        if not doc["images"]:
            continue
        p = root / "annotations" / f"instances_{split}.json"
        p.write_bytes(orjson.dumps(doc))
        ann_paths[split] = p
    pred_paths = {}
    for model, rows in preds.items():
        p = root / "predictions" / f"{model}.json"
        p.write_bytes(orjson.dumps(rows))
        pred_paths[model] = p
    planted_path = root / "planted.json"
    planted_path.write_bytes(orjson.dumps({"doc": __doc__, **planted}, option=orjson.OPT_INDENT_2))
    return DemoPaths(root, root / "annotations", pred_paths, planted_path)
