"""Stored evaluations: per-object outcomes, per-sample count fields owned by the evaluation, and summaries."""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from .kinds import NUMERIC
from .registry import Registry, check_field_names, eval_field_names
from .schema import EVAL_FIELD_SUFFIXES
from .sql import Sql, ident
from .writes import to_json


class Evaluations(Registry):
    def write_evaluation(
        self,
        dataset_id: int,
        key: str,
        model: str,
        iou: float,
        class_agnostic: bool,
        stats: dict[str, Any],
        objects: dict[str, np.ndarray],
        per_sample: dict[str, np.ndarray],
    ) -> None:
        """Replace one evaluation: its per-object rows, its per-sample tp/fp/fn fields and its summary.

        ``objects`` columns: ann_id, sample_id, is_pred, status, match_id, iou, error (aligned);
        ``per_sample``: sample_id, tp, fp, fn. The old evaluation's columns are dropped, not just emptied.
        """
        n = len(objects["ann_id"])
        table = pa.table(
            {
                "dataset_id": pa.array(np.full(n, dataset_id, np.int32)),
                "eval_key": pa.array([key] * n, pa.string()),
                **{
                    k: pa.array(np.asarray(objects[k]))
                    for k in ("ann_id", "sample_id", "is_pred", "status", "match_id")
                },
                "iou": pa.array(np.asarray(objects["iou"], np.float64)),
                "error": pa.array(np.asarray(objects["error"], np.int8)),
            }
        )
        counts = pa.table({k: pa.array(np.asarray(per_sample[k])) for k in ("sample_id", *EVAL_FIELD_SUFFIXES)})
        with self.transaction() as cur:
            self._delete_evaluation(cur, dataset_id, key)
            check_field_names(eval_field_names(key), self._field_names(cur, dataset_id), [], f"evaluation {key!r}")
            cur.execute(
                "INSERT INTO evaluations (dataset_id, key, model, iou, class_agnostic, stats) VALUES (?, ?, ?, ?, ?, ?)",
                [dataset_id, key, model, float(iou), bool(class_agnostic), to_json(stats)],
            )
            cur.register("_vl_eval", table)
            cur.execute("INSERT INTO eval_objects SELECT * FROM _vl_eval")
            cur.unregister("_vl_eval")
            cur.register("_vl_counts", counts)
            for suffix, name in zip(EVAL_FIELD_SUFFIXES, eval_field_names(key), strict=True):
                column = self._add_sample_field(cur, dataset_id, name, NUMERIC, owner=key)
                cur.execute(
                    f"UPDATE samples SET {ident(column)} = c.{suffix} FROM _vl_counts c "
                    "WHERE samples.id = c.sample_id AND samples.dataset_id = ?",
                    [dataset_id],
                )
            cur.unregister("_vl_counts")

    def _delete_evaluation(self, cur: duckdb.DuckDBPyConnection, dataset_id: int, key: str) -> None:
        cur.execute("DELETE FROM eval_objects WHERE dataset_id = ? AND eval_key = ?", [dataset_id, key])
        cur.execute("DELETE FROM evaluations WHERE dataset_id = ? AND key = ?", [dataset_id, key])
        self._drop_fields(cur, Sql.of("dataset_id = $d AND owner = $key", d=dataset_id, key=key))

    def evaluations(self, dataset_id: int) -> list[dict[str, Any]]:
        import orjson

        with self.cursor() as cur:
            rows = cur.execute(
                "SELECT key, model, iou, class_agnostic, created_at, stats FROM evaluations WHERE dataset_id = ? "
                "ORDER BY created_at",
                [dataset_id],
            ).fetchall()
        return [
            {
                "key": r[0],
                "model": r[1],
                "iou": r[2],
                "class_agnostic": r[3],
                "created_at": r[4],
                "stats": orjson.loads(r[5]) if r[5] else {},
            }
            for r in rows
        ]
