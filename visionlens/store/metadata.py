"""The DuckDB store: the schema and every SQL statement of VisionLens.

DuckDB is the source of truth for samples, labels and boxes. One connection per process (DuckDB locks the file to
one process); each call takes its own cursor so Panel sessions on different threads never share a statement.
Values always travel as parameters; identifiers only ever come from the field registry (our own sanitised column
names), so no user string is pasted into SQL.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from ..errors import DatasetExistsError, DatasetNotFoundError, FilterError, StoreLockedError
from ..formats.base import AnnotationRecords, Issue, ParsedDataset, ParsedPredictions, SampleIndex
from ..query import FieldFilter, Filters, LabelFilter, Sort

SCHEMA_VERSION = 1
GROUND_TRUTH = "ground_truth"

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR, value VARCHAR)",
    """CREATE TABLE IF NOT EXISTS datasets (
        id INTEGER NOT NULL, name VARCHAR NOT NULL, format VARCHAR NOT NULL, root VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp, info JSON)""",
    """CREATE TABLE IF NOT EXISTS samples (
        id BIGINT NOT NULL, dataset_id INTEGER NOT NULL, filepath VARCHAR NOT NULL,
        width INTEGER, height INTEGER, split VARCHAR, tags VARCHAR[] NOT NULL DEFAULT [],
        missing BOOLEAN NOT NULL DEFAULT false, num_gt INTEGER NOT NULL DEFAULT 0, ext_id VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS labels (
        dataset_id INTEGER NOT NULL, id INTEGER NOT NULL, name VARCHAR NOT NULL, ext_id VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS sources (
        dataset_id INTEGER NOT NULL, id SMALLINT NOT NULL, name VARCHAR NOT NULL, kind VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp, info JSON)""",
    """CREATE TABLE IF NOT EXISTS annotations (
        id BIGINT NOT NULL, dataset_id INTEGER NOT NULL, sample_id BIGINT NOT NULL, source_id SMALLINT NOT NULL,
        label_id INTEGER NOT NULL, x FLOAT, y FLOAT, w FLOAT, h FLOAT, confidence FLOAT,
        iscrowd BOOLEAN NOT NULL DEFAULT false, area FLOAT, polygon FLOAT[][], ext_id BIGINT)""",
    """CREATE TABLE IF NOT EXISTS fields (
        dataset_id INTEGER NOT NULL, name VARCHAR NOT NULL, column_name VARCHAR NOT NULL,
        level VARCHAR NOT NULL, kind VARCHAR NOT NULL, builtin BOOLEAN NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS evaluations (
        dataset_id INTEGER NOT NULL, key VARCHAR NOT NULL, model VARCHAR NOT NULL, iou DOUBLE NOT NULL,
        class_agnostic BOOLEAN NOT NULL, created_at TIMESTAMP NOT NULL DEFAULT current_timestamp, stats JSON)""",
    """CREATE TABLE IF NOT EXISTS eval_objects (
        dataset_id INTEGER NOT NULL, eval_key VARCHAR NOT NULL, ann_id BIGINT NOT NULL, sample_id BIGINT NOT NULL,
        is_pred BOOLEAN NOT NULL, status TINYINT NOT NULL, match_id BIGINT, iou FLOAT, error TINYINT)""",
    """CREATE TABLE IF NOT EXISTS projections (
        dataset_id INTEGER NOT NULL, method VARCHAR NOT NULL, collection VARCHAR NOT NULL, sample_id BIGINT NOT NULL,
        x FLOAT NOT NULL, y FLOAT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS collections (
        collection VARCHAR NOT NULL, spec VARCHAR NOT NULL, options JSON, dim INTEGER)""",
    """CREATE TABLE IF NOT EXISTS ingest_issues (
        dataset_id INTEGER NOT NULL, source VARCHAR NOT NULL, kind VARCHAR NOT NULL, file VARCHAR,
        location VARCHAR, message VARCHAR)""",
]

# name, column, kind: the sample fields every dataset has.
BUILTIN_SAMPLE_FIELDS: list[tuple[str, str, str]] = [
    ("id", "id", "numeric"),
    ("filepath", "filepath", "text"),
    ("split", "split", "categorical"),
    ("tags", "tags", "tags"),
    ("width", "width", "numeric"),
    ("height", "height", "numeric"),
    ("missing", "missing", "bool"),
    ("num_gt", "num_gt", "numeric"),
]
BUILTIN_ANNOTATION_FIELDS: list[tuple[str, str, str]] = [
    ("label", "label_id", "categorical"),
    ("source", "source_id", "categorical"),
    ("confidence", "confidence", "numeric"),
    ("area", "area", "numeric"),
    ("iscrowd", "iscrowd", "bool"),
]
STATUS_CODES = {"tp": 1, "fp": 2, "fn": 3, "ignored": 4}
_KIND_SQL_TYPE = {"numeric": "DOUBLE", "categorical": "VARCHAR", "text": "VARCHAR", "bool": "BOOLEAN"}
_CATEGORICAL_MAX_DISTINCT = 1000


@dataclass(frozen=True)
class DatasetRow:
    id: int
    name: str
    format: str
    root: str
    created_at: Any
    info: str | None


@dataclass(frozen=True)
class FieldInfo:
    """One filterable field. ``column`` is ours (sanitised); ``name`` is what users see and type."""

    name: str
    column: str
    level: str  # "sample" | "annotation"
    kind: str  # "categorical" | "numeric" | "bool" | "tags" | "text"
    builtin: bool


_STORES: dict[str, MetadataStore] = {}
_STORES_LOCK = threading.Lock()


def open_store(path: str | Path | None = None) -> MetadataStore:
    """The process-wide store for ``path`` (default from settings): DuckDB wants one connection per process."""
    if path is None:
        from ..config import get_settings

        path = get_settings().database
    key = str(Path(path).expanduser().resolve())
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None or store.closed:
            store = MetadataStore(key)
            _STORES[key] = store
        return store


def close_all_stores() -> None:
    with _STORES_LOCK:
        for store in _STORES.values():
            store.close()
        _STORES.clear()


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class MetadataStore:
    """All reads and writes of the metadata database."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(str(self.path))
        except duckdb.IOException as e:
            if "lock" in str(e).lower():
                holder = re.search(r"\(PID \d+\)", str(e))
                raise StoreLockedError(
                    f"{self.path} is open in another process{' ' + holder.group(0) if holder else ''}. "
                    "DuckDB lets one process write a database file: stop that process (for example the running "
                    "app, whose Datasets page does the same work) or point VISIONLENS_HOME elsewhere."
                ) from None
            raise
        self._write_lock = threading.RLock()
        self._cursor_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._label_cache: dict[int, dict[str, int]] = {}
        self._source_cache: dict[int, dict[str, int]] = {}
        self._field_cache: dict[int, dict[str, FieldInfo]] = {}
        self._names = itertools.count()
        self.generation = 0  # bumped by every committed write, so caches of derived data know when to drop
        self._memo: dict[Any, Any] = {}  # results that only a write can change, keyed with the generation
        self.closed = False
        with self.cursor() as cur:
            for stmt in SCHEMA:
                cur.execute(stmt)
            if not _first(cur.execute("SELECT 1 FROM meta WHERE key = 'schema_version'")):
                cur.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])

    # -- connection handling -------------------------------------------------------------------------------------

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        # DuckDB 2 refuses (rather than waits) when two threads call the shared connection at once, and making a
        # cursor is such a call: serialise only that, queries then run on their own cursors in parallel.
        with self._cursor_lock:
            cur = self._con.cursor()
        try:
            yield cur
        finally:
            cur.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One writer at a time in this process; everything inside commits together or not at all."""
        with self._write_lock, self.cursor() as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                self._invalidate()
                raise
            cur.execute("COMMIT")
            self.generation += 1
            self._invalidate()

    def close(self) -> None:
        with self._cursor_lock:  # not while another thread is making a cursor: DuckDB 2 would refuse
            if not self.closed:
                self._con.close()
                self.closed = True

    def _memoised(self, key: Any, compute: Any) -> Any:
        """Dataset-wide answers every session asks for (dataset list, field ranges, totals) until the next write."""
        full = (self.generation, key)
        with self._cache_lock:
            if full in self._memo:
                return self._memo[full]
        value = compute()
        with self._cache_lock:
            if len(self._memo) > 512:
                self._memo.clear()
            self._memo[full] = value
        return value

    def _invalidate(self) -> None:
        with self._cache_lock:
            self._memo.clear()
            self._label_cache.clear()
            self._source_cache.clear()
            self._field_cache.clear()

    def _temp_name(self) -> str:
        return f"_vl_tmp_{next(self._names)}"

    # -- datasets ------------------------------------------------------------------------------------------------

    def list_datasets(self) -> list[dict[str, Any]]:
        return [dict(d) for d in self._memoised("datasets", self._list_datasets)]

    def _list_datasets(self) -> list[dict[str, Any]]:
        with self.cursor() as cur:
            rows = cur.execute(
                """SELECT d.id, d.name, d.format, d.root, d.created_at,
                          (SELECT count(*) FROM samples s WHERE s.dataset_id = d.id) AS samples,
                          (SELECT count(*) FROM annotations a WHERE a.dataset_id = d.id AND a.source_id = 0) AS gt,
                          (SELECT count(*) FROM annotations a WHERE a.dataset_id = d.id AND a.source_id > 0) AS preds,
                          (SELECT string_agg(name, ',' ORDER BY id) FROM sources c
                            WHERE c.dataset_id = d.id AND c.id > 0) AS models
                   FROM datasets d ORDER BY d.name"""
            ).fetchall()
        keys = ["id", "name", "format", "root", "created_at", "samples", "gt_boxes", "pred_boxes", "models"]
        out = [dict(zip(keys, r)) for r in rows]
        for d in out:
            d["models"] = d["models"].split(",") if d["models"] else []
        return out

    def get_dataset(self, name: str) -> DatasetRow:
        with self.cursor() as cur:
            row = _first(cur.execute(
                "SELECT id, name, format, root, created_at, info FROM datasets WHERE name = ?", [name]
            ))
        if row is None:
            known = [d["name"] for d in self.list_datasets()]
            raise DatasetNotFoundError(f"no dataset named {name!r} (known: {', '.join(known) or 'none'})")
        return DatasetRow(*row)

    def dataset_by_id(self, dataset_id: int) -> DatasetRow:
        with self.cursor() as cur:
            row = _first(cur.execute(
                "SELECT id, name, format, root, created_at, info FROM datasets WHERE id = ?", [dataset_id]
            ))
        if row is None:
            raise DatasetNotFoundError(f"no dataset with id {dataset_id}")
        return DatasetRow(*row)

    def has_dataset(self, name: str) -> bool:
        with self.cursor() as cur:
            return _first(cur.execute("SELECT 1 FROM datasets WHERE name = ?", [name])) is not None

    def delete_dataset(self, name: str) -> None:
        row = self.get_dataset(name)
        with self.transaction() as cur:
            self._delete_rows(cur, row.id)

    @staticmethod
    def _delete_rows(cur: duckdb.DuckDBPyConnection, dataset_id: int) -> None:
        for table in ("projections", "eval_objects", "evaluations", "annotations", "samples", "labels", "sources", "fields",
                      "ingest_issues", "datasets"):
            column = "id" if table == "datasets" else "dataset_id"
            cur.execute(f"DELETE FROM {table} WHERE {column} = ?", [dataset_id])

    def insert_dataset(
        self,
        name: str,
        parsed: ParsedDataset,
        predictions: dict[str, ParsedPredictions] | None = None,
        replace: bool = False,
    ) -> int:
        """Write a parsed dataset and its models' predictions in one transaction."""
        predictions = predictions or {}
        with self.transaction() as cur:
            old = _first(cur.execute("SELECT id FROM datasets WHERE name = ?", [name]))
            if old and not replace:
                raise DatasetExistsError(f"a dataset named {name!r} exists; pass replace=True (--replace) to overwrite it")
            if old:
                self._delete_rows(cur, old[0])
            ds_id = _allocate(cur, "datasets", 1)
            cur.execute(
                "INSERT INTO datasets (id, name, format, root, info) VALUES (?, ?, ?, ?, ?)",
                [ds_id, name, parsed.format, parsed.root, _json(parsed.info)],
            )
            label_ext = parsed.info.get("label_ext_ids") or [None] * len(parsed.labels)
            self._insert_labels(cur, ds_id, 0, parsed.labels, label_ext)
            cur.execute(
                "INSERT INTO sources (dataset_id, id, name, kind) VALUES (?, 0, ?, 'ground_truth')", [ds_id, GROUND_TRUTH]
            )
            sample_ids = self._insert_samples(cur, ds_id, parsed)
            self._insert_annotations(cur, ds_id, 0, sample_ids, parsed.annotations)
            self._insert_issues(cur, ds_id, GROUND_TRUTH, parsed.issues)
            self._register_builtin_fields(cur, ds_id)
            n_labels = len(parsed.labels)
            for model, preds in predictions.items():
                n_labels = self._insert_predictions(cur, ds_id, model, sample_ids, preds, n_labels)
        return ds_id

    def add_predictions(self, name: str, model: str, preds: ParsedPredictions, replace: bool = False) -> None:
        row = self.get_dataset(name)
        with self.transaction() as cur:
            existing = _first(cur.execute(
                "SELECT id FROM sources WHERE dataset_id = ? AND name = ?", [row.id, model]
            ))
            if existing and not replace:
                raise DatasetExistsError(
                    f"dataset {name!r} already has predictions named {model!r}; pass replace=True to overwrite them"
                )
            if existing:
                for key in [r[0] for r in cur.execute(
                        "SELECT key FROM evaluations WHERE dataset_id = ? AND model = ?", [row.id, model]).fetchall()]:
                    self._delete_evaluation(cur, row.id, key)
                cur.execute("DELETE FROM annotations WHERE dataset_id = ? AND source_id = ?", [row.id, existing[0]])
                cur.execute("DELETE FROM sources WHERE dataset_id = ? AND id = ?", [row.id, existing[0]])
                cur.execute("DELETE FROM ingest_issues WHERE dataset_id = ? AND source = ?", [row.id, model])
            sample_ids = np.asarray(
                cur.execute("SELECT id FROM samples WHERE dataset_id = ? ORDER BY id", [row.id]).fetchnumpy()["id"]
            )
            n_labels = _first(cur.execute("SELECT count(*) FROM labels WHERE dataset_id = ?", [row.id]))[0]
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
        if model == GROUND_TRUTH or not model:
            raise FilterError(f"{model!r} cannot name a model: it is reserved for ground truth")
        source_id = _first(cur.execute(
            "SELECT coalesce(max(id), 0) + 1 FROM sources WHERE dataset_id = ?", [ds_id]
        ))[0]
        cur.execute(
            "INSERT INTO sources (dataset_id, id, name, kind) VALUES (?, ?, ?, 'prediction')", [ds_id, source_id, model]
        )
        self._insert_labels(cur, ds_id, n_labels, preds.new_labels, [None] * len(preds.new_labels))
        self._insert_annotations(cur, ds_id, source_id, sample_ids, preds.annotations)
        self._insert_issues(cur, ds_id, model, preds.issues)
        return n_labels + len(preds.new_labels)

    @staticmethod
    def _insert_labels(
        cur: duckdb.DuckDBPyConnection, ds_id: int, first: int, names: Sequence[str], ext: Sequence[Any]
    ) -> None:
        if not names:
            return
        table = pa.table(
            {
                "dataset_id": pa.array([ds_id] * len(names), pa.int32()),
                "id": pa.array(range(first, first + len(names)), pa.int32()),
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
        first = _allocate(cur, "samples", n)
        ids = np.arange(first, first + n, dtype=np.int64)
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
        custom_fields = []
        for field_name, values in s.custom.items():
            kind = _infer_kind(values)
            column = _custom_column(field_name, kind)
            cur.execute(
                f"ALTER TABLE samples ADD COLUMN IF NOT EXISTS {_quote(column)} {_KIND_SQL_TYPE[kind]}"
            )
            columns[column] = _custom_array(values, kind)
            custom_fields.append((field_name, column, kind))
        table = pa.table(columns)
        cur.register("_vl_samples", table)
        cur.execute(
            f"INSERT INTO samples ({', '.join(_quote(c) for c in columns)}) "
            f"SELECT {', '.join(_quote(c) for c in columns)} FROM _vl_samples"
        )
        cur.unregister("_vl_samples")
        for field_name, column, kind in custom_fields:
            cur.execute(
                "INSERT INTO fields VALUES (?, ?, ?, 'sample', ?, false)", [ds_id, field_name, column, kind]
            )
        return ids

    @staticmethod
    def _insert_annotations(
        cur: duckdb.DuckDBPyConnection, ds_id: int, source_id: int, sample_ids: np.ndarray, ann: AnnotationRecords
    ) -> None:
        n = len(ann)
        if n == 0:
            return
        # Rows sorted by sample keep DuckDB's zone maps tight, so "boxes of these 60 samples" reads few row groups.
        order = np.argsort(ann.sample_index, kind="stable")
        first = _allocate(cur, "annotations", n)
        bbox = np.asarray(ann.bbox, np.float32)[order]
        area = ann.area[order] if ann.area is not None else bbox[:, 2] * bbox[:, 3]
        columns = {
            "id": pa.array(np.arange(first, first + n, dtype=np.int64)),
            "dataset_id": pa.array(np.full(n, ds_id, np.int32)),
            "sample_id": pa.array(sample_ids[ann.sample_index[order]]),
            "source_id": pa.array(np.full(n, source_id, np.int16)),
            "label_id": pa.array(np.asarray(ann.label_index, np.int32)[order]),
            "x": pa.array(bbox[:, 0]),
            "y": pa.array(bbox[:, 1]),
            "w": pa.array(bbox[:, 2]),
            "h": pa.array(bbox[:, 3]),
            "confidence": pa.array(
                np.asarray(ann.confidence, np.float32)[order] if ann.confidence is not None else None,
                pa.float32(),
            )
            if ann.confidence is not None
            else pa.nulls(n, pa.float32()),
            "iscrowd": pa.array(
                np.asarray(ann.iscrowd, bool)[order] if ann.iscrowd is not None else np.zeros(n, bool)
            ),
            "area": pa.array(np.asarray(area, np.float32)),
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

    @staticmethod
    def _register_builtin_fields(cur: duckdb.DuckDBPyConnection, ds_id: int) -> None:
        rows = [(ds_id, n, c, "sample", k, True) for n, c, k in BUILTIN_SAMPLE_FIELDS]
        rows += [(ds_id, n, c, "annotation", k, True) for n, c, k in BUILTIN_ANNOTATION_FIELDS]
        cur.executemany("INSERT INTO fields VALUES (?, ?, ?, ?, ?, ?)", rows)

    # -- registry ------------------------------------------------------------------------------------------------

    def _cached(self, cache: dict[int, Any], dataset_id: int, sql: str, build: Any) -> Any:
        """Registry lookups happen on every query; they change only in transactions, which clear these caches."""
        with self._cache_lock:
            hit = cache.get(dataset_id)
        if hit is not None:
            return hit
        with self.cursor() as cur:
            result = build(cur.execute(sql, [dataset_id]).fetchall())
        with self._cache_lock:
            cache[dataset_id] = result
        return result

    def fields(self, dataset_id: int) -> dict[str, FieldInfo]:
        return self._cached(
            self._field_cache, dataset_id,
            "SELECT name, column_name, level, kind, builtin FROM fields WHERE dataset_id = ? "
            "ORDER BY level DESC, builtin DESC, name",
            lambda rows: {r[0] if r[2] == "sample" else f"annotation.{r[0]}": FieldInfo(*r) for r in rows},
        )

    def sample_field(self, dataset_id: int, name: str) -> FieldInfo:
        info = self.fields(dataset_id).get(name)
        if info is None or info.level != "sample":
            known = [f.name for f in self.fields(dataset_id).values() if f.level == "sample"]
            raise FilterError(f"unknown field {name!r}; this dataset has: {', '.join(known)}")
        return info

    def label_ids(self, dataset_id: int) -> dict[str, int]:
        return self._cached(self._label_cache, dataset_id,
                            "SELECT name, id FROM labels WHERE dataset_id = ? ORDER BY id", dict)

    def source_ids(self, dataset_id: int) -> dict[str, int]:
        return self._cached(self._source_cache, dataset_id,
                            "SELECT name, id FROM sources WHERE dataset_id = ? ORDER BY id", dict)

    def sample_index(self, dataset_id: int) -> tuple[SampleIndex, np.ndarray]:
        """What prediction readers need to attach boxes to existing samples, plus the samples' ids in order."""
        with self.cursor() as cur:
            t = _arrow_query(cur,
                "SELECT id, filepath, ext_id, width, height FROM samples WHERE dataset_id = ? ORDER BY id", [dataset_id]
            )
            labels = cur.execute(
                "SELECT name, ext_id FROM labels WHERE dataset_id = ? ORDER BY id", [dataset_id]
            ).fetchall()
        index = SampleIndex(
            filepath=t["filepath"].to_pylist(),
            ext_id=t["ext_id"].to_pylist(),
            width=t["width"].to_numpy(),
            height=t["height"].to_numpy(),
            labels=[r[0] for r in labels],
            label_ext_ids=[r[1] for r in labels],
        )
        return index, t["id"].to_numpy()

    def issues(self, dataset_id: int) -> list[Issue]:
        with self.cursor() as cur:
            rows = cur.execute(
                "SELECT kind, file, location, message FROM ingest_issues WHERE dataset_id = ?", [dataset_id]
            ).fetchall()
        return [Issue(*r) for r in rows]

    # -- queries -------------------------------------------------------------------------------------------------

    def _where(
        self, cur: duckdb.DuckDBPyConnection, dataset_id: int, filters: Filters
    ) -> tuple[str, list[Any]]:
        """Compile filters into a WHERE clause over ``samples s``; id sets are registered on ``cur``."""
        clauses = ["s.dataset_id = ?"]
        params: list[Any] = [dataset_id]
        for flt in filters.fields:
            sql, p = self._field_clause(dataset_id, flt)
            clauses.append(sql)
            params += p
        for flt in filters.annotations:
            sql, p = self._label_clause(dataset_id, flt)
            clauses.append(sql)
            params += p
        if filters.sample_ids is not None:
            name = self._temp_name()
            cur.register(name, pa.table({"id": pa.array(np.asarray(filters.sample_ids, np.int64))}))
            clauses.append(f"s.id IN (SELECT id FROM {name})")
        return " AND ".join(clauses), params

    def _field_clause(self, dataset_id: int, flt: FieldFilter) -> tuple[str, list[Any]]:
        info = self.sample_field(dataset_id, flt.field)
        col = f"s.{_quote(info.column)}"
        parts: list[str] = []
        params: list[Any] = []
        if flt.values is not None:
            values = [v for v in flt.values if v is not None]
            if info.kind == "tags":
                parts.append(f"list_has_any({col}, ?::VARCHAR[])")
                params.append([str(v) for v in values])
            else:
                options = []
                if values:
                    options.append(f"{col} IN ({', '.join('?' * len(values))})")
                    params += [_coerce(v, info.kind, flt.field) for v in values]
                if len(values) != len(flt.values):
                    options.append(f"{col} IS NULL")
                parts.append("(" + (" OR ".join(options) or "false") + ")")
        if flt.range is not None:
            if info.kind != "numeric":
                raise FilterError(f"field {flt.field!r} is {info.kind}, a range needs a numeric field")
            if flt.range.min is not None:
                parts.append(f"{col} >= ?")
                params.append(flt.range.min)
            if flt.range.max is not None:
                parts.append(f"{col} <= ?")
                params.append(flt.range.max)
        if not parts:
            return "true", []
        sql = "(" + " AND ".join(parts) + ")"
        return (f"({sql} IS NOT TRUE)" if flt.exclude else sql), params

    def _label_clause(self, dataset_id: int, flt: LabelFilter) -> tuple[str, list[Any]]:
        sources = self.source_ids(dataset_id)
        if flt.source not in sources:
            raise FilterError(f"unknown source {flt.source!r}; this dataset has: {', '.join(sources)}")
        where = ["a.dataset_id = ?", "a.source_id = ?"]
        params: list[Any] = [dataset_id, sources[flt.source]]
        if flt.labels is not None:
            ids = self.label_ids(dataset_id)
            unknown = [label for label in flt.labels if label not in ids]
            if unknown:
                raise FilterError(f"unknown label(s) {', '.join(map(repr, unknown))}; labels: {', '.join(ids)}")
            if not flt.labels:
                where.append("false")
            else:
                where.append(f"a.label_id IN ({', '.join('?' * len(flt.labels))})")
                params += [ids[label] for label in flt.labels]
        for column, rng in (("confidence", flt.confidence), ("area", flt.area)):
            if rng is not None and rng.min is not None:
                where.append(f"a.{column} >= ?")
                params.append(rng.min)
            if rng is not None and rng.max is not None:
                where.append(f"a.{column} <= ?")
                params.append(rng.max)
        if flt.status:
            key = flt.evaluation or flt.source
            codes = [STATUS_CODES[s] for s in flt.status]
            where.append(
                f"a.id IN (SELECT e.ann_id FROM eval_objects e WHERE e.dataset_id = ? AND e.eval_key = ? "
                f"AND e.status IN ({', '.join('?' * len(codes))}))"
            )
            params += [dataset_id, key, *codes]
        sub = f"SELECT a.sample_id FROM annotations a WHERE {' AND '.join(where)}"
        if flt.min_count > 1:
            sub += " GROUP BY a.sample_id HAVING count(*) >= ?"
            params.append(flt.min_count)
        return f"s.id {'NOT IN' if flt.exclude else 'IN'} ({sub})", params

    def _order(self, dataset_id: int, sort: Sort | None) -> str:
        sort = sort or Sort()
        if sort.field == "random":
            return "hash(s.id)"
        info = self.sample_field(dataset_id, sort.field)
        direction = "DESC" if sort.descending else "ASC"
        if info.column == "id":
            return f"s.id {direction}"
        return f"s.{_quote(info.column)} {direction} NULLS LAST, s.id"

    def _select_list(self, dataset_id: int) -> str:
        cols = [
            f"s.{_quote(f.column)} AS {_quote(f.name)}"
            for f in self.fields(dataset_id).values()
            if f.level == "sample"
        ]
        return ", ".join(cols)

    def count(self, dataset_id: int, filters: Filters) -> int:
        if filters.is_empty:
            return self._memoised(("total", dataset_id), lambda: self._count(dataset_id, filters))
        return self._count(dataset_id, filters)

    def _count(self, dataset_id: int, filters: Filters) -> int:
        with self.cursor() as cur:
            where, params = self._where(cur, dataset_id, filters)
            return _first(cur.execute(f"SELECT count(*) FROM samples s WHERE {where}", params))[0]

    def page(
        self, dataset_id: int, filters: Filters, sort: Sort | None = None, limit: int = 100, offset: int = 0
    ) -> pa.Table:
        return self.page_and_count(dataset_id, filters, sort, limit, offset)[0]

    def page_and_count(
        self, dataset_id: int, filters: Filters, sort: Sort | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[pa.Table, int]:
        """One page of rows and the total count, from a single filtered scan.

        The scan keeps only (sort key, id) through the top-N and counts with a window, then the page's rows are
        read by id: carrying every column through a top-N at offset 500K, or scanning twice for the count, is what
        made this slow.
        """
        with self.cursor() as cur:
            where, params = self._where(cur, dataset_id, filters)
            res = cur.execute(
                f"SELECT s.id, count(*) OVER () AS n FROM samples s WHERE {where} "
                f"ORDER BY {self._order(dataset_id, sort)} LIMIT ? OFFSET ?",
                params + [int(limit), int(offset)],
            ).fetchnumpy()
        ids = np.asarray(res["id"], np.int64)
        total = int(res["n"][0]) if len(ids) else self.count(dataset_id, filters)
        return self.samples_by_id(dataset_id, ids), total

    def matching_ids(self, dataset_id: int, filters: Filters, sort: Sort | None = None) -> np.ndarray:
        """Ids of every matching sample in display order: 8 MB for 1M samples, so a grid can page by slicing."""
        with self.cursor() as cur:
            where, params = self._where(cur, dataset_id, filters)
            res = cur.execute(
                f"SELECT s.id FROM samples s WHERE {where} ORDER BY {self._order(dataset_id, sort)}", params
            ).fetchnumpy()
        return np.asarray(res["id"], np.int64)

    def samples_by_id(self, dataset_id: int, ids: Sequence[int] | np.ndarray) -> pa.Table:
        """Rows for the given ids, in the order given (a grid window is a slice of ``matching_ids``)."""
        ids = np.asarray(ids, np.int64)
        with self.cursor() as cur:
            name = self._temp_name()
            cur.register(name, pa.table({"id": pa.array(ids), "pos": pa.array(np.arange(len(ids)))}))
            return _arrow_query(cur,
                f"SELECT {self._select_list(dataset_id)} FROM samples s JOIN {name} w ON s.id = w.id "
                "WHERE s.dataset_id = ? ORDER BY w.pos",
                [dataset_id],
            )

    def annotations(
        self,
        dataset_id: int,
        sample_ids: Sequence[int] | np.ndarray,
        sources: Sequence[str] | None = None,
        evaluation: str | None = None,
    ) -> pa.Table:
        """Boxes of the given samples with label and source names resolved.

        With ``evaluation`` (a key), each box also gets its ``status`` (tp/fp/fn/ignored) and FP ``error`` from
        that evaluation: predictions of the evaluated model and ground truth; other boxes get NULL.
        """
        ids = np.asarray(sample_ids, np.int64)
        params: list[Any] = [evaluation or "", dataset_id]
        source_clause = ""
        if sources is not None:
            known = self.source_ids(dataset_id)
            wanted = [known[s] for s in sources if s in known]
            if not wanted:
                wanted = [-1]
            source_clause = f"AND a.source_id IN ({', '.join('?' * len(wanted))})"
            params += wanted
        with self.cursor() as cur:
            name = self._temp_name()
            cur.register(name, pa.table({"id": pa.array(ids)}))
            lo, hi = (int(ids.min()), int(ids.max())) if len(ids) else (0, -1)
            return _arrow_query(cur,
                f"""SELECT a.id, a.sample_id, c.name AS source, l.name AS label, a.x, a.y, a.w, a.h,
                           a.confidence, a.iscrowd, a.area,
                           CASE e.status WHEN 1 THEN 'tp' WHEN 2 THEN 'fp' WHEN 3 THEN 'fn' WHEN 4 THEN 'ignored'
                           END AS status,
                           CASE e.error WHEN 1 THEN 'localization' WHEN 2 THEN 'confusion' WHEN 3 THEN 'duplicate'
                                WHEN 4 THEN 'background' END AS error,
                           e.iou AS match_iou
                    FROM annotations a
                    JOIN labels l ON l.dataset_id = a.dataset_id AND l.id = a.label_id
                    JOIN sources c ON c.dataset_id = a.dataset_id AND c.id = a.source_id
                    LEFT JOIN (
                        -- only this window's rows of the evaluation: its table has a row per box of the dataset
                        SELECT ann_id, status, error, iou FROM eval_objects
                        WHERE eval_key = ? AND dataset_id = ? AND sample_id BETWEEN ? AND ?
                          AND sample_id IN (SELECT id FROM {name})
                    ) e ON e.ann_id = a.id
                    WHERE a.dataset_id = ? {source_clause}
                      AND a.sample_id BETWEEN ? AND ? AND a.sample_id IN (SELECT id FROM {name})
                    ORDER BY a.sample_id, a.source_id, a.confidence DESC NULLS FIRST, a.id""",
                [params[0], dataset_id, lo, hi] + params[1:] + [lo, hi],
            )

    def boxes(self, dataset_id: int, source: str) -> dict[str, np.ndarray]:
        """All boxes of one source as numpy columns: what the evaluator consumes."""
        sources = self.source_ids(dataset_id)
        if source not in sources:
            raise FilterError(f"unknown source {source!r}; this dataset has: {', '.join(sources)}")
        with self.cursor() as cur:
            res = cur.execute(
                "SELECT id, sample_id, label_id, x, y, w, h, confidence, iscrowd, area FROM annotations "
                "WHERE dataset_id = ? AND source_id = ? ORDER BY id",
                [dataset_id, sources[source]],
            ).fetchnumpy()
        return {k: np.asarray(v) for k, v in res.items()}

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
        ``per_sample``: sample_id, tp, fp, fn.
        """
        table = pa.table({
            "dataset_id": pa.array(np.full(len(objects["ann_id"]), dataset_id, np.int32)),
            "eval_key": pa.array([key] * len(objects["ann_id"]), pa.string()),
            **{k: pa.array(np.asarray(objects[k])) for k in ("ann_id", "sample_id", "is_pred", "status", "match_id")},
            "iou": pa.array(np.asarray(objects["iou"], np.float32)),
            "error": pa.array(np.asarray(objects["error"], np.int8)),
        })
        counts = pa.table({k: pa.array(np.asarray(per_sample[k])) for k in ("sample_id", "tp", "fp", "fn")})
        with self.transaction() as cur:
            self._delete_evaluation(cur, dataset_id, key)
            cur.execute(
                "INSERT INTO evaluations (dataset_id, key, model, iou, class_agnostic, stats) VALUES (?, ?, ?, ?, ?, ?)",
                [dataset_id, key, model, float(iou), bool(class_agnostic), _json(stats)],
            )
            cur.register("_vl_eval", table)
            cur.execute("INSERT INTO eval_objects SELECT * FROM _vl_eval")
            cur.unregister("_vl_eval")
            cur.register("_vl_counts", counts)
            for kind in ("tp", "fp", "fn"):
                name = f"{key}.{kind}"
                column = _custom_column(f"eval_{key}_{kind}", "numeric")
                cur.execute(f"ALTER TABLE samples ADD COLUMN IF NOT EXISTS {_quote(column)} DOUBLE")
                cur.execute(
                    f"UPDATE samples SET {_quote(column)} = c.{kind} FROM _vl_counts c "
                    "WHERE samples.id = c.sample_id AND samples.dataset_id = ?",
                    [dataset_id],
                )
                cur.execute("INSERT INTO fields VALUES (?, ?, ?, 'sample', 'numeric', false)", [dataset_id, name, column])
            cur.unregister("_vl_counts")

    @staticmethod
    def _delete_evaluation(cur: duckdb.DuckDBPyConnection, dataset_id: int, key: str) -> None:
        cur.execute("DELETE FROM eval_objects WHERE dataset_id = ? AND eval_key = ?", [dataset_id, key])
        cur.execute("DELETE FROM evaluations WHERE dataset_id = ? AND key = ?", [dataset_id, key])
        for kind in ("tp", "fp", "fn"):
            column = _custom_column(f"eval_{key}_{kind}", "numeric")
            if _first(cur.execute("SELECT 1 FROM fields WHERE dataset_id = ? AND column_name = ?", [dataset_id, column])):
                cur.execute(f"UPDATE samples SET {_quote(column)} = NULL WHERE dataset_id = ?", [dataset_id])
            cur.execute("DELETE FROM fields WHERE dataset_id = ? AND column_name = ?", [dataset_id, column])

    def evaluations(self, dataset_id: int) -> list[dict[str, Any]]:
        import orjson

        with self.cursor() as cur:
            rows = cur.execute(
                "SELECT key, model, iou, class_agnostic, created_at, stats FROM evaluations WHERE dataset_id = ? "
                "ORDER BY created_at",
                [dataset_id],
            ).fetchall()
        return [
            {"key": r[0], "model": r[1], "iou": r[2], "class_agnostic": r[3], "created_at": r[4],
             "stats": orjson.loads(r[5]) if r[5] else {}}
            for r in rows
        ]

    def write_projection(
        self, dataset_id: int, method: str, collection: str, sample_ids: np.ndarray, xy: np.ndarray
    ) -> None:
        """Replace the 2-D map of a dataset for one method (umap/pca)."""
        table = pa.table({
            "dataset_id": pa.array(np.full(len(sample_ids), dataset_id, np.int32)),
            "method": pa.array([method] * len(sample_ids), pa.string()),
            "collection": pa.array([collection] * len(sample_ids), pa.string()),
            "sample_id": pa.array(np.asarray(sample_ids, np.int64)),
            "x": pa.array(np.asarray(xy[:, 0], np.float32)),
            "y": pa.array(np.asarray(xy[:, 1], np.float32)),
        })
        with self.transaction() as cur:
            cur.execute("DELETE FROM projections WHERE dataset_id = ? AND method = ?", [dataset_id, method])
            cur.register("_vl_proj", table)
            cur.execute("INSERT INTO projections SELECT * FROM _vl_proj")
            cur.unregister("_vl_proj")

    def register_collection(self, collection: str, spec: str, options: dict[str, Any], dim: int) -> None:
        """Remember which embedder filled a vector collection, so text queries can be embedded the same way."""
        with self.transaction() as cur:
            cur.execute("DELETE FROM collections WHERE collection = ?", [collection])
            cur.execute("INSERT INTO collections VALUES (?, ?, ?, ?)", [collection, spec, _json(options), dim])

    def collection_spec(self, collection: str) -> tuple[str, dict[str, Any]] | None:
        import orjson

        with self.cursor() as cur:
            row = _first(cur.execute("SELECT spec, options FROM collections WHERE collection = ?", [collection]))
        return (row[0], orjson.loads(row[1]) if row[1] else {}) if row else None

    def projection_methods(self, dataset_id: int) -> list[tuple[str, str]]:
        """(method, collection) pairs that have a stored map."""
        with self.cursor() as cur:
            return [tuple(r) for r in cur.execute(
                "SELECT DISTINCT method, collection FROM projections WHERE dataset_id = ? ORDER BY method", [dataset_id]
            ).fetchall()]

    def projection(self, dataset_id: int, method: str, color: str | None = None) -> pa.Table:
        """Map points (sample_id, x, y) and, optionally, a sample field to colour them by.

        ``color`` is a sample field name, or ``"label"`` for each sample's most frequent ground-truth label.
        """
        select, join, params = "", "", [dataset_id, method]
        if color == "label":
            select = ", lab.label AS color"
            join = ("LEFT JOIN (SELECT a.sample_id, arg_max(l.name, c) AS label FROM (SELECT sample_id, label_id, "
                    "count(*) AS c FROM annotations WHERE dataset_id = ? AND source_id = 0 GROUP BY ALL) a "
                    "JOIN labels l ON l.dataset_id = ? AND l.id = a.label_id GROUP BY a.sample_id) lab "
                    "ON lab.sample_id = p.sample_id")
            params = [dataset_id, dataset_id] + params
        elif color:
            info = self.sample_field(dataset_id, color)
            select = f", CAST(s.{_quote(info.column)} AS VARCHAR) AS color"
            join = "JOIN samples s ON s.id = p.sample_id"
        with self.cursor() as cur:
            return _arrow_query(cur,
                f"SELECT p.sample_id, p.x, p.y{select} FROM projections p {join} "
                "WHERE p.dataset_id = ? AND p.method = ? ORDER BY p.sample_id",
                params,
            )

    def all_sample_ids(self) -> np.ndarray:
        with self.cursor() as cur:
            return np.asarray(cur.execute("SELECT id FROM samples ORDER BY id").fetchnumpy()["id"], np.int64)

    def payloads(self, dataset_id: int, sample_ids: np.ndarray) -> list[dict[str, Any]]:
        """What the vector store keeps per point for filtered similarity search: dataset, split, GT labels."""
        ids = np.asarray(sample_ids, np.int64)
        with self.cursor() as cur:
            name = self._temp_name()
            cur.register(name, pa.table({"id": pa.array(ids), "pos": pa.array(np.arange(len(ids)))}))
            rows = cur.execute(
                f"""SELECT w.pos, s.split, list_sort(list_distinct(list(l.name) FILTER (WHERE l.name IS NOT NULL)))
                    FROM {name} w JOIN samples s ON s.id = w.id
                    LEFT JOIN annotations a ON a.sample_id = s.id AND a.dataset_id = s.dataset_id AND a.source_id = 0
                    LEFT JOIN labels l ON l.dataset_id = a.dataset_id AND l.id = a.label_id
                    WHERE s.dataset_id = ? GROUP BY w.pos, s.split ORDER BY w.pos""",
                [dataset_id],
            ).fetchall()
        out: list[dict[str, Any]] = [{"dataset": dataset_id, "split": None, "labels": []} for _ in range(len(ids))]
        for pos, split, labels in rows:
            out[pos] = {"dataset": dataset_id, "split": split, "labels": labels or []}
        return out

    def value_counts(
        self, dataset_id: int, field: str, filters: Filters | None = None, limit: int = 200
    ) -> list[tuple[Any, int]]:
        """Counts per value of a categorical/bool/tags field, under the other active filters (for the sidebar)."""
        info = self.sample_field(dataset_id, field)
        filters = (filters or Filters()).without_field(field)
        with self.cursor() as cur:
            where, params = self._where(cur, dataset_id, filters)
            value = f"unnest(s.{_quote(info.column)})" if info.kind == "tags" else f"s.{_quote(info.column)}"
            rows = cur.execute(
                f"SELECT v, count(*) AS n FROM (SELECT {value} AS v FROM samples s WHERE {where}) "
                "GROUP BY v ORDER BY n DESC, v LIMIT ?",
                params + [limit],
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def numeric_stats(
        self, dataset_id: int, field: str, filters: Filters | None = None, bins: int = 20
    ) -> dict[str, Any]:
        """Min, max and a histogram of a numeric field under the other active filters."""
        info = self.sample_field(dataset_id, field)
        if info.kind != "numeric":
            raise FilterError(f"field {field!r} is {info.kind}, not numeric")
        col = f"s.{_quote(info.column)}"
        with self.cursor() as cur:
            lo, hi = self._memoised(("range", dataset_id, info.column), lambda: _first(cur.execute(
                f"SELECT min({col}), max({col}) FROM samples s WHERE s.dataset_id = ?", [dataset_id]
            )))
            if lo is None:
                return {"min": None, "max": None, "counts": [], "edges": []}
            where, params = self._where(cur, dataset_id, (filters or Filters()).without_field(field))
            width = (hi - lo) / bins if hi > lo else 1.0
            rows = cur.execute(
                f"SELECT least(CAST(floor(({col} - ?) / ?) AS INTEGER), ?) AS b, count(*) FROM samples s "
                f"WHERE {where} AND {col} IS NOT NULL GROUP BY b",
                [lo, width, bins - 1] + params,
            ).fetchall()
        counts = [0] * bins
        for b, n in rows:
            counts[int(b)] = n
        return {"min": lo, "max": hi, "counts": counts, "edges": [lo + i * width for i in range(bins + 1)]}

    def label_counts(self, dataset_id: int, source: str = GROUND_TRUTH, filters: Filters | None = None) -> list[tuple[str, int]]:
        """Boxes per label for one source over the filtered samples."""
        sources = self.source_ids(dataset_id)
        if source not in sources:
            raise FilterError(f"unknown source {source!r}; this dataset has: {', '.join(sources)}")
        with self.cursor() as cur:
            where, params = self._where(cur, dataset_id, filters or Filters())
            rows = cur.execute(
                f"""SELECT l.name, count(*) AS n FROM annotations a
                    JOIN labels l ON l.dataset_id = a.dataset_id AND l.id = a.label_id
                    WHERE a.dataset_id = ? AND a.source_id = ?
                      AND a.sample_id IN (SELECT s.id FROM samples s WHERE {where})
                    GROUP BY l.name ORDER BY n DESC, l.name""",
                [dataset_id, sources[source]] + params,
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def table_counts(self) -> dict[str, int]:
        with self.cursor() as cur:
            return {
                t: _first(cur.execute(f"SELECT count(*) FROM {t}"))[0]
                for t in ("datasets", "samples", "annotations", "labels", "sources", "fields", "ingest_issues")
            }


# -- helpers -------------------------------------------------------------------------------------------------------


def _allocate(cur: duckdb.DuckDBPyConnection, table: str, n: int) -> int:
    """First of ``n`` fresh ids. Ids are never reused after a delete: browsers cache thumbnails by id and the
    vector store keys points by sample id, so a reused id would show another image's thumbnail or vectors."""
    key = f"next_id:{table}"
    row = _first(cur.execute("SELECT value FROM meta WHERE key = ?", [key]))
    if row is None:
        first = _first(cur.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}"))[0]
        cur.execute("INSERT INTO meta VALUES (?, ?)", [key, str(first + n)])
    else:
        first = int(row[0])
        cur.execute("UPDATE meta SET value = ? WHERE key = ?", [str(first + n), key])
    return int(first)


def _first(result: duckdb.DuckDBPyConnection) -> Any:
    """First row or None, reading the result to its end: DuckDB 2 refuses other work on a cursor whose result
    was only partly fetched."""
    rows = result.fetchall()
    return rows[0] if rows else None


def _arrow_query(cur: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> pa.Table:
    """Run a query straight into Arrow through a relation, which avoids the extra copy of a DB-API result."""
    rel = cur.sql(sql, params=params or None)
    return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()


def _json(value: dict[str, Any]) -> str:
    import orjson

    return orjson.dumps(value, default=str).decode()


def _infer_kind(values: list[Any]) -> str:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return "bool"
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "numeric"
    distinct = len(set(map(str, present)))
    return "categorical" if distinct <= _CATEGORICAL_MAX_DISTINCT else "text"


def _custom_column(name: str, kind: str) -> str:
    """Custom fields share one table across datasets, so the type is part of the column name."""
    slug = re.sub(r"[^a-z0-9_]", "_", name.lower())[:48] or "field"
    suffix = {"numeric": "num", "bool": "bool"}.get(kind, "str")
    return f"f_{slug}__{suffix}"


def _custom_array(values: list[Any], kind: str) -> pa.Array:
    if kind == "numeric":
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    if kind == "bool":
        return pa.array(values, pa.bool_())
    return pa.array([None if v is None else str(v) for v in values], pa.string())


def _coerce(value: Any, kind: str, field: str) -> Any:
    if kind == "numeric":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise FilterError(f"field {field!r} is numeric; {value!r} is not a number") from None
    if kind == "bool":
        if isinstance(value, str):
            if value.lower() in ("true", "1", "yes"):
                return True
            if value.lower() in ("false", "0", "no"):
                return False
            raise FilterError(f"field {field!r} is true/false; {value!r} is neither")
        return bool(value)
    return str(value)
