"""Label-mistake candidates: each planted kind of label mistake is found and ranked first, agreeing models raise the
score, the demo's mislabelled dogs come out on top, and findings plus the per-sample field store and filter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import visionlens as vl
from tests.factories import coco_doc, write_coco, write_yolo
from visionlens.insights import load_findings, save_run
from visionlens.insights.mistakes import FIELD, MISTAKES, NoPredictionsError, find_label_mistakes, load, noisy_or

CAR = [10.0, 10.0, 60.0, 40.0]
PERSON = [120.0, 60.0, 30.0, 80.0]
SPURIOUS = [100.0, 0.0, 60.0, 40.0]  # a car-sized box where nothing is
N_IMAGES = 20
# image index -> planted label mistake; ids are the GT ids of the COCO file
REMOVED, RELABELLED, SHIFTED, SPURIOUS_IMG = 1, 2, 3, 4
RELABELLED_ID, SHIFTED_ID, SPURIOUS_ID = 1000 + 10 * RELABELLED + 1, 1000 + 10 * SHIFTED + 1, 9999


def _files(root: Path, models: dict[str, float], plant: bool = True) -> dict[str, Path]:
    """A car and a person per image, detected exactly by each model (its confidence), and four planted mistakes in
    the ground truth: a person left unlabelled, a person labelled car, a person box shifted off (IoU 1/3), and a
    car box where there is nothing."""
    images = [{"id": i + 1, "file_name": f"{i + 1:03d}.jpg", "width": 200, "height": 160} for i in range(N_IMAGES)]
    anns: list[dict[str, Any]] = []
    preds: dict[str, list[dict[str, Any]]] = {m: [] for m in models}
    for i in range(N_IMAGES):
        img = i + 1
        for k, (cat, box) in enumerate(((1, CAR), (2, PERSON))):
            for m, conf in models.items():
                preds[m].append({"image_id": img, "category_id": cat, "bbox": box, "score": conf - 0.005 * i})
            gt_box, gt_cat = list(box), cat
            if plant and k == 1 and img == REMOVED:
                continue
            if plant and k == 1 and img == RELABELLED:
                gt_cat = 1
            if plant and k == 1 and img == SHIFTED:
                gt_box[0] += 15
            anns.append(
                {
                    "id": 1000 + 10 * img + k,
                    "image_id": img,
                    "category_id": gt_cat,
                    "bbox": gt_box,
                    "area": gt_box[2] * gt_box[3],
                    "iscrowd": 0,
                }
            )
    if plant:
        anns.append(
            {
                "id": SPURIOUS_ID,
                "image_id": SPURIOUS_IMG,
                "category_id": 1,
                "bbox": SPURIOUS,
                "area": SPURIOUS[2] * SPURIOUS[3],
                "iscrowd": 0,
            }
        )
    write_coco(root, coco_doc(images, anns, ["car", "person"]))
    out = {}
    for m, rows in preds.items():
        out[m] = root / f"predictions_{m}.json"
        out[m].write_text(json.dumps(rows))
    return out


@pytest.fixture
def planted(tmp_path, store) -> vl.Dataset:
    files = _files(tmp_path / "p", {"a": 0.9, "b": 0.8})
    return vl.ingest(tmp_path / "p", "planted", predictions=files, store=store)


def _by_kind(found: list) -> dict[str, list]:
    out: dict[str, list] = {}
    for f in found:
        out.setdefault(f.detail["mistake"], []).append(f)
    return out


def test_each_planted_mistake_is_found_first_of_its_kind(planted):
    found, _ = find_label_mistakes(planted.store, planted.id)
    kinds = _by_kind(found)
    assert set(kinds) == {"missing", "wrong_label", "bad_box", "never_found"}
    sample = {int(s): int(i) for s, i in zip(planted.sample_ids(), range(N_IMAGES))}
    top = {k: v[0] for k, v in kinds.items()}
    assert sample[top["missing"].sample_ids[0]] == REMOVED - 1 and top["missing"].detail["predicted"] == "person"
    assert top["missing"].detail["bbox"] == PERSON and top["missing"].detail["gt_id"] is None
    assert top["wrong_label"].detail["gt_id"] == RELABELLED_ID
    assert (top["wrong_label"].detail["label"], top["wrong_label"].detail["predicted"]) == ("car", "person")
    assert top["bad_box"].detail["gt_id"] == SHIFTED_ID and top["bad_box"].detail["iou"] == pytest.approx(1 / 3)
    assert top["bad_box"].detail["predicted_bbox"] == PERSON
    assert top["never_found"].detail["gt_id"] == SPURIOUS_ID and top["never_found"].detail["bbox"] == SPURIOUS
    for f in top.values():
        assert f.kind == "label_mistake" and f.member_scores == [f.score] and len(f.object_ids) == 1
        assert f.detail["file"] == f"images/{sample[f.sample_ids[0]] + 1:03d}.jpg"
        assert f.score > 0.5 and set(f.detail["models"]) == {"a", "b"}
    # each planted mistake is the only candidate of its kind worth a look
    assert all(v[1].score < 0.1 * v[0].score for v in kinds.values() if len(v) > 1)
    assert [f.score for f in found] == sorted((f.score for f in found), reverse=True)


def test_clean_labels_give_no_candidates(tmp_path, store):
    files = _files(tmp_path / "c", {"a": 0.9}, plant=False)
    ds = vl.ingest(tmp_path / "c", "clean", predictions=files, store=store)
    found, field = find_label_mistakes(store, ds.id)
    assert found == [] and not field[FIELD][1].any() and len(field[FIELD][0]) == N_IMAGES


def test_two_agreeing_models_score_higher_than_one(planted):
    one = _by_kind(find_label_mistakes(planted.store, planted.id, models=["a"])[0])
    two = _by_kind(find_label_mistakes(planted.store, planted.id, models=["a", "b"])[0])
    for kind in ("missing", "wrong_label", "bad_box", "never_found"):
        assert two[kind][0].score > one[kind][0].score
    assert one["wrong_label"][0].model == "a" and two["wrong_label"][0].model is None
    # each model's confidence, discounted by how often it calls this class the other one (here: only this box)
    conf_a = 0.9 - 0.005 * (RELABELLED - 1)
    alone = one["wrong_label"][0]
    assert alone.score == pytest.approx(alone.evidence["per_model"]["a"]) and 0.5 * conf_a < alone.score < conf_a
    per = two["wrong_label"][0].evidence["per_model"]
    assert two["wrong_label"][0].score == pytest.approx(float(noisy_or(np.array([per["a"], per["b"]]))))


def test_a_model_confirming_the_label_lowers_the_score(tmp_path, store):
    """Model c labels the relabelled person a car, like the GT: the wrong-label evidence of a is weakened."""
    files = _files(tmp_path / "x", {"a": 0.9})
    rows = json.loads(files["a"].read_text())
    for r in rows:
        r["score"] = 0.7
        if r["image_id"] == RELABELLED and r["category_id"] == 2:
            r["category_id"] = 1
    files["c"] = tmp_path / "x" / "predictions_c.json"
    files["c"].write_text(json.dumps(rows))
    ds = vl.ingest(tmp_path / "x", "x", predictions=files, store=store)
    alone = _by_kind(find_label_mistakes(store, ds.id, models=["a"])[0])["wrong_label"][0]
    both = _by_kind(find_label_mistakes(store, ds.id, models=["a", "c"])[0])["wrong_label"][0]
    assert alone.detail["gt_id"] == both.detail["gt_id"] == RELABELLED_ID
    assert both.score == pytest.approx(alone.score * (1 - 0.7))


def test_a_models_habitual_confusion_is_weaker_evidence_than_a_rare_one(tmp_path, store):
    """Model a calls 8 of 20 people "car" with high confidence (its own error: the labels are right). One such
    disagreement says little; the planted person labelled "car", a confusion a makes nowhere else, must rank first
    although a is less confident there."""
    files = _files(tmp_path / "h", {"a": 0.9})
    rows = json.loads(files["a"].read_text())
    for r in rows:
        if r["category_id"] == 2 and 10 < r["image_id"] <= 18:
            r["category_id"], r["score"] = 1, 0.95
    files["a"].write_text(json.dumps(rows))
    ds = vl.ingest(tmp_path / "h", "habit", predictions=files, store=store)
    wrong = _by_kind(find_label_mistakes(store, ds.id)[0])["wrong_label"]
    assert wrong[0].detail["gt_id"] == RELABELLED_ID
    habit = [f for f in wrong if f.detail["label"] == "person"]
    assert len(habit) == 8 and all(f.score < 0.7 * 0.95 for f in habit)


def test_findings_and_field_store_and_filter(planted):
    store = planted.store
    found, field = find_label_mistakes(store, planted.id, max_findings=3)
    assert len(found) == 3 and len({f.detail["mistake"] for f in found}) == 3  # no kind crowds out the others
    sids, values = field[FIELD]
    assert len(sids) == N_IMAGES and values.max() == pytest.approx(max(f.score for f in found))
    assert np.count_nonzero(values > 0.5) == 4  # the four planted images, whatever was cut from the findings
    saved = save_run(store, planted.id, "label_mistakes", found, sample_fields=field)
    assert planted.count({FIELD: (0.5, 1.0)}) == 4
    assert planted.count(saved[0].app_filters()) == 1
    back = load_findings(store, planted.id, kind="label_mistake", with_members=True)
    assert [f.object_ids for f in back] == [f.object_ids for f in found]


def test_no_models_is_a_clear_error(tmp_path, store):
    files = _files(tmp_path / "n", {"a": 0.9})
    ds = vl.ingest(tmp_path / "n", "n", store=store)
    with pytest.raises(NoPredictionsError, match="has none"):
        find_label_mistakes(store, ds.id)
    ds.add_predictions("a", files["a"])
    with pytest.raises(NoPredictionsError, match="has none"):
        find_label_mistakes(store, ds.id, models=[])
    with pytest.raises(NoPredictionsError, match="not a model"):
        find_label_mistakes(store, ds.id, models=["zzz"])
    assert {f.detail["mistake"] for f in find_label_mistakes(store, ds.id)[0]} == set(MISTAKES)


def test_demo_dogs_labelled_cat_top_the_wrong_labels(demo_ds, demo_files):
    planted = {d["gt_id"] for d in json.loads(demo_files.planted.read_text())["wrong_gt_label"]}
    found, field = find_label_mistakes(demo_ds.store, demo_ds.id)
    wrong = [f for f in found if f.detail["mistake"] == "wrong_label"]
    top = {f.detail["gt_id"] for f in wrong[: len(planted)]}
    assert len(top & planted) >= 0.8 * len(planted)
    assert all(
        f.detail["label"] == "cat" and f.detail["predicted"] == "dog" for f in wrong if f.detail["gt_id"] in planted
    )
    # detector_a calls a third of all trucks "car" (a model error, the labels are right): one such disagreement
    # is weak evidence, so a planted mislabel both or one model contradicts ranks above every truck->car one
    trucks = [k for k, f in enumerate(wrong) if f.detail["label"] == "truck" and f.detail["predicted"] == "car"]
    planted_ranks = [k for k, f in enumerate(wrong) if f.detail["gt_id"] in planted]
    assert trucks and max(planted_ranks) < min(trucks)
    assert len(field[FIELD][0]) == demo_ds.count()


def test_gt_id_is_the_files_annotation_id_or_none(planted, tmp_path, store):
    gt = load(store, planted.id, "ground_truth")
    assert gt.file_id(int(np.flatnonzero(gt.ext_id == SPURIOUS_ID)[0])) == SPURIOUS_ID
    yolo = vl.ingest(write_yolo(tmp_path / "y", {"train/a": "0 0.5 0.5 0.2 0.2\n"}), "y", store=store)
    assert load(store, yolo.id, "ground_truth").file_id(0) is None  # YOLO files have no annotation ids
