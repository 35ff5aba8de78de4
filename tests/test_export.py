"""Export: a view of a dataset to COCO, YOLO or VOC (ground truth and predictions), and its fields to Parquet / CSV.

The round trip is the test of every format: export, ingest the export as a new dataset, and compare per image (by
file name) the splits, the labels, the boxes (to 1e-3 px) and the scores. The source holds what a writer can get
wrong: sub-pixel boxes, boxes past the border (also with a negative corner), PNG and JPEG images, two splits, a
subfolder, a crowd box, a polygon, COCO category ids that are not 1..n, a label only predictions use, two models
(one named with a space), and custom fields whose names hold a space and quotes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

import visionlens as vl
from tests.factories import image
from visionlens.errors import JobCancelled, VisionLensError
from visionlens.export import MARKER, export_view, image_mode, tag_filters
from visionlens.formats.writers import ExportError, NameBook, short_name

TOL = 1e-3
QUOTED = 'say "hi"'
CATEGORIES = [(3, "car"), (7, "person"), (11, "dog")]  # dog: predictions only
MODELS = ("det one", "m2")

# split, file name (under images/<split>/), size, custom fields
IMAGES = [
    ("train", "a.jpg", (64, 48), {"weather": "rain", "time of day": "day", QUOTED: 1.5}),
    ("train", "b.png", (80, 60), {"weather": "clear", "time of day": "night", QUOTED: 2.0}),
    ("train", "sub/c.jpg", (64, 48), {"weather": "clear", "time of day": "day", QUOTED: None}),
    ("val", "d.jpg", (100, 50), {"weather": "fog", "time of day": "dusk", QUOTED: 4.25}),
    ("val", "e.png", (64, 48), {"weather": "rain", "time of day": "night", QUOTED: 5.0}),
]
# image index, category id, box, crowd, polygon
GT = [
    (0, 3, [1.25, 2.5, 20.125, 10.0625], False, [[1.25, 2.5, 21.375, 2.5, 21.375, 12.5625]]),
    (0, 7, [50.5, 30.25, 20.0, 25.5], False, None),  # past the right and bottom border
    (1, 3, [-3.25, 10.5, 20.75, 12.125], False, None),  # negative x
    (1, 7, [10.0, 10.0, 30.0, 20.0], False, None),
    (1, 3, [40.333, 5.667, 7.111, 9.999], False, None),
    (3, 7, [12.75, 3.125, 40.5, 30.0625], False, None),
    (3, 3, [0.0, 0.0, 25.0, 25.0], True, None),  # crowd
    (4, 7, [5.5, 6.5, 7.5, 8.5], False, None),
]
# image index, model, category id, box, score
PREDS = [
    (0, "det one", 3, [1.5, 2.25, 19.875, 10.5], 0.91234),
    (0, "det one", 11, [48.5, 29.0, 22.0, 26.0], 0.40625),  # past the border, a label ground truth lacks
    (1, "det one", 7, [9.5, 10.25, 30.5, 19.75], 0.75),
    (3, "det one", 7, [12.0, 3.0, 41.0, 30.0], 0.5),
    (0, "m2", 7, [51.0, 30.0, 19.5, 25.0], 0.333),
    (4, "m2", 3, [5.25, 6.75, 7.5, 8.25], 0.987654321),
]


def build_source(root: Path) -> dict[str, Any]:
    """A COCO dataset in two split files, real images, and a COCO results file per model."""
    docs: dict[str, dict[str, Any]] = {
        split: {"images": [], "annotations": [], "categories": [{"id": i, "name": n} for i, n in CATEGORIES]}
        for split in ("train", "val")
    }
    for k, (split, name, size, fields) in enumerate(IMAGES):
        image(root / "images" / split / name, size, color=(30 * k, 90, 160))
        entry = {"id": k + 1, "file_name": name, "width": size[0], "height": size[1]}
        entry.update({f: v for f, v in fields.items() if v is not None})
        docs[split]["images"].append(entry)
    for a, (k, cat, box, crowd, poly) in enumerate(GT):
        ann = {"id": a + 1, "image_id": k + 1, "category_id": cat, "bbox": box, "iscrowd": int(crowd)}
        if poly:
            ann["segmentation"] = poly
        docs[IMAGES[k][0]]["annotations"].append(ann)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split, doc in docs.items():
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
    preds = {}
    for model in MODELS:
        rows = [
            {"image_id": k + 1, "category_id": cat, "bbox": box, "score": score}
            for k, m, cat, box, score in PREDS
            if m == model
        ]
        preds[model] = root / f"{model.replace(' ', '_')}.json"
        preds[model].write_text(json.dumps(rows))
    return preds


@pytest.fixture
def source(store, tmp_path):
    root = tmp_path / "src"
    preds = build_source(root)
    ds = vl.ingest(root, "src", predictions={m: str(p) for m, p in preds.items()}, store=store)
    assert ds.count() == len(IMAGES)
    return ds


def snapshot(ds: Any) -> dict[str, Any]:
    """Per image file name: split, ground truth (label, box, crowd) and each model's (label, box, score)."""
    table = ds.samples(limit=10_000, as_="arrow")
    names = {i: Path(p).name for i, p in zip(table["id"].to_pylist(), table["filepath"].to_pylist())}
    out: dict[str, Any] = {
        names[i]: {"split": s, "gt": [], "preds": {}}
        for i, s in zip(table["id"].to_pylist(), table["split"].to_pylist())
    }
    anns = ds.annotations(list(names))
    for r in anns.to_dict("records"):
        entry = out[names[r["sample_id"]]]
        box = (r["label"], r["x"], r["y"], r["w"], r["h"])
        if r["source"] == "ground_truth":
            entry["gt"].append((*box, bool(r["iscrowd"])))
        else:
            entry["preds"].setdefault(r["source"], []).append((*box, r["confidence"]))
    for entry in out.values():
        entry["gt"].sort()
        for rows in entry["preds"].values():
            rows.sort()
    return out


