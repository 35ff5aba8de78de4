"""Blind-spot slices: the subsets of a dataset where an evaluated model is significantly worse than elsewhere.

``find_slices`` reads one stored evaluation (per-object TP/FP/FN) and the dataset's own fields, and scores every
candidate slice against the rest of the dataset in one vectorised pass:

* image conditions: each value of a categorical, bool or tag field (the 30 most frequent), numeric fields cut at
  quantiles (quintile bins and the 10/20/30/50% tails from each end, so ``hour ≥ 20`` is one candidate), missing
  values, and k-means clusters of the image embeddings when a vector collection holds the dataset;
* box conditions: COCO size (small/medium/large by area), class, position (near the border, in the centre);
* conjunctions of two conditions on different fields (an image and a box condition included; not clusters).

Every candidate is counted with ``bincount`` group-bys over per-image tables (image conditions) or per-(image, box
codes) tables (box conditions), and indicator matrices that map codes to conditions: a few passes over the
objects per pair of fields, never one query per candidate.

Statistics, all one-sided (a slice is reported only when it is *worse*):

* recall (TP / (TP+FN) over ground truth): Fisher's exact test of missed/found × slice/rest, computed as the
  equivalent hypergeometric tail for all candidates at once. Misses cluster within images (one dark image loses
  all its boxes), which makes any per-object test over-confident, so p is the larger of Fisher's and a
  cluster-robust z-test with images as clusters. One bad image cannot make a slice, and a dataset whose images
  merely differ in difficulty yields nothing (Fisher alone reports "slices" there).
* false positives per image (image conditions; with a box condition, FPs of that kind per image): Welch's t-test
  on per-image FP counts, each side's variance floored at the Poisson variance of the pooled rate.
* false-positive share of predictions (box conditions alone, where "per image" would compare one class's FPs
  with every other class's): the same Fisher + cluster-robust test as recall, on FP/TP predictions.
* Benjamini–Hochberg over every test performed, at ``alpha``, weighted so that single conditions and
  conjunctions each get half of it (``weighted_bh``). A conjunction's p is the larger of "worse than the rest"
  and "worse than each part without it" (``conjunction_p``), so the correction is paid on what is reported.

Ranking (``Finding.score``): excess errors over the square root of the objects they are counted in, an effect size
weighted by support — recall: (rest recall − slice recall) × √(GT in slice); FP share: (slice − rest share) ×
√(predictions in slice); FPs per image: (1 − rest rate ÷ slice rate) × √(FPs in slice). A big gap on few
objects and a small gap on many both rank below a big gap on many.

What is not reported: gaps under 2 points (10% for FPs per image), which a large dataset makes "significant";
a conjunction that is most (≥ 75%) of a kept single condition; a conjunction whose cut on a field overlaps a
better kept condition on it (``hour ≥ 18 and camera is cam_0`` after ``hour ≥ 21``); a conjunction of two parts
already shown as failures unless it is an interaction beyond both (``interaction_p``); a single condition whose
badness lives in a kept conjunction inside it (fog, when fog ∧ wet road is the failure); of overlapping conditions
on the same fields, all but the best ranked; and of two findings on (nearly) the same images, the second (its
definition goes to the first's ``detail["also"]``).

COCO AP (via ``subset_metrics``) is computed only for the best kept slices (``ap_top``), on the slice's images and
on the others.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from itertools import combinations, pairwise
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import stats

from ..errors import VisionLensError
from ..formats.base import ProgressCallback, no_progress
from ..query import FieldFilter, Filters, LabelFilter, Range
from ..store.metadata import MetadataStore
from .finding import Finding

log = logging.getLogger(__name__)

# -- store reads ---------------------------------------------------------------------------------------------------
# Built from public store methods only. Wanted in visionlens/store (would save reading columns we do not use):
#   ``MetadataStore.sample_columns(dataset_id, names) -> pa.Table``: id plus the named sample fields of every sample,
#   ordered by id (today: ``matching_ids`` + ``samples_by_id``, which also reads filepath and the evaluation fields).


def _all_samples(store: MetadataStore, dataset_id: int) -> pa.Table:
    """Every sample row of the dataset, by id, with each field under its own name."""
    ids = store.matching_ids(dataset_id, Filters())
    return store.samples_by_id(dataset_id, ids)


def _evaluated_model(store: MetadataStore, dataset_id: int, model: str) -> None:
    """Refuse a model without a stored evaluation: slices are computed from its per-object outcomes."""
    if any(e["key"] == model for e in store.evaluations(dataset_id)):
        return
    models = [s for s in store.source_ids(dataset_id) if s != "ground_truth"]
    if model not in models:
        raise VisionLensError(
            f"no model named {model!r} in this dataset (models: {', '.join(map(repr, models)) or 'none'})"
        )
    raise VisionLensError(
        f"model {model!r} has not been evaluated yet: run ds.evaluate({model!r}) "
        f"(or `visionlens evaluate`) before looking for its blind spots"
    )


# -- tunables ------------------------------------------------------------------------------------------------------

SMALL_AREA = 32.0**2
MEDIUM_AREA = 96.0**2
BORDER_MARGIN = 0.02  # a box within 2% of an image edge is "near the border" (often truncated)
NUMERIC_BINS = 10  # deciles: bins, and tails made of whole bins
MAX_VALUES = 30  # most frequent values of a categorical field that become candidates
MAX_TAGS = 10
MAX_CLASSES = 50
CLUSTER_MIN_IMAGES = 40
SKIPPED_FIELDS = frozenset({"id", "filepath"})
Z95 = 1.959963984540054

Metric = Literal["recall", "fp_per_image", "fp_share"]
GT_TP, GT_FN, PRED_TP, PRED_FP = 1, 3, 1, 2


# -- conditions and features ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """One condition of a slice: which codes of its feature it selects, how to say it and how to filter by it.

    Object conditions read differently for ground truth (recall) and for predictions (false positives):
    ``title_pred``/``definition_pred`` hold the latter. Texts are built once here, so a label or a field value
    (data) is never run through any formatting again.
    """

    codes: tuple[int, ...]
    title: str
    definition: str
    field_filter: FieldFilter | None = None
    labels: tuple[str, ...] | None = None
    area: Range | None = None
    by_members: bool = False  # no filter can say it (a cluster, a box position): the app filters by stored ids
    title_pred: str | None = None
    definition_pred: str | None = None

    def texts(self, metric: str) -> tuple[str, str]:
        """(title, definition) for a finding on ``metric``."""
        if metric == "recall" or self.title_pred is None:
            return self.title, self.definition
        return self.title_pred, self.definition_pred or self.definition


def _object_condition(codes: tuple[int, ...], title: str, definition: str, **kw: Any) -> Condition:
    """``title``/``definition`` templates with ``{p}`` (nothing, or "predicted ") and ``{who}`` ("GT"/"predicted");
    callers put data (a label) in only after this, through ``Condition`` fields, never into the templates."""
    return Condition(
        codes,
        title.replace("{p}", ""),
        definition.replace("{who}", "GT"),
        title_pred=title.replace("{p}", "predicted "),
        definition_pred=definition.replace("{who}", "predicted"),
        **kw,
    )


@dataclass
class Feature:
    """A partition of images (sample level) or of boxes (object level) into codes, and its candidate conditions.

    Features of one ``group`` (the tags of one field) are never conjoined with each other; ``conjoin=False`` keeps
    a feature out of conjunctions altogether (clusters: their members are already a combination of everything).
    ``origin`` says where it comes from; ``name`` may be any field's name (data), so it is never matched on.
    """

    name: str
    group: str
    level: Literal["sample", "object"]
    n_codes: int
    codes: np.ndarray  # sample: code per image; object: code per ground-truth box (all evaluated GT rows)
    conditions: list[Condition]
    pred_codes: np.ndarray | None = None  # object: code per prediction
    conjoin: bool = True
    detail: dict[str, Any] = field(default_factory=dict)
    origin: Literal["field", "box", "cluster"] = "field"

    def matrix(self) -> np.ndarray:
        """(conditions × codes) 0/1: multiplying a per-code table by it gives per-condition sums."""
        u = np.zeros((len(self.conditions), self.n_codes))
        for i, c in enumerate(self.conditions):
            u[i, list(c.codes)] = 1.0
        return u


# -- the data ------------------------------------------------------------------------------------------------------


@dataclass
class Boxes:
    """Evaluated boxes of one side (ground truth or predictions), aligned numpy columns."""

    image: np.ndarray  # index into Data.sample_ids
    status: np.ndarray
    label: np.ndarray  # codes into Data.labels
    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    h: np.ndarray
    area: np.ndarray

    @property
    def n(self) -> int:
        return len(self.image)


@dataclass
class Data:
    """What the analysis reads: samples with their fields, and both sides of one evaluation."""

    sample_ids: np.ndarray
    samples: pa.Table
    width: np.ndarray
    height: np.ndarray
    labels: list[str]
    gt: Boxes
    pred: Boxes

    @property
    def n_images(self) -> int:
        return len(self.sample_ids)


def load_data(store: MetadataStore, dataset_id: int, model: str) -> Data:
    """Samples and the model's evaluated objects (sample ids turned into positions once, for bincounts)."""
    samples = _all_samples(store, dataset_id)
    sample_ids = np.asarray(samples["id"].to_numpy(), np.int64)
    objects = store.evaluation_objects(dataset_id, model)
    return data_from_tables(samples, sample_ids, objects)


