"""Near-duplicate images and train/val leakage, from image vectors and perceptual hashes together.

Neither signal is enough alone. An embedding says two images *look alike*; on datasets of similar scenes (the
demo's streets, a dashcam's road) unrelated neighbours score as high as a shifted, brightened copy, and the
built-in embedder's colour histogram moves a lot when an image is brightened. A 64-bit perceptual hash says one
image is a *copy* of the other, but a shift of a few pixels flips up to a dozen bits and images with little 2-D
structure (a horizon, a blank wall) share most bits. The two fail on different copies (a shifted copy keeps its
cosine, a brightened one keeps its hash), so a pair with both signals is judged on both at once:

* both signals: cosine - hash distance / 16 >= 0.2, cosine >= 0.5 and distance <= 12 (``DuplicateParams``);
* hashes only (an image without a vector): distance <= ``hash_only_hamming`` (6);
* vectors only (an image without a hash): cosine >= ``vector_only_cosine`` (0.98, stricter).

Candidate pairs come from two searches, so one signal's blind spot does not hide a pair from the other:

1. a k-nearest-neighbour graph over every vector of the dataset (``knn_graph``): exact blocked matrix products
   for small datasets; above that an inverted-file partition (spherical k-means cells of about ``cell_size``
   vectors, each vector searched in its ``nprobe`` nearest cells) keeps the work near n * nprobe * cell_size *
   dim instead of n^2 * dim: exact search over a million 512-d vectors is ~10^15 flops, hours on two cores.
   Copies sit far closer to each other than to any cell boundary, so they almost always share a probed cell;
2. hash neighbours (``hash_candidates``): every pair for small datasets; above that the hashes are sorted in
   several bit orders and each is compared with the next few in every order, linear in n, finding pairs a few
   bits apart with high probability and identical hashes always.

``benchmarks/bench_duplicates.py`` measures both at 100K and 1M images (recall of planted pairs and seconds).
Accepted pairs become groups (connected components); a group whose images lie in more than one split is a
leak (a validation image whose near-copy is in train measures memory, not generalisation). Each group is one
``Finding`` (kind ``near_duplicate``); leaks score above every plain group.

How the defaults were measured (``tests/test_insights_duplicates.py``'s scenes, two more seeds of them, and the
demo, with the built-in embedder and ``phash``): a copy shifted by 2% of the width keeps cosine >= 0.99 but
differs by up to 16 bits (90% within 8); a copy brightened by 25% keeps its bits (<= 8) but drops to cosine 0.58;
JPEG quality 20 and resizing change neither much (cosine >= 0.97, <= 4 bits). Unrelated varied scenes stay below
cosine 0.8 and 16 bits, with cosine - bits/16 at most -0.23 while every copy scores >= 0.17: the 0.2 cut found
99-100% of planted copies and no unrelated pair on 600 scenes. The demo's street scenes share their background,
so unrelated ones reach 6-10 bits with cosine 0.7-0.96; the rule keeps the planted demo copies and lets a few such
look-alikes through (about 6 pairs in 120 images). A hash alone at <= 6 bits found 85-90% of the scenes' copies
(shifted ones are the misses) with no false pair, and 3 look-alike pairs in the 120-image demo; a vector alone at
>= 0.98 finds every shifted, re-encoded and resized copy but no brightened one, and cannot tell demo street
scenes apart at all (dozens of unrelated pairs score above 0.99), hence it is the last resort.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..formats.base import ProgressCallback, no_progress
from ..query import Filters
from .finding import Finding
from .hashes import DEFAULT_METHOD, hamming

__all__ = [
    "DuplicateParams",
    "PairTable",
    "find_near_duplicates",
    "group_pairs",
    "hash_candidates",
    "knn_graph",
    "link_groups",
    "near_duplicate_pairs",
    "pair_decisions",
    "RUN",
]

RUN = "near_duplicates"
_VECTOR_FETCH = 8192  # ids per get_vectors call: the engine builds Python lists per point, so keep batches modest
_HASH_EXACT_LIMIT = 16_384  # up to this many hashes every pair is compared
_MAX_LISTED_PAIRS = 500  # a finding's detail lists at most this many pairs and files (members are all stored)
_MAX_LISTED_FILES = 1000


@dataclass(frozen=True)
class DuplicateParams:
    """Thresholds and search effort; see the module docstring for how the defaults were measured.

    A pair with both signals is a duplicate when cosine >= ``min_cosine``, hash distance <= ``max_hamming`` and
    cosine - distance / ``bits_per_cosine`` >= ``min_score``: each differing hash bit must be paid for with
    1/16 of cosine, so a shifted copy (cosine 0.99) may differ by 12 bits and a brightened one (cosine 0.6)
    by 6, while look-alikes with both a middling cosine and a middling distance are refused.
    """

    min_score: float = 0.2
    bits_per_cosine: float = 16.0
    min_cosine: float = 0.5
    max_hamming: int = 12
    hash_only_hamming: int = 6
    vector_only_cosine: float = 0.98
    k: int = 10
    cell_size: int = 1024
    nprobe: int = 3
    block: int = 4096
    hash_orders: int = 32
    hash_window: int = 16
    seed: int = 0

    def thresholds(self) -> dict[str, float]:
        """The decision thresholds, for a finding's evidence."""
        return {
            "min_score": self.min_score,
            "bits_per_cosine": self.bits_per_cosine,
            "min_cosine": self.min_cosine,
            "max_hamming": self.max_hamming,
            "hash_only_hamming": self.hash_only_hamming,
            "vector_only_cosine": self.vector_only_cosine,
        }

    def decide(self, cosine: np.ndarray, distance: np.ndarray) -> np.ndarray:
        """Accept or refuse pairs; cosine NaN means no vectors, distance < 0 means no hashes."""
        v_ok = ~np.isnan(cosine)
        h_ok = distance >= 0
        d = distance.astype(np.float32)
        with np.errstate(invalid="ignore"):
            both = (
                v_ok
                & h_ok
                & (cosine >= self.min_cosine)
                & (distance <= self.max_hamming)
                & (cosine - d / self.bits_per_cosine >= self.min_score)
            )
            return (
                both
                | (~v_ok & h_ok & (distance <= self.hash_only_hamming))
                | (v_ok & ~h_ok & (cosine >= self.vector_only_cosine))
            )

    def similarity(self, cosine: np.ndarray, distance: np.ndarray) -> np.ndarray:
        """Per pair, 0..1: the mean of the signals it has (cosine, and 1 - distance / bits_per_cosine)."""
        parts = np.stack(
            [
                np.where(np.isnan(cosine), np.nan, np.clip(cosine, 0, 1)),
                np.where(distance < 0, np.nan, np.clip(1 - distance.astype(np.float32) / self.bits_per_cosine, 0, 1)),
            ]
        )
        return np.nanmean(parts, axis=0)