def assert_same(got: dict[str, Any], want: dict[str, Any], drop_crowd: bool = False) -> None:
    assert sorted(got) == sorted(want)
    for name, w in want.items():
        g = got[name]
        assert g["split"] == w["split"], name
        want_gt = [b for b in w["gt"] if not (drop_crowd and b[-1])]
        _same_boxes(g["gt"], want_gt, name)
        assert sorted(g["preds"]) == sorted(m for m, rows in w["preds"].items() if rows), name
        for model, rows in w["preds"].items():
            _same_boxes(g["preds"].get(model, []), rows, f"{name} {model}")


def _same_boxes(got: list[tuple], want: list[tuple], where: str) -> None:
    assert len(got) == len(want), (where, got, want)
    for g, w in zip(got, want):
        assert g[0] == w[0], (where, g, w)
        assert np.allclose(g[1:5], w[1:5], atol=TOL, rtol=0), (where, g, w)
        assert g[5] == w[5] if isinstance(w[5], bool) else abs(g[5] - w[5]) < 1e-12, (where, g, w)


def ingest_export(report: Any, name: str, store: Any) -> Any:
    hint = report.ingest
    return vl.ingest(
        hint["path"], name, format=hint["format"], images=hint["images"], predictions=hint["predictions"], store=store
    )