def data_from_tables(samples: pa.Table, sample_ids: np.ndarray, objects: pa.Table) -> Data:
    cols = {
        name: objects[name].to_numpy(zero_copy_only=False)
        for name in ("sample_id", "is_pred", "status", "x", "y", "w", "h", "area")
    }
    label_codes, labels = pd.factorize(objects["label"].to_pandas(), sort=True)
    order = np.argsort(sample_ids, kind="stable")
    image = order[np.searchsorted(sample_ids, cols["sample_id"], sorter=order)]

    def side(mask: np.ndarray) -> Boxes:
        return Boxes(
            image=image[mask],
            status=np.asarray(cols["status"][mask], np.int8),
            label=np.asarray(label_codes[mask], np.int64),
            **{k: np.asarray(cols[k][mask], np.float64) for k in ("x", "y", "w", "h", "area")},
        )

    is_pred = np.asarray(cols["is_pred"], bool)
    names = set(samples.column_names)
    width = _float_column(samples, "width") if "width" in names else np.full(len(sample_ids), np.nan)
    height = _float_column(samples, "height") if "height" in names else np.full(len(sample_ids), np.nan)
    return Data(
        sample_ids=sample_ids,
        samples=samples,
        width=width,
        height=height,
        labels=[str(v) for v in labels],
        gt=side(~is_pred),
        pred=side(is_pred),
    )


def _float_column(table: pa.Table, name: str) -> np.ndarray:
    col = table[name]
    return (
        np.asarray(col.to_numpy(zero_copy_only=False), np.float64)
        if col.null_count == 0
        else np.asarray(pa.compute.fill_null(col.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False), np.float64)
    )


# -- sample features from the dataset's fields ---------------------------------------------------------------------


def sample_features(store: MetadataStore, dataset_id: int, data: Data, min_images: int) -> list[Feature]:
    """One feature per candidate field: the dataset's own and built-in fields, not evaluation or insight fields."""
    out: list[Feature] = []
    for name, info in store.fields(dataset_id).items():
        if info.level != "sample" or info.owner is not None or name in SKIPPED_FIELDS:
            continue
        if name not in data.samples.column_names:
            continue
        column = data.samples[name]
        kind = info.kind
        if kind == "numeric":
            feature = _numeric_feature(name, kind, column, min_images)
            out += [feature] if feature else []
        elif kind in ("categorical", "bool"):
            feature = _categorical_feature(name, kind, column, min_images)
            out += [feature] if feature else []
        elif kind == "tags":
            out += _tag_features(name, kind, column, min_images)
    return out


def _categorical_feature(name: str, kind: Any, column: pa.ChunkedArray, min_images: int) -> Feature | None:
    """Codes: the most frequent values, then "other" (not a candidate), then missing."""
    values = column.to_pandas()
    codes, uniques = pd.factorize(values, sort=True)
    counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
    order = [int(i) for i in np.argsort(-counts, kind="stable")[:MAX_VALUES] if counts[i] >= min_images]
    remap = np.full(len(uniques) + 1, len(order), np.int64)  # other
    remap[order] = np.arange(len(order))
    missing_code = len(order) + 1
    mapped = np.where(codes >= 0, remap[np.where(codes >= 0, codes, len(uniques))], missing_code)
    conditions = []
    for code, i in enumerate(order):
        value = uniques[i]
        value = bool(value) if kind == "bool" else (value.item() if hasattr(value, "item") else value)
        flt = FieldFilter(field=name, values=(value,))
        text = kind.describe(flt)
        conditions.append(Condition((code,), text, text, field_filter=flt))
    n_missing = int(np.count_nonzero(codes < 0))
    if n_missing >= min_images:
        flt = FieldFilter(field=name, values=(None,))
        conditions.append(Condition((missing_code,), kind.describe(flt), kind.describe(flt), field_filter=flt))
    if not conditions or (len(conditions) == 1 and n_missing == 0 and len(order) == len(uniques)):
        return None  # one value everywhere: nothing to compare with
    return Feature(name, f"field:{name}", "sample", missing_code + 1, mapped.astype(np.int64), conditions)


def _tag_features(name: str, kind: Any, column: pa.ChunkedArray, min_images: int) -> list[Feature]:
    """A tag field is many yes/no features (a sample may carry several tags), never conjoined with each other."""
    lists = column.to_pylist()
    flat = pd.Series([t for tags in lists if tags for t in set(tags)], dtype=object)
    if flat.empty:
        return []
    out = []
    for tag, count in flat.value_counts().head(MAX_TAGS).items():
        if count < min_images or count == len(lists):
            continue
        has = np.array([0 if tags and tag in tags else 1 for tags in lists], np.int64)
        flt = FieldFilter(field=name, values=(tag,))
        text = kind.describe(flt)
        out.append(
            Feature(f"{name}:{tag}", f"field:{name}", "sample", 2, has, [Condition((0,), text, text, field_filter=flt)])
        )
    return out


def _numeric_feature(name: str, kind: Any, column: pa.ChunkedArray, min_images: int) -> Feature | None:
    """Decile codes (or each value, when there are few); candidates are spans of codes (see ``_numeric_spans``).

    Bins are cut between data values, so each range's bounds are values of the data and the inclusive ``Range``
    selects exactly its bin. NaN sorts above everything in DuckDB, so it is binned as +inf: the upper tails,
    which are open ranges, include it exactly as the filter will.
    """
    null = np.asarray(column.is_null().to_numpy(zero_copy_only=False), bool)
    values = np.asarray(pa.compute.fill_null(column.cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False), np.float64)
    values = np.where(np.isnan(values), np.inf, values)
    finite = np.isfinite(values) & ~null
    if not finite.any():
        return None
    distinct = np.unique(values[finite])
    if len(distinct) <= NUMERIC_BINS:
        cuts = distinct[1:]  # each value its own bin
    else:
        qs = np.quantile(values[finite], np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1], method="higher")
        cuts = np.unique(qs[qs > distinct[0]])
    bins = np.searchsorted(cuts, values, side="right")  # -inf -> 0, +inf -> last
    k = len(cuts) + 1
    present = ~null
    counts = np.bincount(bins[present], minlength=k)
    # drop empty bins (ties can leave a cut with nothing above it)
    keep = np.flatnonzero(counts > 0)
    remap = np.full(k, -1, np.int64)
    remap[keep] = np.arange(len(keep))
    bins = remap[bins]
    k = len(keep)
    lo = np.array([values[present & (bins == b)].min() for b in range(k)])
    hi = np.array([values[present & (bins == b)].max() for b in range(k)])
    missing_code = k
    codes = np.where(null, missing_code, bins).astype(np.int64)

    def cond(first: int, last: int) -> Condition:
        if first == 0 and last == k - 1:
            raise AssertionError("the whole range is not a slice")
        if first == last and lo[first] == hi[first] and 0 < first < k - 1:
            flt = FieldFilter(field=name, values=(_plain(lo[first]),))
        elif first == 0:
            flt = FieldFilter(field=name, range=Range(max=float(hi[last])))
        elif last == k - 1:
            flt = FieldFilter(field=name, range=Range(min=float(lo[first])))
        else:
            flt = FieldFilter(field=name, range=Range(min=float(lo[first]), max=float(hi[last])))
        text = kind.describe(flt)
        return Condition(tuple(range(first, last + 1)), text, text, field_filter=flt)

    conditions = [cond(first, last) for first, last in _numeric_spans(counts[keep])]
    if null.sum() >= min_images and present.any():
        flt = FieldFilter(field=name, values=(None,))
        conditions.append(Condition((missing_code,), kind.describe(flt), kind.describe(flt), field_filter=flt))
    if not conditions:
        return None
    return Feature(name, f"field:{name}", "sample", k + 1, codes, conditions)


