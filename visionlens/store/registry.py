"""The registry of a dataset: its fields, labels and sources, and the rules for naming new fields.

A field's name is user text and is only ever data; its column is ``f_<registry id>``. Names are compared without
letter case, because "Weather" and "weather" in one dataset are a mistake in the data (and a URL or a typed filter
could not tell them apart), and a dataset's own field may not take the name of a built-in or evaluation field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np

from ..errors import FieldNameError, FilterError
from ..formats.base import Issue, SampleIndex
from .connection import Connection
from .kinds import FieldKind, kind_named
from .schema import (
    BUILTIN_ANNOTATION_FIELDS,
    BUILTIN_SAMPLE_FIELDS,
    EVAL_FIELD_SUFFIXES,
    RESERVED_FIELD_NAMES,
    allocate,
    custom_column,
)
from .sql import Sql, ident


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
    """One filterable field. ``column`` is ours (a registry id); ``name`` is what users see and type."""

    name: str
    column: str
    level: str  # "sample" | "annotation"
    kind: FieldKind
    builtin: bool
    owner: str | None = None  # the evaluation that added it, if any


def eval_field_names(key: str) -> list[str]:
    """The per-sample count fields an evaluation adds: ``<key>.tp``, ``<key>.fp``, ``<key>.fn``."""
    return [f"{key}.{kind}" for kind in EVAL_FIELD_SUFFIXES]


def looks_like_eval_field(name: str, models: Iterable[str]) -> str | None:
    """The model whose evaluation fields ``name`` would shadow (``yolo.tp``, ``yolo@0.75-agnostic.fn``), if any."""
    for model in models:
        pattern = re.escape(model.casefold()) + r"(@.*)?\.(" + "|".join(EVAL_FIELD_SUFFIXES) + ")"
        if re.fullmatch(pattern, name.casefold()):
            return model
    return None


_FIELD_TABLES = {"sample": "samples", "annotation": "annotations"}
_BOX_COLUMNS = frozenset(
    "id sample_id dataset_id source label x y w h confidence iscrowd area status error match_iou tags".split()
)
"""Columns a box is read with (``MetadataStore.annotations``): an object field may not take their names."""
"""Where a field of each level keeps its column."""


def check_field_names(new: Sequence[str], existing: Iterable[str], models: Iterable[str], where: str) -> None:
    """Refuse names that would share or hide another field: equal but for letter case, reserved, or an
    evaluation's. ``where`` says where the names came from, for the message."""
    models = list(models)
    seen: dict[str, str] = {n.casefold(): n for n in existing}
    for name in new:
        if not isinstance(name, str) or not name.strip():
            raise FieldNameError(f"{where}: a field needs a non-empty name, got {name!r}")
        folded = name.casefold()
        if folded in RESERVED_FIELD_NAMES:
            raise FieldNameError(f"{where}: field {name!r} would hide the built-in field {folded!r}; rename it")
        model = looks_like_eval_field(name, models)
        if model is not None:
            raise FieldNameError(
                f"{where}: field {name!r} would hide the evaluation field of model {model!r}; rename the field"
            )
        if folded in seen:
            other = seen[folded]
            raise FieldNameError(
                f"{where}: fields {other!r} and {name!r} differ only in letter case; "
                "they would be indistinguishable in filters and links: rename one"
            )
        seen[folded] = name