# --- round trips ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc"])
def test_round_trip_copy(fmt, source, store, tmp_path):
    out = tmp_path / f"out-{fmt}"
    report = export_view(store, "src", out, fmt)
    assert report.samples == len(IMAGES) and report.images["copied"] == len(IMAGES)
    assert report.predictions == {"det one": 4, "m2": 2}
    back = ingest_export(report, f"back-{fmt}", store)
    assert back.format == fmt
    assert_same(snapshot(back), snapshot(source), drop_crowd=fmt == "yolo")
    if fmt == "yolo":
        assert report.gt_boxes == len(GT) - 1 and any("crowd" in n for n in report.notes)
        assert back.labels()[:3] == ["car", "person", "dog"]  # class k is the dataset's k-th label
    # every image is a real copy with the original bytes
    src_files = {Path(p).name: Path(source.uri(p)) for p in source.samples(limit=100)["filepath"]}
    for p in back.samples(limit=100)["filepath"]:
        copied = Path(back.uri(p))
        assert copied.is_file() and not copied.is_symlink() and copied.is_relative_to(out)
        assert copied.read_bytes() == src_files[copied.name].read_bytes()
    assert json.loads((out / MARKER).read_text())["format"] == fmt


def test_coco_keeps_fields_ids_crowd_and_polygons(source, store, tmp_path):
    report = export_view(store, "src", tmp_path / "out", "coco")
    train = json.loads((tmp_path / "out" / "annotations" / "instances_train.json").read_text())
    assert [c["id"] for c in train["categories"]] == [3, 7, 11]  # the source's category ids
    first = train["images"][0]
    assert first["file_name"] == "a.jpg" and first["weather"] == "rain" and first[QUOTED] == 1.5
    assert first["time of day"] == "day"
    by_file = {im["file_name"] for im in train["images"]}
    assert by_file == {"a.jpg", "b.png", "sub/c.jpg"}
    poly = [a for a in train["annotations"] if a["segmentation"]]
    assert poly and poly[0]["segmentation"] == GT[0][4]
    results = json.loads((tmp_path / "out" / "predictions" / "det_one.json").read_text())
    image_ids = {im["id"] for f in ("train", "val") for im in _doc(tmp_path / "out", f)["images"]}
    assert {r["image_id"] for r in results} <= image_ids
    back = ingest_export(report, "back", store)
    fields = back.samples(limit=100, as_="arrow").to_pylist()
    want = {Path(n).name: f for _, n, _, f in IMAGES}
    for row in fields:
        for key, value in want[Path(row["filepath"]).name].items():
            assert row[key] == value, (row["filepath"], key)
    crowd = [b for e in snapshot(back).values() for b in e["gt"] if b[-1]]
    assert len(crowd) == 1


def _doc(out: Path, split: str) -> dict[str, Any]:
    return json.loads((out / "annotations" / f"instances_{split}.json").read_text())


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc"])
def test_filtered_subset_round_trips(fmt, source, store, tmp_path):
    flt = {"fields": [{"field": "weather", "values": ["rain", "fog"]}], "annotations": [{"labels": ["person"]}]}
    report = export_view(store, "src", tmp_path / "out", fmt, filters=flt, models=["m2"])
    want = {k: v for k, v in snapshot(source).items() if k in {"a.jpg", "d.jpg", "e.png"}}
    for entry in want.values():
        entry["preds"] = {"m2": entry["preds"].get("m2", [])}
    assert report.samples == 3 and set(report.predictions) == {"m2"}
    back = ingest_export(report, "subset", store)
    assert_same(snapshot(back), want, drop_crowd=fmt == "yolo")
    assert back.models() == ["m2"]


def test_no_predictions(source, store, tmp_path):
    report = export_view(store, "src", tmp_path / "out", "voc", models=[])
    assert report.predictions == {} and not (tmp_path / "out" / "predictions").exists()
    assert ingest_export(report, "gt-only", store).models() == []


# --- images: copy, link, in place ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc"])
def test_linked_images_point_at_the_originals(fmt, source, store, tmp_path):
    report = export_view(store, "src", tmp_path / "out", fmt, images="link")
    assert report.images["linked"] == len(IMAGES)
    originals = {Path(source.uri(p)).resolve() for p in source.samples(limit=100)["filepath"]}
    links = [p for p in (tmp_path / "out").rglob("*") if p.suffix in (".jpg", ".png")]
    assert len(links) == len(IMAGES) and all(p.is_symlink() for p in links)
    assert {p.resolve() for p in links} == originals


