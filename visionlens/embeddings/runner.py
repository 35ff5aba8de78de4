"""Getting vectors into the vector store: embed images with a model, or import vectors computed elsewhere.

Embedding a million images takes hours, so the job is built to be interrupted: vectors are written in batches,
ids already in the collection are skipped on the next run, and one unreadable image is reported, never fatal.
Decoding runs in a thread pool (Pillow releases the GIL while it decodes) so it overlaps the model instead of
starving it. Nothing here needs torch: the builtin embedder works on numpy, and CLIP's tensors are stacked with
torch only when the transform returns them.
"""

from __future__ import annotations

import io
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from visionlens import media
from visionlens.errors import VisionLensError
from visionlens.server.fair_start import yield_to_new_sessions
from visionlens.store.vectors import VectorStore

from . import Embedder, EmbedderError

Progress = Callable[[int, int], None]
PayloadFn = Callable[[np.ndarray], Sequence[Mapping[str, Any]]]

__all__ = [
    "EmbedSummary",
    "ImportSummary",
    "embed_images",
    "import_npy",
    "import_parquet",
    "load_image",
    "pending_items",
]


@dataclass
class EmbedSummary:
    """What a run did. ``failed`` holds (sample_id, uri, reason) for every image that could not be read."""

    embedded: int = 0
    skipped: int = 0
    failed: list[tuple[int, str, str]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class ImportSummary:
    imported: int
    dim: int
    seconds: float


def load_image(uri: str, size_hint: int | None = None) -> Image.Image:
    """Read through fsspec (local or ``gs://``), decode at no more resolution than the model needs, apply EXIF.

    JPEG draft mode decodes at 1/2, 1/4 or 1/8 scale while staying >= ``size_hint`` on both sides, which makes
    decoding a 12-megapixel photo for a 224-pixel model several times cheaper.
    """
    image = Image.open(io.BytesIO(media.read_bytes(uri)))
    if size_hint:
        image.draft("RGB", (size_hint, size_hint))
    image = ImageOps.exif_transpose(image)
    return image.convert("RGB")


Row = tuple[int, str, Any, "str | None"]  # (sample_id, uri, pixels or None, error or None)


def _decode(sample_id: int, uri: str, transform: Callable, size_hint: int) -> Row:
    """(sample_id, uri) -> (sample_id, uri, pixels or None, error or None); errors travel as data, not exceptions.

    In a served app the decoding threads wait while users' sessions start, as the job itself does at its progress
    reports: decoding batches ahead would otherwise go on taking the cores those sessions are built on."""
    yield_to_new_sessions()
    try:
        return sample_id, uri, transform(load_image(uri, size_hint)), None
    except Exception as exc:  # noqa: BLE001 - any decode failure is reported per image
        return sample_id, uri, None, f"{type(exc).__name__}: {exc}"


def _stack(pixels: list[Any]) -> Any:
    """numpy arrays stack with numpy; tensors (CLIP's transform) with torch, which is then already loaded."""
    if isinstance(pixels[0], np.ndarray):
        return np.stack(pixels)
    import torch

    return torch.stack(pixels)


def _collate(rows: list[Row]) -> tuple[np.ndarray, Any, list[tuple[int, str, str]]]:
    good = [(sid, px) for sid, _, px, err in rows if err is None]
    bad = [(sid, uri, err) for sid, uri, _, err in rows if err is not None]
    ids = np.array([sid for sid, _ in good], dtype=np.int64)
    pixels = _stack([px for _, px in good]) if good else None
    return ids, pixels, bad


def _batches(
    items: Sequence[tuple[int, str]],
    transform: Callable,
    size_hint: int,
    batch_size: int,
    num_workers: int,
    prefetch: int = 4,
) -> Iterable[tuple[np.ndarray, Any, list[tuple[int, str, str]]]]:
    """Decoded batches in input order; with workers, up to ``prefetch`` batches are decoded ahead of the model."""
    chunks = (items[s : s + batch_size] for s in range(0, len(items), batch_size))
    if num_workers <= 0:
        for chunk in chunks:
            yield _collate([_decode(sid, uri, transform, size_hint) for sid, uri in chunk])
        return
    with ThreadPoolExecutor(num_workers, thread_name_prefix="visionlens-decode") as pool:
        ahead: deque[list[Future]] = deque()
        try:
            for chunk in chunks:
                ahead.append([pool.submit(_decode, sid, uri, transform, size_hint) for sid, uri in chunk])
                if len(ahead) > prefetch:
                    yield _collate([f.result() for f in ahead.popleft()])
            while ahead:
                yield _collate([f.result() for f in ahead.popleft()])
        finally:  # an interrupted run (error, KeyboardInterrupt, closed generator) drops what is still queued
            for futures in ahead:
                for f in futures:
                    f.cancel()


class _Writer:
    """Buffers vectors and writes them in large batches (one store round trip per ``every`` vectors)."""

    def __init__(self, store: VectorStore, collection: str, payload_fn: PayloadFn | None, every: int):
        self.store, self.collection, self.payload_fn, self.every = store, collection, payload_fn, every
        self.ids: list[np.ndarray] = []
        self.vectors: list[np.ndarray] = []
        self.pending = 0
        self.written = 0

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.ids.append(ids)
        self.vectors.append(vectors)
        self.pending += len(ids)
        if self.pending >= self.every:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        ids, vectors = np.concatenate(self.ids), np.concatenate(self.vectors)
        payloads = self.payload_fn(ids) if self.payload_fn else None
        self.store.upsert(self.collection, ids, vectors, payloads)
        self.written += len(ids)
        self.ids, self.vectors, self.pending = [], [], 0


def pending_items(
    items: Iterable[tuple[int, str]], vector_store: VectorStore, collection: str, dim: int
) -> tuple[list[tuple[int, str]], int]:
    """(the items whose id is not yet in ``collection``, how many were skipped); creates the collection if needed.

    Shared by the single-process runner and the Dask job, so both resume the same way and do the same work.
    """
    vector_store.ensure_collection(collection, dim)
    items = list(items)
    present = set(vector_store.all_ids(collection).tolist())
    todo = [(int(sid), str(uri)) for sid, uri in items if int(sid) not in present]
    return todo, len(items) - len(todo)


def embed_images(
    items: Iterable[tuple[int, str]],
    embedder: Embedder,
    vector_store: VectorStore,
    collection: str | None = None,
    batch_size: int = 64,
    num_workers: int = 2,
    progress: Progress | None = None,
    *,
    payload_fn: PayloadFn | None = None,
    write_every: int = 2048,
) -> EmbedSummary:
    """Embed every (sample_id, uri) not yet in ``collection`` (default: the embedder's name) and store it.

    ``payload_fn(ids)`` returns the filter payloads (e.g. split and labels) for a batch of ids, so similarity
    search can filter without a second store. ``progress(done, total)`` is called after every batch, where
    ``total`` counts only the images this run has to do. ``num_workers`` decoding threads (0: decode inline).
    """
    started = time.perf_counter()
    collection = collection or embedder.name
    todo, skipped = pending_items(items, vector_store, collection, embedder.dim)
    summary = EmbedSummary(skipped=skipped)
    if todo:
        loader = _batches(todo, embedder.transform, embedder.image_size, batch_size, num_workers)
        writer = _Writer(vector_store, collection, payload_fn, write_every)
        done = 0
        for ids, pixels, failures in loader:
            summary.failed.extend(failures)
            if pixels is not None:
                writer.add(ids, embedder.embed_batch(pixels))
            done += len(ids) + len(failures)
            if progress:
                progress(done, len(todo))
        writer.flush()
        summary.embedded = writer.written
        if writer.written:
            vector_store.optimize(collection)
    summary.seconds = time.perf_counter() - started
    return summary


# ----------------------------------------------------------------------------------------------------------------
# Vectors computed elsewhere


def _check_ids(ids: np.ndarray, valid_ids: np.ndarray | None, source: str) -> None:
    """Every vector must land on exactly one known sample: a silent shift would mismatch images and vectors."""
    if ids.size and ids.min() <= 0:
        raise EmbedderError(f"{source}: sample ids must be positive, found {int(ids.min())}")
    unique, counts = np.unique(ids, return_counts=True)
    if len(unique) != len(ids):
        twice = unique[counts > 1]
        raise EmbedderError(f"{source}: {len(twice)} sample id(s) appear twice, e.g. {twice[:5].tolist()}")
    if valid_ids is not None:
        unknown = ids[~np.isin(ids, valid_ids)]
        if unknown.size:
            raise EmbedderError(
                f"{source}: {unknown.size} id(s) are not samples of this dataset, e.g. {unknown[:5].tolist()}"
            )


def _read_ids(path: str | Path) -> np.ndarray:
    """Ids from ``.npy`` or a text file with one id per line."""
    path = Path(path)
    try:
        ids = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, dtype=np.int64, ndmin=1)
    except (OSError, ValueError) as exc:
        raise EmbedderError(f"{path}: cannot read sample ids ({exc})") from exc
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise EmbedderError(f"{path}: expected a 1-D list of integer sample ids, got {ids.dtype} shape {ids.shape}")
    return ids.astype(np.int64)


