"""Writing datasets: insert one (with its models' predictions) or replace or delete it, each in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from ..errors import DatasetExistsError, FieldNameError
from ..formats.base import AnnotationRecords, Issue, ParsedDataset, ParsedPredictions
from .kinds import infer_kind
from .registry import Registry, check_field_names, looks_like_eval_field
from .schema import GROUND_TRUTH, allocate
from .sql import Sql, first, ident

# Tables holding a dataset's rows, children first so a partial view of a delete never shows a child without parent.
_DATASET_TABLES = (
    "saved_views",
    "finding_members",
    "findings",
    "insight_runs",
    "image_hashes",
    "projections",
    "eval_objects",
    "evaluations",
    "annotations",
    "samples",
    "labels",
    "sources",
    "ingest_issues",
)


def to_json(value: dict[str, Any]) -> str:
    import orjson

    return orjson.dumps(value, default=str).decode()


class Writes(Registry):
    def delete_dataset(self, name: str) -> None:
        """Remove every row and every custom column of the dataset (vectors and thumbnails live elsewhere:
        ``visionlens.cleanup.delete_dataset`` removes those too)."""
        row = self.get_dataset(name)
        with self.transaction() as cur:
            self._delete_rows(cur, row.id)

    def _delete_rows(self, cur: duckdb.DuckDBPyConnection, dataset_id: int) -> None:
        for table in _DATASET_TABLES:
            cur.execute(f"DELETE FROM {ident(table)} WHERE dataset_id = ?", [dataset_id])
        self._drop_fields(cur, Sql.of("dataset_id = $d", d=dataset_id))
        cur.execute("DELETE FROM datasets WHERE id = ?", [dataset_id])

    def insert_dataset(
        self,
        name: str,
        parsed: ParsedDataset,
        predictions: dict[str, ParsedPredictions] | None = None,
        replace: bool = False,
    ) -> int:
        """Write a parsed dataset and its models' predictions in one transaction."""
        predictions = predictions or {}
        check_field_names(list(parsed.samples.custom), [], predictions, f"{parsed.root}: image fields")
        with self.transaction() as cur:
            old = first(cur.execute("SELECT id FROM datasets WHERE name = ?", [name]))
            if old and not replace:
                raise DatasetExistsError(
                    f"a dataset named {name!r} exists; pass replace=True (--replace) to overwrite it"
                )
            if old:
                self._delete_rows(cur, old[0])
            ds_id = allocate(cur, "datasets", 1)
            cur.execute(
                "INSERT INTO datasets (id, name, format, root, info) VALUES (?, ?, ?, ?, ?)",
                [ds_id, name, parsed.format, parsed.root, to_json(parsed.info)],
            )
            label_ext = parsed.info.get("label_ext_ids") or [None] * len(parsed.labels)
            self._insert_labels(cur, ds_id, 0, parsed.labels, label_ext)
            cur.execute(
                "INSERT INTO sources (dataset_id, id, name, kind) VALUES (?, 0, ?, 'ground_truth')",
                [ds_id, GROUND_TRUTH],
            )
            self._register_builtin_fields(cur, ds_id)
            sample_ids = self._insert_samples(cur, ds_id, parsed)
            self._insert_annotations(cur, ds_id, 0, sample_ids, parsed.annotations)
            self._insert_issues(cur, ds_id, GROUND_TRUTH, parsed.issues)
            n_labels = len(parsed.labels)
            for model, preds in predictions.items():
                n_labels = self._insert_predictions(cur, ds_id, model, sample_ids, preds, n_labels)
        return ds_id

    def add_predictions(self, name: str, model: str, preds: ParsedPredictions, replace: bool = False) -> None:
        row = self.get_dataset(name)
        with self.transaction() as cur:
            existing = first(cur.execute("SELECT id FROM sources WHERE dataset_id = ? AND name = ?", [row.id, model]))
            if existing and not replace:
                raise DatasetExistsError(
                    f"dataset {name!r} already has predictions named {model!r}; pass replace=True to overwrite them"
                )
            if existing:
                for key in [
                    r[0]
                    for r in cur.execute(
                        "SELECT key FROM evaluations WHERE dataset_id = ? AND model = ?", [row.id, model]
                    ).fetchall()
                ]:
                    self._delete_evaluation(cur, row.id, key)
                cur.execute("DELETE FROM annotations WHERE dataset_id = ? AND source_id = ?", [row.id, existing[0]])
                cur.execute("DELETE FROM sources WHERE dataset_id = ? AND id = ?", [row.id, existing[0]])
                cur.execute("DELETE FROM ingest_issues WHERE dataset_id = ? AND source = ?", [row.id, model])
            sample_ids = np.asarray(
                cur.execute("SELECT id FROM samples WHERE dataset_id = ? ORDER BY id", [row.id]).fetchnumpy()["id"]
            )
            n_labels = first(cur.execute("SELECT count(*) FROM labels WHERE dataset_id = ?", [row.id]))[0]
            self._insert_predictions(cur, row.id, model, sample_ids, preds, n_labels)

    def _insert_predictions(
        self,
        cur: duckdb.DuckDBPyConnection,
        ds_id: int,
        model: str,
        sample_ids: np.ndarray,
        preds: ParsedPredictions,
        n_labels: int,
    ) -> int:
        self._check_model_name(cur, ds_id, model)
        source_id = first(cur.execute("SELECT coalesce(max(id), 0) + 1 FROM sources WHERE dataset_id = ?", [ds_id]))[0]
        cur.execute(
            "INSERT INTO sources (dataset_id, id, name, kind) VALUES (?, ?, ?, 'prediction')", [ds_id, source_id, model]
        )
        self._insert_labels(cur, ds_id, n_labels, preds.new_labels, [None] * len(preds.new_labels))
        self._insert_annotations(cur, ds_id, source_id, sample_ids, preds.annotations)
        self._insert_issues(cur, ds_id, model, preds.issues)
        return n_labels + len(preds.new_labels)

    def _check_model_name(self, cur: duckdb.DuckDBPyConnection, ds_id: int, model: str) -> None:
        """A model may not take the ground truth's name, another model's name in other letter case (their
        evaluation fields would be indistinguishable), or a name whose evaluation fields a dataset field holds."""
        if not isinstance(model, str) or not model.strip() or model.casefold() == GROUND_TRUTH:
            raise FieldNameError(f"{model!r} cannot name a model: it is empty or reserved for ground truth")
        for other in self._model_names(cur, ds_id):
            if other.casefold() == model.casefold():
                raise FieldNameError(f"models {other!r} and {model!r} differ only in letter case; rename one")
        for field in self._field_names(cur, ds_id, owned=False):
            if looks_like_eval_field(field, [model]):
                raise FieldNameError(
                    f"the evaluation fields of model {model!r} would be hidden by the dataset's "
                    f"field {field!r}; rename the model"
                )

    @staticmethod
    def _insert_labels(
        cur: duckdb.DuckDBPyConnection, ds_id: int, first_id: int, names: Sequence[str], ext: Sequence[Any]
    ) -> None:
        if not names:
            return
        table = pa.table(
            {
                "dataset_id": pa.array([ds_id] * len(names), pa.int32()),
                "id": pa.array(range(first_id, first_id + len(names)), pa.int32()),
                "name": pa.array(list(names), pa.string()),
                "ext_id": pa.array([None if e is None else str(e) for e in ext], pa.string()),
            }
        )
        cur.register("_vl_labels", table)
        cur.execute("INSERT INTO labels SELECT * FROM _vl_labels")
        cur.unregister("_vl_labels")

    def _insert_samples(self, cur: duckdb.DuckDBPyConnection, ds_id: int, parsed: ParsedDataset) -> np.ndarray:
        s = parsed.samples
        n = len(s)
        first_id = allocate(cur, "samples", n)
        ids = np.arange(first_id, first_id + n, dtype=np.int64)
        gt = parsed.annotations
        num_gt = np.bincount(gt.sample_index, minlength=n).astype(np.int32) if len(gt) else np.zeros(n, np.int32)
        columns: dict[str, pa.Array] = {
            "id": pa.array(ids),
            "dataset_id": pa.array(np.full(n, ds_id, np.int32)),
            "filepath": pa.array(s.filepath, pa.string()),
            "width": pa.array(np.asarray(s.width, np.int32)),
            "height": pa.array(np.asarray(s.height, np.int32)),
            "split": pa.array(s.split, pa.string()),
            "tags": pa.array([[] for _ in range(n)], pa.list_(pa.string())),
            "missing": pa.array(np.asarray(s.missing, bool)),
            "num_gt": pa.array(num_gt),
            "ext_id": pa.array([str(e) for e in s.ext_id], pa.string()),
        }
        for field_name, values in s.custom.items():
            kind = infer_kind(values)
            column = self._add_sample_field(cur, ds_id, field_name, kind)
            columns[column] = kind.to_arrow(values)
        cur.register("_vl_samples", pa.table(columns))
        names = ", ".join(ident(c) for c in columns)
        cur.execute(f"INSERT INTO samples ({names}) SELECT {names} FROM _vl_samples")
        cur.unregister("_vl_samples")
        return ids

    @staticmethod
    def _insert_annotations(
        cur: duckdb.DuckDBPyConnection, ds_id: int, source_id: int, sample_ids: np.ndarray, ann: AnnotationRecords
    ) -> None:
        """Boxes and scores go in as float64, exactly as read: evaluation must see the numbers of the files."""
        n = len(ann)
        if n == 0:
            return
        # Rows sorted by sample keep DuckDB's zone maps tight, so "boxes of these 60 samples" reads few row groups.
        order = np.argsort(ann.sample_index, kind="stable")
        first_id = allocate(cur, "annotations", n)
        bbox = np.asarray(ann.bbox, np.float64)[order]
        area = np.asarray(ann.area, np.float64)[order] if ann.area is not None else bbox[:, 2] * bbox[:, 3]
        columns = {
            "id": pa.array(np.arange(first_id, first_id + n, dtype=np.int64)),
            "dataset_id": pa.array(np.full(n, ds_id, np.int32)),
            "sample_id": pa.array(sample_ids[ann.sample_index[order]]),
            "source_id": pa.array(np.full(n, source_id, np.int16)),
            "label_id": pa.array(np.asarray(ann.label_index, np.int32)[order]),
            "x": pa.array(bbox[:, 0]),
            "y": pa.array(bbox[:, 1]),
            "w": pa.array(bbox[:, 2]),
            "h": pa.array(bbox[:, 3]),
            "confidence": pa.array(np.asarray(ann.confidence, np.float64)[order])
            if ann.confidence is not None
            else pa.nulls(n, pa.float64()),
            "iscrowd": pa.array(np.asarray(ann.iscrowd, bool)[order] if ann.iscrowd is not None else np.zeros(n, bool)),
            "area": pa.array(area),
            "polygon": pa.array(
                [ann.polygon[i] for i in order] if ann.polygon is not None else [None] * n,
                pa.list_(pa.list_(pa.float32())),
            ),
            "ext_id": pa.array(np.asarray(ann.ext_id, np.int64)[order])
            if ann.ext_id is not None
            else pa.nulls(n, pa.int64()),
        }
        cur.register("_vl_annotations", pa.table(columns))
        cur.execute(f"INSERT INTO annotations ({', '.join(columns)}) SELECT * FROM _vl_annotations")
        cur.unregister("_vl_annotations")

    @staticmethod
    def _insert_issues(cur: duckdb.DuckDBPyConnection, ds_id: int, source: str, issues: list[Issue]) -> None:
        if not issues:
            return
        table = pa.table(
            {
                "dataset_id": pa.array([ds_id] * len(issues), pa.int32()),
                "source": pa.array([source] * len(issues), pa.string()),
                "kind": pa.array([i.kind for i in issues], pa.string()),
                "file": pa.array([i.file for i in issues], pa.string()),
                "location": pa.array([i.location for i in issues], pa.string()),
                "message": pa.array([i.message for i in issues], pa.string()),
            }
        )
        cur.register("_vl_issues", table)
        cur.execute("INSERT INTO ingest_issues SELECT * FROM _vl_issues")
        cur.unregister("_vl_issues")