@pytest.mark.parametrize("fmt", ["coco", "voc"])
def test_images_left_in_place_round_trip(fmt, source, store, tmp_path):
    out = tmp_path / "out"
    report = export_view(store, "src", out, fmt, images="in-place")
    assert report.images["in_place"] == len(IMAGES) and report.ingest["images"] == source.root
    assert not [p for p in out.rglob("*") if p.suffix in (".jpg", ".png")]  # nothing copied or linked
    back = ingest_export(report, f"inplace-{fmt}", store)
    assert_same(snapshot(back), snapshot(source))
    originals = {Path(source.uri(p)) for p in source.samples(limit=100)["filepath"]}
    assert {Path(back.uri(p)) for p in back.samples(limit=100)["filepath"]} == originals


def test_yolo_cannot_leave_images_in_place(source, store, tmp_path):
    with pytest.raises(ExportError, match="beside its labels.*copy or link"):
        export_view(store, "src", tmp_path / "out", "yolo", images="in_place")
    assert not (tmp_path / "out").exists()


def test_image_mode_names():
    assert image_mode("in-place") == image_mode("in place") == "in_place" and image_mode("Link") == "link"
    with pytest.raises(ExportError, match="copy, link or in-place"):
        image_mode("hardlink")


# --- the folder: never someone else's, never half-written --------------------------------------------------------


def test_a_folder_not_made_by_an_export_is_refused(source, store, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.txt").write_text("years of work")
    with pytest.raises(ExportError, match="not empty and was not made by an export"):
        export_view(store, "src", out, "coco")
    assert [p.name for p in out.iterdir()] == ["thesis.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export_view(store, "src", empty, "coco").samples == len(IMAGES)


def test_an_earlier_export_is_replaced_whole(source, store, tmp_path):
    out = tmp_path / "out"
    export_view(store, "src", out, "yolo")
    (out / "labels" / "stale.txt").write_text("old")
    report = export_view(store, "src", out, "voc", filters={"split": "val"})
    assert report.samples == 2 and not (out / "labels").exists() and (out / "Annotations").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src", "vlhome"]  # no temporary or old folder left


def test_a_failing_export_leaves_nothing(source, store, tmp_path):
    out = tmp_path / "new" / "deeper" / "out"

    def cancel(step: str, done: int, total: int) -> None:
        if step == "copy images" and done:
            raise JobCancelled("cancelled")

    with pytest.raises(JobCancelled):
        export_view(store, "src", out, "coco", progress=cancel)
    assert not (tmp_path / "new").exists()  # the parents it made are gone too
    previous = tmp_path / "prev"
    export_view(store, "src", previous, "coco", filters={"split": "val"})
    with pytest.raises(JobCancelled):
        export_view(store, "src", previous, "coco", progress=cancel)
    assert json.loads((previous / MARKER).read_text())["samples"] == 2  # the earlier export is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prev", "src", "vlhome"]


def test_linking_into_the_dataset_folder_is_refused(source, store, tmp_path):
    """A dataset ingested from an export, exported again over it with links: the links would point into the folder
    the new export replaces."""
    out = tmp_path / "out"
    ingest_export(export_view(store, "src", out, "coco"), "from-export", store)
    for mode in ("link", "in_place"):
        with pytest.raises(ExportError, match="inside the export folder"):
            export_view(store, "from-export", out, "coco", images=mode)
    assert export_view(store, "from-export", out, "coco").images["copied"] == len(IMAGES)


def test_unknown_model_and_format(source, store, tmp_path):
    with pytest.raises(ExportError, match="no predictions named 'nope'"):
        export_view(store, "src", tmp_path / "out", "coco", models=["nope"])
    with pytest.raises(ExportError, match="unknown export format"):
        export_view(store, "src", tmp_path / "out", "tfrecord")
    assert not (tmp_path / "out").exists()


# --- format details ----------------------------------------------------------------------------------------------


def test_yolo_keeps_values_past_one_and_says_so(store, tmp_path):
    root = tmp_path / "src"
    image(root / "images" / "train" / "a.jpg", (100, 50))
    doc = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [90.0, 10.0, 40.0, 20.0]}],
        "categories": [{"id": 1, "name": "car"}],
    }
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_train.json").write_text(json.dumps(doc))
    vl.ingest(root, "wide", store=store)
    report = export_view(store, "wide", tmp_path / "out", "yolo")
    line = (tmp_path / "out" / "labels" / "train" / "a.txt").read_text().split()
    assert line[0] == "0" and float(line[1]) == pytest.approx(1.1) and float(line[3]) == pytest.approx(0.4)
    assert any("outside [0, 1]" in n for n in report.notes)


