"""Boxes as the files give them, and one policy for bad boxes and scores in COCO, VOC and YOLO (GT and predictions).

Readers are called directly (through ``detect_format`` and ``ingestion.read_predictions``) so float64 values can be
compared exactly; the database's column types are not this module's concern.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import visionlens as vl
from tests.factories import coco_doc, voc_xml, write_coco, write_voc, write_yolo
from visionlens.errors import IngestError
from visionlens.formats import detect_format
from visionlens.formats.base import ParsedDataset, ParsedPredictions, SampleIndex, no_progress
from visionlens.ingestion import read_predictions


def read(path: Path) -> ParsedDataset:
    src = str(path.resolve())
    return detect_format(src).read(src, None, no_progress)


def read_preds(parsed: ParsedDataset, path: Path) -> ParsedPredictions:
    s = parsed.samples
    index = SampleIndex(s.filepath, s.ext_id, s.width, s.height, parsed.labels, parsed.info["label_ext_ids"])
    return read_predictions(path.resolve(), index)


def kinds(issues) -> dict[str, list]:
    out: dict[str, list] = {}
    for i in issues:
        out.setdefault(i.kind, []).append(i)
    return out


# --- boxes are kept exactly as given --------------------------------------------------------------------------------


def test_coco_boxes_past_the_border_are_kept_at_full_precision(tmp_path):
    box = [-5.123456789012, 40.000000001, 20.333333333333, 19.9999999999]
    doc = coco_doc(
        [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
        [{"id": 1, "image_id": 1, "category_id": 1, "bbox": box}],
    )
    parsed = read(write_coco(tmp_path / "c", doc))
    assert parsed.annotations.bbox.dtype == np.float64
    assert parsed.annotations.bbox.tolist() == [box]
    past = kinds(parsed.issues)["boxes_past_border"]
    assert len(past) == 1 and "1 boxes in 1 images" in past[0].message and "kept as given" in past[0].message

    preds = tmp_path / "p.json"
    preds.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": box, "score": 0.5}]))
    p = read_preds(parsed, preds)
    assert p.annotations.bbox.tolist() == [box]
    assert [i.kind for i in p.issues] == ["boxes_past_border"]


def test_voc_boxes_past_the_border_are_kept_as_given(tmp_path):
    root = write_voc(tmp_path / "v", {"a": voc_xml("a.jpg", [("dog", "-3.5", 1, "120.25", 10)], size=(100, 80))})
    parsed = read(root)
    assert parsed.annotations.bbox.tolist() == [[-4.5, 0.0, 124.75, 10.0]]  # VOC corners, 1-based inclusive
    assert [i.kind for i in parsed.issues] == ["boxes_past_border"]

    preds = tmp_path / "preds"
    preds.mkdir()
    (preds / "a.xml").write_text(voc_xml("a.jpg", [("dog", "-3.5", 1, "120.25", 10)], scores=[0.5]))
    p = read_preds(parsed, preds)
    assert p.annotations.bbox.tolist() == [[-4.5, 0.0, 124.75, 10.0]]
    assert [i.kind for i in p.issues] == ["boxes_past_border"]


def test_yolo_boxes_past_the_border_are_kept_at_full_precision(tmp_path):
    root = write_yolo(tmp_path / "y", {"train/a": "0 0.05 0.987654321 0.3 0.2\n"}, sizes={"train/a": (200, 100)})
    parsed = read(root)
    expected = [(0.05 - 0.3 / 2) * 200, (0.987654321 - 0.2 / 2) * 100, 0.3 * 200, 0.2 * 100]
    assert parsed.annotations.bbox.tolist() == [expected]
    assert [i.kind for i in parsed.issues] == ["boxes_past_border"]

    preds = tmp_path / "preds"
    preds.mkdir()
    (preds / "a.txt").write_text("0 0.05 0.987654321 0.3 0.2 0.9\n")
    p = read_preds(parsed, preds)
    assert p.annotations.bbox.tolist() == [expected]
    assert [i.kind for i in p.issues] == ["boxes_past_border"]


def test_boxes_past_the_border_are_stored_unclipped_through_ingest(store, tmp_path):
    root = write_yolo(tmp_path / "y", {"train/a": "0 0.05 0.5 0.3 0.2\n"}, sizes={"train/a": (200, 100)})
    ds = vl.ingest(root, "y", store=store)
    ann = ds.annotations(ds.sample_ids())
    assert [ann["x"].iloc[0], ann["w"].iloc[0]] == pytest.approx([-20, 60])
    assert [i.kind for i in ds.issues()] == ["boxes_past_border"]


# --- bad boxes: COCO ----------------------------------------------------------------------------------------------

DROP, KEEP = False, True
COCO_BOXES = [
    pytest.param([math.nan, 1, 5, 5], DROP, "non-finite", id="nan-x"),
    pytest.param([1, math.inf, 5, 5], DROP, "non-finite", id="inf-y"),
    pytest.param([1, 1, -math.inf, 5], DROP, "non-finite", id="-inf-w"),
    pytest.param([1, 1, -5, 5], DROP, "negative width or height", id="negative-w"),
    pytest.param([1, 1, 5, -0.5], DROP, "negative width or height", id="negative-h"),
    pytest.param([1, 1, 0, 0], KEEP, None, id="zero-size"),
    pytest.param([-2, -3, 5, 5], KEEP, None, id="negative-xy"),
]


@pytest.mark.parametrize(("bbox", "kept", "why"), COCO_BOXES)
def test_coco_bad_gt_boxes(tmp_path, bbox, kept, why):
    doc = coco_doc(
        [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
        [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": bbox},
        ],
    )
    path = write_coco(tmp_path / "c", doc)  # json.dumps writes NaN and Infinity, as Python scripts do
    parsed = read(path)
    dropped = kinds(parsed.issues).get("dropped_box", [])
    if kept:
        assert parsed.annotations.bbox.tolist() == [[1, 2, 3, 4], bbox] and not dropped
    else:
        assert parsed.annotations.bbox.tolist() == [[1, 2, 3, 4]]
        assert parsed.annotations.ext_id.tolist() == [1] and parsed.annotations.area.tolist() == [12]
        assert len(dropped) == 1
        assert (dropped[0].file, dropped[0].location) == (str(path.resolve()), "annotations[1].bbox")
        assert why in dropped[0].message and "dropped" in dropped[0].message


@pytest.mark.parametrize(("bbox", "kept", "why"), COCO_BOXES)
def test_coco_bad_predicted_boxes(tmp_path, bbox, kept, why):
    root = tmp_path / "c"
    parsed = read(write_coco(root, coco_doc([{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}], [])))
    preds = tmp_path / "p.json"
    preds.write_text(
        json.dumps(
            [
                {"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.9},
                {"image_id": 1, "category_id": 1, "bbox": bbox, "score": 0.8},
            ]
        )
    )
    p = read_preds(parsed, preds)
    dropped = kinds(p.issues).get("dropped_box", [])
    if kept:
        assert p.annotations.bbox.tolist() == [[1, 2, 3, 4], bbox] and not dropped
    else:
        assert p.annotations.bbox.tolist() == [[1, 2, 3, 4]] and p.annotations.confidence.tolist() == [0.9]
        assert len(dropped) == 1 and (dropped[0].file, dropped[0].location) == (str(preds.resolve()), "[1]")
        assert why in dropped[0].message


SCORES = [
    pytest.param(math.nan, DROP, id="nan"),
    pytest.param(math.inf, DROP, id="inf"),
    pytest.param(1.5, KEEP, id="above-1"),
    pytest.param(-0.25, KEEP, id="negative"),
]


@pytest.mark.parametrize(("score", "kept"), SCORES)
def test_coco_bad_scores(tmp_path, score, kept):
    doc = coco_doc([{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}], [])
    parsed = read(write_coco(tmp_path / "c", doc))
    preds = tmp_path / "p.json"
    preds.write_text(
        json.dumps(
            [
                {"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5},
                {"image_id": 1, "category_id": 1, "bbox": [5, 6, 7, 8], "score": score},
            ]
        )
    )
    p = read_preds(parsed, preds)
    found = kinds(p.issues)
    if kept:
        assert p.annotations.confidence.tolist() == [0.5, score]
        [issue] = found["score_out_of_range"]
        assert "kept as given" in issue.message and "[1]" in issue.message and issue.file == str(preds.resolve())
    else:
        assert p.annotations.confidence.tolist() == [0.5]
        [issue] = found["dropped_box"]
        assert issue.location == "[1]" and "score" in issue.message


# --- bad boxes: VOC -----------------------------------------------------------------------------------------------

VOC_BOXES = [  # (xmin, ymin, xmax, ymax) as written in the XML
    pytest.param(("nan", 1, 5, 5), DROP, "non-finite", id="nan-xmin"),
    pytest.param((1, 1, "inf", 5), DROP, "non-finite", id="inf-xmax"),
    pytest.param((10, 1, 5, 5), DROP, "xmax < xmin", id="inverted-x"),
    pytest.param((1, 10, 5, 5), DROP, "ymax < ymin", id="inverted-y"),
    pytest.param((3, 3, 3, 3), KEEP, None, id="one-pixel"),
    pytest.param((-2, -3, 5, 5), KEEP, None, id="negative-corner"),
]


@pytest.mark.parametrize(("corners", "kept", "why"), VOC_BOXES)
def test_voc_bad_gt_boxes(tmp_path, corners, kept, why):
    root = write_voc(tmp_path / "v", {"a": voc_xml("a.jpg", [("dog", 11, 21, 50, 60), ("cat", *corners)])})
    parsed = read(root)
    dropped = kinds(parsed.issues).get("dropped_box", [])
    if kept:
        x0, y0, x1, y1 = (float(c) for c in corners)
        assert parsed.annotations.bbox.tolist() == [[10, 20, 40, 40], [x0 - 1, y0 - 1, x1 - x0 + 1, y1 - y0 + 1]]
        assert not dropped
    else:
        assert parsed.annotations.bbox.tolist() == [[10, 20, 40, 40]]
        assert len(dropped) == 1
        assert dropped[0].file == str((root / "Annotations" / "a.xml").resolve()) and dropped[0].location == "object[2]"
        assert why in dropped[0].message


@pytest.mark.parametrize(("corners", "kept", "why"), VOC_BOXES)
def test_voc_bad_predicted_boxes(tmp_path, corners, kept, why):
    parsed = read(write_voc(tmp_path / "v", {"a": voc_xml("a.jpg", [("dog", 11, 21, 50, 60)])}))
    preds = tmp_path / "preds"
    preds.mkdir()
    (preds / "a.xml").write_text(voc_xml("a.jpg", [("dog", 11, 21, 50, 60), ("dog", *corners)], scores=[0.9, 0.8]))
    p = read_preds(parsed, preds)
    dropped = kinds(p.issues).get("dropped_box", [])
    assert len(p.annotations) == (2 if kept else 1) and len(dropped) == (0 if kept else 1)
    if not kept:
        assert dropped[0].file == str((preds / "a.xml").resolve()) and dropped[0].location == "object[2]"
        assert why in dropped[0].message and p.annotations.confidence.tolist() == [0.9]


@pytest.mark.parametrize(("score", "kept"), SCORES)
def test_voc_bad_scores(tmp_path, score, kept):
    parsed = read(write_voc(tmp_path / "v", {"a": voc_xml("a.jpg", [("dog", 11, 21, 50, 60)])}))
    preds = tmp_path / "preds"
    preds.mkdir()
    (preds / "a.xml").write_text(voc_xml("a.jpg", [("dog", 11, 21, 50, 60), ("dog", 1, 1, 5, 5)], scores=[0.5, score]))
    p = read_preds(parsed, preds)
    found = kinds(p.issues)
    if kept:
        assert p.annotations.confidence.tolist() == [0.5, score]
        [issue] = found["score_out_of_range"]
        assert "a.xml:object[2]" in issue.message
    else:
        assert p.annotations.confidence.tolist() == [0.5]
        [issue] = found["dropped_box"]
        assert issue.file.endswith("a.xml") and issue.location == "object[2]" and "score" in issue.message


# --- bad boxes: YOLO ----------------------------------------------------------------------------------------------

YOLO_ROWS = [  # "cx cy w h" as written in the label file
    pytest.param("nan 0.5 0.1 0.1", DROP, "non-finite", id="nan-cx"),
    pytest.param("0.5 inf 0.1 0.1", DROP, "non-finite", id="inf-cy"),
    pytest.param("0.5 0.5 -0.1 0.1", DROP, "negative width or height", id="negative-w"),
    pytest.param("0.5 0.5 0.1 -inf", DROP, "non-finite", id="-inf-h"),
    pytest.param("0.5 0.5 0 0", KEEP, None, id="zero-size"),
    pytest.param("0.02 0.5 0.1 0.1", KEEP, None, id="left-edge-past-border"),
]


@pytest.mark.parametrize(("row", "kept", "why"), YOLO_ROWS)
def test_yolo_bad_gt_boxes(tmp_path, row, kept, why):
    root = write_yolo(tmp_path / "y", {"train/a": f"0 0.5 0.5 0.2 0.2\n1 {row}\n"})
    parsed = read(root)
    dropped = kinds(parsed.issues).get("dropped_box", [])
    assert len(parsed.annotations) == (2 if kept else 1) and len(dropped) == (0 if kept else 1)
    assert parsed.annotations.label_index[0] == 0
    if not kept:
        assert dropped[0].file == str((root / "labels" / "train" / "a.txt").resolve())
        assert dropped[0].location == "line 2" and why in dropped[0].message


@pytest.mark.parametrize(("row", "kept", "why"), YOLO_ROWS)
def test_yolo_bad_predicted_boxes(tmp_path, row, kept, why):
    parsed = read(write_yolo(tmp_path / "y", {"train/a": ""}))
    preds = tmp_path / "preds"
    preds.mkdir()
    (preds / "a.txt").write_text(f"0 0.5 0.5 0.2 0.2 0.9\n1 {row} 0.8\n")
    p = read_preds(parsed, preds)
    dropped = kinds(p.issues).get("dropped_box", [])
    assert len(p.annotations) == (2 if kept else 1) and len(dropped) == (0 if kept else 1)
    if not kept:
        assert dropped[0].file == str((preds / "a.txt").resolve()) and dropped[0].location == "line 2"
        assert why in dropped[0].message and p.annotations.confidence.tolist() == [0.9]


@pytest.mark.parametrize(("score", "kept"), SCORES)
def test_yolo_bad_scores(tmp_path, score, kept):
    parsed = read(write_yolo(tmp_path / "y", {"train/a": ""}))
    preds = tmp_path / "preds"
    preds.mkdir()
    (preds / "a.txt").write_text(f"0 0.5 0.5 0.2 0.2 0.5\n1 0.5 0.5 0.1 0.1 {score}\n")
    p = read_preds(parsed, preds)
    found = kinds(p.issues)
    if kept:
        assert p.annotations.confidence.tolist() == [0.5, score]
        [issue] = found["score_out_of_range"]
        assert "a.txt:line 2" in issue.message and "kept as given" in issue.message
    else:
        assert p.annotations.confidence.tolist() == [0.5]
        [issue] = found["dropped_box"]
        assert issue.location == "line 2" and "score" in issue.message


def test_yolo_unnormalised_coordinates_still_stop_with_file_and_line(tmp_path):
    """A value above 1 means pixels, not a bad box: that is an error about the whole file."""
    root = write_yolo(tmp_path / "y", {"train/a": "0 0.5 0.5 0.2 0.2\n0 320 240 50 60\n"})
    with pytest.raises(IngestError, match=r"labels/train/a\.txt:line 2: value 320\.0 is outside \[0, 1\]"):
        read(root)


def test_dropped_boxes_and_scores_reach_the_stored_issues(store, tmp_path):
    root = tmp_path / "c"
    doc = coco_doc(
        [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
        [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [1, 1, math.nan, 5]},
        ],
    )
    preds = tmp_path / "p.json"
    preds.write_text(
        json.dumps(
            [
                {"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 3.0},
                {"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "score": math.nan},
            ]
        )
    )
    ds = vl.ingest(write_coco(root, doc), "c", predictions={"m": preds}, store=store)
    assert len(ds.annotations(ds.sample_ids(), sources=["ground_truth"])) == 1
    assert len(ds.annotations(ds.sample_ids(), sources=["m"])) == 1
    assert sorted(i.kind for i in ds.issues()) == ["dropped_box", "dropped_box", "score_out_of_range"]
