"""The DuckDB store: one object, ``MetadataStore``, over the modules that each hold one part of the SQL.

DuckDB is the source of truth for samples, labels and boxes. The parts, by responsibility:

* ``schema``: tables, built-in fields, upgrades of older files, id allocation;
* ``connection``: the process's connection, cursors, transactions, generation-keyed memos;
* ``registry`` and ``kinds``: fields (columns named by registry id), labels, sources, and field kinds;
* ``writes``: inserting, replacing and deleting datasets and predictions;
* ``filters``: compiling the typed filter model; ``queries``: the reads;
* ``evaluations`` and ``projections``: stored evaluation results, 2-D maps and vector collections;
* ``findings``: stored insights and their members, image hashes;
* ``tags``: sample and object tags, saved views;
* ``sql``: the builder that keeps a statement's text and parameters together.

Values always travel as parameters; identifiers are only ever our own names, so no user string is pasted into SQL.
"""

from __future__ import annotations

import threading
from pathlib import Path

from .evaluations import Evaluations
from .filters import STATUS_CODES
from .findings import Findings
from .kinds import FieldKind
from .projections import Projections
from .queries import Queries
from .registry import DatasetRow, FieldInfo
from .schema import (
    BUILTIN_ANNOTATION_FIELDS,
    BUILTIN_SAMPLE_FIELDS,
    GROUND_TRUTH,
    SCHEMA_VERSION,
)
from .tags import Tagging
from .writes import Writes

__all__ = [
    "BUILTIN_ANNOTATION_FIELDS",
    "BUILTIN_SAMPLE_FIELDS",
    "GROUND_TRUTH",
    "SCHEMA_VERSION",
    "STATUS_CODES",
    "DatasetRow",
    "FieldInfo",
    "FieldKind",
    "MetadataStore",
    "close_all_stores",
    "open_store",
]


class MetadataStore(Writes, Queries, Evaluations, Projections, Findings, Tagging):
    """All reads and writes of the metadata database."""


_STORES: dict[str, MetadataStore] = {}
_STORES_LOCK = threading.Lock()


def _store_key(path: str | Path | None) -> str:
    """The database file a store is kept under: ``path`` resolved, or the settings' database."""
    if path is None:
        from ..config import get_settings

        path = get_settings().database
    return str(Path(path).expanduser().resolve())


def open_store(path: str | Path | None = None) -> MetadataStore:
    """The process-wide store for ``path`` (default from settings): DuckDB wants one connection per process."""
    key = _store_key(path)
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None or store.closed:
            store = MetadataStore(key)
            _STORES[key] = store
        return store


def open_store_if_open(path: str | Path | None = None) -> MetadataStore | None:
    """The process-wide store for ``path`` when it is open already, else None: never opens (or waits on) a file."""
    key = _store_key(path)
    with _STORES_LOCK:
        store = _STORES.get(key)
    return None if store is None or store.closed else store


def close_all_stores() -> None:
    with _STORES_LOCK:
        for store in _STORES.values():
            store.close()
        _STORES.clear()
