"""Evaluation through the store vs pycocotools on the very files ingested: 5K images whose boxes often extend past
the border, ~37K predictions. Prints both APs and the largest difference over COCO's 12 stats.

    .venv/bin/python benchmarks/bench_eval_parity.py [REPO]   # REPO: another checkout to measure (default: this one)
"""
import sys, json, tempfile, pathlib, contextlib, io
import numpy as np
repo = sys.argv[1] if len(sys.argv) > 1 else str(pathlib.Path(__file__).resolve().parents[1])
sys.path.insert(0, repo)
import visionlens as vl
from visionlens.store.metadata import MetadataStore
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from PIL import Image
rng = np.random.default_rng(7)
W, H = 640, 480
d = pathlib.Path(tempfile.mkdtemp()); (d / "ds/images").mkdir(parents=True)
Image.new("RGB", (W, H)).save(d / "proto.jpg")
images, anns, preds = [], [], []
proto = (d / "proto.jpg").read_bytes()
for i in range(1, 5001):
    name = f"{i}.jpg"; (d / "ds/images" / name).write_bytes(proto)
    images.append({"id": i, "file_name": name, "width": W, "height": H})
    for _ in range(rng.integers(1, 6)):
        w, h = rng.uniform(5, 200), rng.uniform(5, 200)
        x, y = rng.uniform(-10, W - w + 10), rng.uniform(-10, H - h + 10)
        c = int(rng.integers(1, 6))
        anns.append({"id": len(anns) + 1, "image_id": i, "category_id": c, "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
        for _ in range(rng.integers(1, 4)):
            j = rng.normal(0, 0.08, 4) * [w, h, w, h]
            preds.append({"image_id": i, "category_id": c if rng.random() < 0.85 else int(rng.integers(1, 6)),
                          "bbox": [x + j[0], y + j[1], max(w + j[2], 1), max(h + j[3], 1)], "score": float(rng.random())})
    for _ in range(rng.integers(0, 4)):
        preds.append({"image_id": i, "category_id": int(rng.integers(1, 6)), "bbox": [float(rng.uniform(0, W - 50)), float(rng.uniform(0, H - 50)), 40.0, 40.0], "score": float(rng.random())})
doc = {"images": images, "annotations": anns, "categories": [{"id": k, "name": f"c{k}"} for k in range(1, 6)]}
(d / "ds/annotations.json").write_text(json.dumps(doc)); (d / "preds.json").write_text(json.dumps(preds))
oob = sum(1 for p in preds if p["bbox"][0] < 0 or p["bbox"][1] < 0 or p["bbox"][0] + p["bbox"][2] > W or p["bbox"][1] + p["bbox"][3] > H)
store = MetadataStore(d / "db.duckdb")
ds = vl.ingest(d / "ds", "p", predictions={"m": str(d / "preds.json")}, store=store)
ours = ds.evaluate("m").stats
with contextlib.redirect_stdout(io.StringIO()):
    g = COCO(str(d / "ds/annotations.json")); e = COCOeval(g, g.loadRes(str(d / "preds.json")), "bbox"); e.evaluate(); e.accumulate(); e.summarize()
names = ["AP","AP50","AP75","AP_small","AP_medium","AP_large","AR1","AR10","AR100","AR_small","AR_medium","AR_large"]
diff = max(abs(ours[n] - e.stats[k]) for k, n in enumerate(names))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from machine import machine
print(machine())
print(f"images 5000, preds {len(preds)}, past border {oob}: ours AP {ours['AP']:.9f}, pycocotools {e.stats[0]:.9f}, max |diff| over 12 stats {diff:.2e}")