class Registry(Connection):
    """Reads of the registry (memoised per store generation) and the writes that add or drop fields."""

    def fields(self, dataset_id: int) -> dict[str, FieldInfo]:
        """Sample fields by name, annotation fields as ``annotation.<name>``."""

        def load() -> dict[str, FieldInfo]:
            with self.cursor() as cur:
                rows = cur.execute(
                    "SELECT name, column_name, level, kind, builtin, owner FROM fields WHERE dataset_id = ? "
                    "ORDER BY level DESC, builtin DESC, owner NULLS FIRST, name",
                    [dataset_id],
                ).fetchall()
            return {
                (r[0] if r[2] == "sample" else f"annotation.{r[0]}"): FieldInfo(
                    r[0], r[1], r[2], kind_named(r[3]), r[4], r[5]
                )
                for r in rows
            }

        return self._memoised(("fields", dataset_id), load)

    def sample_field(self, dataset_id: int, name: str) -> FieldInfo:
        info = self.fields(dataset_id).get(name)
        if info is None or info.level != "sample":
            known = [f.name for f in self.fields(dataset_id).values() if f.level == "sample"]
            raise FilterError(f"unknown field {name!r}; this dataset has: {', '.join(known)}")
        return info

    def object_field(self, dataset_id: int, name: str) -> FieldInfo:
        """An object-level field by its plain name (``LabelFilter.fields`` names them without ``annotation.``)."""
        info = self.fields(dataset_id).get(f"annotation.{name}")
        if info is None:
            known = [f.name for f in self.fields(dataset_id).values() if f.level == "annotation"]
            raise FilterError(f"unknown object field {name!r}; this dataset's boxes have: {', '.join(known)}")
        return info

    def label_ids(self, dataset_id: int) -> dict[str, int]:
        return self._registry_map("labels", dataset_id)

    def source_ids(self, dataset_id: int) -> dict[str, int]:
        return self._registry_map("sources", dataset_id)

    def _registry_map(self, table: str, dataset_id: int) -> dict[str, int]:
        def load() -> dict[str, int]:
            with self.cursor() as cur:
                return dict(
                    cur.execute(
                        f"SELECT name, id FROM {ident(table)} WHERE dataset_id = ? ORDER BY id", [dataset_id]
                    ).fetchall()
                )

        return self._memoised((table, dataset_id), load)

    def sample_index(self, dataset_id: int) -> tuple[SampleIndex, np.ndarray]:
        """What prediction readers need to attach boxes to existing samples, plus the samples' ids in order."""
        with self.cursor() as cur:
            t = Sql.of(
                "SELECT id, filepath, ext_id, width, height FROM samples WHERE dataset_id = $d ORDER BY id",
                d=dataset_id,
            ).arrow(cur)
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

    def set_sample_fields(
        self, dataset_id: int, columns: dict[str, tuple[str, Sequence[int] | np.ndarray, Sequence[Any]]]
    ) -> None:
        """Write computed sample fields: ``{name: (kind, sample_ids, values)}``, all in one transaction.

        A new name becomes one of the dataset's own fields (no owner), so it gets a sidebar control and is a slice
        candidate for insights like a field read from the annotations. A name that exists is rewritten for
        ``sample_ids`` when it is a dataset field of the same kind (a plugin computing it again); built-in,
        evaluation and insight fields are refused, as are names differing only in letter case. Non-finite numbers
        are stored as missing.
        """
        self._set_fields(dataset_id, columns, "sample")

    def set_object_fields(
        self, dataset_id: int, columns: dict[str, tuple[str, Sequence[int] | np.ndarray, Sequence[Any]]]
    ) -> None:
        """Write computed object (box) fields: ``{name: (kind, annotation ids, values)}``, as ``set_sample_fields``
        does for samples. They are filtered with ``LabelFilter.fields`` and listed as ``annotation.<name>``."""
        self._set_fields(dataset_id, columns, "annotation")

    def _set_fields(
        self,
        dataset_id: int,
        columns: dict[str, tuple[str, Sequence[int] | np.ndarray, Sequence[Any]]],
        level: str,
    ) -> None:
        with self.transaction() as cur:
            have = {
                r[0].casefold(): r
                for r in Sql.of(
                    "SELECT name, column_name, kind, builtin, owner FROM fields WHERE dataset_id = $d AND level = $l",
                    d=dataset_id,
                    l=level,
                )
                .run(cur)
                .fetchall()
            }
            for name, (kind_name, ids, values) in columns.items():
                kind = kind_named(str(kind_name))
                row = have.get(name.casefold())
                column = self._computed_column(cur, dataset_id, name, kind, row, list(have), level)
                have.setdefault(name.casefold(), (name, column, str(kind), False, None))
                self._write_column(cur, dataset_id, column, kind, ids, values, _FIELD_TABLES[level])

    def _computed_column(
        self,
        cur: duckdb.DuckDBPyConnection,
        ds_id: int,
        name: str,
        kind: FieldKind,
        row: Any,
        existing: list[str],
        level: str = "sample",
    ) -> str:
        if row is None:
            if level == "annotation" and name.casefold() in _BOX_COLUMNS:
                raise FieldNameError(f"computed object field {name!r} would hide the boxes' column {name!r}; rename it")
            check_field_names([name], existing, self._model_names(cur, ds_id), f"computed {level} field")
            return self._add_sample_field(cur, ds_id, name, kind, level=level)
        other, column, other_kind, builtin, owner = row
        if other != name:
            check_field_names([name], [other], [], "computed field")  # raises: differ only in letter case
        if builtin or owner is not None:
            what = "built-in field" if builtin else f"field of {owner!r}"
            raise FieldNameError(f"computed field {name!r} would replace the {what} {other!r}; rename it")
        if other_kind != str(kind):
            raise FieldNameError(f"computed field {name!r} is {kind} but the dataset's field {other!r} is {other_kind}")
        return column

    @staticmethod
    def _write_column(
        cur: duckdb.DuckDBPyConnection,
        ds_id: int,
        column: str,
        kind: FieldKind,
        row_ids: Sequence[int] | np.ndarray,
        values: Sequence[Any],
        table: str = "samples",
    ) -> None:
        import math

        import pyarrow as pa

        values = list(values)
        if str(kind) == "numeric":
            values = [None if v is None or not math.isfinite(float(v)) else float(v) for v in values]
        cur.register(
            "_vl_computed", pa.table({"id": pa.array(np.asarray(row_ids, np.int64)), "v": kind.to_arrow(values)})
        )
        t = ident(table)
        cur.execute(
            f"UPDATE {t} SET {ident(column)} = c.v FROM _vl_computed c WHERE {t}.id = c.id AND {t}.dataset_id = ?",
            [ds_id],
        )
        cur.unregister("_vl_computed")

    # -- writes (inside a transaction) -----------------------------------------------------------------------

    @staticmethod
    def _register_builtin_fields(cur: duckdb.DuckDBPyConnection, ds_id: int) -> None:
        specs = [(n, c, "sample", k) for n, c, k in BUILTIN_SAMPLE_FIELDS]
        specs += [(n, c, "annotation", k) for n, c, k in BUILTIN_ANNOTATION_FIELDS]
        first = allocate(cur, "fields", len(specs))
        cur.executemany(
            "INSERT INTO fields (dataset_id, name, column_name, level, kind, builtin, id) "
            "VALUES (?, ?, ?, ?, ?, true, ?)",
            [(ds_id, n, c, level, k, first + i) for i, (n, c, level, k) in enumerate(specs)],
        )

    @staticmethod
    def _add_sample_field(
        cur: duckdb.DuckDBPyConnection,
        ds_id: int,
        name: str,
        kind: FieldKind,
        owner: str | None = None,
        level: str = "sample",
    ) -> str:
        """Register a field and add its column (to ``annotations`` for an object field); returns the column. Names
        must have been checked."""
        field_id = allocate(cur, "fields", 1)
        column = custom_column(field_id)
        cur.execute(f"ALTER TABLE {ident(_FIELD_TABLES[level])} ADD COLUMN {ident(column)} {kind.sql_type}")
        cur.execute(
            "INSERT INTO fields (dataset_id, name, column_name, level, kind, builtin, id, owner) "
            "VALUES (?, ?, ?, ?, ?, false, ?, ?)",
            [ds_id, name, column, level, str(kind), field_id, owner],
        )
        return column

    @staticmethod
    def _drop_fields(cur: duckdb.DuckDBPyConnection, where: Sql) -> None:
        """Drop the registry rows matching ``where`` (over ``fields``) and the columns of the non-built-in ones."""
        columns = (Sql("SELECT column_name, level FROM fields WHERE NOT builtin AND ") + where).run(cur).fetchall()
        (Sql("DELETE FROM fields WHERE ") + where).run(cur)
        for column, level in columns:
            cur.execute(f"ALTER TABLE {ident(_FIELD_TABLES[level])} DROP COLUMN IF EXISTS {ident(column)}")

    @staticmethod
    def _field_names(cur: duckdb.DuckDBPyConnection, ds_id: int, owned: bool | None = None) -> list[str]:
        """Sample field names of a dataset as the open transaction sees them (``owned``: evaluation fields only,
        or only the others)."""
        sql = Sql.of("SELECT name FROM fields WHERE dataset_id = $d AND level = 'sample'", d=ds_id)
        if owned is not None:
            sql += " AND owner IS NOT NULL" if owned else " AND owner IS NULL"
        return [r[0] for r in sql.run(cur).fetchall()]

    @staticmethod
    def _model_names(cur: duckdb.DuckDBPyConnection, ds_id: int) -> list[str]:
        return [
            r[0] for r in cur.execute("SELECT name FROM sources WHERE dataset_id = ? AND id > 0", [ds_id]).fetchall()
        ]
