"""2-D maps of the embeddings and the registry of vector collections (which embedder filled which)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from .registry import Registry
from .sql import Sql, first, ident
from .writes import to_json


class Projections(Registry):
    def write_projection(
        self, dataset_id: int, method: str, collection: str, sample_ids: np.ndarray, xy: np.ndarray
    ) -> None:
        """Replace the 2-D map of a dataset for one method (umap/pca).

        A map over ``map_parquet_threshold`` points also gets a Parquet copy for the map view's Dask path. The old
        copy is retracted before the rows change and the new one is published after they commit, so a crash in
        between leaves no copy (the view then reads DuckDB) rather than a copy of the previous map.
        """
        from .. import map_parquet
        from ..config import get_settings

        map_parquet.retract_map(self.path, dataset_id, method)
        table = pa.table(
            {
                "dataset_id": pa.array(np.full(len(sample_ids), dataset_id, np.int32)),
                "method": pa.array([method] * len(sample_ids), pa.string()),
                "collection": pa.array([collection] * len(sample_ids), pa.string()),
                "sample_id": pa.array(np.asarray(sample_ids, np.int64)),
                "x": pa.array(np.asarray(xy[:, 0], np.float32)),
                "y": pa.array(np.asarray(xy[:, 1], np.float32)),
            }
        )
        with self.transaction() as cur:
            cur.execute("DELETE FROM projections WHERE dataset_id = ? AND method = ?", [dataset_id, method])
            cur.register("_vl_proj", table)
            cur.execute("INSERT INTO projections SELECT * FROM _vl_proj")
            cur.unregister("_vl_proj")
        threshold = get_settings().map_parquet_threshold
        if len(sample_ids) > threshold:  # the digest of what was committed: a later write changes it
            digest = self.projection_digest(dataset_id, method)[1]
            map_parquet.publish_map(self.path, dataset_id, method, sample_ids, xy, threshold, digest)
        else:
            map_parquet.remove_map(self.path, dataset_id, method)

    def register_collection(self, collection: str, spec: str, options: dict[str, Any], dim: int) -> None:
        """Remember which embedder filled a vector collection, so text queries can be embedded the same way."""
        with self.transaction() as cur:
            cur.execute("DELETE FROM collections WHERE collection = ?", [collection])
            cur.execute("INSERT INTO collections VALUES (?, ?, ?, ?)", [collection, spec, to_json(options), dim])

    def collection_spec(self, collection: str) -> tuple[str, dict[str, Any]] | None:
        import orjson

        with self.cursor() as cur:
            row = first(cur.execute("SELECT spec, options FROM collections WHERE collection = ?", [collection]))
        return (row[0], orjson.loads(row[1]) if row[1] else {}) if row else None

    def projection_methods(self, dataset_id: int) -> list[tuple[str, str]]:
        """(method, collection) pairs that have a stored map."""
        with self.cursor() as cur:
            return [
                tuple(r)
                for r in cur.execute(
                    "SELECT DISTINCT method, collection FROM projections WHERE dataset_id = ? ORDER BY method",
                    [dataset_id],
                ).fetchall()
            ]

    def projection(self, dataset_id: int, method: str, color: str | None = None, coords: bool = True) -> pa.Table:
        """Map points (sample_id, x, y) and, optionally, a sample field to colour them by.

        ``color`` is a sample field name, or ``"label"`` for each sample's most frequent ground-truth label.
        ``coords=False`` leaves x and y out: a large map reads them from its Parquet copy.
        """
        select, join = "", Sql("")
        if color == "label":
            select = ", lab.label AS color"
            join = Sql.of(
                "LEFT JOIN (SELECT a.sample_id, arg_max(l.name, c) AS label FROM (SELECT sample_id, label_id, "
                "count(*) AS c FROM annotations WHERE dataset_id = $d AND source_id = 0 GROUP BY ALL) a "
                "JOIN labels l ON l.dataset_id = $d AND l.id = a.label_id GROUP BY a.sample_id) lab "
                "ON lab.sample_id = p.sample_id",
                d=dataset_id,
            )
        elif color:
            info = self.sample_field(dataset_id, color)
            select = f", CAST(s.{ident(info.column)} AS VARCHAR) AS color"
            join = Sql("JOIN samples s ON s.id = p.sample_id")
        with self.cursor() as cur:
            sql = (
                f"SELECT p.sample_id{', p.x, p.y' if coords else ''}{select} FROM projections p "
                + join
                + Sql.of(" WHERE p.dataset_id = $d AND p.method = $m ORDER BY p.sample_id", d=dataset_id, m=method)
            )
            return sql.arrow(cur)

    def projection_digest(self, dataset_id: int, method: str) -> tuple[int, int]:
        """(points, digest) of a stored map: the digest (xor of the rows' hashes) changes with any id or coordinate
        and not with row order, so a Parquet copy that carries it is known to be this very map."""
        with self.cursor() as cur:
            row = first(
                cur.execute(
                    "SELECT count(*), coalesce(bit_xor(hash(sample_id, x, y)), 0) FROM projections "
                    "WHERE dataset_id = ? AND method = ?",
                    [dataset_id, method],
                )
            )
        return (int(row[0]), int(row[1])) if row else (0, 0)