def test_yolo_without_standard_splits_writes_classes_txt(store, tmp_path):
    root = tmp_path / "src"
    for split in ("fold1", "fold2"):
        image(root / "images" / split / f"{split}.jpg", (64, 48))
        doc = {
            "images": [{"id": 1, "file_name": f"{split}.jpg", "width": 64, "height": 48}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1.5, 2.5, 10.25, 5.0]}],
            "categories": [{"id": 1, "name": "car"}],
        }
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
    src = vl.ingest(root, "folds", store=store)
    report = export_view(store, "folds", tmp_path / "out", "yolo")
    assert (tmp_path / "out" / "classes.txt").exists() and not (tmp_path / "out" / "data.yaml").exists()
    assert any("data.yaml" in n for n in report.notes)
    assert_same(snapshot(ingest_export(report, "folds-back", store)), snapshot(src))


def test_voc_xml_escapes_names_and_uses_one_based_corners(store, tmp_path):
    root = tmp_path / "src"
    image(root / "images" / "x.jpg", (64, 48))
    doc = {
        "images": [{"id": 1, "file_name": "x.jpg", "width": 64, "height": 48}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0.0, 0.5, 10.0, 20.25]}],
        "categories": [{"id": 1, "name": "<b>&car</b>"}],
    }
    (root / "annotations.json").write_text(json.dumps(doc))
    src = vl.ingest(root / "annotations.json", "esc", store=store)
    report = export_view(store, "esc", tmp_path / "out", "voc")
    xml = (tmp_path / "out" / "Annotations" / "x.xml").read_text()
    assert "<name>&lt;b&gt;&amp;car&lt;/b&gt;</name>" in xml
    assert "<xmin>1</xmin>" in xml and "<ymin>1.5</ymin>" in xml and "<xmax>10</xmax>" in xml
    assert_same(snapshot(ingest_export(report, "esc-back", store)), snapshot(src))


def test_short_names_and_name_book():
    assert short_name("images/train/a.jpg", "train") == "a.jpg"
    assert short_name("JPEGImages/a.jpg", None) == "a.jpg"
    assert short_name("train/sub/a.jpg", "train") == "sub/a.jpg"
    assert short_name("images", None) == "images"
    book = NameBook()
    assert [book.claim(n) for n in ("a.jpg", "a.png", "A.jpg", "b.jpg")] == ["a.jpg", "a_1.png", "A_2.jpg", "b.jpg"]
    flat = NameBook(flat=True)
    assert [flat.claim(n) for n in ("x/a.jpg", "y/a.jpg", "a.png")] == ["a.jpg", "y_a.jpg", "a_1.png"]


