"""Maps past a few million points: x/y read from the map's Parquet copy through Dask on every aggregation.

Only one small code per point (its colour category, int8) and, while a filter narrows the result, one flag per
point live in memory; coordinates and ids stay on disk and are read partition by partition, so a 10M-point map
costs ~20 MB per colouring instead of a ~170 MB frame, and Datashader aggregates the partitions in parallel.

The colour is looked up by ``row`` (a point's rank by sample id, written into the Parquet) in the codes read
from DuckDB in sample-id order, so every colouring the small map offers works here too. Hit-tests run the small
map's own functions on each partition, so a lasso or box returns exactly the ids it would on a pandas frame.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .. import map_parquet
from ..config import get_settings
from ..errors import VisionLensError

if TYPE_CHECKING:
    import dask.dataframe as dd

    from ..store.metadata import MetadataStore

__all__ = ["LargeMap", "dask_available", "open_large_map"]


@functools.cache
def dask_available() -> bool:
    """The ``visionlens[dask]`` extra: without it every map is read into pandas, whatever its size. Imported,
    not just found: ``dask`` without its dataframe dependencies is installed but cannot read Parquet."""
    try:
        import dask.dataframe  # noqa: F401
    except ImportError:
        return False
    return True


class _Shared:
    """An array handed to every partition task; tokenised by identity, not by hashing 10 MB per render."""

    def __init__(self, value: np.ndarray | None) -> None:
        self.value = value
        self._token = uuid.uuid4().hex

    def __dask_tokenize__(self) -> str:
        return self._token


def _colored(part: pd.DataFrame, codes: _Shared, categories: list[str], mask: _Shared) -> pd.DataFrame:
    rows = part["row"].to_numpy()
    x, y = part["x"].to_numpy(), part["y"].to_numpy()
    if mask.value is not None:
        keep = mask.value[rows]
        rows, x, y = rows[keep], x[keep], y[keep]
    return pd.DataFrame(
        {"x": x, "y": y, "color": pd.Categorical.from_codes(codes.value[rows], categories, validate=False)}
    )


class _Members:
    """Set membership for sample ids: a flag table over the ids' range when that is compact (ids of one dataset
    mostly are: one lookup per point), else a sorted array and binary search."""

    def __init__(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, np.int64)
        self.low = int(ids.min())
        span = int(ids.max()) - self.low + 1
        self.table: np.ndarray | None = None
        self.sorted: np.ndarray | None = None
        if span <= 8 * len(ids) + 1_000_000:
            self.table = np.zeros(span, bool)
            self.table[ids - self.low] = True
        else:
            self.sorted = np.sort(ids)  # np.unique is no faster here and much slower on some numpy versions
        self._token = uuid.uuid4().hex

    def __dask_tokenize__(self) -> str:
        return self._token

    def contains(self, ids: np.ndarray) -> np.ndarray:
        if self.table is not None:
            offset = ids - self.low
            inside = (offset >= 0) & (offset < len(self.table))
            found = np.zeros(len(ids), bool)
            found[inside] = self.table[offset[inside]]
            return found
        pos = np.minimum(np.searchsorted(self.sorted, ids), len(self.sorted) - 1)
        return self.sorted[pos] == ids


def _member_rows(part: pd.DataFrame, wanted: _Members) -> pd.Series:
    """Rows of the partition whose sample id is wanted."""
    hit = wanted.contains(part["sample_id"].to_numpy())
    return pd.Series(part["row"].to_numpy()[hit].astype(np.int64))


def _hits(part: pd.DataFrame, test: Callable[[pd.DataFrame], np.ndarray]) -> pd.Series:
    return pd.Series(np.asarray(test(part), np.int64))


def _nearest(part: pd.DataFrame, x: float, y: float) -> pd.DataFrame:
    from .map_view import nearest_index

    k = nearest_index(part, x, y)
    if k is None:
        return pd.DataFrame({"d2": np.zeros(0), "sample_id": np.zeros(0, np.int64), "row": np.zeros(0, np.int64)})
    dx, dy = float(part["x"].iat[k]) - float(x), float(part["y"].iat[k]) - float(y)
    return pd.DataFrame(
        {"d2": [dx * dx + dy * dy], "sample_id": [int(part["sample_id"].iat[k])], "row": [int(part["row"].iat[k])]}
    )


@dataclass(eq=False)
class LargeMap:
    """One colouring of a map whose points stay in Parquet: what ``MapView`` shows instead of a pandas frame."""

    files: map_parquet.MapFiles
    codes: np.ndarray  # colour category per row (rank by sample id)
    categories: list[str]
    _codes: _Shared = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._codes = _Shared(self.codes)

    def __len__(self) -> int:
        return self.files.points

    @property
    def nbytes(self) -> int:
        return int(self.codes.nbytes)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return self.files.bounds

    def read(self, columns: list[str]) -> dd.DataFrame:
        """The Parquet files as a lazy Dask frame (one task per file; nothing is read until it is computed)."""
        import dask.dataframe as dd

        if not all(Path(p).is_file() for p in self.files.paths):
            raise VisionLensError("this map was recomputed meanwhile; pick it again to see the new one")
        return dd.read_parquet(self.files.paths, columns=columns, index=False)

    def xy(self) -> dd.DataFrame:
        return self.read(["x", "y"])

    def colored(self, mask: np.ndarray | None = None) -> dd.DataFrame:
        """x, y and the categorical colour, optionally only the rows flagged in ``mask`` (indexed by row)."""
        meta = pd.DataFrame(
            {
                "x": np.zeros(0, np.float32),
                "y": np.zeros(0, np.float32),
                "color": pd.Categorical.from_codes(np.zeros(0, np.int8), self.categories),
            }
        )
        return self.read(["x", "y", "row"]).map_partitions(
            _colored, self._codes, self.categories, _Shared(mask), meta=meta, enforce_metadata=False
        )

    def empty(self) -> pd.DataFrame:
        """One NaN point that carries every category: Datashader fails on an empty categorical frame."""
        return pd.DataFrame({"x": [np.nan], "y": [np.nan], "color": pd.Categorical([None], categories=self.categories)})

    def highlight(self, result_ids: np.ndarray) -> dd.DataFrame | pd.DataFrame:
        """The points of the current result in colour: every point, a flagged subset, or one invisible point.

        Flags are found partition by partition (``_Members``), so a 10M-point result costs one pass over the ids on
        disk and a 10 MB flag array, never a second copy of the coordinates.
        """
        wanted = np.asarray(result_ids, np.int64)
        if not len(wanted):
            return self.empty()
        rows = self._compute(self.read(["sample_id", "row"]).map_partitions(_member_rows, _Members(wanted), meta=_IDS))
        if len(rows) == len(self):
            return self.colored()
        if not len(rows):
            return self.empty()
        mask = np.zeros(len(self), bool)
        mask[rows] = True
        return self.colored(mask)

    def ids_in_polygon(self, vertices: np.ndarray) -> np.ndarray:
        from .map_view import ids_in_polygon

        vertices = np.asarray(vertices, np.float64).reshape(-1, 2)
        if len(vertices[np.isfinite(vertices).all(axis=1)]) < 3:
            return np.zeros(0, np.int64)
        return self._ids(lambda part: ids_in_polygon(part, vertices))

    def ids_in_bounds(self, bounds: tuple[float, float, float, float]) -> np.ndarray:
        from .map_view import ids_in_bounds

        return self._ids(lambda part: ids_in_bounds(part, bounds))

    def nearest(self, x: float, y: float) -> tuple[int, str] | None:
        """(sample id, colour category) of the point closest to (x, y); ties go to the lowest sample id."""
        meta = pd.DataFrame({"d2": np.zeros(0), "sample_id": np.zeros(0, np.int64), "row": np.zeros(0, np.int64)})
        best = self._compute(
            self.read(["sample_id", "x", "y", "row"]).map_partitions(_nearest, float(x), float(y), meta=meta)
        )
        if not len(best):
            return None
        k = int(np.argmin(best["d2"].to_numpy()))  # partitions come in sample-id order: the first minimum wins
        return int(best["sample_id"].iat[k]), self.categories[int(self.codes[int(best["row"].iat[k])])]

    def _ids(self, test: Callable[[pd.DataFrame], np.ndarray]) -> np.ndarray:
        """Sample ids a per-partition test returns, in sample-id order (as the pandas path returns them)."""
        found = self._compute(self.read(["sample_id", "x", "y"]).map_partitions(_hits, test, meta=_IDS))
        return np.asarray(found, np.int64)

    @staticmethod
    def _compute(frame: dd.DataFrame | dd.Series) -> Any:
        try:
            return frame.compute()
        except FileNotFoundError:
            raise VisionLensError("this map was recomputed meanwhile; pick it again to see the new one") from None


_IDS = pd.Series(np.zeros(0, np.int64))


def open_large_map(
    store: MetadataStore,
    dataset_id: int,
    method: str,
    colors: Callable[[], tuple[np.ndarray, pd.Categorical]],
) -> LargeMap | None:
    """The map from its Parquet copy when it has more points than ``map_parquet_threshold``, Dask is installed
    and the copy is the map DuckDB holds; None otherwise (the caller reads the map into pandas as before).

    A map stored before it had a copy (an older version, or a lower threshold now) gets one here, once: the same
    read of DuckDB the pandas path would make anyway. So does a copy whose digest is not that of the rows in
    DuckDB (a writer that died between the two, or an export that lost a race with a re-projection).

    ``colors()`` returns (sample ids sorted, their colour categories): it must list exactly the copy's points.
    """
    threshold = get_settings().map_parquet_threshold
    if not dask_available():
        return None
    stored, digest = store.projection_digest(dataset_id, method)
    if stored <= threshold:
        return None
    files = map_parquet.read_map(store.path, dataset_id, method)
    if files is None or files.digest != digest:  # none yet, or a copy of another map: a crash, a race
        table = store.projection(dataset_id, method)
        if store.projection_digest(dataset_id, method) != (stored, digest):
            raise VisionLensError(f"the map of {method!r} changed while it was read; try again")
        xy = np.column_stack([table["x"].to_numpy(), table["y"].to_numpy()])
        ids = table["sample_id"].to_numpy()
        files = map_parquet.write_map(store.path, dataset_id, method, ids, xy, digest=digest)
    ids, cats = colors()
    if len(ids) != files.points or int(np.asarray(ids, np.int64).sum()) != files.id_sum:
        raise VisionLensError(f"the map of {method!r} changed while it was read; try again")
    codes = np.asarray(cats.codes)
    return LargeMap(files, codes.astype(np.int8 if len(cats.categories) < 127 else np.int16), list(cats.categories))