@dataclass
class PairTable:
    """Candidate pairs over node positions ``a < b`` with what is known of each: cosine (NaN without vectors),
    hash distance (-1 without hashes), which search proposed it (``source`` bits: 1 neighbour graph, 2 hashes)
    and whether the rule accepted it."""

    a: np.ndarray
    b: np.ndarray
    cosine: np.ndarray
    hamming: np.ndarray
    source: np.ndarray
    duplicate: np.ndarray

    def __len__(self) -> int:
        return len(self.a)

    def take(self, mask: np.ndarray) -> PairTable:
        return PairTable(
            self.a[mask], self.b[mask], self.cosine[mask], self.hamming[mask], self.source[mask], self.duplicate[mask]
        )


FROM_NEIGHBOURS, FROM_HASHES = 1, 2


# ----------------------------------------------------------------------------------------------------------------
# k-nearest-neighbour graph


def _normalise(x: np.ndarray) -> np.ndarray:
    """Unit rows in float32 (in place when already float32), so a dot product is the cosine."""
    x = np.asarray(x, np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    x /= norms
    return x


def _topk_rows(s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of each row's k largest entries (unordered): argpartition is O(m) per row.

    (Taking the k best of 32-column group maxima first gives the same answer but measured no faster: numpy's
    per-row overhead eats the saving at these widths.)
    """
    if s.shape[1] <= k:
        return np.broadcast_to(np.arange(s.shape[1]), s.shape).copy(), s
    idx = np.argpartition(s, s.shape[1] - k, axis=1)[:, -k:]
    return idx, np.take_along_axis(s, idx, axis=1)


def _merge_topk(
    best_i: np.ndarray, best_s: np.ndarray, new_i: np.ndarray, new_s: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    cat_i = np.concatenate([best_i, new_i], axis=1)
    cat_s = np.concatenate([best_s, new_s], axis=1)
    pos, vals = _topk_rows(cat_s, k)
    return np.take_along_axis(cat_i, pos, axis=1), vals


def _spherical_kmeans(x: np.ndarray, c: int, iterations: int, rng: np.random.Generator) -> np.ndarray:
    """Unit centroids of ``c`` cells trained on a sample of ``x`` (cosine k-means, a few Lloyd steps)."""
    from scipy import sparse

    sample = x[np.sort(rng.choice(len(x), min(len(x), 64 * c), replace=False))]
    centroids = sample[rng.choice(len(sample), c, replace=False)].copy()
    for _ in range(iterations):
        labels = np.concatenate(
            [np.argmax(sample[s : s + 16384] @ centroids.T, axis=1) for s in range(0, len(sample), 16384)]
        )
        onehot = sparse.csr_matrix(
            (np.ones(len(sample), np.float32), (labels, np.arange(len(sample)))), shape=(c, len(sample))
        )
        sums = np.asarray(onehot @ sample, np.float32)
        empty = np.asarray(onehot.sum(axis=1)).ravel() == 0
        sums[empty] = sample[rng.choice(len(sample), int(empty.sum()), replace=False)]  # reseed empty cells
        centroids = _normalise(sums)
    return centroids


def _probes(x: np.ndarray, centroids: np.ndarray, nprobe: int, block: int) -> np.ndarray:
    """Each vector's ``nprobe`` most similar cells, best first (column 0 is the cell that holds it)."""
    out = np.empty((len(x), nprobe), np.int32)
    for s in range(0, len(x), block):
        sims = x[s : s + block] @ centroids.T
        idx, vals = _topk_rows(sims, nprobe)
        order = np.argsort(-vals, axis=1)
        out[s : s + block] = np.take_along_axis(idx, order, axis=1)
    return out


@dataclass
class _Cells:
    """The inverted file: which rows each cell holds (``members``) and which rows search it (``queries``)."""

    count: int
    primary: np.ndarray  # each row's own cell
    member_order: np.ndarray
    member_start: np.ndarray
    own_pos: np.ndarray  # a row's position among its cell's members, to mask "a row is its own neighbour"
    query_rows: np.ndarray
    query_start: np.ndarray

    def members(self, c: int) -> np.ndarray:
        return self.member_order[self.member_start[c] : self.member_start[c + 1]]

    def queries(self, c: int) -> np.ndarray:
        return self.query_rows[self.query_start[c] : self.query_start[c + 1]]


def _cells(x: np.ndarray, cell_size: int, nprobe: int, block: int, seed: int) -> _Cells:
    """One cell (exact search) while n / cell_size <= nprobe, else spherical k-means cells probed nprobe each."""
    n = len(x)
    count = max(1, int(round(n / max(1, cell_size))))
    if count <= nprobe:
        count, probes = 1, np.zeros((n, 1), np.int32)
    else:
        probes = _probes(x, _spherical_kmeans(x, count, 8, np.random.default_rng(seed)), nprobe, block)
    primary = probes[:, 0]
    member_order = np.argsort(primary, kind="stable")
    member_start = np.searchsorted(primary[member_order], np.arange(count + 1))
    own_pos = np.empty(n, np.int64)
    own_pos[member_order] = np.arange(n) - member_start[primary[member_order]]
    q_cell = probes.ravel()
    q_order = np.argsort(q_cell, kind="stable")
    query_rows = np.repeat(np.arange(n), probes.shape[1])[q_order]
    query_start = np.searchsorted(q_cell[q_order], np.arange(count + 1))
    return _Cells(count, primary, member_order, member_start, own_pos, query_rows, query_start)


def knn_graph(
    x: np.ndarray,
    k: int = 10,
    *,
    cell_size: int = 1024,
    nprobe: int = 3,
    block: int = 4096,
    seed: int = 0,
    progress: ProgressCallback = no_progress,
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` most cosine-similar other rows: (indices int64 [n, k], cosines float32 [n, k]), best
    first; -1 / -inf pad rows with fewer than k neighbours.

    While n / cell_size <= nprobe the search is exact: blocks of ``block`` query rows against all rows, top-k
    kept with argpartition. Larger inputs are split into about n / cell_size spherical k-means cells and each
    row is searched in its ``nprobe`` nearest cells (an inverted file): work n * nprobe * cell_size * dim instead
    of n^2 * dim, and near-copies (cosine far above a cell's radius) share a probed cell with recall close to 1.
    ``x`` is normalised in place when it is float32.
    """
    x = _normalise(x)
    n = len(x)
    k_eff = max(0, min(k, n - 1))
    best_i = np.full((n, k_eff), -1, np.int64)
    best_s = np.full((n, k_eff), -np.inf, np.float32)
    if k_eff == 0:
        return best_i, best_s
    cells = _cells(x, cell_size, nprobe, block, seed)
    for c in range(cells.count):
        members = cells.members(c)
        if len(members) == 0:
            continue
        xc = x[members]
        queries = cells.queries(c)
        for s in range(0, len(queries), block):
            rows = queries[s : s + block]
            sims = x[rows] @ xc.T
            mine = np.flatnonzero(cells.primary[rows] == c)
            sims[mine, cells.own_pos[rows[mine]]] = -np.inf
            pos, vals = _topk_rows(sims, k_eff)
            if cells.count == 1:
                best_i[rows], best_s[rows] = members[pos], vals
            else:
                best_i[rows], best_s[rows] = _merge_topk(best_i[rows], best_s[rows], members[pos], vals, k_eff)
        progress("near duplicates: neighbour graph", c + 1, cells.count)
    order = np.argsort(-best_s, axis=1)
    best_i = np.take_along_axis(best_i, order, axis=1)
    best_s = np.take_along_axis(best_s, order, axis=1)
    best_i[~np.isfinite(best_s)] = -1
    return best_i, best_s


# ----------------------------------------------------------------------------------------------------------------
# Hash neighbours


def _rotl(h: np.ndarray, s: int) -> np.ndarray:
    s %= 64
    if s == 0:
        return h
    return (h << np.uint64(s)) | (h >> np.uint64(64 - s))


def _sort_keys(h: np.ndarray, orders: int, seed: int) -> list[np.ndarray]:
    """``orders`` reorderings of the hash bits: the identity, then random byte shuffles each rotated a little.

    Shuffling whole bytes is one gather per hash (a bit-level permutation would be 64), and unlike plain
    rotations it brings bits from all over the hash to the front, so the orders are closer to independent.
    """
    rng = np.random.default_rng(seed)
    keys = [h]
    as_bytes = np.ascontiguousarray(h).view(np.uint8).reshape(-1, 8)
    for r in range(1, orders):
        shuffled = np.ascontiguousarray(as_bytes[:, rng.permutation(8)]).view(np.uint64).ravel()
        keys.append(_rotl(shuffled, r % 8))
    return keys


def hash_candidates(
    hashes: np.ndarray,
    max_distance: int,
    *,
    orders: int = 32,
    window: int = 16,
    exact_limit: int = _HASH_EXACT_LIMIT,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (a, b, distance) with a < b of uint64 hashes within ``max_distance`` bits.

    Exact (every pair, in blocks) up to ``exact_limit`` hashes. Above, the hashes are sorted in ``rotations``
    bit orders and each meets the next ``window`` hashes in every order: linear in n. Two hashes that agree on the
    first ~log2(n / window) bits of some order meet; pairs a few bits apart agree on such a run in most orders
    (benchmark at 1M random hashes: recall 1.0 within 3 bits, 0.99 within 6, 0.87 within 9), and the vector
    neighbours catch the close pairs that remain. Identical hashes are adjacent in every order, so groups of
    exact copies always chain together.
    """
    h = np.asarray(hashes, np.uint64)
    n = len(h)
    found_a, found_b, found_d = [], [], []
    if n < 2:
        empty = np.empty(0, np.int64)
        return empty, empty, np.empty(0, np.uint8)
    if n <= exact_limit:
        step = max(1, 2**24 // n)
        for s in range(0, n, step):
            d = hamming(h[s : s + step, None], h[None, :])
            ia, ib = np.nonzero(d <= max_distance)
            keep = ia + s < ib
            found_a.append(ia[keep] + s)
            found_b.append(ib[keep])
            found_d.append(d[ia[keep], ib[keep]])
    else:
        for key in _sort_keys(h, orders, seed):
            order = np.argsort(key, kind="stable")
            hs = h[order]
            for o in range(1, min(window, n - 1) + 1):
                d = hamming(hs[:-o], hs[o:])
                m = np.flatnonzero(d <= max_distance)
                a, b = order[m], order[m + o]
                found_a.append(np.minimum(a, b))
                found_b.append(np.maximum(a, b))
                found_d.append(d[m])
    a = np.concatenate(found_a).astype(np.int64)
    b = np.concatenate(found_b).astype(np.int64)
    d = np.concatenate(found_d).astype(np.uint8)
    _, first = np.unique(a * n + b, return_index=True)
    return a[first], b[first], d[first]


# ----------------------------------------------------------------------------------------------------------------
# Pairs -> decisions -> groups


def _pair_cosines(x: np.ndarray, a: np.ndarray, b: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """Row-wise dot products of unit vectors, chunked so a million pairs never gathers gigabytes at once."""
    out = np.empty(len(a), np.float32)
    for s in range(0, len(a), chunk):
        out[s : s + chunk] = np.einsum("ij,ij->i", x[a[s : s + chunk]], x[b[s : s + chunk]])
    return out


def _knn_pairs(
    x: np.ndarray, row_node: np.ndarray, n: int, floor: float, p: DuplicateParams, progress: ProgressCallback
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique pair keys (a * n + b, a < b) of the neighbour graph at cosine >= ``floor``, with cosines."""
    nbr, sims = knn_graph(x, p.k, cell_size=p.cell_size, nprobe=p.nprobe, block=p.block, seed=p.seed, progress=progress)
    rows, cols = np.nonzero((sims >= floor) & (nbr >= 0))
    a, b = row_node[rows], row_node[nbr[rows, cols]]
    keys, first = np.unique(np.minimum(a, b) * n + np.maximum(a, b), return_index=True)
    return keys, sims[rows, cols][first]


def _hash_pairs(hashes: np.ndarray, hash_node: np.ndarray, n: int, limit: int, p: DuplicateParams) -> np.ndarray:
    """Sorted unique pair keys of hashes within ``limit`` bits."""
    ha, hb, _ = hash_candidates(hashes, limit, orders=p.hash_orders, window=p.hash_window, seed=p.seed)
    a, b = hash_node[ha], hash_node[hb]
    return np.unique(np.minimum(a, b) * n + np.maximum(a, b))


def _row_nodes(rows: np.ndarray, size: int) -> np.ndarray:
    """Inverse of node -> row: the node of every row."""
    out = np.full(size, -1, np.int64)
    present = np.flatnonzero(rows >= 0)
    out[rows[present]] = present
    return out


def near_duplicate_pairs(
    n: int,
    vec_rows: np.ndarray | None,
    vectors: np.ndarray | None,
    hash_rows: np.ndarray | None,
    hashes: np.ndarray | None,
    params: DuplicateParams = DuplicateParams(),
    progress: ProgressCallback = no_progress,
    timings: dict[str, float] | None = None,
) -> PairTable:
    """Candidate pairs over ``n`` nodes with both signals filled in and the decision taken.

    ``vec_rows[i]`` is node i's row in ``vectors`` (-1: no vector) and ``hash_rows[i]`` its index in ``hashes``
    (-1: no hash); either side may be None. ``vectors`` are normalised in place when float32. ``timings`` (when
    given) receives seconds per stage: knn, hash, decide.
    """
    import time

    timings = timings if timings is not None else {}
    p = params
    has_v = vec_rows is not None and vectors is not None and len(vectors) > 0
    has_h = hash_rows is not None and hashes is not None and len(hashes) > 0
    empty = np.empty(0, np.int64)
    knn_keys, knn_cos, hash_keys = empty, np.empty(0, np.float32), empty
    x = None
    t0 = time.perf_counter()
    if has_v:
        assert vec_rows is not None and vectors is not None
        x = _normalise(vectors)
        floor = min(p.min_cosine, p.vector_only_cosine) if has_h else p.vector_only_cosine
        knn_keys, knn_cos = _knn_pairs(x, _row_nodes(vec_rows, len(x)), n, floor, p, progress)
    timings["knn"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if has_h:
        assert hash_rows is not None and hashes is not None
        progress("near duplicates: hash neighbours", 0, 1)
        limit = max(p.max_hamming, p.hash_only_hamming) if has_v else p.hash_only_hamming
        hash_keys = _hash_pairs(hashes, _row_nodes(hash_rows, len(hashes)), n, limit, p)
        progress("near duplicates: hash neighbours", 1, 1)
    timings["hash"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    keys = np.union1d(knn_keys, hash_keys)
    source = np.zeros(len(keys), np.uint8)
    cos = np.full(len(keys), np.nan, np.float32)
    at = np.searchsorted(keys, knn_keys)
    source[at] |= FROM_NEIGHBOURS
    cos[at] = knn_cos
    source[np.searchsorted(keys, hash_keys)] |= FROM_HASHES
    a, b = keys // max(n, 1), keys % max(n, 1)
    ham = np.full(len(keys), -1, np.int16)
    if has_v:  # pairs only the hashes proposed: their cosine, where both images have a vector
        assert vec_rows is not None and x is not None
        todo = np.flatnonzero(np.isnan(cos))
        va, vb = vec_rows[a[todo]], vec_rows[b[todo]]
        both = (va >= 0) & (vb >= 0)
        cos[todo[both]] = _pair_cosines(x, va[both], vb[both])
    if has_h:
        assert hash_rows is not None and hashes is not None
        ha, hb = hash_rows[a], hash_rows[b]
        both = (ha >= 0) & (hb >= 0)
        ham[both] = hamming(hashes[ha[both]], hashes[hb[both]])
    dup = p.decide(cos, ham)
    timings["decide"] = time.perf_counter() - t0
    return PairTable(a, b, cos, ham, source, dup)


def group_pairs(n: int, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the accepted pairs: (label per node, size per label)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels, np.bincount(labels, minlength=int(labels.max()) + 1 if n else 0)


def pair_decisions(
    ia: np.ndarray,
    ib: np.ndarray,
    vec_rows: np.ndarray | None,
    vectors: np.ndarray | None,
    hash_rows: np.ndarray | None,
    hashes: np.ndarray | None,
    params: DuplicateParams,
) -> np.ndarray:
    """The rule's decision on every pair of nodes ``ia[i]`` x ``ib[j]``: bool [len(ia), len(ib)]. ``vectors``
    must be unit rows (``near_duplicate_pairs`` normalises them)."""
    shape = (len(ia), len(ib))
    cos = np.full(shape, np.nan, np.float32)
    ham = np.full(shape, -1, np.int16)
    if vec_rows is not None and vectors is not None:
        va, vb = vec_rows[ia], vec_rows[ib]
        ra, rb = np.flatnonzero(va >= 0), np.flatnonzero(vb >= 0)
        cos[np.ix_(ra, rb)] = vectors[va[ra]] @ vectors[vb[rb]].T
    if hash_rows is not None and hashes is not None:
        ha, hb = hash_rows[ia], hash_rows[ib]
        ra, rb = np.flatnonzero(ha >= 0), np.flatnonzero(hb >= 0)
        if len(ra) and len(rb):
            ham[np.ix_(ra, rb)] = hamming(hashes[ha[ra]][:, None], hashes[hb[rb]][None, :])
    return params.decide(cos, ham)


def link_groups(
    n: int,
    pairs: PairTable,
    vec_rows: np.ndarray | None,
    vectors: np.ndarray | None,
    hash_rows: np.ndarray | None,
    hashes: np.ndarray | None,
    params: DuplicateParams = DuplicateParams(),
) -> tuple[np.ndarray, np.ndarray]:
    """Groups in which every two images are near-duplicates by the rule: (label per node, size per label).

    Connected components of the accepted pairs chain: a~b, b~c and c~d join a and d even when a and d are
    nothing alike, and on look-alike scenes (one street at dusk, one shelf of products) a chain of middling pairs
    grows one group of dozens. So each component is split by complete linkage: accepted pairs are taken closest
    first (``DuplicateParams.similarity``), and a pair merges its two groups only when the rule accepts *every*
    pair across them, judged on both signals recomputed for those images (not only the candidate pairs the
    searches proposed). A group thus means "these images are copies of each other"; the pairs that linked
    groups that stayed apart are dropped. Components of two images are kept as they are.
    """
    dup = pairs.take(pairs.duplicate) if len(pairs) else pairs
    labels, sizes = group_pairs(n, dup.a, dup.b)
    big = np.flatnonzero(sizes > 2)
    if len(big) == 0:
        return labels, sizes
    edge_comp = labels[dup.a]
    close = params.similarity(dup.cosine, dup.hamming)
    order = np.lexsort((-close, edge_comp))
    edge_comp = edge_comp[order]
    starts = np.searchsorted(edge_comp, big)
    ends = np.searchsorted(edge_comp, big, side="right")
    out = labels.copy()
    next_label = int(sizes.shape[0])
    for s, e in zip(starts, ends):
        group: dict[int, list[int]] = {}  # node -> the list of its group's members, shared by the members
        for i in order[s:e]:
            u, v = int(dup.a[i]), int(dup.b[i])
            gu, gv = group.setdefault(u, [u]), group.setdefault(v, [v])
            if gu is gv:
                continue
            if (len(gu) > 1 or len(gv) > 1) and not pair_decisions(
                np.asarray(gu), np.asarray(gv), vec_rows, vectors, hash_rows, hashes, params
            ).all():
                continue
            gu.extend(gv)
            for node in gv:
                group[node] = gu
        seen: set[int] = set()
        for members in group.values():
            if id(members) in seen:
                continue
            seen.add(id(members))
            out[members] = next_label
            next_label += 1
    _, out = np.unique(out, return_inverse=True)
    return out, np.bincount(out)


# ----------------------------------------------------------------------------------------------------------------
# From the stores


def _dataset_vectors(
    store: Any, dataset_id: int, ids: np.ndarray, vectors: Any, collection: str | None, progress: ProgressCallback
) -> tuple[np.ndarray, np.ndarray, str | None, str | None]:
    """(sample ids, float32 vectors, collection, why none) of the dataset's images in the chosen collection."""
    from ..embedding_jobs import dataset_collections, vector_store

    try:
        vs = vectors if vectors is not None else vector_store()
    except Exception as exc:  # noqa: BLE001 - a locked or missing vector store leaves the hashes to decide
        return np.empty(0, np.int64), np.empty((0, 0), np.float32), None, f"vector store unavailable: {exc}"
    names = [collection] if collection else dataset_collections(store, dataset_id, vs)
    for name in names:
        try:
            present = np.intersect1d(ids, vs.all_ids(name))
        except Exception:  # noqa: BLE001 - a collection listed but gone is simply not this dataset's
            if collection:
                raise
            continue
        if len(present) == 0:
            continue
        first = vs.get_vectors(name, present[:_VECTOR_FETCH])
        out = np.empty((len(present), first.shape[1]), np.float32)
        out[: len(first)] = first
        for s in range(_VECTOR_FETCH, len(present), _VECTOR_FETCH):
            out[s : s + _VECTOR_FETCH] = vs.get_vectors(name, present[s : s + _VECTOR_FETCH])
            progress("near duplicates: load vectors", min(s + _VECTOR_FETCH, len(present)), len(present))
        return present, out, name, None
    return np.empty(0, np.int64), np.empty((0, 0), np.float32), None, "no collection holds vectors of this dataset"


def _rows_for(nodes: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Row of every node id in the sorted array ``ids``, -1 where absent."""
    if len(ids) == 0:
        return np.full(len(nodes), -1, np.int64)
    pos = np.minimum(np.searchsorted(ids, nodes), len(ids) - 1)
    return np.where(ids[pos] == nodes, pos, -1).astype(np.int64)


def find_near_duplicates(
    store: Any,
    dataset_id: int,
    *,
    vectors: Any = None,
    collection: str | None = None,
    progress: ProgressCallback = no_progress,
    k: int = 10,
    hash_method: str = DEFAULT_METHOD,
    use_vectors: bool = True,
    use_hashes: bool = True,
    params: DuplicateParams | None = None,
) -> list[Finding]:
    """Groups of near-identical images of a dataset, leaks across splits first; one ``Finding`` per group.

    ``vectors``: the vector store (default: the process-wide one); ``collection``: which embedding (default: the
    first collection holding this dataset's vectors, mapped ones first); ``k``: neighbours per image (``params``,
    when given, carries its own). Hashes come from ``compute_hashes``
    (method ``hash_method``). Either signal may be missing or switched off (``use_vectors``/``use_hashes``);
    the stricter single-signal thresholds then decide, and each finding's evidence names the signals used.
    """
    p = params or DuplicateParams(k=k)
    ids = np.sort(store.matching_ids(dataset_id, Filters()).astype(np.int64))
    h_ids, h_vals = (
        store.image_hashes(dataset_id, hash_method) if use_hashes else (np.empty(0, np.int64), np.empty(0, np.uint64))
    )
    keep = np.isin(h_ids, ids)
    h_ids, h_vals = h_ids[keep], h_vals[keep]
    v_ids, v_vals, coll, why_no_vectors = (
        _dataset_vectors(store, dataset_id, ids, vectors, collection, progress)
        if use_vectors
        else (np.empty(0, np.int64), None, None, "switched off")
    )
    nodes = np.union1d(v_ids, h_ids)
    vec_rows = _rows_for(nodes, v_ids) if len(v_ids) else None
    hash_rows = _rows_for(nodes, h_ids) if len(h_ids) else None
    signals = [s for s, ok in (("vectors", vec_rows is not None), (hash_method, hash_rows is not None)) if ok]
    if not signals:
        return []
    pairs = near_duplicate_pairs(
        len(nodes),
        vec_rows,
        v_vals if vec_rows is not None else None,
        hash_rows,
        h_vals if hash_rows is not None else None,
        p,
        progress,
    )
    dup = pairs.take(pairs.duplicate)
    if len(dup) == 0:
        return []
    v_unit = _normalise(v_vals) if vec_rows is not None and v_vals is not None else None  # in place: unit already
    labels, sizes = link_groups(
        len(nodes), pairs, vec_rows, v_unit, hash_rows, h_vals if hash_rows is not None else None, p
    )
    dup = dup.take(labels[dup.a] == labels[dup.b])  # pairs between groups that stayed apart are not evidence
    context = {
        "signals": signals,
        "collection": coll,
        "hash_method": hash_method if hash_rows is not None else None,
        "vectors_note": why_no_vectors,
        "thresholds": p.thresholds(),
        "images_with_vectors": int(len(v_ids)),
        "images_with_hashes": int(len(h_ids)),
        "images_without_either": int(len(ids) - len(nodes)),
    }
    return _findings(store, dataset_id, nodes, dup, labels, sizes, context, p)


def _findings(
    store: Any,
    dataset_id: int,
    nodes: np.ndarray,
    dup: PairTable,
    labels: np.ndarray,
    sizes: np.ndarray,
    context: dict[str, Any],
    params: DuplicateParams,
) -> list[Finding]:
    """One finding per group; files and splits are read once for every member of every group."""
    members_all = np.flatnonzero(sizes[labels] >= 2)
    rows = store.samples_by_id(dataset_id, nodes[members_all])
    by_node = dict(zip(members_all.tolist(), range(len(members_all))))
    files = rows["filepath"].to_pylist()
    splits = rows["split"].to_pylist()
    edge_label = labels[dup.a]
    edge_order = np.argsort(edge_label, kind="stable")
    edge_start = np.searchsorted(edge_label[edge_order], np.arange(len(sizes) + 1))
    member_order = members_all[np.argsort(labels[members_all], kind="stable")]
    member_label = labels[member_order]
    member_start = np.searchsorted(member_label, np.arange(len(sizes) + 1))
    out = []
    for g in np.flatnonzero(sizes >= 2):
        group_nodes = member_order[member_start[g] : member_start[g + 1]]
        edges = edge_order[edge_start[g] : edge_start[g + 1]]
        out.append(_group_finding(nodes, group_nodes, dup, edges, by_node, files, splits, context, params))
    out.sort(key=lambda f: -f.score)
    return out


def _split_counts(splits: list[str | None]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in splits:
        counts[str(s)] = counts.get(str(s), 0) + 1
    return counts


def _signal_words(signals: list[str]) -> str:
    if signals == ["vectors"]:
        return "cosine similarity of their vectors"
    if "vectors" not in signals:
        return "perceptual-hash distance"
    return "cosine similarity of their vectors and perceptual-hash distance"


def _group_finding(
    nodes: np.ndarray,
    group_nodes: np.ndarray,
    dup: PairTable,
    edges: np.ndarray,
    by_node: dict[int, int],
    files: list[str],
    splits: list[str | None],
    context: dict[str, Any],
    params: DuplicateParams,
) -> Finding:
    """A group's finding. Score: closeness x (1 - 1/size) lies in [0, 1); a leak adds 1, so every leak ranks
    above every plain group, and within each, bigger and closer groups come first.

    Split names and file paths come from the dataset: they stay in ``evidence``/``detail`` as data, never in
    the title or description.
    """
    size = len(group_nodes)
    gsplits = [splits[by_node[int(i)]] for i in group_nodes]
    named = {s for s in gsplits if s is not None}
    leak = len(named) > 1
    cos_e, ham_e = dup.cosine[edges], dup.hamming[edges]
    ea = [by_node[int(i)] for i in dup.a[edges]]
    eb = [by_node[int(i)] for i in dup.b[edges]]
    cross = np.array(
        [splits[i] != splits[j] and splits[i] is not None and splits[j] is not None for i, j in zip(ea, eb)], bool
    )
    close = params.similarity(cos_e, ham_e)
    order = np.lexsort((-close, ~cross))[:_MAX_LISTED_PAIRS]  # cross-split pairs first, then the closest
    pairs = [[files[ea[i]], files[eb[i]]] for i in order]
    closeness = float(np.mean(close)) if len(close) else 0.0
    evidence = {
        **context,
        "size": size,
        "pairs": int(len(edges)),
        "leakage": leak,
        "splits": _split_counts(gsplits),
        "cross_split_pairs": int(cross.sum()),
        "closeness": round(closeness, 4),
        "lowest_cosine": None if np.isnan(cos_e).all() else round(float(np.nanmin(cos_e)), 4),
        "highest_hamming": None if (ham_e < 0).all() else int(ham_e[ham_e >= 0].max()),
        "found_by": {
            "neighbours": int(np.count_nonzero(dup.source[edges] & FROM_NEIGHBOURS)),
            "hashes": int(np.count_nonzero(dup.source[edges] & FROM_HASHES)),
        },
    }
    listed = group_nodes[:_MAX_LISTED_FILES]
    detail = {
        "pairs": pairs,
        "similarity": [
            {
                "cosine": None if np.isnan(cos_e[i]) else round(float(cos_e[i]), 4),
                "hamming": None if ham_e[i] < 0 else int(ham_e[i]),
            }
            for i in order
        ],
        "files": [files[by_node[int(i)]] for i in listed],
        "splits": [splits[by_node[int(i)]] for i in listed],
        "leakage": leak,
        "cross_split_pairs": [pairs[r] for r, i in enumerate(order) if cross[i]],
    }
    where = f" across {len(named)} splits (leak)" if leak else ""
    description = f"{size} images are near-copies of each other by {_signal_words(context['signals'])}" + (
        "; they lie in different splits, so evaluation sees images close to training ones." if leak else "."
    )
    return Finding(
        kind="near_duplicate",
        title=f"{size} near-identical images{where}",
        score=round(closeness * (1 - 1 / size) + (1.0 if leak else 0.0), 6),
        description=description,
        definition="images every two of which are near-duplicates (complete linkage of accepted pairs)",
        evidence=evidence,
        sample_ids=[int(nodes[i]) for i in group_nodes],
        detail=detail,
    )