# --- metadata ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_metadata_tables(fmt, source, store, tmp_path):
    store.tag_samples(source.id, ["keep", "a,b"], sample_ids=[int(source.sample_ids()[0])])
    report = export_view(store, "src", tmp_path / "out", fmt, images="copy")  # images mode: ignored
    assert report.images == {} and report.ingest is None and report.image_mode is None
    want = store.samples_by_id(source.id, source.sample_ids())
    path = tmp_path / "out" / f"metadata.{fmt}"
    got = pq.read_table(path) if fmt == "parquet" else pcsv.read_csv(path)
    assert got.column_names == want.column_names
    assert {"weather", "time of day", QUOTED} <= set(got.column_names)
    assert got.num_rows == want.num_rows == len(IMAGES)
    for name in want.column_names:
        g, w = got[name].to_pylist(), want[name].to_pylist()
        if name == "tags" and fmt == "csv":
            g = [json.loads(v) for v in g]
        if fmt == "csv" and name == QUOTED:
            assert all((a is None and b is None) or a == pytest.approx(b) for a, b in zip(g, w)), name
            continue
        assert g == w, name
    assert ["a,b", "keep"] in want["tags"].to_pylist()


# --- the view: tags and filters ------------------------------------------------------------------------------------


def test_tag_filter(source, store, tmp_path):
    ids = source.sample_ids()
    store.tag_samples(source.id, "review", sample_ids=[int(ids[1]), int(ids[3])])
    flt = tag_filters({"split": "train"}, "review")
    assert source.count(flt) == 1
    report = export_view(store, "src", tmp_path / "out", "coco", filters=tag_filters(None, "review"))
    assert report.samples == 2
    assert tag_filters(None, None).is_empty


# --- the command line --------------------------------------------------------------------------------------------


def test_cli_export(home, tmp_path):
    import subprocess
    import sys

    from visionlens.store.metadata import close_all_stores, open_store

    store = open_store()
    preds = build_source(tmp_path / "src")
    ds = vl.ingest(tmp_path / "src", "src", predictions={m: str(p) for m, p in preds.items()}, store=store)
    store.tag_samples(ds.id, "pick", sample_ids=[int(i) for i in ds.sample_ids()[:2]])
    close_all_stores()  # the subprocess opens the database itself
    env = {**os.environ, "VISIONLENS_HOME": str(home), "COLUMNS": "200"}

    def run(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "visionlens.cli", "export", *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)

    out = run("src", str(tmp_path / "yolo"), "--format", "yolo", "--tag", "pick", "--models", "m2", "--images", "link")
    assert out.returncode == 0, out.stderr
    assert "exported 2 samples" in out.stderr and "visionlens ingest" in out.stderr
    assert len(list((tmp_path / "yolo" / "images").rglob("*.*"))) == 2
    assert (tmp_path / "yolo" / "predictions" / "m2").is_dir()
    flt = json.dumps({"fields": [{"field": "split", "values": ["val"]}]})
    out = run("src", str(tmp_path / "csv"), "--format", "csv", "--filters", flt, "--no-predictions")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "csv" / "metadata.csv").read_text().count("\n") == 3
    out = run("src", str(tmp_path / "csv"), "--format", "yolo", "--images", "in-place")
    assert out.returncode == 1 and "copy or link" in out.stderr and "Traceback" not in out.stderr
    out = run("src", str(tmp_path / "src"), "--format", "coco")
    assert out.returncode == 1 and "not made by an export" in out.stderr
    out = run("src", str(tmp_path / "x"), "--format", "coco", "--models", "m2", "--no-predictions")
    assert out.returncode == 2 and "not both" in out.stderr


# --- the app's export panel (no browser) -------------------------------------------------------------------------


