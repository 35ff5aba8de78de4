"""Running every analysis on a dataset and storing what each found; the JSON the CLI prints.

One entry point for the CLI, the Python API, the app's Insights tab and the agents, so they all see the same
findings. Each analysis is its own run (``slices:<model>``, ``errors:<model>``, ``label_mistakes``,
``near_duplicates``): re-running one replaces only its findings.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import VisionLensError
from ..formats.base import ProgressCallback, no_progress
from ..store.metadata import MetadataStore
from .finding import KINDS, Finding, load_findings, save_run

log = logging.getLogger(__name__)

MISTAKE_FIELD = "label mistake score"


def evaluated_models(store: MetadataStore, dataset_id: int) -> list[str]:
    """Models with a default evaluation (IoU 0.5, per class), whose key is the model's own name."""
    return [e["model"] for e in store.evaluations(dataset_id) if e["key"] == e["model"]]


def run_insights(
    store: MetadataStore,
    dataset_id: int,
    models: Sequence[str] | None = None,
    kinds: Sequence[str] = KINDS,
    vectors: Any = None,
    collection: str | None = None,
    progress: ProgressCallback = no_progress,
) -> list[Finding]:
    """Compute and store the findings of ``kinds`` for ``models`` (default: every model; a model not evaluated
    yet is evaluated first, since every model analysis reads its per-object outcomes)."""
    from ..metrics import evaluate_model

    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise VisionLensError(f"unknown insight kind(s) {', '.join(map(repr, unknown))}; kinds: {', '.join(KINDS)}")
    all_models = [s for s in store.source_ids(dataset_id) if s != "ground_truth"]
    models = list(models) if models is not None else all_models
    missing = [m for m in models if m not in all_models]
    if missing:
        raise VisionLensError(
            f"unknown model(s) {', '.join(map(repr, missing))}; this dataset has: "
            f"{', '.join(map(repr, all_models)) or 'no models'}"
        )
    done = set(evaluated_models(store, dataset_id))
    for model in models:
        if model not in done and {"slice", "error_pattern", "label_mistake"} & set(kinds):
            evaluate_model(store, dataset_id, model, progress=progress)
    vs, coll = _vectors(store, dataset_id, vectors, collection)
    if "slice" in kinds:
        from .slices import find_slices

        for model in models:
            save_run(
                store,
                dataset_id,
                f"slices:{model}",
                find_slices(store, dataset_id, model, vectors=vs, collection=coll, progress=progress),
            )
    if "error_pattern" in kinds:
        from .errors import find_error_patterns

        for model in models:
            save_run(
                store, dataset_id, f"errors:{model}", find_error_patterns(store, dataset_id, model, progress=progress)
            )
    if "label_mistake" in kinds and models:
        from .mistakes import find_label_mistakes

        found, fields = find_label_mistakes(store, dataset_id, models=models, progress=progress)
        save_run(store, dataset_id, "label_mistakes", found, sample_fields=fields)
    if "near_duplicate" in kinds:
        from .duplicates import find_near_duplicates
        from .hashes import compute_hashes

        compute_hashes(store, dataset_id, progress=progress)
        save_run(
            store,
            dataset_id,
            "near_duplicates",
            find_near_duplicates(store, dataset_id, vectors=vs, collection=coll, progress=progress),
        )
    from ..plugins import run_insight_finders

    run_insight_finders(store, dataset_id, models, kinds, progress)  # a failing plugin is logged and left out
    return [f for f in load_findings(store, dataset_id) if f.kind in kinds]


def _vectors(store: MetadataStore, dataset_id: int, vectors: Any, collection: str | None) -> tuple[Any, str | None]:
    """The vector store and the collection holding this dataset, if any: analyses that can use embeddings
    (clusters, near-duplicates) fall back to what they can do without them."""
    from ..embedding_jobs import dataset_collections, vector_store

    try:
        vs = vectors or vector_store()
        coll = collection or next(iter(dataset_collections(store, dataset_id, vs)), None)
    except VisionLensError as e:  # another process holds the embedded vector store
        log.warning("insights without embeddings: %s", e)
        return None, None
    return vs, coll


def _sample_ids(store: MetadataStore, dataset_id: int, f: Finding) -> list[int]:
    """A finding's samples: its members if it has them, else what its filter selects."""
    if f.sample_ids:
        return list(f.sample_ids)
    if f.id is not None:
        members = store.finding_members(dataset_id, f.id)["sample_id"].to_pylist()
        if members:
            return members
    return store.matching_ids(dataset_id, f.filters).tolist() if f.filters is not None else []


def findings_json(store: MetadataStore, dataset_id: int, findings: Sequence[Finding]) -> dict[str, Any]:
    """``{"findings": [...]}`` ranked best first within each kind, with the samples' file paths as stored."""
    ordered = sorted(findings, key=lambda f: (KINDS.index(f.kind), -f.score))
    ids_of = {id(f): _sample_ids(store, dataset_id, f) for f in ordered}
    all_ids = np.unique(np.concatenate([np.asarray(v, np.int64) for v in ids_of.values()] or [np.zeros(0, np.int64)]))
    paths = dict(zip(all_ids.tolist(), store.samples_by_id(dataset_id, all_ids)["filepath"].to_pylist()))
    out = []
    for f in ordered:
        ids = ids_of[id(f)]
        item: dict[str, Any] = {
            "id": f.id,
            "kind": f.kind,
            "title": f.title,
            "score": f.score,
            "model": f.model,
            "definition": f.definition,
            "description": f.description,
            "evidence": f.evidence,
            "files": list(dict.fromkeys(paths[i] for i in ids if i in paths)),
            "filters": f.filters.model_dump(mode="json", exclude_defaults=True) if f.filters is not None else None,
        }
        if f.kind == "label_mistake":
            item.update({k: f.detail.get(k) for k in ("file", "bbox", "mistake", "gt_id")})
        if f.kind == "near_duplicate":
            item["pairs"] = f.detail.get("pairs", [])
        extra = {k: v for k, v in f.detail.items() if k not in item}
        if extra:
            item["detail"] = extra
        out.append(item)
    return {"findings": out}
