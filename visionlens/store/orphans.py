"""DuckDB's side of housekeeping: rows, columns and registrations that nothing refers to any more.

A dataset is spread over several tables, physical columns of ``samples`` (its custom fields), the vector store
and the thumbnail cache. ``visionlens.cleanup`` deletes a dataset from all of them and lets ``visionlens doctor``
find what a crash or an older version left behind; the SQL for the DuckDB part lives here because every SQL
statement of VisionLens lives in this package.

Reads take ``store.cursor()``; writes take ``store.transaction()``, so they are serialised with the app's own
writes in this process and the store's caches are dropped when they commit. Identifiers are either fixed table
names from this module or column names read back from DuckDB's own catalog, always quoted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import media
from .schema import BUILTIN_SAMPLE_COLUMNS
from .sql import ident

if TYPE_CHECKING:
    from .metadata import MetadataStore

__all__ = [
    "BUILTIN_SAMPLE_COLUMNS",
    "DATASET_TABLES",
    "EvalOrphans",
    "RowOrphans",
    "dataset_columns",
    "dataset_samples",
    "delete_orphan_eval_objects",
    "delete_orphan_rows",
    "drop_columns",
    "eval_objects_without_evaluation",
    "live_sample_ids",
    "live_sample_uris",
    "registered_collections",
    "rows_without_dataset",
    "unreferenced_columns",
    "unregister_collections",
]

# Tables whose rows belong to one dataset through ``dataset_id``, at least. Every table of the file with a
# ``dataset_id`` column is checked (``_dataset_tables``), so a table added later (findings, hashes) is covered
# without anyone remembering to list it here.
DATASET_TABLES = (
    "samples",
    "annotations",
    "eval_objects",
    "evaluations",
    "projections",
    "fields",
    "labels",
    "sources",
    "ingest_issues",
)


@dataclass(frozen=True)
class RowOrphans:
    """Rows of one table whose dataset row is gone."""

    table: str
    rows: int
    dataset_ids: list[int]


@dataclass(frozen=True)
class EvalOrphans:
    """Per-object evaluation rows whose evaluation row is gone (the dataset still exists)."""

    dataset_id: int
    eval_key: str
    rows: int


def _dataset_tables(cur: Any) -> list[str]:
    """Base tables of this file with a ``dataset_id`` column: the listed ones first, then any others by name."""
    found = [
        r[0]
        for r in cur.execute(
            """SELECT t.table_name FROM duckdb_tables() t
           WHERE t.database_name = current_database() AND t.schema_name = 'main' AND NOT t.temporary
             AND EXISTS (SELECT 1 FROM duckdb_columns() c WHERE c.table_oid = t.table_oid AND c.column_name = 'dataset_id')
           ORDER BY t.table_name"""
        ).fetchall()
    ]
    return [t for t in DATASET_TABLES if t in found] + [t for t in found if t not in DATASET_TABLES]


def _gone(table: str) -> str:
    """WHERE clause: the row's dataset is not in ``datasets``."""
    return f"NOT EXISTS (SELECT 1 FROM datasets d WHERE d.id = {ident(table)}.dataset_id)"


# -- finding -------------------------------------------------------------------------------------------------------


def rows_without_dataset(store: MetadataStore) -> list[RowOrphans]:
    """Per table, rows whose dataset is gone, with the gone datasets' ids; tables with none are left out."""
    out = []
    with store.cursor() as cur:
        for table in _dataset_tables(cur):
            rows = cur.execute(
                f"SELECT dataset_id, count(*) FROM {ident(table)} WHERE {_gone(table)} GROUP BY dataset_id "
                "ORDER BY dataset_id"
            ).fetchall()
            if rows:
                out.append(RowOrphans(table, sum(int(n) for _, n in rows), [int(d) for d, _ in rows]))
    return out


def eval_objects_without_evaluation(store: MetadataStore) -> list[EvalOrphans]:
    """Per-object results of an evaluation that no longer has its ``evaluations`` row.

    Rows whose whole dataset is gone are left to ``rows_without_dataset``, so nothing is counted twice.
    """
    with store.cursor() as cur:
        rows = cur.execute(
            f"""SELECT o.dataset_id, o.eval_key, count(*) FROM eval_objects o
                WHERE NOT {_gone("o")}
                  AND NOT EXISTS (SELECT 1 FROM evaluations e WHERE e.dataset_id = o.dataset_id AND e.key = o.eval_key)
                GROUP BY o.dataset_id, o.eval_key ORDER BY o.dataset_id, o.eval_key"""
        ).fetchall()
    return [EvalOrphans(int(d), str(k), int(n)) for d, k, n in rows]


def _samples_columns(cur: Any) -> list[str]:
    return [
        r[0]
        for r in cur.execute(
            """SELECT column_name FROM duckdb_columns()
           WHERE database_name = current_database() AND schema_name = 'main' AND table_name = 'samples'
           ORDER BY column_index"""
        ).fetchall()
    ]


def _unreferenced(cur: Any, among: Iterable[str] | None) -> list[str]:
    """Custom columns of ``samples`` no ``fields`` row of an existing dataset names (in table order).

    Every column beyond ``BUILTIN_SAMPLE_COLUMNS`` is a custom field's, and must be named by a ``fields`` row,
    or nothing can ever read it again.
    """
    referenced = {
        r[0] for r in cur.execute(f"SELECT DISTINCT column_name FROM fields WHERE NOT {_gone('fields')}").fetchall()
    }
    wanted = None if among is None else set(among)
    return [
        c
        for c in _samples_columns(cur)
        if c not in BUILTIN_SAMPLE_COLUMNS and c not in referenced and (wanted is None or c in wanted)
    ]