def test_export_view_exports_the_current_view(source, store, tmp_path):
    from visionlens.query import Filters
    from visionlens.ui.export_view import ExportView
    from visionlens.ui.state import AppState

    state = AppState(store, dataset="src")
    state.filters = Filters.model_validate({"fields": [{"field": "split", "values": ["train"]}]})
    state.selection = np.asarray(source.sample_ids({"split": "train"})[:2])
    view = ExportView(state=state)
    assert "2 samples" in view.summary()
    view.set_options(format="voc", folder=str(tmp_path / "ui-out"), images="copy", models=["m2"])
    view.start()
    view.wait()
    assert "Exported" in view.message(), view.message()
    manifest = json.loads((tmp_path / "ui-out" / MARKER).read_text())
    assert manifest["samples"] == 2 and manifest["format"] == "voc" and list(manifest["predictions"]) == ["m2"]
    view.set_options(format="yolo", folder=str(tmp_path / "ui-out2"), images="in_place")
    view.start()
    view.wait()
    assert "copy or link" in view.message() and not (tmp_path / "ui-out2").exists()


def test_export_view_refuses_folders_outside_the_allowed_roots_when_served(source, store, tmp_path, monkeypatch):
    from visionlens.ui import export_view as module
    from visionlens.ui.state import AppState

    monkeypatch.setenv("VISIONLENS_ALLOWED_ROOTS", str(tmp_path / "allowed"))
    monkeypatch.setattr(module, "served", lambda: True)
    view = module.ExportView(state=AppState(store, dataset="src"))
    view.set_options(format="coco", folder=str(tmp_path / "elsewhere"))
    view.start()
    view.wait()
    assert "outside the folders this server may" in view.message() and not (tmp_path / "elsewhere").exists()


def test_errors_are_ours():
    assert issubclass(ExportError, VisionLensError)


def test_suggested_folder_is_one_the_server_accepts(home, tmp_path, monkeypatch):
    from visionlens.ui import export_view as module

    monkeypatch.setenv("VISIONLENS_ALLOWED_ROOTS", str(tmp_path / "allowed"))
    assert module.default_folder("my ds/1", "voc") == str(home / "exports" / "my_ds_1-voc")
    monkeypatch.setattr(module, "served", lambda: True)
    want = (tmp_path / "allowed").resolve() / "visionlens-exports" / "my_ds_1-voc"
    assert module.default_folder("my ds/1", "voc") == str(want)


# --- images on gs:// ------------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_gs_images_are_copied_through_media(store, tmp_path):
    from tests.gcs_emulator import gcs_emulator

    local = tmp_path / "src"
    preds = build_source(local)
    with gcs_emulator(tmp_path / "emulator") as emu:
        uri = emu.upload(local, "src")
        pred_uris = {m: f"{uri}/{p.name}" for m, p in preds.items()}
        source = vl.ingest(uri, "gs-src", predictions=pred_uris, store=store)
        assert source.root.startswith("gs://")
        report = export_view(store, "gs-src", tmp_path / "out", "voc")
        assert report.images["copied"] == len(IMAGES)
        with pytest.raises(ExportError, match="cannot be linked"):
            export_view(store, "gs-src", tmp_path / "linked", "coco", images="link")
        assert not (tmp_path / "linked").exists()
        back = ingest_export(report, "gs-back", store)
        assert_same(snapshot(back), snapshot(source))
    for name in ("a.jpg", "b.png", "d.jpg"):
        assert (tmp_path / "out" / "JPEGImages" / name).read_bytes() == next(local.rglob(name)).read_bytes()


def test_yolo_source_to_coco(store, tmp_path):
    from tests.factories import write_yolo

    root = write_yolo(
        tmp_path / "src",
        {"train/x": "0 0.5 0.5 0.25 0.125\n1 0.125 0.25 0.0625 0.1\n", "val/y": "1 0.33 0.66 0.2 0.3\n"},
        sizes={"train/x": (100, 50), "val/y": (64, 48)},
    )
    src = vl.ingest(root, "yolo-src", store=store)
    report = export_view(store, "yolo-src", tmp_path / "out", "coco")
    cats = _doc(tmp_path / "out", "train")["categories"]
    assert cats == [{"id": 1, "name": "car"}, {"id": 2, "name": "person"}]  # not YOLO's 0-based classes
    assert_same(snapshot(ingest_export(report, "yolo-back", store)), snapshot(src))
