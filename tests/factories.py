"""Writers for small real datasets on disk (JPEG/PNG files and annotation files) used across the format tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image


def image(path: Path, size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (120, 30, 200)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, "PNG" if path.suffix == ".png" else "JPEG")
    return path


def coco_doc(
    images: list[dict[str, Any]], annotations: list[dict[str, Any]], categories: list[str] | None = None
) -> dict[str, Any]:
    cats = categories or ["car", "person"]
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": c} for i, c in enumerate(cats)],
    }


def write_coco(root: Path, doc: dict[str, Any] | str, make_images: bool = True, name: str = "annotations.json") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if make_images and isinstance(doc, dict):
        for im in doc["images"]:
            image(root / "images" / im["file_name"], (im.get("width") or 64, im.get("height") or 48))
    path = root / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=1))
    return path


def simple_coco(root: Path) -> Path:
    doc = coco_doc(
        [
            {"id": 1, "file_name": "a.jpg", "width": 64, "height": 48, "weather": "rain"},
            {"id": 2, "file_name": "b.jpg", "width": 64, "height": 48, "weather": "clear"},
            {"id": 3, "file_name": "sub/c.jpg", "width": 64, "height": 48, "weather": "clear"},
        ],
        [
            {
                "id": 10,
                "image_id": 1,
                "category_id": 1,
                "bbox": [1, 2, 20, 10],
                "area": 200,
                "iscrowd": 0,
                "segmentation": [[1, 2, 21, 2, 21, 12, 1, 12]],
            },
            {"id": 11, "image_id": 1, "category_id": 2, "bbox": [30, 5, 10, 30], "area": 300, "iscrowd": 0},
            {"id": 12, "image_id": 2, "category_id": 2, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 1},
        ],
    )
    return write_coco(root, doc)


def write_yolo(
    root: Path, labels: dict[str, str], names: list[str] | None = None, sizes: dict[str, tuple[int, int]] | None = None
) -> Path:
    """``labels`` maps ``split/stem`` to the text of its label file; every key gets a real JPEG."""
    names = names or ["car", "person"]
    splits = sorted({k.split("/")[0] for k in labels})
    for key, text in labels.items():
        split, stem = key.split("/")
        image(root / "images" / split / f"{stem}.jpg", (sizes or {}).get(key, (100, 50)))
        lp = root / "labels" / split / f"{stem}.txt"
        lp.parent.mkdir(parents=True, exist_ok=True)
        lp.write_text(text)
    (root / "data.yaml").write_text(
        "path: .\n"
        + "".join(f"{s}: images/{s}\n" for s in splits)
        + "names:\n"
        + "".join(f"  {i}: {n}\n" for i, n in enumerate(names))
    )
    return root


def voc_xml(
    filename: str,
    objects: list[tuple[str, int, int, int, int]],
    size: tuple[int, int] = (100, 80),
    scores: list[float] | None = None,
    difficult: set[int] | None = None,
) -> str:
    objs = []
    for k, (name, x0, y0, x1, y1) in enumerate(objects):
        score = f"<score>{scores[k]}</score>" if scores else ""
        diff = "<difficult>1</difficult>" if difficult and k in difficult else "<difficult>0</difficult>"
        objs.append(
            f"<object><name>{name}</name>{diff}{score}<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
            f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        )
    return (
        f"<annotation><filename>{filename}</filename><size><width>{size[0]}</width><height>{size[1]}</height>"
        f"<depth>3</depth></size>{''.join(objs)}</annotation>"
    )


def write_voc(
    root: Path, files: dict[str, str], splits: dict[str, list[str]] | None = None, size: tuple[int, int] = (100, 80)
) -> Path:
    """``files`` maps an image stem to its XML text; each gets a real JPEG in JPEGImages/."""
    for stem, xml in files.items():
        image(root / "JPEGImages" / f"{stem}.jpg", size)
        p = root / "Annotations" / f"{stem}.xml"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(xml)
    for split, stems in (splits or {}).items():
        p = root / "ImageSets" / "Main" / f"{split}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("\n".join(stems) + "\n")
    return root
