"""Evaluation through the store vs pycocotools on the very files ingested: 5K images whose boxes often extend past
the border, ~37K predictions. Prints both APs and the largest difference over COCO's 12 stats.

    .venv/bin/python benchmarks/bench_eval_parity.py [REPO]   # REPO: another checkout to measure (default: this one)
"""

from __future__ import annotations

import contextlib
import io
import json
import pathlib
import sys
import tempfile

import numpy as np

REPO = sys.argv[1] if len(sys.argv) > 1 else str(pathlib.Path(__file__).resolve().parents[1])
sys.path.insert(0, REPO)
sys.path.insert(1, str(pathlib.Path(__file__).resolve().parent))

from machine import machine  # noqa: E402
from PIL import Image  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

import visionlens as vl  # noqa: E402
from visionlens.store.metadata import MetadataStore  # noqa: E402

W, H, N_IMAGES = 640, 480, 5000
STATS = [
    "AP",
    "AP50",
    "AP75",
    "AP_small",
    "AP_medium",
    "AP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
]


def write_dataset(root: pathlib.Path, rng: np.random.Generator) -> tuple[pathlib.Path, pathlib.Path, int]:
    """COCO GT with boxes up to 10 px past the border, jittered predictions and background ones."""
    (root / "ds" / "images").mkdir(parents=True)
    proto = io.BytesIO()
    Image.new("RGB", (W, H)).save(proto, "JPEG")
    images, anns, preds = [], [], []
    for i in range(1, N_IMAGES + 1):
        (root / "ds" / "images" / f"{i}.jpg").write_bytes(proto.getvalue())
        images.append({"id": i, "file_name": f"{i}.jpg", "width": W, "height": H})
        for _ in range(rng.integers(1, 6)):
            w, h = rng.uniform(5, 200), rng.uniform(5, 200)
            x, y = rng.uniform(-10, W - w + 10), rng.uniform(-10, H - h + 10)
            c = int(rng.integers(1, 6))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": c,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
            for _ in range(rng.integers(1, 4)):
                j = rng.normal(0, 0.08, 4) * [w, h, w, h]
                preds.append(
                    {
                        "image_id": i,
                        "category_id": c if rng.random() < 0.85 else int(rng.integers(1, 6)),
                        "bbox": [x + j[0], y + j[1], max(w + j[2], 1), max(h + j[3], 1)],
                        "score": float(rng.random()),
                    }
                )
        for _ in range(rng.integers(0, 4)):
            box = [float(rng.uniform(0, W - 50)), float(rng.uniform(0, H - 50)), 40.0, 40.0]
            preds.append(
                {"image_id": i, "category_id": int(rng.integers(1, 6)), "bbox": box, "score": float(rng.random())}
            )
    doc = {"images": images, "annotations": anns, "categories": [{"id": k, "name": f"c{k}"} for k in range(1, 6)]}
    gt, dt = root / "ds" / "annotations.json", root / "preds.json"
    gt.write_text(json.dumps(doc))
    dt.write_text(json.dumps(preds))
    past = sum(
        1
        for p in preds
        if p["bbox"][0] < 0 or p["bbox"][1] < 0 or p["bbox"][0] + p["bbox"][2] > W or p["bbox"][1] + p["bbox"][3] > H
    )
    return gt, dt, past


def main() -> None:
    root = pathlib.Path(tempfile.mkdtemp(prefix="vl-parity-"))
    gt, dt, past = write_dataset(root, np.random.default_rng(7))
    store = MetadataStore(root / "db.duckdb")
    ds = vl.ingest(root / "ds", "parity", predictions={"m": str(dt)}, store=store)
    ours = ds.evaluate("m").stats
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt))
        e = COCOeval(coco, coco.loadRes(str(dt)), "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    diff = max(abs(ours[name] - e.stats[k]) for k, name in enumerate(STATS))
    n_preds = len(json.loads(dt.read_text()))
    print(machine())
    print(f"checkout {REPO}")
    print(
        f"images {N_IMAGES}, preds {n_preds}, past border {past}: ours AP {ours['AP']:.9f}, "
        f"pycocotools {e.stats[0]:.9f}, max |diff| over 12 stats {diff:.2e}"
    )


if __name__ == "__main__":
    main()
