"""The `visionlens` command, run as a user runs it (a real subprocess for the exit code and output)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.factories import coco_doc, simple_coco, write_coco


def run(home: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "VISIONLENS_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "visionlens.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        input=input,
        timeout=300,
    )


def test_ingest_list_info_delete(home, tmp_path):
    path = simple_coco(tmp_path / "c")
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [1, 1, 9, 9], "score": 0.7}]))
    out = run(home, "ingest", str(path), "--name", "cars", "-p", f"m1={preds}")
    assert out.returncode == 0, out.stderr
    assert "3 samples" in out.stderr and "m1: 1" in out.stderr
    out = run(home, "list")
    assert "cars" in out.stdout and "m1" in out.stdout
    out = run(home, "info", "cars")
    assert out.returncode == 0 and "weather" in out.stdout and "person" in out.stdout
    out = run(home, "ingest", str(path), "--name", "cars")
    assert out.returncode == 1 and "--replace" in out.stderr and "Traceback" not in out.stderr
    out = run(home, "delete", "cars", input="n\n")
    assert out.returncode == 1
    assert run(home, "delete", "cars", "--yes").returncode == 0
    assert "no datasets yet" in run(home, "list").stdout


def test_bad_input_prints_one_clear_line(home, tmp_path):
    doc = coco_doc(
        [{"id": 1, "file_name": "a.jpg", "width": 9, "height": 9}],
        [{"id": 1, "image_id": 1, "category_id": 42, "bbox": [0, 0, 1, 1]}],
    )
    path = write_coco(tmp_path / "c", doc)
    out = run(home, "ingest", str(path), "--name", "bad")
    assert out.returncode == 1
    assert f"{path}:annotations[0].category_id: unknown category_id 42" in out.stderr.replace("\n", "")
    assert "Traceback" not in out.stderr


def test_warnings_are_summarised(home, tmp_path):
    doc = coco_doc([{"id": i, "file_name": f"gone{i}.jpg", "width": 9, "height": 9} for i in range(1, 6)], [])
    path = write_coco(tmp_path / "c", doc, make_images=False)
    out = run(home, "ingest", str(path), "--name", "gone")
    assert out.returncode == 0
    assert "missing_image" in out.stderr and "(+4 more)" in out.stderr


def test_demo_if_missing_and_help(home, tmp_path):
    out = run(home, "demo", "--n", "30", "--out", str(tmp_path / "d"))
    assert out.returncode == 0, out.stderr
    assert "demo ready: 30 images" in out.stderr
    assert (tmp_path / "d" / "planted.json").exists()
    out = run(home, "demo", "--if-missing")
    assert "nothing to do" in out.stderr
    for cmd in ("ingest", "demo", "list", "info", "delete", "add-predictions"):
        out = run(home, cmd, "--help")
        assert out.returncode == 0 and "Usage" in out.stdout


def test_demo_out_never_deletes_a_users_folder(home, tmp_path):
    target = tmp_path / "photos"
    target.mkdir()
    (target / "holiday.jpg").write_bytes(b"precious")
    out = run(home, "demo", "--n", "5", "--no-analyse", "--out", str(target))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert str(target) in out.stderr.replace("\n", "") and "not made by `visionlens demo`" in out.stderr.replace(
        "\n", ""
    )
    assert [p.name for p in target.iterdir()] == ["holiday.jpg"] and (
        target / "holiday.jpg"
    ).read_bytes() == b"precious"
    assert "no datasets yet" in run(home, "list").stdout