def _ensure(store: VectorStore, collection: str, dim: int, source: str) -> None:
    try:
        store.ensure_collection(collection, dim)
    except VisionLensError as exc:
        raise EmbedderError(f"{source}: {dim}-d vectors do not fit collection {collection!r}: {exc}") from exc


def _write(
    store: VectorStore,
    collection: str,
    ids: np.ndarray,
    batches: Iterable[np.ndarray],
    payload_fn: PayloadFn | None,
) -> None:
    start = 0
    for vectors in batches:
        chunk = ids[start : start + len(vectors)]
        store.upsert(collection, chunk, vectors, payload_fn(chunk) if payload_fn else None)
        start += len(vectors)
    store.optimize(collection)


def import_npy(
    vectors_path: str | Path,
    ids_path: str | Path,
    vector_store: VectorStore,
    collection: str,
    *,
    payload_fn: PayloadFn | None = None,
    valid_ids: np.ndarray | None = None,
    batch: int = 50_000,
) -> ImportSummary:
    """Import an ``[n, dim]`` ``.npy`` (memory-mapped, so 1M x 512 streams) with its n sample ids."""
    started = time.perf_counter()
    try:
        vectors = np.load(vectors_path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise EmbedderError(f"{vectors_path}: cannot read vectors ({exc})") from exc
    if vectors.ndim != 2:
        raise EmbedderError(f"{vectors_path}: expected a 2-D array [n, dim], got shape {vectors.shape}")
    ids = _read_ids(ids_path)
    if len(ids) != len(vectors):
        raise EmbedderError(f"{ids_path} has {len(ids)} ids but {vectors_path} has {len(vectors)} vectors")
    _check_ids(ids, valid_ids, str(ids_path))
    _ensure(vector_store, collection, vectors.shape[1], str(vectors_path))
    chunks = (np.asarray(vectors[s : s + batch], dtype=np.float32) for s in range(0, len(vectors), batch))
    _write(vector_store, collection, ids, chunks, payload_fn)
    return ImportSummary(len(ids), vectors.shape[1], time.perf_counter() - started)


def _vector_rows(column: Any, source: str, name: str) -> np.ndarray:
    """A Parquet list / fixed-size-list column -> float32 [rows, dim], refusing ragged or null rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (
        pa.types.is_list(column.type) or pa.types.is_large_list(column.type) or pa.types.is_fixed_size_list(column.type)
    ):
        raise EmbedderError(f"{source}: column {name!r} must hold lists of floats, not {column.type}")
    if column.null_count:
        raise EmbedderError(f"{source}: column {name!r} has {column.null_count} empty (null) vectors")
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    if len(lengths) and lengths.min() != lengths.max():
        raise EmbedderError(f"{source}: vectors in {name!r} have different lengths ({lengths.min()}..{lengths.max()})")
    flat = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return flat.reshape(len(lengths), -1)


def import_parquet(
    path: str,
    vector_store: VectorStore,
    collection: str,
    *,
    vector_column: str = "embedding",
    id_column: str = "sample_id",
    path_column: str | None = None,
    path_to_id: Mapping[str, int] | None = None,
    payload_fn: PayloadFn | None = None,
    valid_ids: np.ndarray | None = None,
    batch: int = 50_000,
) -> ImportSummary:
    """Import vectors from Parquet keyed by ``id_column``, or by ``path_column`` through ``path_to_id``.

    The key column is read and checked first, so a bad file fails before anything is written.
    """
    import fsspec
    import pyarrow.parquet as pq

    started = time.perf_counter()
    key = path_column or id_column
    if path_column and path_to_id is None:
        raise EmbedderError("importing by file path needs path_to_id (file path -> sample id)")
    with fsspec.open(path, "rb") as handle:
        pf = pq.ParquetFile(handle)
        columns = pf.schema_arrow.names
        for wanted in (key, vector_column):
            if wanted not in columns:
                raise EmbedderError(f"{path}: no column {wanted!r}; columns are {columns}")
        keys = pf.read(columns=[key]).column(0).to_pylist()
        if path_column:
            unknown = [p for p in keys if p not in path_to_id]
            if unknown:
                raise EmbedderError(f"{path}: {len(unknown)} file path(s) are not in the dataset, e.g. {unknown[:3]}")
            ids = np.fromiter((path_to_id[p] for p in keys), np.int64, len(keys))
        else:
            if any(k is None for k in keys):
                raise EmbedderError(f"{path}: column {key!r} has empty (null) ids")
            ids = np.asarray(keys, dtype=np.int64)
        _check_ids(ids, valid_ids, path)
        if not len(ids):
            raise EmbedderError(f"{path}: no rows")
        chunks = (
            _vector_rows(b.column(0), path, vector_column)
            for b in pf.iter_batches(batch_size=batch, columns=[vector_column])
        )
        first = next(chunks)
        _ensure(vector_store, collection, first.shape[1], path)
        _write(vector_store, collection, ids, itertools.chain([first], chunks), payload_fn)
    return ImportSummary(len(ids), first.shape[1], time.perf_counter() - started)
