"""Large 2-D maps as Parquet files, so the map view can aggregate them through Dask instead of loading one frame.

DuckDB stays the source of truth for a projection; the Parquet copy is derived from the same arrays right after
it is written (``Projections.write_projection``), only for maps over ``map_parquet_threshold`` points. Layout,
beside the DuckDB file (``<home>/maps`` with the default settings, so two databases never share map files)::

    maps/<dataset id>/<method>/current.json        which version is current, its size, id sum and bounds
    maps/<dataset id>/<method>/v-<hex>/part-00000.parquet ...   sample_id, x, y, row

Rows are sorted by sample id and ``row`` is that rank, so a colouring read from DuckDB in sample-id order (one
small code per point) lines up with any partition whatever way Dask splits or fuses the files.

A directory with files cannot be swapped atomically, so each write goes to a fresh ``v-<hex>`` folder and only
then ``current.json`` is replaced (``os.replace``): a reader sees the old map or the new one, never half of
either. The previous version stays until the next write, so a session still drawing it is not cut off mid-zoom.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "PARTITION_ROWS",
    "MapFiles",
    "map_dir",
    "maps_root",
    "publish_map",
    "read_map",
    "remove_dataset_maps",
    "remove_map",
    "retract_map",
    "stray_map_folders",
    "write_map",
]

PARTITION_ROWS = 1_500_000
"""Rows per file: one Dask partition of ~25 MB, enough work per task and few enough tasks at 10M points."""
POINTER = "current.json"
_SAFE = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class MapFiles:
    """One complete, current version of a map on disk."""

    folder: Path
    points: int
    id_sum: int  # sum of the sample ids: a cheap check that a colouring read from DuckDB lines up row for row
    digest: int | None  # ``Projections.projection_digest`` of the rows copied; None: unknown, never trusted
    bounds: tuple[float, float, float, float]  # finite x0, x1, y0, y1
    files: tuple[str, ...]

    @property
    def paths(self) -> list[str]:
        return [str(self.folder / name) for name in self.files]


def maps_root(db_path: str | os.PathLike[str]) -> Path:
    return Path(db_path).parent / "maps"


def map_dir(db_path: str | os.PathLike[str], dataset_id: int, method: str) -> Path:
    """Folder of one map; a method name that is not a plain word is hashed rather than trusted as a path."""
    name = method if _SAFE.fullmatch(method) else "m-" + hashlib.sha1(method.encode()).hexdigest()[:16]
    return maps_root(db_path) / str(int(dataset_id)) / name


def _bounds(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    fx, fy = x[np.isfinite(x)], y[np.isfinite(y)]
    if not len(fx) or not len(fy):
        return 0.0, 1.0, 0.0, 1.0
    return float(fx.min()), float(fx.max()), float(fy.min()), float(fy.max())


def write_map(
    db_path: str | os.PathLike[str],
    dataset_id: int,
    method: str,
    sample_ids: np.ndarray,
    xy: np.ndarray,
    rows_per_file: int = PARTITION_ROWS,
    digest: int | None = None,
) -> MapFiles:
    """Write a new version of the map and make it current; older versions but the previous one are removed."""
    ids = np.asarray(sample_ids, np.int64)
    xy = np.asarray(xy)
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    x, y = np.asarray(xy[order, 0], np.float32), np.asarray(xy[order, 1], np.float32)
    n = len(ids)
    row_type = np.int32 if n < 2**31 else np.int64
    target = map_dir(db_path, dataset_id, method)
    version = f"v-{uuid.uuid4().hex[:12]}"
    folder = target / version
    folder.mkdir(parents=True)
    files = []
    step = max(1, int(rows_per_file))
    for k, start in enumerate(range(0, max(n, 1), step)):
        stop = min(start + step, n)
        part = pa.table(
            {
                "sample_id": ids[start:stop],
                "x": x[start:stop],
                "y": y[start:stop],
                "row": np.arange(start, stop, dtype=row_type),
            }
        )
        name = f"part-{k:05d}.parquet"
        pq.write_table(part, folder / name, row_group_size=step)
        files.append(name)
    info = MapFiles(folder, n, int(ids.sum()), digest, _bounds(x, y), tuple(files))
    pointer = {
        "version": version,
        "points": info.points,
        "id_sum": info.id_sum,
        "digest": None if digest is None else str(digest),
        "bounds": list(info.bounds),
        "files": files,
    }
    tmp = target / f".{POINTER}.{version}.tmp"
    tmp.write_text(json.dumps(pointer))
    os.replace(tmp, target / POINTER)
    older = sorted((p for p in target.glob("v-*") if p.name != version), key=lambda p: p.stat().st_mtime)
    for old in older[:-1]:  # the newest older version stays for sessions still drawing it
        shutil.rmtree(old, ignore_errors=True)
    return info


def retract_map(db_path: str | os.PathLike[str], dataset_id: int, method: str) -> None:
    """Before the map's rows change: no reader may take the current copy for the new map (its files stay until
    the next write, for sessions already drawing it)."""
    if str(db_path) != ":memory:":
        (map_dir(db_path, dataset_id, method) / POINTER).unlink(missing_ok=True)


def read_map(db_path: str | os.PathLike[str], dataset_id: int, method: str) -> MapFiles | None:
    """The current version of a map, or None when there is none (or it is unreadable: the caller falls back)."""
    target = map_dir(db_path, dataset_id, method)
    try:
        meta = json.loads((target / POINTER).read_text())
        folder = target / str(meta["version"])
        info = MapFiles(
            folder,
            int(meta["points"]),
            int(meta["id_sum"]),
            None if meta.get("digest") is None else int(meta["digest"]),
            tuple(float(b) for b in meta["bounds"]),  # type: ignore[arg-type]
            tuple(str(f) for f in meta["files"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if all((folder / f).is_file() for f in info.files) else None


def publish_map(
    db_path: str | os.PathLike[str],
    dataset_id: int,
    method: str,
    sample_ids: np.ndarray,
    xy: np.ndarray,
    threshold: int,
    digest: int | None = None,
) -> MapFiles | None:
    """After a projection was written: a Parquet copy if it has more than ``threshold`` points, else none."""
    if str(db_path) == ":memory:":
        return None
    if len(sample_ids) <= threshold:
        remove_map(db_path, dataset_id, method)
        return None
    return write_map(db_path, dataset_id, method, sample_ids, xy, digest=digest)


def remove_map(db_path: str | os.PathLike[str], dataset_id: int, method: str) -> bool:
    """Forget a map's Parquet copy: the pointer first, so no reader picks up a folder being deleted."""
    if str(db_path) == ":memory:":
        return False
    target = map_dir(db_path, dataset_id, method)
    if not target.exists():
        return False
    (target / POINTER).unlink(missing_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    return True


def remove_dataset_maps(db_path: str | os.PathLike[str], dataset_id: int) -> bool:
    """Every map of a deleted dataset (ids are never reused, so nothing can still want them)."""
    if str(db_path) == ":memory:":
        return False
    folder = maps_root(db_path) / str(int(dataset_id))
    for pointer in folder.glob(f"*/{POINTER}"):
        pointer.unlink(missing_ok=True)
    existed = folder.exists()
    shutil.rmtree(folder, ignore_errors=True)
    return existed


def stray_map_folders(db_path: str | os.PathLike[str], live_dataset_ids: set[int]) -> list[Path]:
    """Map folders of datasets that no longer exist (a crash between the DuckDB delete and this folder's)."""
    root = maps_root(db_path)
    if str(db_path) == ":memory:" or not root.is_dir():
        return []
    return sorted(
        p for p in root.iterdir() if p.is_dir() and (not p.name.isdigit() or int(p.name) not in live_dataset_ids)
    )
