"""Vector store: the one module that talks to Qdrant.

Two engines sit behind one small interface. ``EdgeVectorStore`` runs Qdrant's engine in-process (qdrant-edge-py)
and is the default: it needs no server, persists to a directory and holds a million 512-d vectors with an HNSW
index. ``ClientVectorStore`` speaks to a Qdrant server through qdrant-client; its local mode (``path=`` or
``":memory:"``) is far too slow for real datasets but stands in for a server in tests.

Sample ids are the positive int64 ids of the DuckDB store, so results join back to metadata without a mapping.

Search semantics the callers rely on:

* Without a filter, search walks the HNSW graph (``IndexParams`` are chosen for recall >= 0.95 on clustered data,
  see ``benchmarks/bench_vectors.py``); ``exact=True`` forces a full scan.
* With a payload filter or an id set, search is exact: Qdrant scores every matching point (through the payload
  index or the id tracker) and returns the true top-k among them, never fewer than k when k match. Large id
  sets take a cheaper exact route with a fallback that keeps this guarantee (see ``_Searching``).
* ``count_matching`` tells whether a payload filter covers a whole collection (one dataset alone in its
  embedder's collection); a caller may then pass ``exact=False`` with the filter, and the graph answers with the
  filter checked on every point it visits, so a wrong guess costs recall, never a point outside the filter.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from visionlens.errors import StoreLockedError, VisionLensError

if TYPE_CHECKING:
    from visionlens.config import Settings

__all__ = [
    "CollectionNotFoundError",
    "Distance",
    "EdgeVectorStore",
    "ClientVectorStore",
    "IndexParams",
    "PayloadFilter",
    "ServerLayout",
    "VectorStore",
    "VectorStoreError",
    "open_vector_store",
    "open_vector_store_from",
]

Distance = Literal["cosine", "dot", "euclid"]
PayloadValue = str | int | bool
PayloadFilter = Mapping[str, PayloadValue | Sequence[PayloadValue]]
FilterTerms = list[tuple[str, list[PayloadValue]]] | None

LOCK_FILE = ".visionlens-vectors.lock"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_SCROLL_PAGE = 50_000
# Id sets covering at least this share of a collection are applied after one exact over-fetching scan (see
# _Searching); the over-fetch expects 4x the k allowed points it needs.
_OVERFETCH_FRACTION = 0.2
_OVERFETCH_FACTOR = 4
# The payload fields VisionLens filters on (similarity._payload_filter, cleanup's delete_matching) and writes on
# every point (queries.payloads). A server collection gets their indexes when it is created, before any point.
FILTER_FIELDS: dict[str, str] = {"dataset": "integer", "split": "keyword", "labels": "keyword"}


class VectorStoreError(VisionLensError):
    """A vector-store operation the caller can act on (bad input, dimension mismatch, engine failure)."""


class CollectionNotFoundError(VectorStoreError):
    """The named collection (one embedding model's vectors) was never created in this store."""


@dataclass(frozen=True)
class IndexParams:
    """HNSW parameters.

    Defaults come from ``benchmarks/bench_vectors.py`` on clustered 512-d data at 1M points: with m=16 and
    ef_construct=128, a search ef of max(256, 2k) gives recall@10 0.98 and recall@50 0.98 against exact search
    (ef 128: 0.90) at about 1.5 ms per query.
    """

    m: int = 16
    ef_construct: int = 128
    # Qdrant adds payload-aware graph links per value of every indexed payload field; filtered searches here are
    # exact scans through the payload index and never walk them, and they tripled the build time: keep them off.
    payload_m: int = 0
    search_ef: int = 256
    full_scan_threshold_kb: int = 10_000  # Qdrant's unit: below this much vector data a segment is scanned
    indexing_threshold_kb: int = 10_000  # embedded store: segments above this size get an HNSW graph on optimize

    def ef_for(self, k: int) -> int:
        """The graph keeps 2k candidates at least, so recall holds for large k as well."""
        return max(self.search_ef, 2 * k)


class VectorStore(Protocol):
    """What the rest of VisionLens may ask of a vector store."""

    # True when every collection in the store is VisionLens's (its own folder); False for a server, which other
    # applications may share: housekeeping then touches only collections VisionLens registered.
    exclusive: bool

    def ensure_collection(self, name: str, dim: int, distance: Distance = "cosine") -> None: ...

    def collections(self) -> list[str]: ...

    def upsert(
        self,
        name: str,
        ids: np.ndarray,
        vectors: np.ndarray,
        payloads: Sequence[Mapping[str, Any]] | None = None,
    ) -> None: ...

    def optimize(self, name: str) -> None: ...

    def search(
        self,
        name: str,
        query: np.ndarray,
        k: int,
        *,
        payload_filter: PayloadFilter | None = None,
        allowed_ids: np.ndarray | None = None,
        exact: bool | None = None,
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def get_vectors(self, name: str, ids: np.ndarray) -> np.ndarray: ...

    def all_ids(self, name: str) -> np.ndarray: ...

    def count(self, name: str) -> int: ...

    def count_matching(self, name: str, payload_filter: PayloadFilter | None) -> int: ...

    def delete_ids(self, name: str, ids: np.ndarray) -> None: ...

    def delete_matching(self, name: str, payload_filter: PayloadFilter) -> int: ...

    def drop(self, name: str) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ServerLayout:
    """How new collections are laid out on a Qdrant server or cluster; None leaves the server's default.

    Applied only when a collection is created; changing the ``qdrant_*`` settings (``config.py``) later leaves
    existing collections as they were, since re-sharding or re-replicating is an operator's decision.
    """

    shards: int | None = None  # shard_number
    replicas: int | None = None  # replication_factor
    write_consistency: int | None = None  # write_consistency_factor
    on_disk: bool = False  # vectors memory-mapped from disk rather than held in RAM

    def __post_init__(self) -> None:
        for field in ("shards", "replicas", "write_consistency"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise VectorStoreError(f"qdrant {field} must be an integer of at least 1, got {value!r}")
        if self.write_consistency and self.replicas and self.write_consistency > self.replicas:
            raise VectorStoreError(
                f"qdrant write_consistency ({self.write_consistency}) cannot exceed replicas ({self.replicas})"
            )


def open_vector_store(
    path: str | os.PathLike[str] | None = None,
    url: str | None = None,
    *,
    api_key: str | None = None,
    prefer_grpc: bool = False,
    grpc_port: int = 6334,
    layout: ServerLayout = ServerLayout(),
) -> VectorStore:
    """A server when ``url`` is set (settings.qdrant_url), else the embedded store at ``path`` (settings.vectors).

    The keyword options concern a server only; the embedded store has one shard, in its folder.
    """
    if url:
        return ClientVectorStore(url=url, api_key=api_key, prefer_grpc=prefer_grpc, grpc_port=grpc_port, layout=layout)
    if path is None:
        raise VectorStoreError("open_vector_store needs a path for the embedded store or a url for a Qdrant server")
    return EdgeVectorStore(path)


def open_vector_store_from(settings: Settings) -> VectorStore:
    """The vector store the settings name: every ``VISIONLENS_QDRANT_*`` variable reaches the store through here."""
    layout = ServerLayout(
        shards=settings.qdrant_shards,
        replicas=settings.qdrant_replicas,
        write_consistency=settings.qdrant_write_consistency,
        on_disk=settings.qdrant_on_disk,
    )
    return open_vector_store(
        path=settings.vectors,
        url=settings.qdrant_url,
        api_key=settings.qdrant_api_key,
        prefer_grpc=settings.qdrant_prefer_grpc,
        grpc_port=settings.qdrant_grpc_port,
        layout=layout,
    )


# ----------------------------------------------------------------------------------------------------------------
# Input checks shared by both engines: bad input fails here with a plain message, not deep inside Rust or HTTP.


def _check_name(name: str) -> str:
    """Collection names become directory names for the embedded store, so keep them path-safe."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise VectorStoreError(
            f"invalid collection name {name!r}: use letters, digits, '_', '.', '-' (at most 128, no leading symbol)"
        )
    return name


def _as_ids(ids: Any, what: str = "ids") -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise VectorStoreError(f"{what} must be a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise VectorStoreError(f"{what} must be integers (sample ids), got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.min() <= 0:
        raise VectorStoreError(f"{what} must be positive sample ids, got {int(arr.min())}")
    return arr


def _as_matrix(vectors: Any, n: int) -> np.ndarray:
    arr = np.ascontiguousarray(vectors, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise VectorStoreError(f"vectors must have shape ({n}, dim) to match {n} ids, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise VectorStoreError("vectors contain NaN or infinity")
    return arr


def _as_query(query: Any) -> np.ndarray:
    arr = np.ascontiguousarray(query, dtype=np.float32)
    if arr.ndim != 1 or arr.size == 0:
        raise VectorStoreError(f"query must be a 1-D vector, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise VectorStoreError("query contains NaN or infinity")
    return arr


def _check_payloads(payloads: Sequence[Mapping[str, Any]] | None, n: int) -> list[dict[str, Any]] | None:
    if payloads is None:
        return None
    if len(payloads) != n:
        raise VectorStoreError(f"{len(payloads)} payloads for {n} ids")
    return [dict(p) if p else {} for p in payloads]


def _filter_terms(payload_filter: PayloadFilter | None) -> list[tuple[str, list[PayloadValue]]] | None:
    """``{"split": "val", "labels": ["car"]}`` -> ``[(key, values)]``: any-of per key, all keys must hold.

    Returns None for "no filter"; a key with an empty value list is kept and matches nothing.
    """
    if not payload_filter:
        return None
    terms = []
    for key, value in payload_filter.items():
        values = [value] if isinstance(value, (str, int, bool, np.integer)) else list(value)
        values = [v.item() if isinstance(v, np.generic) else v for v in values]
        kinds = {
            bool if isinstance(v, bool) else int if isinstance(v, int) else str if isinstance(v, str) else None
            for v in values
        }
        if None in kinds or len(kinds) > 1:
            raise VectorStoreError(
                f"filter values for {key!r} must all be strings, all integers or all booleans, got {values!r}"
            )
        terms.append((str(key), values))
    return terms


def _delete_terms(name: str, payload_filter: PayloadFilter) -> list[tuple[str, list[PayloadValue]]]:
    """Filter terms for a delete; an empty filter is refused because it would mean "every point"."""
    terms = _filter_terms(payload_filter)
    if terms is None:
        raise VectorStoreError(f"delete_matching on {name!r} needs a payload filter; it never deletes every point")
    return terms


def _index_kind(value: Any) -> str | None:
    """Which payload index serves filters on a field, judged from one value (lists index their elements)."""
    if isinstance(value, (list, tuple)):
        return _index_kind(value[0]) if value else None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "keyword"
    return None


def _new_fields(payloads: list[dict[str, Any]] | None, known: set[str]) -> dict[str, str]:
    """Fields seen for the first time and the index kind each needs, so filtered search never scans payloads."""
    found: dict[str, str] = {}
    for payload in payloads or ():
        for key, value in payload.items():
            if key not in known and key not in found and (kind := _index_kind(value)):
                found[key] = kind
    return found


def _terms_key(terms: list[tuple[str, list[PayloadValue]]]) -> tuple[Any, ...]:
    """A hashable form of filter terms; the type is kept because ``True == 1`` would merge two filters."""
    return tuple((key, tuple((type(v).__name__, v) for v in values)) for key, values in terms)


class _Counts:
    """Exact counts of points matching a payload filter, remembered until the collection is next written.

    Similarity search asks on every query whether its dataset fills the whole collection, and an exact count walks
    the payload index (about 25 ms per 100K points), while the answer changes only when points are written. Every
    write bumps the collection's generation once it has landed, and a count is reused only under the generation it
    was read in, so a count that raced a write is never reused. ``remember=False`` (a Qdrant server, which other
    processes write to without telling this one) counts on every call.
    """

    def __init__(self, remember: bool):
        self._remember = remember
        self._mutex = threading.Lock()
        self._generation: dict[str, int] = {}
        self._known: dict[tuple[str, tuple[Any, ...]], tuple[int, int]] = {}

    def get(self, name: str, terms: list[tuple[str, list[PayloadValue]]], count: Callable[[], int]) -> int:
        key = (name, _terms_key(terms))
        with self._mutex:
            generation = self._generation.get(name, 0)
            known = self._known.get(key)
        if known is not None and known[0] == generation:
            return known[1]
        n = count()
        if self._remember:
            with self._mutex:
                self._known[key] = (generation, n)
        return n

    @contextmanager
    def writing(self, name: str) -> Iterator[None]:
        """Wrap every write to ``name``: its counts are stale afterwards, even when the write failed half-way."""
        try:
            yield
        finally:
            with self._mutex:
                self._generation[name] = self._generation.get(name, 0) + 1
                self._known = {key: v for key, v in self._known.items() if key[0] != name}


def _empty() -> tuple[np.ndarray, np.ndarray]:
    return np.empty(0, np.int64), np.empty(0, np.float32)


def _order_rows(ids: np.ndarray, found_ids: list[int], found_rows: list[Any], name: str) -> np.ndarray:
    """Rows for ``ids`` in the caller's order; missing ids are an error, not a silent gap."""
    by_id = dict(zip(found_ids, found_rows, strict=True))
    missing = [i for i in ids.tolist() if i not in by_id]
    if missing:
        raise VectorStoreError(f"{len(missing)} id(s) have no vector in collection {name!r}, e.g. {missing[:5]}")
    if ids.size == 0:
        return np.empty((0, 0), np.float32)
    return np.asarray([by_id[i] for i in ids.tolist()], dtype=np.float32)


class _DirLock:
    """An exclusive ``flock`` on a file in the store directory, held while the store is open.

    Both engines own their files (Qdrant's WAL and segments, or qdrant-client's JSON+SQLite); a second process
    opening them would corrupt data or fail deep inside the engine. The lock file records the holder so the
    second opener is told who has it.
    """

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / LOCK_FILE
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 256, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StoreLockedError(
                f"vector store {directory} is already open in {holder}; close that process or use another path"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _unpack(points: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.fromiter((p.id for p in points), np.int64, len(points)),
        np.fromiter((p.score for p in points), np.float32, len(points)),
    )


class _Searching:
    """The search planner both engines share; each engine only runs one query (``_query``).

    Filtered searches are exact. An id set goes to the engine as a HasId condition, except when it covers a
    large part of the collection: Qdrant pays per listed id (at 1M points 500K ids cost 3x a full scan), so
    then one exact scan over-fetches the top ``limit`` and the id set is applied here. That stays exact: every
    allowed point outside the scanned top-``limit`` scores below all of it. If fewer than ``k`` allowed points
    survive, the HasId query runs after all, so the result is never short.
    """

    _counts: _Counts

    def _query(
        self, name: str, q: np.ndarray, limit: int, terms: FilterTerms, allowed: np.ndarray | None, exact: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _size(self, name: str) -> int:
        """Point count for planning; an estimate is enough."""
        raise NotImplementedError

    def count(self, name: str) -> int:
        raise NotImplementedError

    def _count_exact(self, name: str, terms: list[tuple[str, list[PayloadValue]]]) -> int:
        raise NotImplementedError

    def count_matching(self, name: str, payload_filter: PayloadFilter | None) -> int:
        """How many points match the payload filter, exactly (``count`` when there is none).

        ``count_matching(c, {"dataset": [d]}) == count(c)`` says dataset ``d`` is alone in ``c``; the answer is
        remembered until this store next writes to ``c`` (see ``_Counts``), so asking per query is free.
        """
        terms = _filter_terms(payload_filter)
        if terms is None:
            return self.count(name)
        if any(not values for _, values in terms):
            return 0
        return self._counts.get(name, terms, lambda: self._count_exact(name, terms))

    def search(
        self,
        name: str,
        query: np.ndarray,
        k: int,
        *,
        payload_filter: PayloadFilter | None = None,
        allowed_ids: np.ndarray | None = None,
        exact: bool | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (ids, scores), best first, among points matching the payload filter and the id set.

        Without a filter the HNSW graph answers (``exact=True`` forces a full scan); with one the answer is exact
        unless ``exact=False`` asks for the graph.
        """
        q = _as_query(query)
        terms = _filter_terms(payload_filter)
        allowed = None if allowed_ids is None else _as_ids(allowed_ids, "allowed_ids")
        if k <= 0 or (allowed is not None and allowed.size == 0) or any(not v for _, v in terms or ()):
            return _empty()
        filtered = terms is not None or allowed is not None
        exact = filtered if exact is None else exact
        if allowed is not None and exact:
            total = self._size(name)
            if len(allowed) >= _OVERFETCH_FRACTION * total:
                limit = min(total, k + int(np.ceil(_OVERFETCH_FACTOR * k * total / len(allowed))))
                ids, scores = self._query(name, q, limit, terms, None, True)
                keep = np.isin(ids, allowed)
                if keep.sum() >= k or len(ids) < limit:  # enough survivors, or the scan returned every point
                    return ids[keep][:k], scores[keep][:k]
        return self._query(name, q, int(k), terms, allowed, exact)


# ----------------------------------------------------------------------------------------------------------------
# Embedded engine


class EdgeVectorStore(_Searching):
    """Qdrant's engine in-process; one Edge shard per collection under ``path/<collection>/``.

    Writes land in an appendable segment that is searched by brute force (always correct); ``optimize`` builds
    the HNSW index over them, so call it after a bulk load. Safe to share between threads of one process.
    """

    exclusive = True  # the folder is VisionLens's alone

    def __init__(self, path: str | os.PathLike[str], index: IndexParams = IndexParams(), upsert_batch: int = 1024):
        import qdrant_edge as qe

        self._qe = qe
        self.path = Path(path)
        self.index = index
        self.upsert_batch = upsert_batch
        self._lock = _DirLock(self.path)
        self._shards: dict[str, Any] = {}
        self._fields: dict[str, set[str]] = {}
        self._counts = _Counts(remember=True)  # the folder lock makes this process the only writer
        self._mutex = threading.RLock()
        self._closed = False

    def __enter__(self) -> EdgeVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EdgeVectorStore({str(self.path)!r})"

    # -- collections --------------------------------------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        return self.path / _check_name(name)

    def _config(self, dim: int, distance: Distance) -> Any:
        qe = self._qe
        metric = {"cosine": qe.Distance.Cosine, "dot": qe.Distance.Dot, "euclid": qe.Distance.Euclid}.get(distance)
        if metric is None:
            raise VectorStoreError(f"unknown distance {distance!r}; use 'cosine', 'dot' or 'euclid'")
        if not isinstance(dim, (int, np.integer)) or dim <= 0:
            raise VectorStoreError(f"dimension must be a positive integer, got {dim!r}")
        hnsw = qe.HnswIndexConfig(
            m=self.index.m,
            ef_construct=self.index.ef_construct,
            full_scan_threshold=self.index.full_scan_threshold_kb,
            payload_m=self.index.payload_m,
        )
        return qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=int(dim), distance=metric),
            hnsw_config=hnsw,
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=self.index.indexing_threshold_kb),
        )

    @contextmanager
    def _engine(self, name: str, action: str) -> Iterator[None]:
        """Engine errors arrive as bare ``Exception``; name the collection and the action in what we raise."""
        try:
            yield
        except VisionLensError:
            raise
        except Exception as exc:  # noqa: BLE001 - qdrant_edge raises plain Exception
            raise VectorStoreError(f"{action} failed for collection {name!r} in {self.path}: {exc}") from exc

    def ensure_collection(self, name: str, dim: int, distance: Distance = "cosine") -> None:
        """Create the collection, or check that the existing one holds ``dim``-d ``distance`` vectors.

        An open collection is left open (other threads may be searching it); the shape is read from the
        ``edge_config.json`` Qdrant Edge persists in every shard directory.
        """
        config = self._config(dim, distance)
        directory = self._dir(name)
        with self._mutex:
            if self._closed:
                raise VectorStoreError(f"vector store {self.path} is closed")
            existing = directory.is_dir() and any(directory.iterdir())
            if existing:
                stored = json.loads((directory / "edge_config.json").read_text())["vectors"][""]
                if (stored["size"], stored["distance"].lower()) != (int(dim), distance):
                    raise VectorStoreError(
                        f"collection {name!r} in {self.path} holds {stored['size']}-d {stored['distance'].lower()} "
                        f"vectors, not {dim}-d {distance}"
                    )
                if name in self._shards:
                    return
            try:
                shard = (self._qe.EdgeShard.load if existing else self._qe.EdgeShard.create)(str(directory), config)
            except Exception as exc:  # noqa: BLE001
                raise VectorStoreError(
                    f"collection {name!r} in {self.path} cannot hold {dim}-d {distance} vectors: {exc}"
                ) from exc
            self._shards[name] = shard
            self._fields[name] = set(shard.info().payload_schema)

    def _shard(self, name: str) -> Any:
        with self._mutex:
            if self._closed:
                raise VectorStoreError(f"vector store {self.path} is closed")
            shard = self._shards.get(name)
            if shard is None:
                directory = self._dir(name)
                if not (directory.is_dir() and any(directory.iterdir())):
                    raise CollectionNotFoundError(f"no vector collection {name!r} in {self.path}")
                with self._engine(name, "open"):
                    shard = self._qe.EdgeShard.load(str(directory))
                self._shards[name] = shard
                self._fields[name] = set(shard.info().payload_schema)
            return shard

    def _close_shard(self, name: str) -> None:
        shard = self._shards.pop(name, None)
        if shard is not None:
            shard.flush()
            shard.close()

    def collections(self) -> list[str]:
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if p.is_dir() and _NAME_RE.match(p.name))

    def drop(self, name: str) -> None:
        with self._mutex, self._counts.writing(name):
            self._close_shard(name)
            self._fields.pop(name, None)
            shutil.rmtree(self._dir(name), ignore_errors=True)

    def close(self) -> None:
        with self._mutex:
            for name in list(self._shards):
                self._close_shard(name)
            self._lock.release()
            self._closed = True

    # -- writes -------------------------------------------------------------------------------------------------

    def upsert(
        self,
        name: str,
        ids: np.ndarray,
        vectors: np.ndarray,
        payloads: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Insert or replace points in batches; payload fields get a payload index the first time they appear."""
        ids = _as_ids(ids)
        vectors = _as_matrix(vectors, len(ids))
        rows = _check_payloads(payloads, len(ids))
        qe = self._qe
        shard = self._shard(name)
        with self._counts.writing(name), self._engine(name, "upsert"):
            self._index_fields(name, shard, rows)
            for start in range(0, len(ids), self.upsert_batch):
                stop = start + self.upsert_batch
                batch_payloads = rows[start:stop] if rows is not None else [None] * len(ids[start:stop])
                points = [
                    qe.Point(i, v, p)
                    for i, v, p in zip(ids[start:stop].tolist(), vectors[start:stop], batch_payloads, strict=True)
                ]
                shard.update(qe.UpdateOperation.upsert_points(points))

    def _index_fields(self, name: str, shard: Any, rows: list[dict[str, Any]] | None) -> None:
        schema = {
            "keyword": self._qe.PayloadSchemaType.Keyword,
            "integer": self._qe.PayloadSchemaType.Integer,
            "bool": self._qe.PayloadSchemaType.Bool,
            "float": self._qe.PayloadSchemaType.Float,
        }
        for key, kind in _new_fields(rows, self._fields[name]).items():
            shard.update(self._qe.UpdateOperation.create_field_index(key, schema[kind]))
            self._fields[name].add(key)

    def optimize(self, name: str) -> None:
        """Build the HNSW index over everything written so far (blocking; minutes at 1M points on 2 cores)."""
        shard = self._shard(name)
        with self._engine(name, "optimize"):
            shard.optimize()
            shard.flush()

    def delete_ids(self, name: str, ids: np.ndarray) -> None:
        ids = _as_ids(ids)
        shard = self._shard(name)
        with self._counts.writing(name), self._engine(name, "delete"):
            for start in range(0, len(ids), _SCROLL_PAGE):
                shard.update(self._qe.UpdateOperation.delete_points(ids[start : start + _SCROLL_PAGE].tolist()))

    def delete_matching(self, name: str, payload_filter: PayloadFilter) -> int:
        """Delete every point whose payload matches (e.g. ``{"dataset": 3}``); returns how many matched.

        Needed beside ``delete_ids`` because a dataset's points are findable by payload even after its sample
        rows are gone (a crash between the stores), when nobody can list their ids any more.
        """
        terms = _delete_terms(name, payload_filter)
        if any(not values for _, values in terms):
            return 0
        qe = self._qe
        flt = self._filter(terms, None)
        shard = self._shard(name)
        with self._counts.writing(name), self._engine(name, "delete"):
            matched = int(shard.count(qe.CountRequest(filter=flt, exact=True)))
            if matched:
                shard.update(qe.UpdateOperation.delete_points_by_filter(flt))
        return matched

    # -- reads --------------------------------------------------------------------------------------------------

    def _filter(self, terms: FilterTerms, allowed: np.ndarray | None) -> Any:
        qe = self._qe
        must: list[Any] = []
        for key, values in terms or ():
            match = qe.MatchValue(values[0]) if isinstance(values[0], bool) else qe.MatchAny(values)
            must.append(qe.FieldCondition(key=key, match=match))
        if allowed is not None:
            must.append(qe.HasIdCondition(set(allowed.tolist())))
        return qe.Filter(must=must) if must else None

    def _query(
        self, name: str, q: np.ndarray, limit: int, terms: FilterTerms, allowed: np.ndarray | None, exact: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        qe = self._qe
        params = qe.SearchParams(exact=True) if exact else qe.SearchParams(hnsw_ef=self.index.ef_for(limit))
        request = qe.QueryRequest(
            query=qe.Query.Nearest(q), limit=limit, filter=self._filter(terms, allowed), params=params
        )
        shard = self._shard(name)
        with self._engine(name, "search"):
            points = shard.query(request)
        return _unpack(points)

    def get_vectors(self, name: str, ids: np.ndarray) -> np.ndarray:
        """Stored vectors in the order of ``ids`` (cosine collections store them L2-normalised)."""
        ids = _as_ids(ids)
        shard = self._shard(name)
        with self._engine(name, "retrieve"):
            records = shard.retrieve(ids.tolist(), False, True)
        return _order_rows(ids, [r.id for r in records], [r.vector for r in records], name)

    def all_ids(self, name: str) -> np.ndarray:
        shard = self._shard(name)
        out: list[int] = []
        offset = None
        with self._engine(name, "scroll"):
            while True:
                request = self._qe.ScrollRequest(
                    offset=offset, limit=_SCROLL_PAGE, with_payload=False, with_vector=False
                )
                records, offset = shard.scroll(request)
                out.extend(r.id for r in records)
                if offset is None:
                    break
        return np.asarray(out, dtype=np.int64)

    def count(self, name: str) -> int:
        """The shard's live point count (an exact CountRequest walks the id tracker: 150 ms at 1M points)."""
        shard = self._shard(name)
        with self._engine(name, "count"):
            return int(shard.info().points_count)

    _size = count

    def _count_exact(self, name: str, terms: list[tuple[str, list[PayloadValue]]]) -> int:
        shard = self._shard(name)
        with self._engine(name, "count"):
            return int(shard.count(self._qe.CountRequest(filter=self._filter(terms, None), exact=True)))


# ----------------------------------------------------------------------------------------------------------------
# Qdrant server (or qdrant-client's local mode in tests)


class ClientVectorStore(_Searching):
    """qdrant-client against a Qdrant server or cluster (``url=``), or its local mode (``path=`` / ``":memory:"``),
    which stands in for a server in tests: same requests, brute-force answers.

    The search contract is the embedded store's (``_Searching``): payload filters and id sets are answered by an
    exact scan, which a cluster runs on every shard and merges, so the top-k stays exact and full. ``layout`` is
    applied to collections this store creates; the payload fields VisionLens filters on are indexed at creation
    and any new field when an upsert first brings it.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        path: str | os.PathLike[str] | None = None,
        api_key: str | None = None,
        prefer_grpc: bool = False,
        grpc_port: int = 6334,
        layout: ServerLayout = ServerLayout(),
        index: IndexParams = IndexParams(),
        upsert_batch: int = 1024,
        timeout: int = 60,
    ):
        from qdrant_client import QdrantClient, models

        if (url is None) == (path is None):
            raise VectorStoreError("ClientVectorStore needs exactly one of url= (a Qdrant server) or path=")
        if not isinstance(grpc_port, int) or not 1 <= grpc_port <= 65535:
            raise VectorStoreError(f"qdrant grpc_port must be a TCP port (1-65535), got {grpc_port!r}")
        self._m = models
        self.index = index
        self.layout = layout
        self.upsert_batch = upsert_batch
        self._lock: _DirLock | None = None
        self.local = url is None
        self.exclusive = self.local  # a server may hold other applications' collections
        self._counts = _Counts(remember=self.local)  # other processes write to a server behind our back
        self._fields: dict[str, set[str]] = {}  # per collection: payload fields known to have an index
        self._fields_mutex = threading.Lock()
        transport: dict[str, Any] = {"prefer_grpc": prefer_grpc, "grpc_port": grpc_port}  # local mode ignores them
        if url is not None:
            self.where = url
            self._client = QdrantClient(url=url, api_key=api_key, timeout=timeout, **transport)
        elif str(path) == ":memory:":
            self.where = ":memory:"
            self._client = QdrantClient(location=":memory:", **transport)
        else:
            self.where = str(path)
            self._lock = _DirLock(Path(path))
            self._client = QdrantClient(path=str(path), **transport)

    def __enter__(self) -> ClientVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ClientVectorStore({self.where!r})"

    @contextmanager
    def _engine(self, name: str, action: str) -> Iterator[None]:
        try:
            yield
        except VisionLensError:
            raise
        except Exception as exc:  # noqa: BLE001 - HTTP, gRPC and local-mode errors all surface here
            with self._reach(f"{action} on collection {name!r}"):
                exists = self._client.collection_exists(name)
            if not exists:
                raise CollectionNotFoundError(f"no vector collection {name!r} in {self.where}") from None
            raise VectorStoreError(f"{action} failed for collection {name!r} in {self.where}: {exc}") from exc

    @contextmanager
    def _reach(self, action: str) -> Iterator[None]:
        """A server that is down, refuses the API key or times out: one message naming it, not an httpx trace."""
        try:
            yield
        except VisionLensError:
            raise
        except Exception as exc:  # noqa: BLE001 - connection, auth and protocol errors of REST and gRPC
            raise VectorStoreError(f"{action} failed: no usable answer from Qdrant at {self.where}: {exc!r}") from exc

    def ensure_collection(self, name: str, dim: int, distance: Distance = "cosine") -> None:
        m = self._m
        metric = {"cosine": m.Distance.COSINE, "dot": m.Distance.DOT, "euclid": m.Distance.EUCLID}.get(distance)
        if metric is None:
            raise VectorStoreError(f"unknown distance {distance!r}; use 'cosine', 'dot' or 'euclid'")
        _check_name(name)
        if not isinstance(dim, (int, np.integer)) or dim <= 0:
            raise VectorStoreError(f"dimension must be a positive integer, got {dim!r}")
        with self._reach(f"opening collection {name!r}"):
            if not self._client.collection_exists(name):
                try:
                    self._create(name, int(dim), metric)
                except Exception as exc:  # noqa: BLE001 - another process may have created it first
                    if not self._client.collection_exists(name):
                        raise VectorStoreError(f"cannot create collection {name!r} in {self.where}: {exc}") from exc
            info = self._client.get_collection(name)
        params = info.config.params.vectors
        if params.size != dim or params.distance != metric:
            raise VectorStoreError(
                f"collection {name!r} in {self.where} holds {params.size}-d {params.distance.value} vectors, "
                f"not {dim}-d {distance}"
            )
        with self._fields_mutex:
            self._fields[name] = set(info.payload_schema)
        # also a collection an older VisionLens created without indexes, or another process created just now
        with self._engine(name, "index"):
            self._index(name, {k: v for k, v in FILTER_FIELDS.items() if k not in self._fields[name]})

    def _create(self, name: str, dim: int, metric: Any) -> None:
        m, layout = self._m, self.layout
        self._client.create_collection(
            name,
            vectors_config=m.VectorParams(size=dim, distance=metric, on_disk=layout.on_disk or None),
            hnsw_config=m.HnswConfigDiff(
                m=self.index.m,
                ef_construct=self.index.ef_construct,
                full_scan_threshold=self.index.full_scan_threshold_kb,
                payload_m=self.index.payload_m,
            ),
            shard_number=layout.shards,
            replication_factor=layout.replicas,
            write_consistency_factor=layout.write_consistency,
        )

    def collections(self) -> list[str]:
        with self._reach("listing collections"):
            return sorted(c.name for c in self._client.get_collections().collections)

    def drop(self, name: str) -> None:
        with self._counts.writing(name), self._reach(f"dropping collection {name!r}"):
            self._client.delete_collection(_check_name(name))
        with self._fields_mutex:
            self._fields.pop(name, None)

    def close(self) -> None:
        self._client.close()
        if self._lock is not None:
            self._lock.release()

    def upsert(
        self,
        name: str,
        ids: np.ndarray,
        vectors: np.ndarray,
        payloads: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        ids = _as_ids(ids)
        vectors = _as_matrix(vectors, len(ids))
        rows = _check_payloads(payloads, len(ids))
        with self._counts.writing(name), self._engine(name, "upsert"):
            self._index_fields(name, rows)
            for start in range(0, len(ids), self.upsert_batch):
                stop = start + self.upsert_batch
                batch = self._m.Batch(
                    ids=ids[start:stop].tolist(),
                    vectors=vectors[start:stop].tolist(),
                    payloads=rows[start:stop] if rows is not None else None,
                )
                self._client.upsert(name, points=batch, wait=True)

    def _index_fields(self, name: str, rows: list[dict[str, Any]] | None) -> None:
        """Fields an upsert brings for the first time get their index before the points land, like the embedded
        store's: a filtered exact search then reads the index instead of every point's payload."""
        with self._fields_mutex:
            known = self._fields.get(name)
        if known is None:  # a collection this store did not ensure: ask the server what it has indexed
            known = set(self._client.get_collection(name).payload_schema)
            with self._fields_mutex:
                self._fields[name] = known
        self._index(name, _new_fields(rows, known))

    def _index(self, name: str, fields: Mapping[str, str]) -> None:
        """Create payload indexes (kind from ``_index_kind``); a server answers an existing one with success."""
        m = self._m
        schema = {
            "keyword": m.PayloadSchemaType.KEYWORD,
            "integer": m.PayloadSchemaType.INTEGER,
            "float": m.PayloadSchemaType.FLOAT,
            "bool": m.PayloadSchemaType.BOOL,
        }
        for key, kind in fields.items():
            with self._local_quiet():
                self._client.create_payload_index(name, key, field_schema=schema[kind], wait=True)
            with self._fields_mutex:
                self._fields.setdefault(name, set()).add(key)

    @contextmanager
    def _local_quiet(self) -> Iterator[None]:
        """Local mode keeps no payload index and warns so; the request is still the one a server gets. Only there
        are the process's warning filters touched (not thread-safe), never on a server."""
        if not self.local:
            yield
            return
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Payload indexes have no effect", UserWarning)
            yield

    def optimize(self, name: str) -> None:
        """A server indexes in the background and local mode has no index: nothing to do."""
        self.count(name)  # still fail clearly for a missing collection, like the embedded store

    def delete_ids(self, name: str, ids: np.ndarray) -> None:
        ids = _as_ids(ids)
        with self._counts.writing(name), self._engine(name, "delete"):
            for start in range(0, len(ids), _SCROLL_PAGE):
                selector = self._m.PointIdsList(points=ids[start : start + _SCROLL_PAGE].tolist())
                self._client.delete(name, points_selector=selector, wait=True)

    def delete_matching(self, name: str, payload_filter: PayloadFilter) -> int:
        """Delete every point whose payload matches (e.g. ``{"dataset": 3}``); returns how many matched."""
        terms = _delete_terms(name, payload_filter)
        if any(not values for _, values in terms):
            return 0
        flt = self._filter(terms, None)
        with self._counts.writing(name), self._engine(name, "delete"):
            matched = int(self._client.count(name, count_filter=flt, exact=True).count)
            if matched:
                selector = self._m.FilterSelector(filter=flt)
                self._client.delete(name, points_selector=selector, wait=True)
        return matched

    def _filter(self, terms: FilterTerms, allowed: np.ndarray | None) -> Any:
        m = self._m
        must: list[Any] = []
        for key, values in terms or ():
            match = m.MatchValue(value=values[0]) if isinstance(values[0], bool) else m.MatchAny(any=values)
            must.append(m.FieldCondition(key=key, match=match))
        if allowed is not None:
            must.append(m.HasIdCondition(has_id=allowed.tolist()))
        return m.Filter(must=must) if must else None

    def _query(
        self, name: str, q: np.ndarray, limit: int, terms: FilterTerms, allowed: np.ndarray | None, exact: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        params = self._m.SearchParams(exact=True) if exact else self._m.SearchParams(hnsw_ef=self.index.ef_for(limit))
        if self.local:
            params = None  # local mode is always brute force and warns about search params
        with self._engine(name, "search"):
            points = self._client.query_points(
                name,
                query=q.tolist(),
                limit=limit,
                query_filter=self._filter(terms, allowed),
                search_params=params,
                with_payload=False,
            ).points
        return _unpack(points)

    def get_vectors(self, name: str, ids: np.ndarray) -> np.ndarray:
        ids = _as_ids(ids)
        with self._engine(name, "retrieve"):
            records = self._client.retrieve(name, ids=ids.tolist(), with_vectors=True, with_payload=False)
        return _order_rows(ids, [r.id for r in records], [r.vector for r in records], name)

    def all_ids(self, name: str) -> np.ndarray:
        out: list[int] = []
        offset = None
        with self._engine(name, "scroll"):
            while True:
                records, offset = self._client.scroll(
                    name, limit=_SCROLL_PAGE, offset=offset, with_payload=False, with_vectors=False
                )
                out.extend(r.id for r in records)
                if offset is None:
                    break
        return np.asarray(out, dtype=np.int64)

    def count(self, name: str) -> int:
        with self._engine(name, "count"):
            return int(self._client.count(name, exact=True).count)

    def _size(self, name: str) -> int:
        with self._engine(name, "count"):
            return int(self._client.count(name, exact=False).count)

    def _count_exact(self, name: str, terms: list[tuple[str, list[PayloadValue]]]) -> int:
        with self._engine(name, "count"):
            return int(self._client.count(name, count_filter=self._filter(terms, None), exact=True).count)
