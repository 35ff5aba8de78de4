"""Every operation the CLI, the Python client and the HTTP API offer, as plain data in and plain data out.

One function per operation, over the process's store. The HTTP API calls these in the owner process and sends
their result as JSON; the CLI calls them directly when no app owns the database, or through the API when one
does. Both get the same JSON-shaped result (``plain``), so both print the same thing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from ..formats.base import ProgressCallback, no_progress
from ..query import Filters, LabelFilter, SavedView, Sort, as_filters
from ..store.metadata import GROUND_TRUTH, MetadataStore

__all__ = [
    "plain",
    "list_datasets",
    "dataset_info",
    "ingest",
    "add_predictions",
    "delete",
    "samples",
    "annotations",
    "evaluate",
    "metrics",
    "evaluations",
    "embed",
    "thumbnails",
    "similar",
    "insights",
    "findings",
    "tag",
    "tag_counts",
    "views",
    "view",
    "save_view",
    "rename_view",
    "delete_view",
    "export",
]

_JSON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS | orjson.OPT_NAIVE_UTC


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=_JSON, default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_defaults=True)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def plain(value: Any) -> Any:
    """``value`` as JSON would carry it (dates as ISO strings, numpy as lists), so local and remote agree."""
    return orjson.loads(dumps(value))


def list_datasets(store: MetadataStore) -> list[dict[str, Any]]:
    return plain(store.list_datasets())


def dataset_info(store: MetadataStore, name: str) -> dict[str, Any]:
    """What ``visionlens info`` shows: counts, splits, fields, labels per source, ingest warnings."""
    from ..dataset import load

    ds = load(name, store)
    sources = [GROUND_TRUTH, *ds.models()]
    counts = {s: dict(ds.label_counts(s)) for s in sources}
    issues = ds.issues()
    return plain(
        {
            **ds.summary(),
            "fields": [{"name": f.name, "level": f.level, "kind": str(f.kind)} for f in ds.fields().values()],
            "label_names": ds.labels(),
            "models": ds.models(),
            "label_counts": counts,
            "first_issue": None
            if not issues
            else {"file": issues[0].file, "location": issues[0].location, "message": issues[0].message},
        }
    )


def ingest(
    store: MetadataStore,
    path: str,
    name: str,
    format: str = "auto",
    images: str | None = None,
    predictions: dict[str, str] | None = None,
    replace: bool = False,
    progress: ProgressCallback = no_progress,
) -> dict[str, Any]:
    from ..ingestion import ingest as run_ingest

    report = run_ingest(store, path, name, format, images, predictions or {}, replace=replace, progress=progress)
    return plain(
        {
            "name": report.name,
            "format": report.format,
            "samples": report.samples,
            "gt_boxes": report.gt_boxes,
            "predictions": report.predictions,
            "issues": len(report.issues),
            "warnings": report.summary_lines(),
            "seconds": report.seconds,
        }
    )


def add_predictions(
    store: MetadataStore,
    name: str,
    model: str,
    path: str,
    format: str = "auto",
    replace: bool = False,
    progress: ProgressCallback = no_progress,
) -> dict[str, Any]:
    from ..dataset import load

    n = load(name, store).add_predictions(model, path, format, replace, progress=progress)
    return {"dataset": name, "model": model, "predictions": int(n)}


def delete(store: MetadataStore, name: str, progress: ProgressCallback = no_progress) -> dict[str, Any]:
    from ..cleanup import delete_dataset

    progress("delete", 0, 1)
    report = delete_dataset(name, store)
    progress("delete", 1, 1)
    return plain(
        {
            "name": report.name,
            "samples": report.samples,
            "vectors": report.vectors,
            "thumbnails": report.thumbnails,
        }
    )


def samples(
    store: MetadataStore,
    name: str,
    filters: Filters | dict[str, Any] | None = None,
    sort: Sort | dict[str, Any] | None = None,
    offset: int = 0,
    limit: int = 100,
) -> dict[str, Any]:
    """One filtered page with the total count: ``{"count": N, "rows": [...]}``."""
    ds = store.get_dataset(name)
    sort = Sort.model_validate(sort) if isinstance(sort, dict) else sort
    table, total = store.page_and_count(ds.id, as_filters(filters), sort or Sort(), int(limit), int(offset))
    return plain({"count": total, "rows": table.to_pylist()})


def annotations(
    store: MetadataStore,
    name: str,
    sample_ids: list[int],
    sources: list[str] | None = None,
    evaluation: str | None = None,
) -> dict[str, Any]:
    ds = store.get_dataset(name)
    table = store.annotations(ds.id, np.asarray(sample_ids, np.int64), sources, evaluation)
    return plain({"rows": table.to_pylist()})


def _metrics_json(m: Any) -> dict[str, Any]:
    return plain(
        {
            "model": m.model,
            "key": m.key,
            "iou": m.iou,
            "class_agnostic": m.class_agnostic,
            "samples": m.samples,
            "stats": m.stats,
            "per_class": m.per_class,
            "confusion": m.confusion,
            "confusion_labels": m.confusion_labels,
            "seconds": m.seconds,
        }
    )


def evaluate(
    store: MetadataStore,
    name: str,
    model: str,
    iou: float = 0.5,
    class_agnostic: bool = False,
    progress: ProgressCallback = no_progress,
) -> dict[str, Any]:
    from ..metrics import evaluate_model

    return _metrics_json(evaluate_model(store, store.get_dataset(name).id, model, iou, class_agnostic, progress))


def metrics(
    store: MetadataStore,
    name: str,
    model: str,
    filters: Filters | dict[str, Any] | None = None,
    iou: float = 0.5,
    class_agnostic: bool = False,
) -> dict[str, Any]:
    from ..metrics import subset_metrics

    ds = store.get_dataset(name)
    return _metrics_json(subset_metrics(store, ds.id, model, as_filters(filters), iou, class_agnostic))


def evaluations(store: MetadataStore, name: str) -> list[dict[str, Any]]:
    return plain(store.evaluations(store.get_dataset(name).id))


def embed(
    store: MetadataStore,
    name: str,
    embedder: str = "builtin",
    weights: str | None = None,
    project: str = "both",
    batch_size: int = 64,
    workers: int = 2,
    progress: ProgressCallback = no_progress,
    dask_scheduler: str | None = None,
) -> dict[str, Any]:
    """Embed (resumable), then compute the maps. ``dask_scheduler`` (else the ``dask_scheduler`` setting; ``none``:
    this process) runs the decoding and the model on a Dask cluster; the vectors are the same."""
    from ..dask_jobs import resolve_scheduler
    from ..embedding_jobs import embed_dataset, project_dataset
    from ..embeddings import load_embedder

    options = {"weights": str(weights)} if weights else {}
    ds_id = store.get_dataset(name).id
    scheduler = resolve_scheduler(dask_scheduler)
    if scheduler:
        from ..dask_jobs import EmbedderSpec, cluster_client, describe_embedder, embed_dataset_on_cluster

        spec = EmbedderSpec.of(embedder, **options)
        with cluster_client(scheduler) as client:
            collection, dim, _ = describe_embedder(client, spec)  # built on a worker: no model loaded here
            store.register_collection(collection, embedder, options, dim)
            summary = embed_dataset_on_cluster(
                store, ds_id, spec, client, batch_size=batch_size, decode_threads=workers, progress=progress,
                collection=collection,
            )  # fmt: skip
    else:
        emb = load_embedder(embedder, **options)
        collection = emb.name
        # Registered like embed_dataset does for a spec: text search needs it, and doctor counts a collection that
        # is neither registered nor used as an orphan.
        store.register_collection(emb.name, embedder, options, emb.dim)
        summary = embed_dataset(store, ds_id, emb, batch_size=batch_size, num_workers=workers, progress=progress)
    methods = {"both": ["pca", "umap"], "none": []}.get(project, [project])
    for method in methods:
        project_dataset(store, ds_id, collection, method, progress=progress)
    return plain(
        {
            "collection": collection,
            "embedded": summary.embedded,
            "skipped": summary.skipped,
            "failed": [str(f) for f in summary.failed],
            "seconds": summary.seconds,
            "maps": methods,
            "dask_scheduler": scheduler,
        }
    )


def thumbnails(
    store: MetadataStore,
    name: str,
    size: int | None = None,
    workers: int = 2,
    progress: ProgressCallback = no_progress,
    dask_scheduler: str | None = None,
) -> dict[str, Any]:
    """Fill the thumbnail cache ahead of browsing (``size``: the side, default the ``thumbnail_size`` setting), on
    a Dask cluster when ``dask_scheduler`` or the setting names one. ``failed`` lists unreadable images (the
    cluster run names each; the single-process run counts them in ``placeholders``)."""
    import time

    from .. import media
    from ..config import get_settings
    from ..dask_jobs import resolve_scheduler
    from ..errors import VisionLensError
    from ..thumbnails import ThumbnailCache

    settings = get_settings()
    side = int(size or settings.thumbnail_size)
    if not 16 <= side <= 4096:
        raise VisionLensError(f"thumbnail size {side} is out of range: use 16..4096 pixels")
    cache = ThumbnailCache(settings.thumbnails, side)
    row = store.get_dataset(name)
    index, ids = store.sample_index(row.id)
    items = [(int(i), media.join(row.root, p)) for i, p in zip(ids, index.filepath)]
    scheduler = resolve_scheduler(dask_scheduler)
    started = time.perf_counter()
    report = lambda done, total: progress(f"thumbnails ({side} px)", done, total)  # noqa: E731
    if scheduler:
        from ..dask_jobs import cluster_client, pregenerate_on_cluster

        with cluster_client(scheduler) as client:
            s = pregenerate_on_cluster(cache, items, client, progress=report)
        counts, failed = (s.total, s.generated, s.cached, s.placeholders), [str(f) for f in s.failed]
    else:
        st = cache.pregenerate(items, progress=report, workers=workers)
        counts, failed = (st.total, st.generated, st.cached, st.placeholders), []
    keys = ("total", "generated", "cached", "placeholders")
    return plain(
        {
            "size": side,
            **dict(zip(keys, counts)),
            "failed": failed,
            "seconds": time.perf_counter() - started,
            "dask_scheduler": scheduler,
        }
    )


def similar(
    store: MetadataStore,
    name: str,
    sample_id: int | None = None,
    text: str | None = None,
    k: int = 50,
    filters: Filters | dict[str, Any] | None = None,
    collection: str | None = None,
) -> dict[str, Any]:
    """Nearest samples to a sample or (CLIP collections) a text, among the samples matching ``filters``."""
    from ..embedding_jobs import dataset_collections, text_embedder
    from ..errors import VisionLensError
    from ..similarity import similar_to_sample, similar_to_text

    if (sample_id is None) == (text is None):
        raise VisionLensError("give exactly one of sample_id or text")
    ds = store.get_dataset(name)
    names = dataset_collections(store, ds.id)
    if collection is None:
        if not names:
            raise VisionLensError(f"{name!r} has no embeddings yet: run `visionlens embed {name}` first")
        collection = names[0]
    elif collection not in names:
        raise VisionLensError(f"{name!r} has no vectors in {collection!r} (it has: {', '.join(names) or 'none'})")
    f = as_filters(filters)
    if sample_id is not None:
        ids, scores = similar_to_sample(store, ds.id, collection, int(sample_id), int(k), f)
    else:
        emb = text_embedder(store, collection)
        ids, scores = similar_to_text(store, ds.id, collection, str(text), emb, int(k), f)
    return plain({"collection": collection, "ids": ids, "scores": scores})


def insights(
    store: MetadataStore,
    name: str,
    models: list[str] | None = None,
    kinds: list[str] | None = None,
    progress: ProgressCallback = no_progress,
) -> dict[str, Any]:
    from ..dataset import load
    from ..insights.runner import findings_json

    ds = load(name, store)
    found = ds.insights(model=models or None, kinds=kinds or None, progress=progress)
    return plain(findings_json(store, ds.id, found))


def findings(store: MetadataStore, name: str, kinds: list[str] | None = None) -> dict[str, Any]:
    """The stored findings of the last insight runs, without computing anything."""
    from ..dataset import load
    from ..insights.runner import findings_json

    ds = load(name, store)
    return plain(findings_json(store, ds.id, ds.insights(kinds=kinds or None, compute=False)))


# --- tags and saved views ----------------------------------------------------------------------------------------


def tag(
    store: MetadataStore,
    name: str,
    tags: list[str] | str,
    filters: Filters | dict[str, Any] | None = None,
    sample_ids: list[int] | None = None,
    remove: bool = False,
    objects: LabelFilter | dict[str, Any] | bool = False,
    ann_ids: list[int] | None = None,
) -> dict[str, Any]:
    """Add (``remove``: take off) tags on samples, or on boxes when ``objects`` (true: every box of the samples
    named; a ``LabelFilter``: the boxes it matches) or ``ann_ids`` is given: ``{"target", "tags", "changed"}``.
    Every box of the dataset is ``objects=True, filters={}``: naming no rows at all is refused."""
    from ..store.tags import clean_tags

    ds_id = store.get_dataset(name).id
    cleaned = clean_tags(tags)
    flt = None if filters is None else as_filters(filters)
    if objects is False and ann_ids is None:
        write = store.untag_samples if remove else store.tag_samples
        changed = write(ds_id, cleaned, flt, sample_ids)
        return {"target": "samples", "tags": cleaned, "changed": int(changed)}
    if sample_ids is not None:  # boxes of these samples
        flt = (flt or Filters()).model_copy(update={"sample_ids": tuple(int(i) for i in sample_ids)})
    per_box = None if isinstance(objects, bool) else LabelFilter.model_validate(objects)
    write = store.untag_objects if remove else store.tag_objects
    changed = write(ds_id, cleaned, ann_ids, flt, per_box)
    return {"target": "objects", "tags": cleaned, "changed": int(changed)}


def tag_counts(
    store: MetadataStore, name: str, filters: Filters | dict[str, Any] | None = None
) -> dict[str, dict[str, int]]:
    """``{"samples": {tag: samples}, "objects": {tag: boxes}}``, most used first."""
    return plain(store.tag_counts(store.get_dataset(name).id, None if filters is None else as_filters(filters)))


def _view_json(view: SavedView) -> dict[str, Any]:
    return plain(view.model_dump(mode="json"))


def views(store: MetadataStore, name: str) -> list[dict[str, Any]]:
    """The dataset's saved views by name, without their selections' ids (``selected`` counts them)."""
    return [_view_json(v) for v in store.list_views(store.get_dataset(name).id)]


def view(store: MetadataStore, name: str, view: str) -> dict[str, Any]:
    return _view_json(store.get_view(store.get_dataset(name).id, view))


def save_view(
    store: MetadataStore,
    name: str,
    view: SavedView | dict[str, Any],
    replace: bool = False,
    user: str | None = None,
) -> dict[str, Any]:
    saved = view if isinstance(view, SavedView) else SavedView.model_validate(view)
    return _view_json(store.save_view(store.get_dataset(name).id, saved, replace=replace, user=user))


def rename_view(store: MetadataStore, name: str, view: str, new_name: str) -> dict[str, Any]:
    return _view_json(store.rename_view(store.get_dataset(name).id, view, new_name))


def delete_view(store: MetadataStore, name: str, view: str) -> dict[str, Any]:
    store.delete_view(store.get_dataset(name).id, view)
    return {"deleted": view}


def export(
    store: MetadataStore,
    name: str,
    out: str,
    format: str = "coco",
    filters: Filters | dict[str, Any] | None = None,
    models: list[str] | None = None,
    images: str = "copy",
    progress: ProgressCallback = no_progress,
) -> dict[str, Any]:
    """A view of the dataset written to ``out`` (see ``visionlens.export``): counts, files, notes, how to ingest it."""
    from ..export import export_view

    return plain(export_view(store, name, out, format, as_filters(filters), models, images, progress).to_json())
