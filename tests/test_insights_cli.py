"""`visionlens insights NAME --json`, run as a user runs it, on the demo's planted failures."""

from __future__ import annotations

import json

from tests.test_cli import run


def test_insights_json_lists_every_kind_with_the_documented_fields(home, demo_files):
    preds = [f"{m}={p}" for m, p in demo_files.predictions.items()]
    out = run(home, "ingest", str(demo_files.root), "--name", "demo", *sum((["-p", p] for p in preds), []))
    assert out.returncode == 0, out.stderr
    out = run(home, "insights", "demo", "--json")
    assert out.returncode == 0, out.stderr
    findings = json.loads(out.stdout)["findings"]
    kinds = [f["kind"] for f in findings]
    assert set(kinds) == {"slice", "error_pattern", "label_mistake", "near_duplicate"}
    assert kinds == sorted(kinds, key=["slice", "error_pattern", "label_mistake", "near_duplicate"].index)
    for kind in set(kinds):  # best first within each kind
        scores = [f["score"] for f in findings if f["kind"] == kind]
        assert scores == sorted(scores, reverse=True)
    images = {p.name for p in (demo_files.root / "images").rglob("*.jpg")}
    for f in findings:
        assert f["title"] and isinstance(f["score"], float) and f["files"]
        assert all(path.rsplit("/", 1)[-1] in images for path in f["files"])
    planted = json.loads(demo_files.planted.read_text())
    wrong = {p["gt_id"] for p in planted["wrong_gt_label"]}
    mistakes = [f for f in findings if f["kind"] == "label_mistake"]
    assert {m["mistake"] for m in mistakes} <= {"missing", "wrong_label", "bad_box", "never_found"}
    top_wrong = [m["gt_id"] for m in mistakes if m["mistake"] == "wrong_label"][: len(wrong)]
    assert wrong and set(top_wrong) == wrong  # the dogs labelled cat come first
    for m in mistakes:
        assert m["file"] in m["files"] and len(m["bbox"]) == 4
    leaks = [f for f in findings if f["kind"] == "near_duplicate"]
    pairs = {frozenset(p) for f in leaks for p in f["pairs"]}
    for p in planted["near_duplicates"]:
        assert any(
            {p["train"].rsplit("/", 1)[-1], p["val"].rsplit("/", 1)[-1]} == {x.rsplit("/", 1)[-1] for x in pair}
            for pair in pairs
        )
    table = run(home, "insights", "demo", "--kind", "slice")
    assert table.returncode == 0 and "slices" in table.stdout
    assert run(home, "insights", "demo", "--model", "nope").returncode == 1