def unreferenced_columns(store: MetadataStore, among: Iterable[str] | None = None) -> list[str]:
    """Physical columns of ``samples`` beyond the built-in ones that no field of an existing dataset refers to.

    Fields rows of a gone dataset do not count: they are orphans themselves and go first when fixing.
    ``among`` limits the answer to these columns (what one deleted dataset used).
    """
    with store.cursor() as cur:
        return _unreferenced(cur, among)


def dataset_columns(store: MetadataStore, dataset_id: int) -> list[str]:
    """The non-built-in ``samples`` columns a dataset's fields name (its custom fields and evaluation counts)."""
    with store.cursor() as cur:
        rows = cur.execute(
            "SELECT DISTINCT column_name FROM fields WHERE dataset_id = ? ORDER BY column_name", [dataset_id]
        ).fetchall()
    return [r[0] for r in rows if r[0] not in BUILTIN_SAMPLE_COLUMNS]


def registered_collections(store: MetadataStore) -> list[str]:
    """Vector collections DuckDB remembers an embedder for (``collections`` table)."""
    with store.cursor() as cur:
        return [r[0] for r in cur.execute("SELECT DISTINCT collection FROM collections ORDER BY collection").fetchall()]


def live_sample_ids(store: MetadataStore) -> np.ndarray:
    """Ids of samples whose dataset exists, sorted; a vector or thumbnail of any other id is an orphan."""
    with store.cursor() as cur:
        res = cur.execute(
            "SELECT s.id FROM samples s JOIN datasets d ON d.id = s.dataset_id ORDER BY s.id"
        ).fetchnumpy()
    return np.asarray(res["id"], np.int64)


def _uris(cur: Any, where: str, params: list[Any]) -> tuple[np.ndarray, list[str]]:
    t = cur.execute(
        f"SELECT s.id, d.root, s.filepath FROM samples s JOIN datasets d ON d.id = s.dataset_id {where} ORDER BY s.id",
        params,
    ).fetchall()
    ids = np.fromiter((r[0] for r in t), np.int64, len(t))
    return ids, [media.join(root, path) for _, root, path in t]


def dataset_samples(store: MetadataStore, dataset_id: int) -> tuple[np.ndarray, list[str]]:
    """(sample ids, image uris) of one dataset, read before its rows are deleted so its other data can follow."""
    with store.cursor() as cur:
        return _uris(cur, "WHERE s.dataset_id = ?", [dataset_id])


def live_sample_uris(store: MetadataStore) -> list[str]:
    """Image uris of every sample of an existing dataset (what the thumbnail cache may hold files for)."""
    with store.cursor() as cur:
        return _uris(cur, "", [])[1]


# -- fixing --------------------------------------------------------------------------------------------------------


def delete_orphan_rows(store: MetadataStore) -> dict[str, int]:
    """Delete every row whose dataset is gone, in one transaction; returns rows deleted per table.

    The condition is the finder's, evaluated again inside the transaction, so rows are only ever deleted for a
    dataset that does not exist at commit time.
    """
    deleted: dict[str, int] = {}
    with store.transaction() as cur:
        for table in _dataset_tables(cur):
            n = cur.execute(f"SELECT count(*) FROM {ident(table)} WHERE {_gone(table)}").fetchall()[0][0]
            if n:
                cur.execute(f"DELETE FROM {ident(table)} WHERE {_gone(table)}")
                deleted[table] = int(n)
    return deleted


def delete_orphan_eval_objects(store: MetadataStore) -> int:
    """Delete per-object rows of evaluations that are gone (of existing datasets); returns rows deleted."""
    stray = f"""NOT {_gone("eval_objects")} AND NOT EXISTS (SELECT 1 FROM evaluations e
                WHERE e.dataset_id = eval_objects.dataset_id AND e.key = eval_objects.eval_key)"""
    with store.transaction() as cur:
        n = cur.execute(f"SELECT count(*) FROM eval_objects WHERE {stray}").fetchall()[0][0]
        if n:
            cur.execute(f"DELETE FROM eval_objects WHERE {stray}")
    return int(n)


def drop_columns(store: MetadataStore, columns: Iterable[str]) -> list[str]:
    """Drop these columns of ``samples`` if they are still unreferenced custom columns; returns those dropped.

    The check runs again inside the transaction: a field registered since the report keeps its column.
    """
    wanted = list(columns)
    if not wanted:
        return []
    with store.transaction() as cur:
        doomed = _unreferenced(cur, wanted)
        for column in doomed:
            cur.execute(f"ALTER TABLE samples DROP COLUMN {ident(column)}")
    return doomed


def unregister_collections(store: MetadataStore, names: Iterable[str]) -> int:
    """Forget the embedder of collections the vector store no longer has; returns rows deleted."""
    names = list(names)
    if not names:
        return 0
    with store.transaction() as cur:
        n = cur.execute("SELECT count(*) FROM collections WHERE list_contains(?, collection)", [names]).fetchall()[0][0]
        cur.execute("DELETE FROM collections WHERE list_contains(?, collection)", [names])
    return int(n)
