"""`visionlens delete` and `visionlens doctor` as a user runs them: real subprocesses on one home."""

from __future__ import annotations

from pathlib import Path

import duckdb

from tests.factories import simple_coco
from tests.test_cli import run
from visionlens.thumbnails import ThumbnailCache

COLLECTION = "builtin-colorstats-v1"


def uris_of(home: Path, name: str) -> list[str]:
    """Image uris of a dataset, read straight from the file (no store stays open to lock out the subprocess)."""
    with duckdb.connect(str(home / "visionlens.duckdb")) as con:
        rows = con.execute(
            "SELECT d.root, s.filepath FROM samples s JOIN datasets d ON d.id = s.dataset_id WHERE d.name = ?", [name]
        ).fetchall()
    return [f"{root.rstrip('/')}/{path}" for root, path in rows]


def ok(out) -> str:
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_doctor_reports_fixes_and_delete_leaves_nothing(home, tmp_path):
    for name in ("cars", "bikes"):
        ok(run(home, "ingest", str(simple_coco(tmp_path / name)), "--name", name))
        ok(run(home, "embed", name, "--project", "pca", "--workers", "0"))
    cache = ThumbnailCache(home / "thumbnails", 256)
    for name in ("cars", "bikes"):
        for uri in uris_of(home, name):
            assert not cache.get(uri, 1).placeholder
    out = ok(run(home, "doctor"))
    assert "ok      vector points whose sample is gone: 0" in out and out.rstrip().endswith("no orphans")
    assert f"{COLLECTION}: ok: 3/3 samples have vectors" in run(home, "doctor", "cars").stderr

    # Orphans behind the app's back: bikes' dataset row, a column nobody registered, a stray thumbnail.
    with duckdb.connect(str(home / "visionlens.duckdb")) as con:
        con.execute("DELETE FROM datasets WHERE name = 'bikes'")
        con.execute('ALTER TABLE samples ADD COLUMN "f_stray" DOUBLE')
    (cache.cache_dir / "256" / "00").mkdir(parents=True, exist_ok=True)
    (cache.cache_dir / "256" / "00" / ("00" * 20 + ".jpg")).write_bytes(b"\xff\xd8 not a sample's")

    out = run(home, "doctor")
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert "ORPHANS vector points whose sample is gone: 3" in lines
    assert f"          '{COLLECTION}': 3 points, e.g. ids 4, 5, 6" in lines
    assert "ORPHANS thumbnail cache files of no existing sample: 4" in lines
    assert any(line.startswith("ORPHANS DuckDB rows whose dataset is gone: ") for line in lines)
    assert "          samples: 3 rows of dataset id(s) 2" in lines
    assert "          'f_stray'" in lines
    assert "ok      evaluation objects whose evaluation is gone: 0" in lines
    assert lines[-1].endswith("run `visionlens doctor --fix` to remove them")

    out = run(home, "doctor", "cars", "--fix")
    assert out.returncode == 2 and "without a name" in out.stderr
    out = ok(run(home, "doctor", "--fix"))
    assert "removed: " in out and "vector_points 3" in out and out.rstrip().endswith("no orphans left")
    assert ok(run(home, "doctor")).rstrip().endswith("no orphans")

    out = run(home, "delete", "cars", "--yes")
    assert out.returncode == 0, out.stderr
    assert f"deleted 'cars': 3 samples; vectors: 3 from '{COLLECTION}'; 3 cached thumbnails" in out.stderr
    assert ok(run(home, "doctor")).rstrip().endswith("no orphans")
    assert not any(cache.cache_dir.rglob("*.jpg"))
