"""The DuckDB schema, the built-in fields, and the upgrade of files written by older versions.

Schema 2 (this one) stores boxes and scores as DOUBLE, because evaluation must see the numbers of the files
exactly (32-bit floats moved COCO AP by 1e-5), and names every custom column of ``samples`` by a registry id
(``f_<id>``) rather than by a slug of user text, so two fields can never share a column.

Schema 3 adds tags on objects (``annotations.tags``, like ``samples.tags``) and the ``saved_views`` table; a schema 2
file gets the column in place (every box untagged) and keeps everything else.
"""

from __future__ import annotations

import duckdb

from ..errors import VisionLensError
from .sql import Sql, first, ident

SCHEMA_VERSION = 3
GROUND_TRUTH = "ground_truth"

TABLES = [
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
        label_id INTEGER NOT NULL, x DOUBLE, y DOUBLE, w DOUBLE, h DOUBLE, confidence DOUBLE,
        iscrowd BOOLEAN NOT NULL DEFAULT false, area DOUBLE, polygon FLOAT[][], ext_id BIGINT,
        tags VARCHAR[] NOT NULL DEFAULT [])""",
    # ``owner`` is the evaluation key for the fields an evaluation adds (NULL for the dataset's own fields), so
    # replacing an evaluation drops exactly its columns and nothing of the user's.
    """CREATE TABLE IF NOT EXISTS fields (
        dataset_id INTEGER NOT NULL, name VARCHAR NOT NULL, column_name VARCHAR NOT NULL,
        level VARCHAR NOT NULL, kind VARCHAR NOT NULL, builtin BOOLEAN NOT NULL, id BIGINT, owner VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS evaluations (
        dataset_id INTEGER NOT NULL, key VARCHAR NOT NULL, model VARCHAR NOT NULL, iou DOUBLE NOT NULL,
        class_agnostic BOOLEAN NOT NULL, created_at TIMESTAMP NOT NULL DEFAULT current_timestamp, stats JSON)""",
    """CREATE TABLE IF NOT EXISTS eval_objects (
        dataset_id INTEGER NOT NULL, eval_key VARCHAR NOT NULL, ann_id BIGINT NOT NULL, sample_id BIGINT NOT NULL,
        is_pred BOOLEAN NOT NULL, status TINYINT NOT NULL, match_id BIGINT, iou DOUBLE, error TINYINT)""",
    """CREATE TABLE IF NOT EXISTS projections (
        dataset_id INTEGER NOT NULL, method VARCHAR NOT NULL, collection VARCHAR NOT NULL, sample_id BIGINT NOT NULL,
        x FLOAT NOT NULL, y FLOAT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS collections (
        collection VARCHAR NOT NULL, spec VARCHAR NOT NULL, options JSON, dim INTEGER)""",
    # Insights (``findings.py``): a finding of a run, its members (samples, objects, per-member score), the runs.
    """CREATE TABLE IF NOT EXISTS findings (
        dataset_id INTEGER NOT NULL, id BIGINT NOT NULL, run VARCHAR NOT NULL, kind VARCHAR NOT NULL, model VARCHAR,
        rank INTEGER NOT NULL, title VARCHAR NOT NULL, description VARCHAR, definition VARCHAR, score DOUBLE,
        evidence JSON, filters JSON, detail JSON, n_samples INTEGER, n_objects INTEGER,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
    """CREATE TABLE IF NOT EXISTS finding_members (
        dataset_id INTEGER NOT NULL, finding_id BIGINT NOT NULL, sample_id BIGINT NOT NULL, ann_id BIGINT,
        score DOUBLE)""",
    """CREATE TABLE IF NOT EXISTS insight_runs (
        dataset_id INTEGER NOT NULL, run VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""",
    """CREATE TABLE IF NOT EXISTS image_hashes (
        dataset_id INTEGER NOT NULL, sample_id BIGINT NOT NULL, method VARCHAR NOT NULL, hash UBIGINT NOT NULL)""",
    # Saved views (``tags.py``): a dataset's named views; filters and sort as the filter model's JSON.
    """CREATE TABLE IF NOT EXISTS saved_views (
        dataset_id INTEGER NOT NULL, name VARCHAR NOT NULL, filters JSON NOT NULL, selection BIGINT[], sort JSON,
        sources VARCHAR[], created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp, username VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS ingest_issues (
        dataset_id INTEGER NOT NULL, source VARCHAR NOT NULL, kind VARCHAR NOT NULL, file VARCHAR,
        location VARCHAR, message VARCHAR)""",
]

# name, column, kind: the sample fields every dataset has. Their names are reserved: a dataset's own field may
# not take one (in any letter case), or it would hide the built-in one.
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
BUILTIN_SAMPLE_COLUMNS = frozenset(
    ["id", "dataset_id", "filepath", "width", "height", "split", "tags", "missing", "num_gt", "ext_id"]
)
RESERVED_FIELD_NAMES = frozenset({n for n, _, _ in BUILTIN_SAMPLE_FIELDS} | {"dataset_id", "ext_id", "random"})
"""``random`` is the sort order of that name; ``dataset_id``/``ext_id`` are columns every sample row has."""

EVAL_FIELD_SUFFIXES = ("tp", "fp", "fn")


def custom_column(field_id: int) -> str:
    """The physical column of a custom field: its registry id, never user text."""
    return f"f_{int(field_id)}"


def create(cur: duckdb.DuckDBPyConnection) -> None:
    """Create a new database or bring an older one to this schema, in one transaction."""
    version_row = (
        first(cur.execute("SELECT value FROM meta WHERE key = 'schema_version'")) if _has_table(cur, "meta") else None
    )
    if version_row is not None and int(version_row[0]) > SCHEMA_VERSION:
        raise VisionLensError(
            f"this database has schema {version_row[0]}, written by a newer VisionLens than this "
            f"one (schema {SCHEMA_VERSION}): upgrade VisionLens to open it"
        )
    cur.execute("BEGIN TRANSACTION")
    try:
        if version_row is not None and int(version_row[0]) < 2:
            _upgrade_1_to_2(cur)
        if version_row is not None and int(version_row[0]) < 3:
            _upgrade_2_to_3(cur)
        for stmt in TABLES:
            cur.execute(stmt)
        if version_row is None:
            cur.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
        else:
            cur.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])
    except BaseException:
        cur.execute("ROLLBACK")
        raise
    cur.execute("COMMIT")