def _numeric_spans(counts: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) code spans that become candidates: with up to 5 codes every code and every tail; otherwise
    quintiles and the tails at 10, 20, 30 and 50% from each end (``hour ≥ 20``), found on the cumulative share.

    Every candidate is a test the multiple-testing correction pays for, so a numeric field gets about a dozen,
    not every possible range.
    """
    k = len(counts)
    if k < 2:
        return []
    if k <= 5:
        spans = [(b, b) for b in range(k)] + [(0, j) for j in range(1, k - 1)] + [(j, k - 1) for j in range(1, k - 1)]
        return list(dict.fromkeys(spans))
    share = np.concatenate([[0.0], np.cumsum(counts) / counts.sum()])  # share[j]: below code j

    def cut(q: float) -> int:  # boundary j in 1..k-1 closest to share q
        return int(np.argmin(np.abs(share[1:k] - q))) + 1

    edges = sorted({0, k, *(cut(q) for q in (0.2, 0.4, 0.6, 0.8))})
    spans = [(a, b - 1) for a, b in pairwise(edges)]
    spans += [(0, cut(q) - 1) for q in (0.1, 0.2, 0.3, 0.5)]
    spans += [(cut(q), k - 1) for q in (0.5, 0.7, 0.8, 0.9)]
    return list(dict.fromkeys(spans))


def _plain(v: float) -> float | int:
    """640.0 reads "640" in a definition; the filter compares numbers either way."""
    return int(v) if float(v).is_integer() and abs(v) < 2**53 else float(v)


# -- object features: size, class, position ------------------------------------------------------------------------


def object_features(data: Data) -> list[Feature]:
    """Conditions on boxes, coded for every ground-truth box and every prediction."""
    out = [_size_feature(data)]
    cls = _class_feature(data)
    if cls is not None:
        out.append(cls)
    out.append(_position_feature(data))
    return out


def _size_codes(area: np.ndarray) -> np.ndarray:
    return np.select([area <= SMALL_AREA, area <= MEDIUM_AREA, area > MEDIUM_AREA], [0, 1, 2], 3).astype(np.int64)


def _size_feature(data: Data) -> Feature:
    above_small, above_medium = float(np.nextafter(SMALL_AREA, np.inf)), float(np.nextafter(MEDIUM_AREA, np.inf))
    conditions = [
        _object_condition((0,), "{p}size is small", "{who} box area ≤ 32²", area=Range(max=SMALL_AREA)),
        _object_condition(
            (1,), "{p}size is medium", "32² < {who} box area ≤ 96²", area=Range(min=above_small, max=MEDIUM_AREA)
        ),
        _object_condition((2,), "{p}size is large", "{who} box area > 96²", area=Range(min=above_medium)),
    ]
    return Feature(
        "size",
        "box:size",
        "object",
        4,
        _size_codes(data.gt.area),
        conditions,
        pred_codes=_size_codes(data.pred.area),
        origin="box",
    )


def _class_feature(data: Data) -> Feature | None:
    gt_labels = data.gt.label[np.isin(data.gt.status, (GT_TP, GT_FN))]
    counts = np.bincount(gt_labels, minlength=len(data.labels))
    present = np.flatnonzero(counts)
    if len(present) <= 1:
        return None  # one class: a class slice would be the whole dataset
    top = present[np.argsort(-counts[present], kind="stable")][:MAX_CLASSES]
    remap = np.full(len(data.labels), len(top), np.int64)
    remap[top] = np.arange(len(top))
    conditions = [
        Condition(
            (i,),
            f"class is {data.labels[c]}",
            f"GT class is {data.labels[c]}",
            labels=(data.labels[c],),
            title_pred=f"predicted class is {data.labels[c]}",
            definition_pred=f"predicted class is {data.labels[c]}",
        )
        for i, c in enumerate(top)
    ]
    return Feature(
        "class",
        "box:class",
        "object",
        len(top) + 1,
        remap[data.gt.label],
        conditions,
        pred_codes=remap[data.pred.label],
        origin="box",
    )


def _position_codes(boxes: Boxes, width: np.ndarray, height: np.ndarray) -> np.ndarray:
    W, H = width[boxes.image], height[boxes.image]
    known = np.isfinite(W) & np.isfinite(H) & (W > 0) & (H > 0)
    with np.errstate(invalid="ignore"):
        border = (
            (boxes.x <= BORDER_MARGIN * W)
            | (boxes.y <= BORDER_MARGIN * H)
            | (boxes.x + boxes.w >= (1 - BORDER_MARGIN) * W)
            | (boxes.y + boxes.h >= (1 - BORDER_MARGIN) * H)
        )
        cx, cy = boxes.x + boxes.w / 2, boxes.y + boxes.h / 2
        centre = (cx >= W / 3) & (cx <= 2 * W / 3) & (cy >= H / 3) & (cy <= 2 * H / 3)
    return np.select([~known, border, centre], [3, 0, 1], 2).astype(np.int64)


def _position_feature(data: Data) -> Feature:
    conditions = [
        _object_condition(
            (0,), "{p}box is near the image border", "{who} box within 2% of an image edge", by_members=True
        ),
        _object_condition(
            (1,), "{p}box is in the image centre", "{who} box centre in the middle third of the image", by_members=True
        ),
    ]
    return Feature(
        "position",
        "box:position",
        "object",
        4,
        _position_codes(data.gt, data.width, data.height),
        conditions,
        pred_codes=_position_codes(data.pred, data.width, data.height),
        origin="box",
    )


# -- clusters of the image embeddings ------------------------------------------------------------------------------


def cluster_feature(
    store: MetadataStore, dataset_id: int, data: Data, vectors: Any, collection: str | None, min_images: int
) -> Feature | None:
    """k-means clusters of the stored image vectors (k ≈ √(n/20) in [4, 30]); images without a vector get none.

    Only used when a collection holds this dataset: without ``vectors`` or ``collection`` the vector store is
    opened only if DuckDB has a collection registered, so a dataset never embedded costs nothing here.
    """
    found = _dataset_vectors(store, dataset_id, vectors, collection)
    if found is None:
        return None
    name, ids, vecs = found
    if len(ids) < max(CLUSTER_MIN_IMAGES, 2 * min_images):
        return None
    labels, k = kmeans_labels(vecs)
    codes = np.full(data.n_images, k, np.int64)
    order = np.argsort(data.sample_ids)
    pos = order[np.searchsorted(data.sample_ids, ids, sorter=order)]
    codes[pos] = labels
    conditions = [
        Condition(
            (c,), f"image cluster {c + 1}", f"images in cluster {c + 1} of {k} (k-means on {name})", by_members=True
        )
        for c in range(k)
    ]
    return Feature(
        "cluster",
        "cluster",
        "sample",
        k + 1,
        codes,
        conditions,
        conjoin=False,
        detail={"collection": name, "k": k},
        origin="cluster",
    )


def _dataset_vectors(
    store: MetadataStore, dataset_id: int, vectors: Any, collection: str | None
) -> tuple[str, np.ndarray, np.ndarray] | None:
    from ..embedding_jobs import dataset_vectors, vector_store
    from ..store.orphans import registered_collections

    names = (
        [collection]
        if collection
        else list(dict.fromkeys([c for _, c in store.projection_methods(dataset_id)] + registered_collections(store)))
    )
    if not names and vectors is None:
        return None
    try:
        vs = vectors if vectors is not None else vector_store()
        present = vs.collections()
        for name in names or present:
            if name not in present:
                continue
            ids, vecs = dataset_vectors(store, dataset_id, name, vs)
            if len(ids):
                return name, ids, np.asarray(vecs, np.float32)
    except VisionLensError as exc:
        if collection:
            raise
        log.warning("slices: no image clusters (%s)", exc)
        return None
    if collection:
        raise VisionLensError(
            f"vector collection {collection!r} holds no vectors of this dataset: embed it first "
            "(`visionlens embed`), or leave the collection out"
        )
    return None


def kmeans_labels(vecs: np.ndarray, seed: int = 0) -> tuple[np.ndarray, int]:
    """Cluster unit-normalised vectors (cosine geometry); mini-batch k-means above 20K points to stay fast."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    n = len(vecs)
    k = int(np.clip(round(math.sqrt(n / 20)), 4, 30))
    x = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    if n > 20_000:
        model = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=4096)
    else:
        model = KMeans(n_clusters=k, random_state=seed, n_init=3)
    labels = model.fit_predict(x)
    # renumber by size, largest first, so "cluster 1" is stable and readable
    sizes = np.bincount(labels, minlength=k)
    rank = np.empty(k, np.int64)
    rank[np.argsort(-sizes, kind="stable")] = np.arange(k)
    return rank[labels], k


# -- counting every candidate --------------------------------------------------------------------------------------

STATS = (
    "img_k",
    "img_f",
    "img_ff",
    "gt_n",
    "gt_y",
    "gt_mm",
    "gt_yy",
    "gt_my",
    "gt_k",
    "pr_n",
    "pr_y",
    "pr_mm",
    "pr_yy",
    "pr_my",
    "pr_k",
)
_IMG, _GT, _PR = slice(0, 3), slice(3, 9), slice(9, 15)


@dataclass
class Units:
    """Rows that candidates are sums over, and the ``STATS`` columns their weights fill.

    Sample conditions sum over images (so the rest's images are exactly the other images); object conditions sum
    over groups of (image, box codes), ground truth and predictions apart, which keep the per-image sums the
    cluster-robust variance needs. Columns a unit set does not fill stay NaN in the candidates.
    """

    image: np.ndarray
    codes: dict[int, np.ndarray]  # feature index -> code per row, for the object features grouped on
    weights: np.ndarray  # (rows, len(columns))
    columns: slice


