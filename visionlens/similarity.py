"""Similarity and text search: the top-k among the samples the user is looking at.

Filters the vector store can apply (dataset, split, GT labels) travel as its payload filter; everything else
(any other field, annotation filters, a lasso selection, an insight) becomes a DuckDB id set the vector store
restricts to. Either way the vector store returns exactly the top k of the allowed points, never fewer when k exist.

One case is not exact: with no filter beyond the dataset, and the dataset alone in its embedder's collection, the
HNSW graph answers, because the exact scan would score every point of the collection: at 1M 512-d points on 2 cores
the scan took 220 ms (p50) and the graph 2 ms at recall@50 0.994 (``benchmarks/bench_similarity.py``).
"""

from __future__ import annotations

import numpy as np

from .embedding_jobs import vector_store
from .query import Filters
from .store.metadata import GROUND_TRUTH, MetadataStore
from .store.vectors import VectorStore

_PAYLOAD_FIELDS = {"split"}


def _payload_filter(dataset_id: int, filters: Filters) -> tuple[dict[str, list], bool]:
    """(payload filter, whether it says everything the filters say)."""
    pf: dict[str, list] = {"dataset": [dataset_id]}
    complete = filters.sample_ids is None and filters.finding is None  # an insight's members are a DuckDB id set
    for a in filters.annotations:
        plain = (
            a.source == GROUND_TRUTH
            and a.labels
            and not a.exclude
            and a.min_count == 1
            and not a.status
            and a.confidence is None
            and a.area is None
            and "labels" not in pf
        )
        if plain:
            pf["labels"] = list(a.labels)  # "has any of these GT labels" is exactly the payload's any-of
        else:
            complete = False
    for f in filters.fields:
        if f.field in _PAYLOAD_FIELDS and f.values and None not in f.values and not f.exclude and f.range is None:
            pf[f.field] = list(f.values)
        else:
            complete = False
    return pf, complete


def _whole_collection(vs: VectorStore, collection: str, pf: dict[str, list], complete: bool) -> bool:
    """True when the filters allow every point of ``collection``: only the dataset filter, and no other dataset
    there. The counts are remembered by the vector store until it next writes to the collection, so this is free
    per query; it is asked only for the dataset-only filter, the one the app sends whenever nothing is filtered."""
    return complete and list(pf) == ["dataset"] and vs.count_matching(collection, pf) == vs.count(collection)


def search_vector(
    store: MetadataStore,
    dataset_id: int,
    collection: str,
    query: np.ndarray,
    k: int = 50,
    filters: Filters | None = None,
    vectors: VectorStore | None = None,
    exclude: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k sample ids (and cosine scores) nearest to ``query`` among the samples matching ``filters``.

    Exact, except when the filters reduce to the whole dataset and the dataset fills the collection: then the
    graph answers. The payload filter goes along even then, so a point of another dataset embedded a moment ago
    can never come back; it costs nothing measurable when every point matches it.
    """
    vs = vectors or vector_store()
    filters = filters or Filters()
    pf, complete = _payload_filter(dataset_id, filters)
    allowed = None if complete else store.matching_ids(dataset_id, filters)
    if allowed is not None and exclude is not None:
        allowed = allowed[allowed != exclude]
    extra = 1 if exclude is not None and allowed is None else 0
    graph = _whole_collection(vs, collection, pf, complete)
    ids, scores = vs.search(
        collection, query, k + extra, payload_filter=pf, allowed_ids=allowed, exact=False if graph else None
    )
    if extra:
        keep = ids != exclude
        ids, scores = ids[keep][:k], scores[keep][:k]
    return ids, scores


def similar_to_sample(
    store: MetadataStore,
    dataset_id: int,
    collection: str,
    sample_id: int,
    k: int = 50,
    filters: Filters | None = None,
    vectors: VectorStore | None = None,
    include_self: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    vs = vectors or vector_store()
    query = vs.get_vectors(collection, np.asarray([sample_id], np.int64))[0]
    ids, scores = search_vector(
        store, dataset_id, collection, query, k, filters, vs, exclude=None if include_self else sample_id
    )
    return ids, scores


def similar_to_text(
    store: MetadataStore,
    dataset_id: int,
    collection: str,
    text: str,
    embedder: object,
    k: int = 50,
    filters: Filters | None = None,
    vectors: VectorStore | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """CLIP text search: ``embedder`` must be the CLIP model that filled ``collection``."""
    embed_text = getattr(embedder, "embed_text", None)
    if embed_text is None:
        from .errors import VisionLensError

        raise VisionLensError(f"{collection!r} was made by an image-only embedder; text search needs a CLIP collection")
    query = np.asarray(embed_text([text]))[0]
    return search_vector(store, dataset_id, collection, query, k, filters, vectors)
