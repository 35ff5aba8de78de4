"""Deleting a dataset from every store, and finding (and removing) what nothing refers to any more.

A dataset lives in three places: DuckDB (rows, custom columns of ``samples``, evaluations, maps), the vector
store (points keyed by sample id, with the dataset id in their payload, in one collection per embedder shared by
every dataset) and the thumbnail cache (files keyed by a hash of each image's uri); a map over
``map_parquet_threshold`` points also has a Parquet copy beside the database (``map_parquet``). ``delete_dataset``
removes it from all of them; ``find_orphans`` is what ``visionlens doctor`` (without a name) reports, and
``fix_orphans`` what ``--fix`` does.

Ids are never reused (see ``store.schema.allocate``), so a vector or thumbnail of an id that is not a sample of
an existing dataset can never become valid again: deleting it is always safe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from . import map_parquet
from .store import orphans as db

if TYPE_CHECKING:
    from .store.metadata import MetadataStore
    from .store.vectors import VectorStore
    from .thumbnails import ThumbnailCache

__all__ = [
    "DATASET_PAYLOAD_KEY",
    "DeletionReport",
    "HomeReport",
    "Orphans",
    "delete_dataset",
    "find_orphans",
    "fix_orphans",
]

# The payload key holding a point's dataset id (written by ``MetadataStore.payloads``).
DATASET_PAYLOAD_KEY = "dataset"
_EXAMPLES = 5


@dataclass(frozen=True)
class DeletionReport:
    """What ``delete_dataset`` removed, for the CLI and the app to show."""

    name: str
    dataset_id: int
    samples: int
    vectors: dict[str, int]  # collection -> points removed
    thumbnails: int
    columns: list[str]  # custom columns of ``samples`` dropped (no other dataset's field named them)

    @property
    def vector_points(self) -> int:
        return sum(self.vectors.values())


def _default_stores(
    store: MetadataStore | None, vectors: VectorStore | None, thumbnails: ThumbnailCache | None
) -> tuple[MetadataStore, VectorStore, ThumbnailCache]:
    """The process-wide stores of the current settings for whatever the caller did not pass.

    The vector store must be the process-wide one: the embedded engine locks its folder per open, so a second
    open in this process would be refused.
    """
    if store is None:
        from .store.metadata import open_store

        store = open_store()
    if vectors is None:
        from .embedding_jobs import vector_store

        vectors = vector_store()
    return store, vectors, thumbnails or _default_thumbnails()


def _default_thumbnails() -> ThumbnailCache:
    from .config import get_settings
    from .thumbnails import ThumbnailCache

    settings = get_settings()
    return ThumbnailCache(settings.thumbnails, settings.thumbnail_size)


def _our_collections(store: MetadataStore, vectors: VectorStore) -> list[str]:
    """Collections housekeeping may delete from: all of an embedded store (its folder is ours), but on a server,
    which other applications may share, only those DuckDB registered: their integer ids and a ``dataset`` payload
    key could match by chance."""
    present = vectors.collections()
    if vectors.exclusive:
        return present
    registered = set(db.registered_collections(store))
    return [c for c in present if c in registered]


def delete_dataset(
    name: str,
    store: MetadataStore | None = None,
    vectors: VectorStore | None = None,
    thumbnails: ThumbnailCache | None = None,
) -> DeletionReport:
    """Delete a dataset from DuckDB, the vector store and the thumbnail cache; image files are not touched.

    Order, and why: every store is opened first, so a locked or unreachable vector store refuses the delete before
    anything is gone. Then the sample ids and image uris are read, then DuckDB deletes the dataset in one
    transaction, and only then are its vectors and thumbnails removed. A crash after the DuckDB commit leaves
    vectors and cache files of samples that no longer exist: orphans that ``visionlens doctor`` reports and
    ``--fix`` removes, invisible to the app. The other order would leave, after a crash, a dataset whose maps and
    similarity search point at vectors that are gone, which nothing can detect cheaply or repair.

    Vectors go by sample id and, for points the id list cannot name (a crash between stores in an earlier run,
    an embedding job finishing meanwhile), by the dataset id in their payload. Collections stay even when they
    become empty: one belongs to an embedder, not a dataset, and stays registered for the next dataset. On a
    Qdrant server only registered collections are touched (see ``_our_collections``).
    A thumbnail shared with another dataset (the same image file ingested twice) is removed too and is simply
    made again on its next view.
    """
    store, vectors, thumbnails = _default_stores(store, vectors, thumbnails)
    row = store.get_dataset(name)
    collections = _our_collections(store, vectors)
    left = leftovers_of(store, row.id, thumbnails)
    columns = db.dataset_columns(store, row.id)

    store.delete_dataset(name)
    # The store drops the dataset's columns itself; this only catches one its fields named that nothing names now
    # yet still exists (a store version that left them behind), so the delete never depends on that detail.
    dropped = db.drop_columns(store, db.unreferenced_columns(store, among=columns))
    removed, n_thumbs = _purge(left, vectors, collections, thumbnails)
    map_parquet.remove_dataset_maps(store.path, row.id)
    return DeletionReport(
        name=row.name, dataset_id=row.id, samples=len(left.ids), vectors=removed, thumbnails=n_thumbs, columns=dropped
    )


@dataclass(frozen=True)
class Leftovers:
    """What of a dataset lives outside DuckDB, read while its rows still exist (a cache file's name needs the
    image's mtime and size)."""

    dataset_id: int
    ids: np.ndarray
    cache_files: list


def leftovers_of(store: MetadataStore, dataset_id: int, thumbnails: ThumbnailCache) -> Leftovers:
    ids, uris = db.dataset_samples(store, dataset_id)
    return Leftovers(dataset_id, ids, list(thumbnails.keys_for(uris)))


def _purge(
    left: Leftovers, vectors: VectorStore, collections: list[str], thumbnails: ThumbnailCache
) -> tuple[dict[str, int], int]:
    removed: dict[str, int] = {}
    for collection in collections:
        before = vectors.count(collection)
        if len(left.ids):
            vectors.delete_ids(collection, left.ids)
        vectors.delete_matching(collection, {DATASET_PAYLOAD_KEY: left.dataset_id})
        if before - (after := vectors.count(collection)):
            removed[collection] = before - after
    return removed, thumbnails.remove_files(left.cache_files)


def before_replace(store: MetadataStore, name: str) -> Callable[[], None]:
    """For an ingest that replaces dataset ``name``: read what its old samples left outside DuckDB now, and
    return the step that removes it once the new rows are committed (vector ids and thumbnails of the old
    samples are never valid again: ids are not reused). If the vector store cannot be opened here (another
    process holds it), the leftovers stay as orphans for ``visionlens doctor`` and a warning says so."""
    import logging

    if not store.has_dataset(name):
        return lambda: None
    thumbnails = _default_thumbnails()
    left = leftovers_of(store, store.get_dataset(name).id, thumbnails)

    def purge() -> None:
        map_parquet.remove_dataset_maps(store.path, left.dataset_id)
        try:
            _, vectors, _ = _default_stores(store, None, thumbnails)
            _purge(left, vectors, _our_collections(store, vectors), thumbnails)
        except Exception as e:  # noqa: BLE001 - the ingest itself succeeded; doctor can finish this
            logging.getLogger(__name__).warning(
                "the replaced dataset %r left vectors or thumbnails behind (%s): run `visionlens doctor --fix`", name, e
            )

    return purge


# -- doctor --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Orphans:
    """One kind of orphan: how many, a few examples as text, and how to remove them (``fix`` returns a count)."""

    kind: str
    title: str
    count: int
    examples: list[str]
    fix: Callable[[], int] = field(repr=False, compare=False)


@dataclass(frozen=True)
class HomeReport:
    """Every orphan kind (found or not, in a fixed order) plus notes that are not orphans but worth knowing."""

    kinds: list[Orphans]
    notes: list[str]

    @property
    def total(self) -> int:
        return sum(k.count for k in self.kinds)

    @property
    def clean(self) -> bool:
        return self.total == 0


def _ids_text(ids: np.ndarray) -> str:
    shown = ", ".join(str(int(i)) for i in ids[:_EXAMPLES])
    return shown + (", ..." if len(ids) > _EXAMPLES else "")


def _rows_kind(store: MetadataStore) -> Orphans:
    found = db.rows_without_dataset(store)
    return Orphans(
        "rows_without_dataset",
        "DuckDB rows whose dataset is gone",
        sum(r.rows for r in found),
        [f"{r.table}: {r.rows:,} rows of dataset id(s) {_ids_text(np.asarray(r.dataset_ids))}" for r in found],
        fix=lambda: sum(db.delete_orphan_rows(store).values()),
    )


def _eval_kind(store: MetadataStore) -> Orphans:
    found = db.eval_objects_without_evaluation(store)
    return Orphans(
        "eval_objects_without_evaluation",
        "evaluation objects whose evaluation is gone",
        sum(e.rows for e in found),
        [f"dataset id {e.dataset_id}, evaluation {e.eval_key!r}: {e.rows:,} rows" for e in found],
        fix=lambda: db.delete_orphan_eval_objects(store),
    )


def _columns_kind(store: MetadataStore) -> Orphans:
    found = db.unreferenced_columns(store)
    return Orphans(
        "unreferenced_columns",
        "columns of samples that no field refers to",
        len(found),
        [repr(c) for c in found],
        fix=lambda: len(db.drop_columns(store, found)),
    )


def _vector_kinds(store: MetadataStore, vectors: VectorStore, live: np.ndarray) -> tuple[list[Orphans], list[str]]:
    """Points of gone samples, registrations without a collection, collections without registration or use."""
    present = vectors.collections()
    registered = db.registered_collections(store)
    ours = _our_collections(store, vectors)
    stray_points: dict[str, np.ndarray] = {}
    live_counts: dict[str, int] = {}
    for collection in ours:
        stored = vectors.all_ids(collection)
        stray_points[collection] = np.setdiff1d(stored, live)
        live_counts[collection] = len(stored) - len(stray_points[collection])
    stray_points = {c: ids for c, ids in stray_points.items() if len(ids)}
    dangling = [c for c in registered if c not in present]
    unregistered = [c for c in ours if c not in registered]
    unused = [c for c in unregistered if not live_counts[c]]
    notes = [
        f"vector collection {c!r} is not registered in DuckDB (imported vectors, or embedded before "
        f"registration) but holds vectors of {live_counts[c]:,} existing samples: kept; text search cannot "
        "use it"
        for c in unregistered
        if live_counts[c]
    ]
    notes += [
        f"vector collection {c!r} on the server is not registered in DuckDB: not checked, it may belong to "
        "another application"
        for c in present
        if c not in ours
    ]

    def delete_points() -> int:
        for collection, ids in stray_points.items():
            vectors.delete_ids(collection, ids)
        return sum(len(ids) for ids in stray_points.values())

    def drop_unused() -> int:
        gone = 0
        for collection in unused:
            if vectors.count(collection) == 0:  # its orphan points are deleted first; anything new keeps it
                vectors.drop(collection)
                gone += 1
        return gone

    kinds = [
        Orphans(
            "vector_points",
            "vector points whose sample is gone",
            sum(len(i) for i in stray_points.values()),
            [f"{c!r}: {len(ids):,} points, e.g. ids {_ids_text(ids)}" for c, ids in stray_points.items()],
            fix=delete_points,
        ),
        Orphans(
            "registered_without_vectors",
            "collections registered in DuckDB with no vector collection",
            len(dangling),
            [repr(c) for c in dangling],
            fix=lambda: db.unregister_collections(store, dangling),
        ),
        Orphans(
            "vectors_without_registration",
            "vector collections neither registered nor holding a live sample",
            len(unused),
            [f"{c!r}" for c in unused],
            fix=drop_unused,
        ),
    ]
    return kinds, notes


def _thumbnail_kind(store: MetadataStore, thumbnails: ThumbnailCache) -> Orphans:
    found = thumbnails.stray_files(db.live_sample_uris(store))
    return Orphans(
        "stray_thumbnails",
        "thumbnail cache files of no existing sample",
        len(found),
        [str(thumbnails.cache_dir / rel) for rel in found[:_EXAMPLES]] + (["..."] if len(found) > _EXAMPLES else []),
        fix=lambda: thumbnails.remove_files(found),
    )


def _maps_kind(store: MetadataStore) -> Orphans:
    """Parquet copies of maps (``map_parquet``) whose dataset is gone: a crash between the two deletes."""
    import shutil

    live = {int(d["id"]) for d in store.list_datasets()}
    found = map_parquet.stray_map_folders(store.path, live)

    def remove() -> int:
        for folder in found:
            shutil.rmtree(folder, ignore_errors=True)
        return len(found)

    return Orphans(
        "stray_maps",
        "map Parquet folders of no existing dataset",
        len(found),
        [str(p) for p in found[:_EXAMPLES]] + (["..."] if len(found) > _EXAMPLES else []),
        fix=remove,
    )


def find_orphans(
    store: MetadataStore | None = None,
    vectors: VectorStore | None = None,
    thumbnails: ThumbnailCache | None = None,
) -> HomeReport:
    """Everything in the home that no existing dataset refers to.

    "Existing sample" means a sample row whose dataset row exists: rows of a gone dataset are orphans themselves,
    so their vectors and thumbnails are counted now rather than only after the rows are fixed.
    """
    store, vectors, thumbnails = _default_stores(store, vectors, thumbnails)
    vector_kinds, notes = _vector_kinds(store, vectors, db.live_sample_ids(store))
    kinds = [
        _rows_kind(store),
        _eval_kind(store),
        _columns_kind(store),
        *vector_kinds,
        _thumbnail_kind(store, thumbnails),
        _maps_kind(store),
    ]
    return HomeReport(kinds, notes)


def fix_orphans(report: HomeReport) -> dict[str, int]:
    """Remove what ``report`` found, kind by kind in its order (DuckDB rows before the columns they named, stray
    points before the collections they leave empty); returns how many of each went."""
    return {k.kind: k.fix() for k in report.kinds if k.count}