def _proportion_weights(m: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.stack([m, y, m * m, y * y, m * y, (m > 0).astype(np.float64)], axis=1)


def image_units(data: Data) -> list[Units]:
    n = data.n_images
    gt_eval = np.isin(data.gt.status, (GT_TP, GT_FN))
    pr_eval = np.isin(data.pred.status, (PRED_TP, PRED_FP))
    m = np.bincount(data.gt.image[gt_eval], minlength=n).astype(np.float64)
    y = np.bincount(data.gt.image[gt_eval & (data.gt.status == GT_FN)], minlength=n).astype(np.float64)
    pn = np.bincount(data.pred.image[pr_eval], minlength=n).astype(np.float64)
    pf = np.bincount(data.pred.image[data.pred.status == PRED_FP], minlength=n).astype(np.float64)
    w = np.concatenate(
        [np.stack([np.ones(n), pf, pf * pf], 1), _proportion_weights(m, y), _proportion_weights(pn, pf)], axis=1
    )
    return [Units(np.arange(n), {}, w, slice(0, len(STATS)))]


def object_units(data: Data, features: list[Feature], which: tuple[int, ...]) -> list[Units]:
    """Groups of (image, codes of the object features ``which``), one unit set for ground truth, one for
    predictions."""
    out = []
    for side, gt in ((data.gt, True), (data.pred, False)):
        keep = np.isin(side.status, (GT_TP, GT_FN) if gt else (PRED_TP, PRED_FP))
        key = side.image[keep].astype(np.int64)
        for f in which:
            codes = features[f].codes if gt else features[f].pred_codes
            key = key * features[f].n_codes + codes[keep]
        err = (side.status[keep] == (GT_FN if gt else PRED_FP)).astype(np.float64)
        inverse, uniques = pd.factorize(key)
        m = np.bincount(inverse, minlength=len(uniques)).astype(np.float64)
        y = np.bincount(inverse, weights=err, minlength=len(uniques))
        codes_out, rest = {}, np.asarray(uniques, np.int64)
        for f in reversed(which):
            codes_out[f] = rest % features[f].n_codes
            rest = rest // features[f].n_codes
        out.append(Units(rest, codes_out, _proportion_weights(m, y), _GT if gt else _PR))
    return out


def _unit_codes(units: Units, features: list[Feature], f: int) -> np.ndarray:
    if f in units.codes:
        return units.codes[f]
    return features[f].codes[units.image]


def _table(features: list[Feature], fs: tuple[int, ...], units: list[Units]) -> np.ndarray:
    """(codes of ``fs`` combined, STATS) sums over every unit set: one weighted bincount per column a set fills,
    NaN in the others."""
    n_codes = int(np.prod([features[f].n_codes for f in fs]))
    out = np.full((n_codes, len(STATS)), np.nan)
    for u in units:
        idx = _unit_codes(u, features, fs[0])
        for f in fs[1:]:
            idx = idx * features[f].n_codes + _unit_codes(u, features, f)
        out[:, u.columns] = np.stack(
            [np.bincount(idx, weights=u.weights[:, j], minlength=n_codes) for j in range(u.weights.shape[1])], axis=1
        )
    return out


SAMPLE_ONLY, MIXED, OBJECT_ONLY = 0, 1, 2


@dataclass
class Candidates:
    """Every candidate (a condition, or a pair on two features) with its sums; ``fb == -1`` for one condition.

    ``kind``: SAMPLE_ONLY (image conditions), MIXED (an image and a box condition; the image one is ``fa``) or
    OBJECT_ONLY. ``ua``/``ub``: the rows of a pair's two single conditions (-1 for a single condition).
    """

    fa: np.ndarray
    ca: np.ndarray
    fb: np.ndarray
    cb: np.ndarray
    kind: np.ndarray
    s: np.ndarray  # (candidates, len(STATS))
    ua: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ub: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        lookup = {(int(self.fa[i]), int(self.ca[i])): int(i) for i in np.flatnonzero(self.fb < 0)}
        self.ua = np.array(
            [-1 if fb < 0 else lookup[(int(fa), int(ca))] for fa, ca, fb in zip(self.fa, self.ca, self.fb)], np.int64
        )
        self.ub = np.array([-1 if fb < 0 else lookup[(int(fb), int(cb))] for fb, cb in zip(self.fb, self.cb)], np.int64)

    def __len__(self) -> int:
        return len(self.fa)

    def col(self, name: str) -> np.ndarray:
        return self.s[:, STATS.index(name)]


def count_candidates(data: Data, features: list[Feature], progress: ProgressCallback = no_progress) -> Candidates:
    """Sums for every candidate: per-code tables by bincount, mapped to conditions by the indicator matrices."""
    mats = [f.matrix() for f in features]
    img = image_units(data)
    obj_units: dict[tuple[int, ...], list[Units]] = {}

    def units_for(fs: tuple[int, ...]) -> list[Units]:
        which = tuple(f for f in fs if features[f].level == "object")
        if not which:
            return img
        if which not in obj_units:
            obj_units[which] = object_units(data, features, which)
        return obj_units[which]

    blocks: list[tuple[np.ndarray, ...]] = []
    pairs = [(a,) for a in range(len(features))] + [
        (a, b)
        for a, b in combinations(range(len(features)), 2)
        if features[a].conjoin and features[b].conjoin and features[a].group != features[b].group
    ]
    for done, fs in enumerate(pairs):
        if done % 50 == 0:
            progress("slices: count candidates", done, len(pairs))
        if len(fs) == 2 and features[fs[0]].level == "object" and features[fs[1]].level == "sample":
            fs = (fs[1], fs[0])  # the image condition first
        units = units_for(fs)
        levels = {features[f].level for f in fs}
        kind = SAMPLE_ONLY if levels == {"sample"} else OBJECT_ONLY if levels == {"object"} else MIXED
        if len(fs) == 1:
            (a,) = fs
            t = _table(features, fs, units)
            sums = np.einsum("ak,kw->aw", mats[a], t)[:, None, :]
            nb = 1
        else:
            a, b = fs
            ka, kb = features[a].n_codes, features[b].n_codes
            t = _table(features, fs, units).reshape(ka, kb, -1)
            sums = np.einsum("ak,klw,bl->abw", mats[a], t, mats[b], optimize=True)
            nb = len(features[b].conditions)
        na = len(features[a].conditions)
        ca, cb = np.meshgrid(np.arange(na), np.arange(nb), indexing="ij")
        blocks.append(
            (
                np.full(na * nb, a),
                ca.ravel(),
                np.full(na * nb, fs[1] if len(fs) == 2 else -1),
                cb.ravel() if len(fs) == 2 else np.full(na * nb, -1),
                np.full(na * nb, kind),
                sums.reshape(na * nb, -1),
            )
        )
    progress("slices: count candidates", len(pairs), len(pairs))
    return Candidates(*(np.concatenate([b[i] for b in blocks]) for i in range(6)))


# -- statistics ----------------------------------------------------------------------------------------------------


def fisher_greater(y_in: np.ndarray, n_in: np.ndarray, y_out: np.ndarray, n_out: np.ndarray) -> np.ndarray:
    """One-sided Fisher's exact p that the inside has *more* errors, for every row at once.

    Row i is the table [[y_in, n_in - y_in], [y_out, n_out - y_out]] (errors, successes × inside, outside); the
    p-value is the hypergeometric upper tail, equal to ``scipy.stats.fisher_exact(table, "greater")``, which only
    takes one table per call.
    """
    y_in, n_in = np.round(y_in).astype(np.int64), np.round(n_in).astype(np.int64)
    n_all = n_in + np.round(n_out).astype(np.int64)
    y_all = y_in + np.round(y_out).astype(np.int64)
    return np.clip(stats.hypergeom.sf(y_in - 1, n_all, y_all, n_in), 0.0, 1.0)


def wilson(k: np.ndarray | float, n: np.ndarray | float, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion k/n (well-behaved near 0 and 1, unlike the normal interval)."""
    k, n = np.asarray(k, np.float64), np.asarray(n, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


@dataclass
class Totals:
    """Dataset-wide sums and design effects (how much clustering by image inflates a proportion's variance)."""

    n_images: int
    gt_n: float
    gt_y: float
    gt_k: float
    pr_n: float
    pr_y: float
    fp: float
    fp2: float
    deff_gt: float
    deff_pr: float


def totals(data: Data) -> Totals:
    w = image_units(data)[0].weights.sum(axis=0)
    get = dict(zip(STATS, w))

    def deff(n: float, y: float, mm: float, yy: float, my: float, k: float) -> float:
        if n <= 0 or y <= 0 or y >= n or k <= 1:
            return 1.0
        p = y / n
        v_cluster = (yy - 2 * p * my + p * p * mm) / (n * n) * k / (k - 1)
        return max(1.0, v_cluster / (p * (1 - p) / n))

    return Totals(
        n_images=data.n_images,
        gt_n=get["gt_n"],
        gt_y=get["gt_y"],
        gt_k=get["gt_k"],
        pr_n=get["pr_n"],
        pr_y=get["pr_y"],
        fp=get["img_f"],
        fp2=get["img_ff"],
        deff_gt=deff(*(get[k] for k in ("gt_n", "gt_y", "gt_mm", "gt_yy", "gt_my", "gt_k"))),
        deff_pr=deff(*(get[k] for k in ("pr_n", "pr_y", "pr_mm", "pr_yy", "pr_my", "pr_k"))),
    )


def proportion_p(
    n_in: np.ndarray,
    y_in: np.ndarray,
    n_out: np.ndarray,
    y_out: np.ndarray,
    deff: float,
    cluster: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """One-sided p that the error rate inside is higher: max(Fisher's exact, a cluster-robust z-test).

    ``cluster``: (Σm², Σy², Σmy, clusters) of the inside's per-image groups, for its cluster-robust variance;
    without it (or for the outside) the binomial variance is inflated by the design effect ``deff``. Each side's
    variance is floored at its binomial variance under the null, so an all-missed slice of one image is not
    certain.
    """
    n_in, y_in, n_out, y_out = (np.asarray(a, np.float64) for a in (n_in, y_in, n_out, y_out))
    with np.errstate(invalid="ignore", divide="ignore"):
        p0 = (y_in + y_out) / (n_in + n_out)
        r_in, r_out = y_in / n_in, y_out / n_out
        floor_in, floor_out = p0 * (1 - p0) / n_in, p0 * (1 - p0) / n_out
        if cluster is not None:
            mm, yy, my, k = cluster
            v_in = (yy - 2 * r_in * my + r_in * r_in * mm) / (n_in * n_in) * np.where(k > 1, k / (k - 1), np.inf)
        else:
            v_in = deff * r_in * (1 - r_in) / n_in
        v_out = deff * r_out * (1 - r_out) / n_out
        z = (r_in - r_out) / np.sqrt(np.maximum(v_in, floor_in) + np.maximum(v_out, floor_out))
    p_z = np.where(np.isfinite(z), stats.norm.sf(z), 1.0)
    return np.maximum(fisher_greater(y_in, n_in, y_out, n_out), p_z)


def rate_p(
    k_in: np.ndarray, f_in: np.ndarray, ff_in: np.ndarray, k_out: np.ndarray, f_out: np.ndarray, ff_out: np.ndarray
) -> np.ndarray:
    """One-sided Welch t-test that FPs per image are higher inside; variances floored at the pooled Poisson rate."""
    k_in, f_in, ff_in, k_out, f_out, ff_out = (
        np.asarray(a, np.float64) for a in (k_in, f_in, ff_in, k_out, f_out, ff_out)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        r0 = (f_in + f_out) / (k_in + k_out)
        r_in, r_out = f_in / k_in, f_out / k_out
        s_in = np.maximum((ff_in - k_in * r_in * r_in) / (k_in - 1), r0)
        s_out = np.maximum((ff_out - k_out * r_out * r_out) / (k_out - 1), r0)
        a, b = s_in / k_in, s_out / k_out
        t = (r_in - r_out) / np.sqrt(a + b)
        df = (a + b) ** 2 / (a * a / (k_in - 1) + b * b / (k_out - 1))
    ok = np.isfinite(t) & np.isfinite(df) & (df > 0)
    return np.where(ok, stats.t.sf(np.where(ok, t, 0.0), np.where(ok, df, 1.0)), 1.0)


METRICS: tuple[Metric, ...] = ("recall", "fp_per_image", "fp_share")


@dataclass
class Tested:
    """Per metric and candidate: the sums inside and outside, whether it was tested, p, BH-adjusted p, score.

    ``inside``/``outside`` hold (objects, errors) for recall and fp_share, (images, FPs, Σ FPs²) for fp_per_image.
    fp_per_image covers image conditions (all FPs) and image-and-box conditions (FPs of that kind, per image of
    the image condition: "predicted class is car" per night image against per other image). fp_share covers box
    conditions alone, where a rate per image would compare one class's FPs with every other class's.
    """

    inside: dict[str, tuple[np.ndarray, ...]]
    outside: dict[str, tuple[np.ndarray, ...]]
    valid: dict[str, np.ndarray]
    worse: dict[str, np.ndarray]
    p: dict[str, np.ndarray]
    p_adj: dict[str, np.ndarray]
    score: dict[str, np.ndarray]
    n_tests: int
    p_parts: dict[str, np.ndarray] = field(default_factory=dict)  # conjunctions: ``conjunction_p``, else NaN

    def __post_init__(self) -> None:
        for m in self.p:
            self.p_parts.setdefault(m, np.full(len(self.p[m]), np.nan))

    def sums(self, metric: str, i: int) -> tuple[np.ndarray, ...]:
        return tuple(np.atleast_1d(np.float64(a[i])) for a in self.inside[metric])

    def rest(self, metric: str, i: int) -> tuple[np.ndarray, ...]:
        return tuple(np.atleast_1d(np.float64(a[i])) for a in self.outside[metric])


def test_candidates(c: Candidates, t: Totals, min_objects: int, min_images: int) -> Tested:
    """Test every candidate with enough support on each metric that applies; weighted BH over all tests."""
    col = c.col
    inside, outside, valid, worse, p, score = {}, {}, {}, {}, {}, {}
    single = c.fb < 0
    with np.errstate(invalid="ignore", divide="ignore"):
        # recall: errors are misses
        n, y = col("gt_n"), col("gt_y")
        n_out, y_out = t.gt_n - n, t.gt_y - y
        v = (n >= min_objects) & (n_out >= min_objects) & (col("gt_k") >= min_images)
        v &= (c.kind != SAMPLE_ONLY) | (t.gt_k - col("gt_k") >= min_images)
        inside["recall"], outside["recall"] = (n, y), (n_out, y_out)
        valid["recall"], worse["recall"] = v, v & (y * n_out > y_out * n)
        p["recall"] = np.ones(len(c))
        idx = np.flatnonzero(worse["recall"])
        p["recall"][idx] = proportion_p(
            n[idx],
            y[idx],
            n_out[idx],
            y_out[idx],
            t.deff_gt,
            (col("gt_mm")[idx], col("gt_yy")[idx], col("gt_my")[idx], col("gt_k")[idx]),
        )
        score["recall"] = np.where(worse["recall"], (y / n - y_out / n_out) * np.sqrt(n), 0.0)  # recall gap × √GT

        # false positives per image of the image condition
        mixed = c.kind == MIXED
        image_part, box_part = np.where(mixed, c.ua, 0), np.where(mixed, c.ub, 0)
        k = np.where(mixed, col("img_k")[image_part], col("img_k"))
        f = np.where(mixed, col("pr_y"), col("img_f"))
        ff = np.where(mixed, col("pr_yy"), col("img_ff"))
        f_out = np.where(mixed, col("pr_y")[box_part] - f, t.fp - f)
        ff_out = np.where(mixed, col("pr_yy")[box_part] - ff, t.fp2 - ff)
        k_out = t.n_images - k
        v = (c.kind != OBJECT_ONLY) & (k >= min_images) & (k_out >= min_images) & (f + f_out > 0)
        v &= (c.kind == SAMPLE_ONLY) | (col("pr_k") >= min_images)
        inside["fp_per_image"], outside["fp_per_image"] = (k, f, ff), (k_out, f_out, ff_out)
        valid["fp_per_image"], worse["fp_per_image"] = v, v & (f * k_out > f_out * k)
        p["fp_per_image"] = np.ones(len(c))
        idx = np.flatnonzero(worse["fp_per_image"])
        p["fp_per_image"][idx] = rate_p(k[idx], f[idx], ff[idx], k_out[idx], f_out[idx], ff_out[idx])
        score["fp_per_image"] = np.where(worse["fp_per_image"], (1 - (f_out / k_out) * k / f) * np.sqrt(f), 0.0)

        # share of predictions that are false positives, for box conditions alone
        n, y = col("pr_n"), col("pr_y")
        n_out, y_out = t.pr_n - n, t.pr_y - y
        v = (c.kind == OBJECT_ONLY) & (n >= min_objects) & (n_out >= min_objects) & (col("pr_k") >= min_images)
        inside["fp_share"], outside["fp_share"] = (n, y), (n_out, y_out)
        valid["fp_share"], worse["fp_share"] = v, v & (y * n_out > y_out * n)
        p["fp_share"] = np.ones(len(c))
        idx = np.flatnonzero(worse["fp_share"])
        p["fp_share"][idx] = proportion_p(
            n[idx],
            y[idx],
            n_out[idx],
            y_out[idx],
            t.deff_pr,
            (col("pr_mm")[idx], col("pr_yy")[idx], col("pr_my")[idx], col("pr_k")[idx]),
        )
        score["fp_share"] = np.where(worse["fp_share"], (y / n - y_out / n_out) * np.sqrt(n), 0.0)
    p_adj = weighted_bh(p, valid, ~single)
    n_tests = int(sum(int(v.sum()) for v in valid.values()))
    return Tested(inside, outside, valid, worse, p, p_adj, score, n_tests)


def weighted_bh(
    p: dict[str, np.ndarray], valid: dict[str, np.ndarray], conjunction: np.ndarray
) -> dict[str, np.ndarray]:
    """Benjamini–Hochberg over every test performed, with half of ``alpha`` for single conditions and half for
    conjunctions (weighted BH, Genovese, Roeder & Wasserman 2006: BH on p / w with weights averaging 1).

    Conjunctions outnumber single conditions by a hundred to one; unweighted, their number alone would decide
    whether a plain "camera is cam_3" can be found. Untested directions (better than the rest) keep p = 1: a p
    above alpha never changes which others are rejected, nor the adjusted p of a rejected one.
    """
    flat_p = np.concatenate([p[m][valid[m]] for m in METRICS])
    flat_conj = np.concatenate([conjunction[valid[m]] for m in METRICS])
    m_all, m_conj = len(flat_p), int(flat_conj.sum())
    weights = np.ones(m_all)
    if 0 < m_conj < m_all:
        weights = np.where(flat_conj, 0.5 * m_all / m_conj, 0.5 * m_all / (m_all - m_conj))
    adjusted = stats.false_discovery_control(np.minimum(flat_p / weights, 1.0), method="bh") if m_all else flat_p
    out, start = {}, 0
    for m in METRICS:
        count = int(valid[m].sum())
        col = np.ones(len(valid[m]))
        col[valid[m]] = adjusted[start : start + count]
        out[m] = col
        start += count
    return out


# -- choosing what to report ---------------------------------------------------------------------------------------


@dataclass
class Item:
    """A significant (candidate, metric) on its way to becoming a finding."""

    cand: int
    metric: Metric
    score: float


def _worse_p(inside: tuple[np.ndarray, ...], outside: tuple[np.ndarray, ...], metric: str, t: Totals) -> float:
    """p that ``inside`` is worse than ``outside`` (disjoint), on one metric; 1 when either side is empty."""
    if metric == "fp_per_image":
        if inside[0][0] < 2 or outside[0][0] < 2:
            return 1.0
        return float(rate_p(*inside, *outside)[0])
    if inside[0][0] < 1 or outside[0][0] < 1 or inside[1][0] * outside[0][0] <= outside[1][0] * inside[0][0]:
        return 1.0
    deff = t.deff_gt if metric == "recall" else t.deff_pr
    return float(proportion_p(inside[0], inside[1], outside[0], outside[1], deff)[0])


def _gap(inside: tuple[np.ndarray, ...], outside: tuple[np.ndarray, ...], metric: str) -> float:
    """How much worse inside is: error-rate difference (recall, FP share) or FPs-per-image difference."""
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = float(inside[1][0] / inside[0][0] - outside[1][0] / outside[0][0])
    return gap if math.isfinite(gap) else 0.0


def _plus(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    return tuple(x + y for x, y in zip(a, b, strict=True))


def _minus(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    return tuple(x - y for x, y in zip(a, b, strict=True))


def interaction_p(c: Candidates, tested: Tested, t: Totals, i: int, metric: Metric) -> float:
    """One-sided p that a conjunction is worse than its two parts' effects combined.

    Cells A∧B, A∧¬B, ¬A∧B, ¬A∧¬B; errors on the log-odds scale (recall, FP share) or log-rate scale (FPs per
    image); with no interaction log-odds(A∧B) = log-odds(A∧¬B) + log-odds(¬A∧B) − log-odds(¬A∧¬B). Two
    independent failures ("fog", "small trucks") make their conjunction bad without it being an interaction.
    """
    if metric == "fp_per_image" and c.kind[i] == MIXED:
        return conjunction_p(c, tested, t, i, metric)  # the share comparison is already the interaction
    conj = tested.sums(metric, i)
    a, b = int(c.ua[i]), int(c.ub[i])
    everything = _plus(conj, tested.rest(metric, i))
    if metric == "fp_per_image":
        everything = (np.atleast_1d(float(t.n_images)), np.atleast_1d(t.fp), np.atleast_1d(t.fp2))
    only_a, only_b = _minus(tested.sums(metric, a), conj), _minus(tested.sums(metric, b), conj)
    cells = [conj, only_a, only_b, _minus(_minus(everything, tested.sums(metric, a)), only_b)]
    sign = np.array([1.0, -1.0, -1.0, 1.0])
    if metric == "fp_per_image":
        k, f, ff = (np.array([float(cell[j][0]) for cell in cells]) for j in range(3))
        if (k < 2).any():
            return 1.0
        var_totals = np.maximum((ff - f * f / k) / (k - 1), f / k) * k  # each cell's FP total, overdispersed
        effect = float(sign @ np.log((f + 0.5) / k))
        var = float(np.sum(np.maximum(var_totals, 0.5) / (f + 0.5) ** 2))
    else:
        n, y = (np.array([float(cell[j][0]) for cell in cells]) for j in range(2))
        if (n < 1).any():
            return 1.0
        deff = t.deff_gt if metric == "recall" else t.deff_pr
        effect = float(sign @ (np.log(y + 0.5) - np.log(n - y + 0.5)))
        var = deff * float(np.sum(1 / (y + 0.5) + 1 / (n - y + 0.5)))
    return float(stats.norm.sf(effect / math.sqrt(var)))


def conjunction_p(c: Candidates, tested: Tested, t: Totals, i: int, metric: Metric) -> float:
    """p that a conjunction says more than its parts: the larger of "worse than part A without it" and "worse
    than part B without it" (night ∧ small against night's other objects and against small objects by day).

    For FPs of a box kind per image of an image condition, "the image part without it" holds the image part's
    other FPs, a different count; there the question is whether that kind makes up more of the image part's FPs
    than of the other images' FPs (night multiplies every FP, or mostly car FPs?). Against the box part elsewhere
    it is the candidate's own test.
    """
    conj = tested.sums(metric, i)
    a, b = int(c.ua[i]), int(c.ub[i])
    if metric == "fp_per_image" and c.kind[i] == MIXED:
        _, f, _ = conj
        _, f_out, _ = tested.rest(metric, i)
        image_fps = np.atleast_1d(np.float64(c.col("img_f")[a]))
        return _worse_p((image_fps, f), (t.fp - image_fps, f_out), "fp_share", t)
    return max(_worse_p(conj, _minus(tested.sums(metric, j), conj), metric, t) for j in (a, b))


def _size(tested: Tested, metric: str, i: int) -> float:
    """What a slice's support is counted in: GT objects, FPs, predictions."""
    inside = tested.sums(metric, i)
    return float(inside[1][0] if metric == "fp_per_image" else inside[0][0])


MIN_RATE_GAP = 0.02  # recall / FP share: two points
MIN_RELATIVE_FP_EXCESS = 0.1  # FPs per image: 10% above the rest's rate


def _min_gap(tested: Tested, metric: str, i: int) -> float:
    """The least gap worth reporting: 2 points of recall or FP share, or 10% more FPs per image."""
    if metric != "fp_per_image":
        return MIN_RATE_GAP
    k_out, f_out, _ = tested.rest(metric, i)
    return MIN_RELATIVE_FP_EXCESS * float(f_out[0] / k_out[0]) if k_out[0] else 0.0


def select(
    c: Candidates, features: list[Feature], tested: Tested, t: Totals, alpha: float, max_findings: int = 50
) -> list[Item]:
    """Significant, worse-than-the-rest slices, without the ones that only repeat another, best first.

    A conjunction's hypothesis is "worse than the rest *and* more than its parts", so its p-value is the larger of
    the two (an intersection-union test) and Benjamini–Hochberg is run again with those; ``tested.p_adj`` is
    replaced by that final adjustment. (Pruning conjunctions after a BH on "worse than the rest" alone would keep
    the chance ones: every conjunction holding cam_3 is a true "worse than the rest", and those true rejections
    make room for false ones.)
    """
    conj = c.fb >= 0
    final = {m: tested.p[m].copy() for m in METRICS}
    for metric in METRICS:
        stage1 = np.flatnonzero(conj & tested.valid[metric] & tested.worse[metric] & (tested.p_adj[metric] <= alpha))
        for i in stage1:
            p_parts = conjunction_p(c, tested, t, int(i), metric)
            tested.p_parts[metric][i] = p_parts
            final[metric][i] = max(final[metric][i], p_parts)
    tested.p_adj = weighted_bh(final, tested.valid, conj)
    items = []
    for metric in METRICS:
        sig = np.flatnonzero(tested.valid[metric] & tested.worse[metric] & (tested.p_adj[metric] <= alpha))
        for i in sig:
            if _gap(tested.sums(metric, i), tested.rest(metric, i), metric) < _min_gap(tested, metric, int(i)):
                continue  # significant but negligible: a big dataset makes a 0.5-point gap "certain"
            items.append(Item(int(i), metric, float(tested.score[metric][i])))
    numeric = {
        i
        for i, f in enumerate(features)
        if f.level == "sample"
        and any(cond.field_filter is not None and cond.field_filter.range is not None for cond in f.conditions)
    }
    # ties (the same objects said two ways) go to the plainer condition: a value before a numeric range
    items.sort(
        key=lambda it: (
            -round(it.score, 9),
            tested.p[it.metric][it.cand],
            int(c.fa[it.cand] in numeric) + int(c.fb[it.cand] in numeric),
            it.cand,
        )
    )

    def codes(i: int) -> list[set[int]]:
        out = [set(features[c.fa[i]].conditions[c.ca[i]].codes)]
        if c.fb[i] >= 0:
            out.append(set(features[c.fb[i]].conditions[c.cb[i]].codes))
        return out

    def shifted(single: int, conj: int) -> bool:
        """The conjunction's condition on the single's feature overlaps it without being it (hour ≥ 18 in a
        conjunction, hour ≥ 21 kept alone): the conjunction mostly re-finds that finding through a worse cut."""
        for f, cond_codes in zip((c.fa[conj], c.fb[conj]), codes(conj), strict=True):
            single_codes = codes(single)[0]
            if f == c.fa[single] and cond_codes & single_codes and cond_codes != single_codes:
                return True
        return False

    def covered(f: int, cond_codes: set[int], better: list[Item]) -> bool:
        """A better-ranked finding has a condition on feature ``f`` overlapping these codes."""
        for a in better:
            for g, other in zip((c.fa[a.cand], c.fb[a.cand]), codes(a.cand), strict=False):
                if g == f and other & cond_codes:
                    return True
        return False

    accepted: list[Item] = []
    for it in items:
        if len(accepted) >= 4 * max_findings + 20:
            break  # the later pruning drops a few; far more would only cost time
        i = it.cand
        better = [a for a in accepted if a.metric == it.metric]
        same = [a for a in better if c.fa[a.cand] == c.fa[i] and c.fb[a.cand] == c.fb[i]]
        if any(all(x & y for x, y in zip(codes(a.cand), codes(i), strict=True)) for a in same):
            continue  # overlaps a better-ranked slice on the same fields (hour ≥ 18 after hour ≥ 20)
        if c.fb[i] >= 0 and any(c.fb[a.cand] < 0 and shifted(a.cand, i) for a in better):
            continue
        if (
            c.fb[i] >= 0
            and all(covered(f, cond_codes, better) for f, cond_codes in zip((c.fa[i], c.fb[i]), codes(i), strict=True))
            and interaction_p(c, tested, t, i, it.metric) >= alpha
        ):
            continue  # both parts are failures already shown, and together they are no worse than that
        accepted.append(it)

    def repeats_parent(child: Item) -> bool:
        """A conjunction that is most of a kept single condition: the simpler one says the same."""
        i = child.cand
        if c.fb[i] < 0:
            return False
        kept = {a.cand for a in accepted if a.metric == child.metric}
        return any(
            j in kept and _size(tested, child.metric, i) >= 0.75 * _size(tested, child.metric, j)
            for j in (int(c.ua[i]), int(c.ub[i]))
        )

    accepted = [it for it in accepted if not repeats_parent(it)]

    def explained(parent: Item) -> bool:
        """A single condition whose badness lives in a kept conjunction inside it: the rest of it is not worse,
        or worse by under a quarter of the whole's gap (at 100K images a 0.3-point gap is "significant").

        Only where the parent's sums split exactly into the child and the remainder (objects, predictions, or
        images when both are image conditions)."""
        p = parent.cand
        if c.fb[p] >= 0:
            return False
        whole, rest = tested.sums(parent.metric, p), tested.rest(parent.metric, p)
        for child in accepted:
            j = child.cand
            if child.metric != parent.metric or c.fb[j] < 0 or p not in (c.ua[j], c.ub[j]):
                continue
            if parent.metric == "fp_per_image" and c.kind[j] != SAMPLE_ONLY:
                continue
            remainder = _minus(whole, tested.sums(parent.metric, j))
            small = _gap(remainder, rest, parent.metric) <= 0.25 * _gap(whole, rest, parent.metric)
            if small or _worse_p(remainder, rest, parent.metric, t) >= alpha:
                return True
        return False

    return [it for it in accepted if not explained(it)]


def build_findings(
    ctx: Context, items: list[Item], max_findings: int, overlap: float = 0.9
) -> list[tuple[Finding, np.ndarray, Item]]:
    """Findings of the kept slices in rank order, up to ``max_findings``, skipping one whose images are (nearly)
    those of a better one on the same metric, e.g. "time_of_day is night" and "brightness ≤ 0.23" where one
    follows from the other; the kept one lists the other's definition under ``detail["also"]``."""
    kept: list[tuple[Finding, np.ndarray, Item]] = []
    for item in items:
        if len(kept) >= max_findings:
            break
        finding, mask = build_finding(ctx, item)
        twin = None
        for other in kept:
            union = np.count_nonzero(mask | other[1]) if other[2].metric == item.metric else 0
            if union and np.count_nonzero(mask & other[1]) / union >= overlap:
                twin = other
                break
        if twin is None:
            kept.append((finding, mask, item))
        else:
            twin[0].detail.setdefault("also", []).append(finding.definition)
    return kept


# -- findings ------------------------------------------------------------------------------------------------------

_VERB = {
    "recall": "Misses objects",
    "fp_per_image": "More false positives per image",
    "fp_share": "More false positives",
}
_TEST_TEXT = {
    "recall": "one-sided; max of Fisher's exact test (missed/found × slice/rest) and an image-clustered z-test",
    "fp_per_image": "one-sided Welch t-test on per-image FP counts, variances floored at the pooled Poisson rate",
    "fp_share": "one-sided; max of Fisher's exact test (FP/TP × slice/rest) and an image-clustered z-test",
}
_SCORE_TEXT = {
    "recall": "(rest recall − slice recall) × √(GT objects in slice)",
    "fp_per_image": "(1 − rest FP/image ÷ slice FP/image) × √(false positives in slice)",
    "fp_share": "(slice FP share − rest FP share) × √(predictions in slice)",
}


def _pct(v: float) -> str:
    return f"{100 * v:.0f}%" if np.isfinite(v) else "n/a"


def _num(v: Any) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


@dataclass
class Context:
    store: MetadataStore
    dataset_id: int
    model: str
    data: Data
    features: list[Feature]
    cands: Candidates
    tested: Tested
    totals: Totals


def _members(ctx: Context, conds: list[tuple[Feature, Condition]], metric: Metric) -> np.ndarray:
    """Images the finding's filter selects: sample conditions hold, and (object conditions) a box matches.

    Ground-truth boxes count whatever their outcome (crowd boxes too), as ``LabelFilter`` does; for false
    positives, the model's FP boxes (``LabelFilter(status=fp)``).
    """
    data = ctx.data
    mask = np.ones(data.n_images, bool)
    box_mask = None
    for f, cond in conds:
        if f.level == "sample":
            mask &= np.isin(f.codes, cond.codes)
        else:
            codes = f.codes if metric == "recall" else f.pred_codes
            hit = np.isin(codes, cond.codes)
            box_mask = hit if box_mask is None else box_mask & hit
    if box_mask is not None:
        boxes = data.gt if metric == "recall" else data.pred
        if metric != "recall":
            box_mask &= boxes.status == PRED_FP
        has = np.zeros(data.n_images, bool)
        has[boxes.image[box_mask]] = True
        mask &= has
    return mask


def _filters(ctx: Context, conds: list[tuple[Feature, Condition]], metric: Metric) -> Filters | None:
    if any(cond.by_members for _, cond in conds):
        return None
    fields = tuple(cond.field_filter for f, cond in conds if f.level == "sample" and cond.field_filter is not None)
    objects = [cond for f, cond in conds if f.level == "object"]
    annotations: tuple[LabelFilter, ...] = ()
    if objects:
        labels = next((o.labels for o in objects if o.labels is not None), None)
        area = next((o.area for o in objects if o.area is not None), None)
        if metric == "recall":
            annotations = (LabelFilter(labels=labels, area=area),)
        else:
            annotations = (
                LabelFilter(source=ctx.model, labels=labels, area=area, status=("fp",), evaluation=ctx.model),
            )
    return Filters(fields=fields, annotations=annotations)


def _cluster_look(ctx: Context, mask: np.ndarray) -> tuple[str, str] | None:
    """What a cluster's images mostly share, from the dataset's fields: (condition, "85% of its images, 20%
    overall"), for the condition most over-represented among them, if it holds for at least half of them."""
    best: tuple[float, str, str] | None = None
    n_in, n_all = mask.sum(), ctx.data.n_images
    for f in ctx.features:
        if f.origin != "field":
            continue
        u = f.matrix()
        share_in = u @ np.bincount(f.codes[mask], minlength=f.n_codes) / max(n_in, 1)
        share_all = u @ np.bincount(f.codes, minlength=f.n_codes) / n_all
        for j, cond in enumerate(f.conditions):
            lift = share_in[j] - share_all[j]
            if share_in[j] >= 0.5 and share_in[j] >= 1.5 * share_all[j] and (best is None or lift > best[0]):
                best = (lift, cond.title, f"{_pct(share_in[j])} of its images, {_pct(share_all[j])} overall")
    return (best[1], best[2]) if best else None


def build_finding(ctx: Context, item: Item) -> tuple[Finding, np.ndarray]:
    """The finding of one kept slice, and its image mask (for AP and members)."""
    c, i, metric = ctx.cands, item.cand, item.metric
    conds = [(ctx.features[c.fa[i]], ctx.features[c.fa[i]].conditions[c.ca[i]])]
    if c.fb[i] >= 0:
        conds.append((ctx.features[c.fb[i]], ctx.features[c.fb[i]].conditions[c.cb[i]]))
    titles = [cond.texts(metric)[0] for _, cond in conds]
    definition = " and ".join(cond.texts(metric)[1] for _, cond in conds)
    if conds[0][0].origin == "cluster":
        headline = f"{_VERB[metric]} in {titles[0]}"
    else:
        headline = f"{_VERB[metric]} when {' and '.join(titles)}"
    mask = _members(ctx, conds, metric)
    filters = _filters(ctx, conds, metric)
    evidence = _evidence(ctx, item, int(mask.sum()))
    description = _describe(evidence)
    detail: dict[str, Any] = {"conditions": [{"feature": f.name, "title": t} for (f, _), t in zip(conds, titles)]}
    if conds[0][0].origin == "cluster":
        detail.update(conds[0][0].detail)
        look = _cluster_look(ctx, mask)
        if look:
            headline += f" (mostly {look[0]})"
            detail["look"] = {"condition": look[0], "share": look[1]}
            description += f" Its images: {look[0]} for {look[1]}."
    finding = Finding(
        kind="slice",
        title=headline,
        score=round(item.score, 6),
        description=description,
        definition=definition,
        model=ctx.model,
        evidence=evidence,
        filters=filters,
        detail=detail,
        sample_ids=ctx.data.sample_ids[mask].tolist() if filters is None else [],
    )
    return finding, mask


def _evidence(ctx: Context, item: Item, images: int) -> dict[str, Any]:
    """The numbers behind a finding: slice and rest on every metric that applies, support, p-values."""
    c, i, metric, tested = ctx.cands, item.cand, item.metric, ctx.tested
    (gt_n, gt_y), (rest_n, rest_y) = (
        tuple(float(a[i]) for a in tested.inside["recall"]),
        tuple(float(a[i]) for a in tested.outside["recall"]),
    )
    lo, hi = wilson(gt_n - gt_y, gt_n)
    rlo, rhi = wilson(rest_n - rest_y, rest_n)
    ev: dict[str, Any] = {
        "metric": metric,
        "images": images,
        "gt_objects": int(gt_n),
        "p_value": _num(tested.p[metric][i]),
        "p_adjusted": _num(tested.p_adj[metric][i]),
        **({"p_beyond_parts": _num(tested.p_parts[metric][i])} if c.fb[i] >= 0 else {}),
        "tests": tested.n_tests,
        "correction": "Benjamini-Hochberg (weighted: half of alpha to single conditions, half to conjunctions)",
        "score": _SCORE_TEXT[metric],
        "test": _TEST_TEXT[metric],
        "slice": {
            "recall": _num((gt_n - gt_y) / gt_n) if gt_n else None,
            "recall_ci": [_num(lo), _num(hi)],
            "found": int(gt_n - gt_y),
            "missed": int(gt_y),
        },
        "rest": {
            "recall": _num((rest_n - rest_y) / rest_n) if rest_n else None,
            "recall_ci": [_num(rlo), _num(rhi)],
            "found": int(rest_n - rest_y),
            "missed": int(rest_y),
            "gt_objects": int(rest_n),
        },
    }
    if c.kind[i] != OBJECT_ONLY:
        sides = (
            tuple(float(a[i]) for a in tested.inside["fp_per_image"]),
            tuple(float(a[i]) for a in tested.outside["fp_per_image"]),
        )
        for side, (k, f, ff) in zip(("slice", "rest"), sides, strict=True):
            rate = f / k if k else float("nan")
            sd = math.sqrt(max((ff - k * rate * rate) / (k - 1), rate) / k) if k > 1 else float("nan")
            ev[side].update(
                {
                    "images": int(k),
                    "fp": int(f),
                    "fp_per_image": _num(rate),
                    "fp_per_image_ci": [_num(max(0.0, rate - Z95 * sd)), _num(rate + Z95 * sd)],
                }
            )
        if c.kind[i] == MIXED:
            ev["fp_kind"] = "false positives matching the box condition"
    else:
        sides = (
            tuple(float(a[i]) for a in tested.inside["fp_share"]),
            tuple(float(a[i]) for a in tested.outside["fp_share"]),
        )
        for side, (n, y) in zip(("slice", "rest"), sides, strict=True):
            lo, hi = wilson(y, n)
            ev[side].update(
                {
                    "predictions": int(n),
                    "fp": int(y),
                    "fp_share": _num(y / n) if n else None,
                    "fp_share_ci": [_num(lo), _num(hi)],
                }
            )
        ev["predictions"] = int(sides[0][0])
    return ev


def _describe(ev: dict[str, Any]) -> str:
    s, r = ev["slice"], ev["rest"]
    if ev["metric"] == "recall":
        head = (
            f"Recall {_pct(s['recall'] or 0)} ({_pct(s['recall_ci'][0] or 0)}–{_pct(s['recall_ci'][1] or 0)}) on "
            f"{ev['gt_objects']:,} GT objects in {ev['images']:,} images, against {_pct(r['recall'] or 0)} "
            f"({_pct(r['recall_ci'][0] or 0)}–{_pct(r['recall_ci'][1] or 0)}) on the rest"
        )
    elif ev["metric"] == "fp_per_image":
        kind = " of that kind" if ev.get("fp_kind") else ""
        head = (
            f"{s['fp_per_image']:.2f} false positives{kind} per image ({s['fp_per_image_ci'][0]:.2f}–"
            f"{s['fp_per_image_ci'][1]:.2f}) over {s['images']:,} images, against {r['fp_per_image']:.2f} over "
            f"the other {r['images']:,}"
        )
    else:
        head = (
            f"{_pct(s['fp_share'])} of {s['predictions']:,} predictions are false positives "
            f"({_pct(s['fp_share_ci'][0])}–{_pct(s['fp_share_ci'][1])}; {ev['images']:,} images), against "
            f"{_pct(r['fp_share'])} of the rest"
        )
    return (
        f"{head}; p = {ev['p_value']:.2g}, {ev['p_adjusted']:.2g} after Benjamini–Hochberg over {ev['tests']:,} tests."
    )


def _attach_ap(ctx: Context, findings: list[tuple[Finding, np.ndarray]], progress: ProgressCallback) -> None:
    """COCO AP of each slice's images and of the other images (the costly number, so only for kept slices)."""
    from ..metrics import subset_metrics

    for done, (finding, mask) in enumerate(findings):
        progress("slices: AP of kept slices", done, len(findings))
        inside = (
            finding.filters if finding.filters is not None else Filters(sample_ids=ctx.data.sample_ids[mask].tolist())
        )
        rest = Filters(sample_ids=ctx.data.sample_ids[~mask].tolist())
        m_in = subset_metrics(ctx.store, ctx.dataset_id, ctx.model, inside)
        m_out = subset_metrics(ctx.store, ctx.dataset_id, ctx.model, rest)
        finding.evidence["slice"].update({"ap": _num(m_in.stats["AP"]), "ap50": _num(m_in.stats["AP50"])})
        finding.evidence["rest"].update({"ap": _num(m_out.stats["AP"]), "ap50": _num(m_out.stats["AP50"])})
    progress("slices: AP of kept slices", len(findings), len(findings))


# -- the analysis --------------------------------------------------------------------------------------------------


def find_slices(
    store: MetadataStore,
    dataset_id: int,
    model: str,
    *,
    vectors: Any = None,
    collection: str | None = None,
    progress: ProgressCallback = no_progress,
    alpha: float = 0.05,
    max_findings: int = 50,
    min_objects: int = 10,
    min_images: int = 5,
    ap_top: int | None = 10,
) -> list[Finding]:
    """Blind spots of an evaluated ``model``: slices significantly worse than the rest, best first.

    ``vectors``/``collection``: where image embeddings are (default: a collection DuckDB knows of, if any), for
    cluster slices. ``min_objects``/``min_images``: the least support a slice needs to be tested at all (fewer
    tests also means a milder multiple-testing correction). ``ap_top``: add COCO AP (and AP50) of the slice and of
    the rest to the best ``ap_top`` findings (``None``: all; 0: none). AP is two evaluations per finding (slice and
    rest, about 2 s together at 100K images / 1M boxes), the one cost that grows with the number of findings.
    Raises ``VisionLensError`` when the model has not been evaluated.
    """
    _evaluated_model(store, dataset_id, model)
    progress("slices: read", 0, 1)
    data = load_data(store, dataset_id, model)
    features = sample_features(store, dataset_id, data, min_images) + object_features(data)
    clusters = cluster_feature(store, dataset_id, data, vectors, collection, min_images)
    if clusters is not None:
        features.append(clusters)
    progress("slices: read", 1, 1)
    cands = count_candidates(data, features, progress)
    t = totals(data)
    tested = test_candidates(cands, t, min_objects, min_images)
    items = select(cands, features, tested, t, alpha, max_findings)
    ctx = Context(store, dataset_id, model, data, features, cands, tested, t)
    built = build_findings(ctx, items, max_findings)
    with_ap = built if ap_top is None else built[: max(ap_top, 0)]
    if with_ap:
        _attach_ap(ctx, [(f, mask) for f, mask, _ in with_ap], progress)
    return [f for f, _, _ in built]


__all__ = ["Finding", "find_slices", "fisher_greater", "kmeans_labels", "wilson"]
