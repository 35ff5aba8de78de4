"""Embedding a dataset, projecting it to 2-D, and checking that DuckDB and Qdrant agree.

Glue between the store (samples, projections), the vector store (one collection per embedder, points keyed by
sample id, payload = dataset/split/labels) and the embedders. Long steps report ``progress(step, done, total)``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import media
from .config import get_settings
from .embeddings import Embedder, load_embedder
from .formats.base import ProgressCallback, no_progress
from .projection import project
from .store.metadata import MetadataStore
from .store.vectors import VectorStore, open_vector_store_from

_lock = threading.Lock()
_vector_stores: dict[str, VectorStore] = {}


def vector_store() -> VectorStore:
    """The process-wide vector store (the embedded engine locks its folder to one process, like DuckDB)."""
    settings = get_settings()
    key = settings.qdrant_url or str(settings.vectors)
    with _lock:
        vs = _vector_stores.get(key)
        if vs is None:
            vs = _vector_stores[key] = open_vector_store_from(settings)
        return vs


def close_vector_stores() -> None:
    with _lock:
        for vs in _vector_stores.values():
            vs.close()
        _vector_stores.clear()


def embed_dataset(
    store: MetadataStore,
    dataset_id: int,
    embedder: Embedder | str = "builtin",
    vectors: VectorStore | None = None,
    batch_size: int = 64,
    num_workers: int = 2,
    progress: ProgressCallback = no_progress,
    **options: Any,
) -> Any:
    """Embed every sample not yet in the embedder's collection; resumable, corrupt images reported and skipped."""
    from .embeddings.runner import embed_images

    emb = load_embedder(embedder, **options) if isinstance(embedder, str) else embedder
    vs = vectors or vector_store()
    if isinstance(embedder, str) and not options.get("random_init"):
        store.register_collection(emb.name, embedder, options, emb.dim)
    row = store.dataset_by_id(dataset_id)
    index, ids = store.sample_index(dataset_id)
    items = [(int(i), media.join(row.root, p)) for i, p in zip(ids, index.filepath)]
    return embed_images(
        items,
        emb,
        vs,
        emb.name,
        batch_size=batch_size,
        num_workers=num_workers,
        progress=lambda d, t: progress(f"embed ({emb.name})", d, t),
        payload_fn=lambda batch: store.payloads(dataset_id, np.asarray(batch, np.int64)),
    )


_text_embedders: dict[str, Embedder] = {}
_loading = threading.Lock()


def text_embedder(store: MetadataStore, collection: str) -> Embedder | None:
    """The embedder that filled ``collection``, if it can embed text (CLIP); loaded once per process.

    Loading holds its own lock (not the vector-store lock): two sessions searching at once must not load two
    copies of a CLIP model, and nobody opening the vector store should wait for a model to load.
    """
    with _lock:
        if collection in _text_embedders:
            return _text_embedders[collection]
    spec = store.collection_spec(collection)
    if spec is None or not spec[0].startswith("clip"):
        return None
    with _loading:
        with _lock:
            if collection in _text_embedders:
                return _text_embedders[collection]
        emb = load_embedder(spec[0], **spec[1])
        with _lock:
            _text_embedders[collection] = emb
    return emb


def dataset_collections(store: MetadataStore, dataset_id: int, vectors: VectorStore | None = None) -> list[str]:
    """Collections holding vectors of this dataset: those with a stored map first."""
    mapped = [c for _, c in store.projection_methods(dataset_id)]
    try:
        vs = vectors or vector_store()
        others = vs.collections()
    except Exception:  # noqa: BLE001 - a locked or missing vector store just means no similarity search here
        others = []
    return list(dict.fromkeys(mapped + others))


def dataset_vectors(
    store: MetadataStore, dataset_id: int, collection: str, vectors: VectorStore | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(sample ids, vectors) of a dataset that are in ``collection``, in sample-id order."""
    vs = vectors or vector_store()
    _, ids = store.sample_index(dataset_id)
    present = np.intersect1d(ids, vs.all_ids(collection))
    return present, vs.get_vectors(collection, present)


def project_dataset(
    store: MetadataStore,
    dataset_id: int,
    collection: str,
    method: str = "umap",
    vectors: VectorStore | None = None,
    progress: ProgressCallback = no_progress,
) -> int:
    """Compute and store the 2-D map; returns the number of points."""
    ids, vecs = dataset_vectors(store, dataset_id, collection, vectors)
    if not len(ids):
        from .errors import VisionLensError

        raise VisionLensError(f"no vectors of this dataset in {collection!r}: run `visionlens embed` first")
    cache = get_settings().home / "numba-cache"
    xy = project(vecs, method, progress=lambda d, t: progress(f"project ({method})", d, t), cache_dir=cache)  # type: ignore[arg-type]
    store.write_projection(dataset_id, method, collection, ids, xy)
    return len(ids)


@dataclass
class DoctorReport:
    collection: str
    in_duckdb: int
    in_qdrant: int
    missing_vectors: np.ndarray
    orphan_vectors: np.ndarray

    @property
    def ok(self) -> bool:
        return not len(self.missing_vectors) and not len(self.orphan_vectors)


def doctor(store: MetadataStore, dataset_id: int, collection: str, vectors: VectorStore | None = None) -> DoctorReport:
    """Sample ids must agree across the stores: samples without a vector, and vectors whose sample is gone
    (a collection is shared by every dataset embedded with the same model, so orphans are checked globally)."""
    vs = vectors or vector_store()
    _, ids = store.sample_index(dataset_id)
    stored = vs.all_ids(collection)
    return DoctorReport(
        collection=collection,
        in_duckdb=len(ids),
        in_qdrant=len(np.intersect1d(ids, stored)),
        missing_vectors=np.setdiff1d(ids, stored),
        orphan_vectors=np.setdiff1d(stored, store.all_sample_ids()),
    )
