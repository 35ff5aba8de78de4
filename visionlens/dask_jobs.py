"""Embedding and thumbnail jobs on a Dask cluster (``dask.distributed``), for datasets one machine is too slow for.

The owner process (CLI, app or API server) keeps the stores: it works out what is left to do exactly like the
single-process runner (ids already in the collection are skipped, so a killed run resumes), sends (sample id, uri)
chunks to the workers and writes what comes back with the runner's own writer. Workers only read images (through
fsspec: local paths or ``gs://``) and compute: each builds the embedder once per process from a small picklable
spec, decodes with the runner's ``load_image`` and transform, and returns float32 vectors, so vectors equal the
single-process run's. Thumbnails work the same way: workers render the JPEG bytes, the owner writes the cache files
(workers need not share its disk).

Only a bounded number of chunks is in flight, so the owner's memory stays flat however many images there are; a
progress callback that raises (a cancelled job) cancels what is still queued on the cluster. Dask is the optional
``visionlens[dask]`` extra and is imported only when a job runs here.

Workers need ``visionlens`` installed (the same version as the owner) and must be able to read the image URIs and,
for CLIP with ``weights=PATH``, that file.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import VisionLensError

if TYPE_CHECKING:
    from distributed import Client

    from .embeddings import Embedder
    from .embeddings.runner import EmbedSummary, PayloadFn
    from .store.metadata import MetadataStore
    from .store.vectors import VectorStore
    from .thumbnails import ThumbnailCache

__all__ = [
    "DASK_EXTRA",
    "EmbedderSpec",
    "ThumbnailSummary",
    "cluster_client",
    "describe_embedder",
    "embed_dataset_on_cluster",
    "embed_on_cluster",
    "pregenerate_on_cluster",
    "resolve_scheduler",
]

log = logging.getLogger(__name__)

DASK_EXTRA = "pip install 'visionlens[dask]'"
CONNECT_TIMEOUT_S = 10.0
WORKERS_TIMEOUT_S = 60.0
_HEARTBEAT_S = 1.0  # how often a wait for results gives the progress callback a chance to cancel
_OFF = {"", "none", "off", "local"}

Progress = Callable[[int, int], None]
Failure = tuple[int, str, str]


def _distributed() -> Any:
    """The ``distributed`` module, or an error naming the extra that installs it."""
    try:
        import distributed
    except ImportError as exc:
        raise VisionLensError(f"running on a Dask cluster needs dask.distributed: {DASK_EXTRA} ({exc})") from None
    return distributed


def resolve_scheduler(value: str | None) -> str | None:
    """The scheduler a job should use: ``value``, else the ``dask_scheduler`` setting; ``none``/``local``/empty
    mean the single-process runner (so a command line can override a setting that names a cluster)."""
    if value is None:
        from .config import get_settings

        value = get_settings().dask_scheduler
    if value is None or value.strip().lower() in _OFF:
        return None
    return value.strip()


@contextmanager
def cluster_client(
    scheduler: str | Client, timeout: float = CONNECT_TIMEOUT_S, workers_timeout: float = WORKERS_TIMEOUT_S
) -> Iterator[Client]:
    """A client of the scheduler at ``scheduler`` (``tcp://host:8786``), closed afterwards; a ``Client`` given
    here is used as is and left open. Fails clearly when the scheduler cannot be reached or has no worker, instead
    of queueing work nobody will do."""
    distributed = _distributed()
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    try:
        client = distributed.Client(str(scheduler), timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, distributed.TimeoutError, ValueError) as exc:
        raise VisionLensError(
            f"cannot reach the Dask scheduler at {scheduler!r} within {timeout:g} s ({type(exc).__name__}: {exc}); "
            "check the address (tcp://HOST:8786) and that `dask scheduler` runs there, or unset "
            "VISIONLENS_DASK_SCHEDULER / pass --dask none to embed in this process"
        ) from None
    try:
        try:
            client.wait_for_workers(1, timeout=workers_timeout)
        except (TimeoutError, distributed.TimeoutError):  # the same class from Python 3.11 on
            raise VisionLensError(
                f"the Dask scheduler at {scheduler!r} has no workers after {workers_timeout:g} s; start some with "
                f"`dask worker {scheduler}`"
            ) from None
        yield client
    finally:
        client.close()


# ----------------------------------------------------------------------------------------------------------------
# What travels to the workers


@dataclass(frozen=True)
class EmbedderSpec:
    """What a worker needs to build the embedder itself: ``load_embedder``'s spec and options (for CLIP:
    ``weights=PATH`` readable on the workers, ``device=``). Small and picklable, and hashable so each worker
    process builds each embedder once."""

    spec: str = "builtin"
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, spec: str = "builtin", **options: Any) -> EmbedderSpec:
        if options.get("random_init"):
            raise VisionLensError(
                "random_init builds different weights in every worker process; save the model "
                "(torch.save(model.state_dict(), PATH)) and pass weights=PATH instead"
            )
        clean = {
            k: str(v) if isinstance(v, Path) else v for k, v in options.items() if v is not None or k == "pretrained"
        }
        return cls(spec, tuple(sorted(clean.items())))

    def build(self) -> Embedder:
        from .embeddings import load_embedder

        return load_embedder(self.spec, **dict(self.options))


_worker_lock = threading.Lock()
_worker_embedders: dict[EmbedderSpec, Embedder] = {}


def _embedder(spec: EmbedderSpec) -> Embedder:
    """The embedder for ``spec`` in this (worker) process, built on first use: loading CLIP once per process,
    not once per chunk, is what makes small chunks affordable."""
    with _worker_lock:
        emb = _worker_embedders.get(spec)
        if emb is None:
            emb = _worker_embedders[spec] = spec.build()
        return emb


def worker_embedders() -> list[str]:
    """Names of the embedders this process has built (run on workers with ``client.run`` to see the cache)."""
    with _worker_lock:
        return sorted(e.name for e in _worker_embedders.values())


def _describe(spec: EmbedderSpec) -> tuple[str, int, int]:
    emb = _embedder(spec)
    return emb.name, int(emb.dim), int(emb.image_size)


def _embed_chunk(
    items: list[tuple[int, str]], spec: EmbedderSpec, batch_size: int, decode_threads: int
) -> tuple[np.ndarray, np.ndarray, list[Failure]]:
    """Runs on a worker: (ids, float32 vectors, failures) for a chunk, decoded and batched exactly as the
    single-process runner does (same ``_batches``), so the same image gives the same vector."""
    from .embeddings.runner import _batches

    emb = _embedder(spec)
    ids: list[np.ndarray] = []
    vectors: list[np.ndarray] = []
    failed: list[Failure] = []
    for batch_ids, pixels, failures in _batches(items, emb.transform, emb.image_size, batch_size, decode_threads):
        failed.extend(failures)
        if pixels is not None:
            ids.append(batch_ids)
            vectors.append(np.asarray(emb.embed_batch(pixels), dtype=np.float32))
    if not ids:
        return np.empty(0, np.int64), np.empty((0, 0), np.float32), failed
    return np.concatenate(ids), np.concatenate(vectors), failed


def _render_chunk(items: list[tuple[int, str]], side: int) -> list[tuple[int, bytes | None, str | None]]:
    """Runs on a worker: (sample id, JPEG bytes or None, error or None) per image, as ``ThumbnailCache.get``
    renders them; the owner writes the files."""
    from . import media
    from .thumbnails import render_jpeg

    out: list[tuple[int, bytes | None, str | None]] = []
    for sid, uri in items:
        try:
            out.append((sid, render_jpeg(media.read_bytes(uri), side)[0], None))
        except Exception as exc:  # noqa: BLE001 - one unreadable image is reported, never fatal
            out.append((sid, None, f"{type(exc).__name__}: {exc}"))
    return out


# ----------------------------------------------------------------------------------------------------------------
# The owner's side


def _stream(
    client: Client,
    fn: Callable[..., Any],
    chunks: Iterator[Any],
    args: tuple[Any, ...],
    max_in_flight: int,
    heartbeat: Callable[[], None],
    name: str,
    send: Callable[[Any], Any] = lambda chunk: chunk,
) -> Iterator[tuple[Any, Any]]:
    """(chunk, result) in completion order, with at most ``max_in_flight`` chunks submitted at a time; the task
    gets ``send(chunk)`` (what the workers need of it) and ``args``.

    Waits in short slices so ``heartbeat`` (the progress callback) can raise to cancel even while no result
    arrives; whatever stops the loop (that, a failed task, the consumer closing us) cancels what is queued.
    """
    distributed = _distributed()
    token = uuid.uuid4().hex[:8]
    counter = itertools.count()
    pending: dict[Any, Any] = {}

    def submit() -> bool:
        chunk = next(chunks, None)
        if chunk is None:
            return False
        fut = client.submit(fn, send(chunk), *args, key=f"visionlens-{name}-{token}-{next(counter)}", pure=False)
        pending[fut] = chunk
        return True

    try:
        while len(pending) < max_in_flight and submit():
            pass
        while pending:
            try:
                with client.as_current():  # wait() asks for "the" client; this one need not be the default
                    done, _ = distributed.wait(list(pending), timeout=_HEARTBEAT_S, return_when="FIRST_COMPLETED")
            except (TimeoutError, distributed.TimeoutError):
                heartbeat()
                continue
            for fut in done:
                chunk = pending.pop(fut)
                result = fut.result()
                fut.release()
                submit()
                yield chunk, result
    finally:
        if pending:
            client.cancel(list(pending))


def _in_flight(client: Client, max_in_flight: int | None) -> int:
    """Two chunks per worker thread keep every worker busy while the owner writes; more only costs memory."""
    if max_in_flight:
        return max(1, int(max_in_flight))
    return max(2, 2 * sum(client.nthreads().values()))


def describe_embedder(client: Client, spec: EmbedderSpec) -> tuple[str, int, int]:
    """(collection name, dim, image size) of the embedder, built on a worker: the owner never loads the model."""
    return client.submit(_describe, spec, pure=False).result()


def embed_on_cluster(
    items: Iterable[tuple[int, str]],
    spec: EmbedderSpec,
    vector_store: VectorStore,
    client: Client,
    collection: str | None = None,
    *,
    batch_size: int = 64,
    batches_per_chunk: int = 4,
    decode_threads: int = 1,
    max_in_flight: int | None = None,
    progress: Progress | None = None,
    payload_fn: PayloadFn | None = None,
    write_every: int = 2048,
) -> EmbedSummary:
    """``embed_images`` with the decoding and the model on the cluster: same skipping, writing and summary.

    A chunk is ``batches_per_chunk`` whole batches of the single-process run, so every batch the model sees is
    the same. ``decode_threads`` decode ahead of the model inside each task (0: inline). When the run stops early
    (progress raised, a task failed) the vectors already received are still written, so the rerun does less.
    """
    from .embeddings.runner import EmbedSummary, _Writer, pending_items

    started = time.perf_counter()
    name, dim, _ = describe_embedder(client, spec)
    collection = collection or name
    todo, skipped = pending_items(items, vector_store, collection, dim)
    summary = EmbedSummary(skipped=skipped)
    if todo:
        size = max(1, batch_size) * max(1, batches_per_chunk)
        chunks = (todo[s : s + size] for s in range(0, len(todo), size))
        writer = _Writer(vector_store, collection, payload_fn, write_every)
        done = 0

        def heartbeat() -> None:
            if progress:
                progress(done, len(todo))

        results = _stream(
            client, _embed_chunk, chunks, (spec, batch_size, decode_threads), _in_flight(client, max_in_flight),
            heartbeat, "embed",
        )  # fmt: skip
        try:
            for _, (ids, vectors, failures) in results:
                summary.failed.extend(failures)
                if len(ids):
                    writer.add(ids, vectors)
                done += len(ids) + len(failures)
                heartbeat()
        except BaseException:
            results.close()  # cancel what is queued before writing what arrived
            _flush_quietly(writer)
            raise
        writer.flush()
        summary.embedded = writer.written
        if writer.written:
            vector_store.optimize(collection)
    summary.seconds = time.perf_counter() - started
    return summary


def _flush_quietly(writer: Any) -> None:
    try:
        writer.flush()
    except Exception:  # noqa: BLE001 - the error that stopped the run is the one to report
        log.exception("could not write the vectors received before the run stopped")


def embed_dataset_on_cluster(
    store: MetadataStore,
    dataset_id: int,
    spec: EmbedderSpec,
    client: Client,
    vectors: VectorStore | None = None,
    batch_size: int = 64,
    decode_threads: int = 1,
    progress: Callable[[str, int, int], None] | None = None,
    collection: str | None = None,
) -> EmbedSummary:
    """``embedding_jobs.embed_dataset`` on the cluster: the same items and filter payloads."""
    from . import media
    from .embedding_jobs import vector_store

    vs = vectors or vector_store()
    row = store.dataset_by_id(dataset_id)
    index, ids = store.sample_index(dataset_id)
    items = [(int(i), media.join(row.root, p)) for i, p in zip(ids, index.filepath)]
    step = f"embed ({collection or spec.spec}, dask)"
    return embed_on_cluster(
        items,
        spec,
        vs,
        client,
        collection,
        batch_size=batch_size,
        decode_threads=decode_threads,
        progress=(lambda d, t: progress(step, d, t)) if progress else None,
        payload_fn=lambda batch: store.payloads(dataset_id, np.asarray(batch, np.int64)),
    )


@dataclass
class ThumbnailSummary:
    """What a thumbnail run did; ``failed`` holds (sample id, uri, reason) for every image shown as a placeholder."""

    total: int = 0
    generated: int = 0
    cached: int = 0
    failed: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def placeholders(self) -> int:
        return len(self.failed)


def pregenerate_on_cluster(
    cache: ThumbnailCache,
    items: Iterable[tuple[int, str]],
    client: Client,
    *,
    max_side: int | None = None,
    chunk_size: int = 64,
    max_in_flight: int | None = None,
    progress: Progress | None = None,
) -> ThumbnailSummary:
    """``ThumbnailCache.pregenerate`` with decoding and rendering on the cluster: the same files at the same paths.

    Files already cached are skipped here, before anything is sent. Workers return the JPEG bytes and the owner
    writes them atomically (temp file + rename), so browsing sessions never see half a file.
    """
    from .thumbnails import _atomic_write

    started = time.perf_counter()
    side = int(max_side or cache.size)
    todo = items if isinstance(items, list | tuple) else list(items)
    summary = ThumbnailSummary(total=len(todo))
    done = 0

    def chunks() -> Iterator[list[tuple[int, str, Path]]]:
        """Chunks of (sample id, uri, cache path) still to render; what is cached or missing is counted here."""
        nonlocal done
        chunk: list[tuple[int, str, Path]] = []
        for sid, uri in todo:
            sid, uri = int(sid), str(uri)
            path = cache.path_for(uri, side)
            if path is None:
                summary.failed.append((sid, uri, "FileNotFoundError: the image file does not exist"))
                done += 1
            elif path.exists():
                summary.cached += 1
                done += 1
            else:
                chunk.append((sid, uri, path))
                if len(chunk) >= chunk_size:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk

    def heartbeat() -> None:
        if progress:
            progress(done, summary.total)

    results = _stream(
        client, _render_chunk, chunks(), (side,), _in_flight(client, max_in_flight), heartbeat, "thumbnails",
        send=lambda chunk: [(sid, uri) for sid, uri, _ in chunk],
    )  # fmt: skip
    try:
        for chunk, rendered in results:
            for (sid, uri, path), (_, data, error) in zip(chunk, rendered):
                if data is None:
                    summary.failed.append((sid, uri, error or "unknown error"))
                else:
                    _atomic_write(path, data)
                    summary.generated += 1
                done += 1
            heartbeat()
    finally:
        results.close()
    heartbeat()
    summary.seconds = time.perf_counter() - started
    return summary