def _has_table(cur: duckdb.DuckDBPyConnection, name: str) -> bool:
    return first(cur.execute("SELECT 1 FROM information_schema.tables WHERE table_name = ?", [name])) is not None


def _upgrade_1_to_2(cur: duckdb.DuckDBPyConnection) -> None:
    """Widen boxes to DOUBLE and move every custom field into a column named by a fresh registry id.

    Schema 1 named columns by slugs of user text, so some fields may already have shared a column; their values
    cannot be told apart any more and are copied as they are. The slug columns are dropped afterwards.
    """
    for column in ("x", "y", "w", "h", "confidence", "area"):
        cur.execute(f"ALTER TABLE annotations ALTER COLUMN {column} TYPE DOUBLE")
    cur.execute("ALTER TABLE eval_objects ALTER COLUMN iou TYPE DOUBLE")
    cur.execute("ALTER TABLE fields ADD COLUMN IF NOT EXISTS id BIGINT")
    cur.execute("ALTER TABLE fields ADD COLUMN IF NOT EXISTS owner VARCHAR")
    rows = cur.execute("SELECT dataset_id, name, column_name, kind, builtin FROM fields").fetchall()
    keys = {(d, k) for d, k in cur.execute("SELECT dataset_id, key FROM evaluations").fetchall()}
    old_columns: set[str] = set()
    for dataset_id, name, column, kind, builtin in rows:
        field_id = allocate(cur, "fields", 1)
        where = Sql.of("dataset_id = $d AND name = $n", d=dataset_id, n=name)
        if builtin:
            (Sql.of("UPDATE fields SET id = $id WHERE ", id=field_id) + where).run(cur)
            continue
        new = custom_column(field_id)
        owner = name.rsplit(".", 1)[0] if name.rsplit(".", 1)[-1] in EVAL_FIELD_SUFFIXES else None
        owner = owner if (dataset_id, owner) in keys else None
        sql_type = {"numeric": "DOUBLE", "bool": "BOOLEAN"}.get(kind, "VARCHAR")
        cur.execute(f"ALTER TABLE samples ADD COLUMN {ident(new)} {sql_type}")
        cur.execute(f"UPDATE samples SET {ident(new)} = {ident(column)} WHERE dataset_id = ?", [dataset_id])
        (
            Sql.of("UPDATE fields SET id = $id, column_name = $c, owner = $o WHERE ", id=field_id, c=new, o=owner)
            + where
        ).run(cur)
        old_columns.add(column)
    for column in sorted(old_columns):
        cur.execute(f"ALTER TABLE samples DROP COLUMN IF EXISTS {ident(column)}")


def _upgrade_2_to_3(cur: duckdb.DuckDBPyConnection) -> None:
    """Give every box an empty tag list (the saved-views table is new and made like any other)."""
    cur.execute("ALTER TABLE annotations ADD COLUMN IF NOT EXISTS tags VARCHAR[] DEFAULT []")
    cur.execute("UPDATE annotations SET tags = [] WHERE tags IS NULL")
    cur.execute("ALTER TABLE annotations ALTER COLUMN tags SET NOT NULL")


def allocate(cur: duckdb.DuckDBPyConnection, table: str, n: int) -> int:
    """First of ``n`` fresh ids. Ids are never reused after a delete: browsers cache thumbnails by id, the vector
    store keys points by sample id, and custom columns are named by field id, so a reused id would show another
    image's thumbnail or vectors, or another field's values."""
    key = f"next_id:{table}"
    row = first(cur.execute("SELECT value FROM meta WHERE key = ?", [key]))
    if row is None:
        has_id = first(
            cur.execute("SELECT 1 FROM information_schema.columns WHERE table_name = ? AND column_name = 'id'", [table])
        )
        start = first(cur.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {ident(table)}"))[0] if has_id else 1
        cur.execute("INSERT INTO meta VALUES (?, ?)", [key, str(int(start) + n)])
        return int(start)
    start = int(row[0])
    cur.execute("UPDATE meta SET value = ? WHERE key = ?", [str(start + n), key])
    return start
