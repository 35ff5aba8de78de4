"""The embedding map: every sample as a point of its stored 2-D projection, rasterized by Datashader.

Datashader keeps a million points cheap to draw: the server aggregates them into one image the size of the plot
and re-aggregates on every zoom, so the browser never receives the points themselves. The colour layer is shaded
on the server into one RGBA image rather than colour-mapped in the browser, because a categorical ``rasterize``
alone ships one full-size layer per category over the websocket on every zoom (20 MB for ten categories).

Lasso and box selections arrive as geometry only (no per-point selection on an image); the ids inside are found
here with vectorised shapely / numpy and written to ``state.selection``, which narrows every other view.

A map over ``map_parquet_threshold`` points is not loaded at all: its ``LargeMap`` (``map_dask``) keeps x/y in
the Parquet copy written with the projection and hands Datashader a Dask frame; the same functions below take
either and give the same ids.
"""

from __future__ import annotations

import base64
import logging
import posixpath
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import datashader as dsh
import datashader.transfer_functions as tf
import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401 - registers the bokeh options the plot sets, without hv.extension
import numpy as np
import pandas as pd
import panel as pn
import param
import pyarrow as pa
import pyarrow.compute as pc
import shapely
import xarray as xr
from holoviews.operation.datashader import dynspread, rasterize, shade, spread
from panel.viewable import Viewer

from .. import media
from ..errors import VisionLensError
from ..store.metadata import MetadataStore
from . import icons, resources
from .colors import PALETTE
from .html import el, md, text
from .jobs import Jobs, executor
from .map_dask import LargeMap, open_large_map
from .overlays import url_prefix
from .routes import thumb_url
from .state import AppState

__all__ = [
    "ColorBy",
    "FrameCache",
    "MapView",
    "color_options",
    "error_status",
    "highlight_frame",
    "ids_in_bounds",
    "ids_in_polygon",
    "load_map",
    "load_points",
    "mix_categories",
    "nearest_index",
    "point_colors",
    "render_static",
    "shade_categories",
    "warm_up",
]

log = logging.getLogger(__name__)

ColorBy = tuple[str, str | None]
"""("label", None): most frequent GT label; ("field", name): a categorical sample field; ("errors", eval key)."""

MAX_CATEGORIES = 20  # more colours than this are not told apart on a map; the rest become "other"
OTHER = "(other)"
MISSING = "(none)"
DIM_COLOR = "#d4d4d4"
ERROR_COLORS = {
    "FP and FN": "#d62728",
    "has FP": "#ff7f0e",
    "has FN": "#9467bd",
    "clean": "#2ca02c",
    "not evaluated": "#8c8c8c",
}
_FIXED_COLORS = {OTHER: "#8c8c8c", MISSING: "#5f5f5f"}
# Datashader settings shared by the view and the benchmark, so the benchmark times what users see.
SPREAD = {"threshold": 0.9, "max_px": 3}  # dynspread's density test stops early on tight clusters; 0.9 still spreads
SHADE = {"cnorm": "eq_hist", "min_alpha": 150}
# Fixed dot radius (px) by map size: dynspread leaves isolated points of a small map at one pixel.
FIXED_SPREAD = ((5_000, 3), (50_000, 2))
SMALL_MAP_MAX = FIXED_SPREAD[-1][0]
PLOT_HEIGHT = 640
CACHED_FRAMES = 24
"""Maps (method x colouring) a session keeps: switching back and forth between colourings costs no reload."""
CACHED_BYTES = 256 * 2**20
"""...but never more memory than this per session: a million-point map is about 18 MB."""
_warm = threading.Event()


class FrameCache:
    """A small LRU of loaded maps, bounded in count and bytes; every access holds its lock.

    Frames are put on the session's loop and read there, but a map job and a new dataset may come from other
    threads in a notebook: the lock keeps the order and the bound exact whatever the thread.
    """

    def __init__(self, max_items: int = CACHED_FRAMES, max_bytes: int = CACHED_BYTES) -> None:
        self.max_items, self.max_bytes = max_items, max_bytes
        self._lock = threading.Lock()
        self._frames: OrderedDict[Hashable, tuple[pd.DataFrame, int]] = OrderedDict()
        self._bytes = 0

    def get(self, key: Hashable) -> pd.DataFrame | None:
        with self._lock:
            hit = self._frames.get(key)
            if hit is None:
                return None
            self._frames.move_to_end(key)
            return hit[0]

    def put(self, key: Hashable, frame: pd.DataFrame | LargeMap) -> None:
        size = frame.nbytes if isinstance(frame, LargeMap) else int(frame.memory_usage(index=True, deep=False).sum())
        with self._lock:
            old = self._frames.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._frames[key] = (frame, size)
            self._bytes += size
            while len(self._frames) > 1 and (len(self._frames) > self.max_items or self._bytes > self.max_bytes):
                _, (_, dropped) = self._frames.popitem(last=False)
                self._bytes -= dropped

    def drop(self, predicate: Callable[[Hashable], bool]) -> None:
        """Forget the frames whose key matches (e.g. colourings by an evaluation that was just re-run)."""
        with self._lock:
            for key in [k for k in self._frames if predicate(k)]:
                self._bytes -= self._frames.pop(key)[1]

    def clear(self) -> None:
        with self._lock:
            self._frames.clear()
            self._bytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes


# -- data -------------------------------------------------------------------------------------------------------


def color_options(store: MetadataStore, dataset_id: int) -> dict[str, ColorBy]:
    """What a map can be coloured by: GT label, categorical sample fields, and each evaluation's error status."""
    fields = store.fields(dataset_id)
    options: dict[str, ColorBy] = {"label (most frequent GT)": ("label", None)}
    for name, info in fields.items():
        if info.level == "sample" and info.kind == "categorical":
            options[name] = ("field", name)
    for ev in store.evaluations(dataset_id):
        key = ev["key"]
        if f"{key}.fp" in fields and f"{key}.fn" in fields:
            options[f"errors of {key}"] = ("errors", key)
    return options


def _categorize(values: pa.ChunkedArray | pa.Array, max_categories: int = MAX_CATEGORIES) -> pd.Categorical:
    """Most frequent values first (they get the most distinct colours), the tail folded into "other"."""
    arr = pc.fill_null(pc.cast(values, pa.string()), MISSING)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    enc = arr.dictionary_encode()
    names = enc.dictionary.to_pylist()
    codes = enc.indices.to_numpy(zero_copy_only=False)
    counts = np.bincount(codes, minlength=len(names))
    order = sorted(range(len(names)), key=lambda i: (names[i] == MISSING, -counts[i], names[i]))
    keep = order if len(order) <= max_categories else order[: max_categories - 1]
    remap = np.full(max(len(names), 1), len(keep), np.int16)
    remap[np.asarray(keep, np.int64)] = np.arange(len(keep), dtype=np.int16)
    cats = [names[i] for i in keep] + ([OTHER] if len(keep) < len(names) else [])
    return pd.Categorical.from_codes(remap[codes], cats)


def error_status(fp: np.ndarray, fn: np.ndarray) -> pd.Categorical:
    """Per-sample outcome of an evaluation from its stored FP/FN counts (NaN: the sample was not evaluated)."""
    fp, fn = np.asarray(fp, np.float64), np.asarray(fn, np.float64)
    has_fp, has_fn = fp > 0, fn > 0
    codes = np.select([np.isnan(fp) | np.isnan(fn), has_fp & has_fn, has_fp, has_fn], [4, 0, 1, 2], default=3)
    return pd.Categorical.from_codes(codes.astype(np.int8), list(ERROR_COLORS)).remove_unused_categories()


def _point_colors(
    store: MetadataStore, dataset_id: int, method: str, color: ColorBy, coords: bool = True
) -> tuple[pa.Table, pd.Categorical]:
    """The stored map in sample_id order (with x and y unless ``coords`` is false) and each point's category."""
    kind, name = color
    if kind == "errors":
        fp = store.projection(dataset_id, method, f"{name}.fp", coords=coords)
        fn = store.projection(dataset_id, method, f"{name}.fn", coords=coords)
        if not fp["sample_id"].equals(fn["sample_id"]):
            raise VisionLensError(f"the map of {method!r} changed while it was read; try again")
        table = fp
        as_float = [np.asarray(pc.fill_null(pc.cast(t["color"], pa.float64()), np.nan)) for t in (fp, fn)]
        colors = error_status(*as_float)
    else:
        table = store.projection(dataset_id, method, "label" if kind == "label" else name, coords=coords)
        colors = _categorize(table["color"])
    return table, colors


def load_points(store: MetadataStore, dataset_id: int, method: str, color: ColorBy) -> pd.DataFrame:
    """The map of one dataset as a frame sorted by sample_id: sample_id, x, y, color (categorical)."""
    table, colors = _point_colors(store, dataset_id, method, color)
    return pd.DataFrame(
        {
            "sample_id": table["sample_id"].to_numpy().astype(np.int64, copy=False),
            "x": table["x"].to_numpy().astype(np.float32, copy=False),
            "y": table["y"].to_numpy().astype(np.float32, copy=False),
            "color": colors,
        }
    )


def load_map(store: MetadataStore, dataset_id: int, method: str, color: ColorBy) -> pd.DataFrame | LargeMap:
    """A map over ``map_parquet_threshold`` points stays in its Parquet copy (Dask); any other is read into pandas."""

    def colors() -> tuple[np.ndarray, pd.Categorical]:
        table, cats = _point_colors(store, dataset_id, method, color, coords=False)
        return table["sample_id"].to_numpy(), cats

    large = open_large_map(store, dataset_id, method, colors)
    return large if large is not None else load_points(store, dataset_id, method, color)


def categories_of(frame: pd.DataFrame | LargeMap) -> list[str]:
    """The colour categories of a map, most frequent first."""
    return list(frame.categories) if isinstance(frame, LargeMap) else list(frame["color"].cat.categories)


def point_colors(categories: list[str], kind: str) -> dict[str, str]:
    """Colours in category order, so the most frequent categories get the most distinct palette entries.

    Not ``label_color``: its hash puts two of twenty categories on the same colour far too often for a legend.
    """
    if kind == "errors":
        return {c: ERROR_COLORS[c] for c in categories}
    palette = iter(PALETTE * (1 + len(categories) // len(PALETTE)))
    return {c: _FIXED_COLORS[c] if c in _FIXED_COLORS else next(palette) for c in categories}


# -- geometry ---------------------------------------------------------------------------------------------------


def ids_in_polygon(frame: pd.DataFrame | LargeMap, vertices: np.ndarray) -> np.ndarray:
    """Sample ids strictly inside a lasso polygon: a bounding-box cut in numpy, then shapely 2's ``contains_xy``
    (on each Parquet partition of a large map)."""
    if isinstance(frame, LargeMap):
        return frame.ids_in_polygon(vertices)
    vertices = np.asarray(vertices, np.float64).reshape(-1, 2)
    vertices = vertices[np.isfinite(vertices).all(axis=1)]
    if len(vertices) < 3 or not len(frame):
        return np.zeros(0, np.int64)
    poly = shapely.Polygon(vertices)
    if not poly.is_valid:  # a lasso that crosses itself: keep every enclosed part
        poly = shapely.make_valid(poly)
    shapely.prepare(poly)
    x, y = frame["x"].to_numpy(), frame["y"].to_numpy()
    x0, y0, x1, y1 = poly.bounds
    cand = np.flatnonzero((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1))
    inside = shapely.contains_xy(poly, x[cand].astype(np.float64), y[cand].astype(np.float64))
    return frame["sample_id"].to_numpy()[cand[inside]]


def ids_in_bounds(frame: pd.DataFrame | LargeMap, bounds: tuple[float, float, float, float]) -> np.ndarray:
    """Sample ids inside a box selection (left, bottom, right, top), edges included."""
    if isinstance(frame, LargeMap):
        return frame.ids_in_bounds(bounds)
    left, bottom, right, top = (float(b) for b in bounds)
    x, y = frame["x"].to_numpy(), frame["y"].to_numpy()
    mask = (x >= min(left, right)) & (x <= max(left, right)) & (y >= min(bottom, top)) & (y <= max(bottom, top))
    return frame["sample_id"].to_numpy()[mask]


def nearest_index(frame: pd.DataFrame, x: float, y: float) -> int | None:
    """Row of the point closest to a tap (plain Euclidean distance in map coordinates)."""
    if not len(frame):
        return None
    dx = frame["x"].to_numpy(np.float64) - float(x)
    dy = frame["y"].to_numpy(np.float64) - float(y)
    return int(np.argmin(dx * dx + dy * dy))


def highlight_frame(frame: pd.DataFrame | LargeMap, result_ids: np.ndarray) -> Any:
    """The points of the current result, drawn in colour over the grey map (a lazy Dask frame for a large map).

    Never empty: Datashader fails on an empty categorical frame, so no match becomes one NaN point (never drawn)
    that still carries every category.
    """
    if isinstance(frame, LargeMap):
        return frame.highlight(result_ids)
    ids = frame["sample_id"].to_numpy()
    mask = np.isin(ids, np.asarray(result_ids, np.int64))
    sub = frame.loc[mask, ["x", "y", "color"]]
    if len(sub):
        return sub
    empty = frame.loc[:, ["x", "y", "color"]].iloc[:1].copy()
    if not len(empty):
        empty = pd.DataFrame(
            {
                "x": [np.nan],
                "y": [np.nan],
                "color": pd.Categorical([None], categories=list(frame["color"].cat.categories)),
            }
        )
    empty[["x", "y"]] = np.nan
    return empty


# -- plot -------------------------------------------------------------------------------------------------------


def _spread(obj: Any, n_points: int, **kwargs: Any) -> Any:
    """Make points visible: fixed-size dots on small maps, density-dependent spreading on large ones."""
    for most, px in FIXED_SPREAD:
        if n_points <= most:
            return spread(obj, px=px, **kwargs)
    return dynspread(obj, **SPREAD, **kwargs)


def _base_layer(frame: pd.DataFrame | LargeMap) -> hv.DynamicMap:
    points = hv.Points(frame.xy() if isinstance(frame, LargeMap) else frame[["x", "y"]], _kdims(frame))
    grey = rasterize(points, aggregator=dsh.count())
    return _spread(grey, len(frame)).opts(cmap=[DIM_COLOR], nodata=0, colorbar=False, backend="bokeh")


class shade_categories(shade):
    """``shade`` with a fast path for categorical counts: the colour of a pixel is the count-weighted mean of its
    categories' colours, its opacity the histogram-equalised total (Datashader's picture).

    Datashader's own categorical shader works in float64 with NaN bookkeeping per category layer: ~110 ms for ten
    categories at 800x600 on a 2-core box, most of a zoom's budget. This is one float32 matrix product over the
    non-empty pixels (~30 ms) and reuses Datashader's ``eq_hist``. Anything else goes to ``shade`` unchanged.
    """

    def _process(self, element: Any, key: Any = None) -> Any:
        if not isinstance(element, hv.ImageStack) or not isinstance(self.p.color_key, dict):
            return super()._process(element, key)
        if element.interface.datatype != "xarray":
            element = element.clone(datatype=["xarray"])
        array = self._extract_data(element)
        names = [vd.name for vd in element.vdims]
        colors = [self.p.color_key.get(n, _FIXED_COLORS[OTHER]) for n in names]
        image = mix_categories(np.asarray(array.data), colors, self.p.min_alpha)
        xd, yd = element.kdims[:2]
        # RGBA bytes of the packed image; empty pixels are already all-zero, so no masking pass is needed
        rgba = xr.DataArray(
            image.view(np.uint8).reshape(*image.shape, 4),
            dims=(yd.name, xd.name, "band"),
            coords={yd.name: array.coords[yd.name], xd.name: array.coords[xd.name], "band": [0, 1, 2, 3]},
        )
        params = dict(
            hv.core.util.get_param_values(element),
            kdims=element.kdims,
            bounds=element.bounds,
            vdims=hv.RGB.vdims[:],
            xdensity=element.xdensity,
            ydensity=element.ydensity,
        )
        return hv.RGB(rgba, **params)


def mix_categories(counts: np.ndarray, colors: list[str], min_alpha: float = 40) -> np.ndarray:
    """(height, width, categories) counts -> packed RGBA uint32 image, as ``datashader.transfer_functions.shade``
    lays it out (transparent where there are no points)."""
    counts = counts.reshape(counts.shape[0], counts.shape[1], -1)
    rgb = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in colors], np.float32).reshape(-1, 3)
    out = np.zeros(counts.shape[:2], np.uint32)
    total = np.einsum("ijk->ij", counts)  # ~8x faster than .sum(axis=2) over a short last axis
    filled = total > 0
    if not filled.any():
        return out
    weights = counts[filled].astype(np.float32)
    sums = total[filled]
    mix = (weights @ rgb) / sums[:, None].astype(np.float32)
    level = tf.eq_hist(sums)[0]
    lo, hi = float(level.min()), float(level.max())
    alpha = np.full(len(sums), 255.0) if hi <= lo else min_alpha + (255 - min_alpha) * (level - lo) / (hi - lo)
    r, g, b = (np.clip(mix[:, i], 0, 255).astype(np.uint32) for i in range(3))
    out[filled] = r | (g << 8) | (b << 16) | (np.clip(alpha, 0, 255).astype(np.uint32) << 24)
    return out


def _shaded(points: Any, colors: dict[str, str], **kwargs: Any) -> Any:
    """rasterize (count per category) then shade: ``datashade`` with the fast categorical shader."""
    agg = rasterize(points, aggregator=dsh.count_cat("color"), **kwargs)
    dynamic = kwargs.get("dynamic", True)
    return shade_categories(agg, color_key=colors, dynamic=dynamic, **SHADE)


def _color_layer(pipe: hv.streams.Pipe, colors: dict[str, str], frame: pd.DataFrame | LargeMap) -> hv.DynamicMap:
    kdims = _kdims(frame)
    points = hv.DynamicMap(lambda data: hv.Points(data, kdims, ["color"]), streams=[pipe])
    return _spread(_shaded(points, colors), len(frame))


def _kdims(frame: pd.DataFrame | LargeMap, margin: float = 0.04) -> list[hv.Dimension]:
    """Map axes whose range has a margin: the first image covers exactly that range, and without a margin the
    outermost points would be cut in half by its edge."""
    dims = []
    for i, axis in enumerate(("x", "y")):
        if isinstance(frame, LargeMap):  # bounds written with the Parquet copy: no pass over 10M points
            lo, hi = frame.bounds[2 * i], frame.bounds[2 * i + 1]
            pad = (hi - lo) * margin or 1.0
            dims.append(hv.Dimension(axis, range=(lo - pad, hi + pad)))
            continue
        values = frame[axis].to_numpy()
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
        pad = (hi - lo) * margin or 1.0
        dims.append(hv.Dimension(axis, range=(lo - pad, hi + pad)))
    return dims


def _warm_up_logged() -> None:
    try:
        warm_up()
    except Exception:  # noqa: BLE001 - only a head start: the first zoom compiles instead
        log.warning("map warm-up failed", exc_info=True)


def warm_up() -> None:
    """Compile Datashader's numba kernels (aggregation, spreading: ~3 s) before the first user zooms."""
    if _warm.is_set():
        return
    _warm.set()
    rng = np.random.default_rng(0)
    for n in (100, SMALL_MAP_MAX + 1):
        frame = pd.DataFrame(
            {
                "x": rng.random(n, np.float32),
                "y": rng.random(n, np.float32),
                "color": pd.Categorical.from_codes(rng.integers(0, 2, n), ["a", "b"]),
            }
        )
        render_static(frame, {"a": "#000000", "b": "#ffffff"}, (0, 1), (0, 1), 64, 48)
        _spread(
            rasterize(
                hv.Points(frame, ["x", "y"]),
                aggregator=dsh.count(),
                dynamic=False,
                x_range=(0, 1),
                y_range=(0, 1),
                width=64,
                height=48,
            ),
            n,
            dynamic=False,
        )


def render_static(
    frame: pd.DataFrame | LargeMap,
    colors: dict[str, str],
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    width: int = 800,
    height: int = 600,
) -> hv.RGB:
    """The colour layer for one view box, computed right away: what one zoom costs the server (benchmarks)."""
    data = frame.colored() if isinstance(frame, LargeMap) else frame[["x", "y", "color"]]
    points = hv.Points(data, ["x", "y"], ["color"])
    shaded = _shaded(points, colors, dynamic=False, x_range=x_range, y_range=y_range, width=width, height=height)
    return _spread(shaded, len(frame), dynamic=False)


# -- the view ---------------------------------------------------------------------------------------------------


class MapView(Viewer):
    """Projection map with lasso/box selection into ``state.selection``, colour-by with legend, tap to preview."""

    state = param.ClassSelector(class_=AppState)
    thumbnails = param.Selector(
        default="auto",
        objects=["auto", "route", "data"],
        doc="'route': the server's thumbnail URLs; 'data': inline data URIs (notebooks); "
        "'auto': route when served, data otherwise.",
    )

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._jobs = Jobs("map", state=self.state)
        self._frames = FrameCache()
        self._frame: pd.DataFrame | LargeMap | None = None
        self._key: tuple[int, str, ColorBy] | None = None
        self._want: tuple[int, str, ColorBy] | None = None
        self._pipe: hv.streams.Pipe | None = None
        self._streams: list[hv.streams.Stream] = []
        self._quiet = False
        self._method = pn.widgets.Select(label="Map", options=[], width=150)
        self._color = pn.widgets.Select(label="Colour by", options={}, width=220)
        self._count = pn.pane.HTML("", css_classes=["vl-map-count"], margin=(25, 10, 0, 10))
        self._reset = pn.widgets.Button(
            label="Reset selection",
            color="light",
            icon=icons.X,
            disabled=True,
            margin=(22, 10, 0, 10),
            css_classes=["vl-map-reset"],
        )
        self._message = pn.pane.Alert(
            "", alert_type="info", visible=False, sizing_mode="stretch_width", css_classes=["vl-map-message"]
        )
        self._plot = pn.pane.HoloViews(
            None, sizing_mode="stretch_width", height=PLOT_HEIGHT, linked_axes=False, css_classes=["vl-map-plot"]
        )
        self._thumb = pn.pane.HTML(
            "<small>Tap a point to see its image.</small>", width=250, css_classes=["vl-map-thumb"]
        )
        self._hint = pn.pane.HTML(
            "<small>Lasso or box select (toolbar) to narrow the grid to those samples; wheel to zoom.</small>",
            width=250,
        )
        self._body = pn.Row(self._plot, pn.Column(self._thumb, self._hint, width=260), sizing_mode="stretch_width")
        self._layout = pn.Column(
            pn.Row(self._method, self._color, self._count, self._reset, sizing_mode="stretch_width"),
            self._message,
            self._body,
            sizing_mode="stretch_width",
        )
        self._method.param.watch(self._on_choice, "value")
        self._color.param.watch(self._on_choice, "value")
        self._reset.on_click(lambda _: self.reset_selection())
        self.state.param.watch(self._on_dataset, "dataset")
        self.state.param.watch(self._on_evaluation, "evaluation")
        self.state.param.watch(self._on_result, "version")
        self.state.param.watch(self._show_count, ["selection", "count"])
        if "active_view" in self.state.param:  # tabs: load the points only once the map is on screen
            self.state.param.watch(self._on_active_view, "active_view")
        self._deferred = False
        # Resolved here, on the session's thread: worker threads have no current document or request.
        served = pn.state.curdoc is not None and pn.state.curdoc.session_context is not None
        self._thumb_mode = self.thumbnails if self.thumbnails != "auto" else ("route" if served else "data")
        self._prefix = url_prefix()
        if not _warm.is_set():
            executor("long").submit(_warm_up_logged)  # once per process, on the long lane: no user waits on it
        self._on_dataset()

    # -- public actions (the streams call these; tests and notebooks may too) ----------------------------------

    @property
    def frame(self) -> pd.DataFrame | LargeMap | None:
        """The points on screen now (sorted by sample_id), or None while there is no map; a ``LargeMap`` (points
        in Parquet, read through Dask) above ``map_parquet_threshold``."""
        return self._frame

    @property
    def colors(self) -> dict[str, str]:
        """Legend: category -> colour of the current colouring."""
        if self._frame is None:
            return {}
        return point_colors(categories_of(self._frame), self._color_by()[0])

    @property
    def highlighted(self) -> Any:
        """The points drawn in colour (the current result); the rest of the map is grey."""
        return None if self._pipe is None else self._pipe.data

    @property
    def streams(self) -> dict[str, hv.streams.Stream]:
        """The plot's lasso, box and tap streams (``stream.event(...)`` drives the view as a browser would)."""
        return dict(zip(("lasso", "box", "tap"), self._streams))

    @property
    def message(self) -> str:
        """What the view tells the user instead of (or above) the map, e.g. that there is no map yet."""
        return str(self._message.object) if self._message.visible else ""

    def select_polygon(self, vertices: np.ndarray) -> np.ndarray | None:
        """Lasso: select the samples inside; returns their ids."""
        if self._frame is None:
            return None
        ids = ids_in_polygon(self._frame, vertices)
        self.state.selection = ids
        return ids

    def select_bounds(self, bounds: tuple[float, float, float, float] | None) -> np.ndarray | None:
        """Box select: select the samples inside; returns their ids."""
        if self._frame is None or bounds is None:
            return None
        ids = ids_in_bounds(self._frame, bounds)
        self.state.selection = ids
        return ids

    def reset_selection(self) -> None:
        self.state.selection = None

    def tap(self, x: float | None, y: float | None) -> int | None:
        """Show the thumbnail of the point nearest to (x, y); returns its sample id."""
        found = self._preview(self._frame, self.state.ds, x, y)
        if found is None:
            return None
        self._thumb.object = found[1]
        return found[0]

    def _preview(
        self, frame: pd.DataFrame | LargeMap | None, ds: Any, x: float | None, y: float | None
    ) -> tuple[int, str] | None:
        """(sample id, preview HTML) of the point nearest to (x, y): reads the store, touches no widget or state."""
        if frame is None or ds is None or x is None or y is None:
            return None
        if isinstance(frame, LargeMap):
            hit = frame.nearest(x, y)
        else:
            row = nearest_index(frame, x, y)
            hit = None if row is None else (int(frame["sample_id"].iat[row]), str(frame["color"].iat[row]))
        if hit is None:
            return None
        sample_id, label = hit
        rows = ds.store.samples_by_id(ds.id, [sample_id]).to_pylist()
        if not rows:
            return None
        name = posixpath.basename(rows[0]["filepath"])
        src = text(self._thumb_src(ds.id, ds.root, rows[0]))
        return sample_id, (
            f'<div class="vl-map-preview" data-id="{sample_id}"><img src="{src}" alt="" '
            f'style="max-width:240px;max-height:240px;display:block;border-radius:4px">'
            f'<div class="vl-map-name" style="word-break:break-all">{el("b", name)}</div>'
            f"<small>sample {sample_id} · {text(label)}</small></div>"
        )

    def wait(self, timeout: float = 30.0) -> None:
        """Block until background work (loading, hit-tests) is done and applied, re-raising its first unexpected
        error: for tests and notebooks."""
        self._jobs.wait(timeout, raise_errors=True)

    # -- background work --------------------------------------------------------------------------------------

    def _submit(self, key: str, work: Callable[[], Any], on_done: Callable[[Any], None]) -> None:
        """Off the event loop (a 1M-point load or hit-test takes longer than a UI callback should); the result is
        applied on the session's loop, and only the latest job of each kind is."""
        self._jobs.submit(work, on_done, self._failed, key=key, name=f"map {key}")

    def _failed(self, exc: BaseException) -> None:
        self._plot.loading = False
        if isinstance(exc, VisionLensError):
            self._say(md(exc), "danger")
        else:
            self._say("the map failed to update; see the server log", "danger")

    def _say(self, markdown: str, kind: str = "info") -> None:
        """Show a message; data in ``markdown`` must already be escaped with ``html.md``."""
        self._message.param.update(object=markdown, alert_type=kind, visible=bool(markdown))

    # -- state -> view ----------------------------------------------------------------------------------------

    def _on_dataset(self, *_: Any) -> None:
        """A new dataset: new choices, empty cache, and a message instead of a plot when it has no map."""
        ds = self.state.ds
        self._frames.clear()
        self._frame = self._key = self._want = None
        self._thumb.object = "<small>Tap a point to see its image.</small>"
        if ds is None:
            self._set_choices([], {})
            self._no_map("No dataset yet: add one on the **Datasets** tab.")
            return
        methods = [m for m, _ in ds.store.projection_methods(ds.id)]
        self._set_choices(methods, color_options(ds.store, ds.id))
        if not methods:
            self._no_map(
                f"**{md(ds.name)}** has no map yet: run {el('code', f'visionlens embed {ds.name}')} to "
                "compute embeddings and its 2-D map, then reload this page."
            )
            return
        self._load()

    def _on_evaluation(self, *_: Any) -> None:
        """An evaluation may have just been stored or re-run: offer its error status, forget stale colourings."""
        ds = self.state.ds
        if ds is None or not self._method.options:
            return
        self._frames.drop(lambda k: k[2][0] == "errors")
        self._set_choices(list(self._method.options), color_options(ds.store, ds.id))
        if self._color_by()[0] == "errors":
            self._load()

    def _set_choices(self, methods: list[str], colors: dict[str, ColorBy]) -> None:
        self._quiet = True
        try:
            method = (
                self._method.value
                if self._method.value in methods
                else ("umap" if "umap" in methods else (methods[0] if methods else None))
            )
            color = (
                self._color.value
                if self._color.value in colors.values()
                else (next(iter(colors.values())) if colors else None)
            )
            self._method.param.update(options=methods, value=method)
            self._color.param.update(options=colors, value=color)
        finally:
            self._quiet = False

    def _no_map(self, markdown: str) -> None:
        self._plot.object = None
        self._body.visible = False
        self._method.disabled = self._color.disabled = True
        self._say(markdown, "info")
        self._show_count()

    def _color_by(self) -> ColorBy:
        return self._color.value or ("label", None)

    def _on_choice(self, *_: Any) -> None:
        if not self._quiet and self.state.ds is not None and self._method.value:
            self._load()

    def _on_screen(self) -> bool:
        view = getattr(self.state, "active_view", None)
        return view is None or str(view).lower() == "map"

    def _on_active_view(self, *_: Any) -> None:
        if self._deferred and self._on_screen():
            self._load()

    def _load(self) -> None:
        ds = self.state.ds
        if ds is None or not self._method.value:
            return
        self._deferred = not self._on_screen()
        if self._deferred:
            return  # a million points cost memory and a second of a worker: not for a map nobody looks at
        key = (ds.id, self._method.value, self._color_by())
        self._want = key
        self._method.disabled = self._color.disabled = False
        self._say("")
        self._body.visible = True
        cached = self._frames.get(key)
        if cached is not None:
            self._show(key, cached)
            return
        self._plot.loading = True
        store = ds.store
        self._submit("load", lambda: load_map(store, key[0], key[1], key[2]), lambda frame: self._loaded(key, frame))

    def _loaded(self, key: tuple[int, str, ColorBy], frame: pd.DataFrame | LargeMap) -> None:
        """On the session's loop: cache the new map and show it, unless the user picked another meanwhile."""
        self._plot.loading = False
        self._frames.put(key, frame)
        if key == self._want:
            self._show(key, frame)

    def _show(self, key: tuple[int, str, ColorBy], frame: pd.DataFrame | LargeMap) -> None:
        """A new frame: new plot and streams; the colour layer then follows the result through a Pipe.

        A large map starts in full colour (or grey under a filter) and gets its exact highlight from a job: finding
        the result among 10M ids on disk takes a second, too long for the event loop.
        """
        for stream in self._streams:
            stream.clear()
        self._frame, self._key = frame, key
        colors = point_colors(categories_of(frame), key[2][0])
        large = isinstance(frame, LargeMap)
        if large:
            first = frame.colored() if self.state.count >= len(frame) else frame.empty()
        else:
            first = highlight_frame(frame, self.state.result_ids)
        self._pipe = hv.streams.Pipe(data=first)
        color_layer = _color_layer(self._pipe, colors, frame)
        lasso = hv.streams.Lasso(source=color_layer)
        box = hv.streams.BoundsXY(source=color_layer)
        tap = hv.streams.Tap(source=color_layer)
        lasso.add_subscriber(self._on_lasso)
        box.add_subscriber(self._on_box)
        tap.add_subscriber(self._on_tap)
        self._streams = [lasso, box, tap]
        color_layer = color_layer.opts(
            show_legend=True,
            tools=["lasso_select", "box_select", "tap"],
            active_tools=["pan", "wheel_zoom"],
            backend="bokeh",
        )
        overlay = (_base_layer(frame) * color_layer).opts(
            responsive=True,
            height=PLOT_HEIGHT,
            xaxis=None,
            yaxis=None,
            toolbar="above",
            legend_position="right",
            legend_opts={"location": "top"},
            show_legend=True,
            title="",
            backend="bokeh",
        )
        self._plot.object = overlay
        self._show_count()
        if large:
            self._on_result()

    def _on_lasso(self, geometry: np.ndarray | None = None, **_: Any) -> None:
        frame = self._frame
        if geometry is not None and frame is not None:
            self._submit("select", lambda: ids_in_polygon(frame, geometry), lambda ids: self._select(frame, ids))

    def _on_box(self, bounds: tuple[float, float, float, float] | None = None, **_: Any) -> None:
        frame = self._frame
        if bounds is not None and frame is not None:
            self._submit("select", lambda: ids_in_bounds(frame, bounds), lambda ids: self._select(frame, ids))

    def _select(self, frame: pd.DataFrame | LargeMap, ids: np.ndarray) -> None:
        if frame is self._frame:  # else the map changed while the hit test ran
            self.state.selection = ids

    def _on_tap(self, x: float | None = None, y: float | None = None, **_: Any) -> None:
        frame, ds = self._frame, self.state.ds
        if x is not None and y is not None and frame is not None:
            self._submit("tap", lambda: self._preview(frame, ds, x, y), self._show_preview)

    def _show_preview(self, found: tuple[int, str] | None) -> None:
        if found is not None:
            self._thumb.object = found[1]

    def _on_result(self, *_: Any) -> None:
        """New result (filters or selection): recolour the points in it, leave the rest grey."""
        frame, pipe, ids = self._frame, self._pipe, self.state.result_ids
        if frame is not None and pipe is not None:
            self._submit(
                "highlight",
                lambda: highlight_frame(frame, ids),
                lambda data: pipe.send(data) if frame is self._frame and pipe is self._pipe else None,
            )

    def _show_count(self, *_: Any) -> None:
        sel = self.state.selection
        self._reset.disabled = sel is None
        if sel is None:
            n = 0 if self._frame is None else len(self._frame)
            shown = f" · {self.state.count:,} in colour" if n and self.state.count < n else ""
            self._count.object = f"<small>{n:,} points{shown}</small>" if n else ""
        else:
            self._count.object = (
                f'<b class="vl-map-selected">{len(sel):,}</b> selected'
                f"<small> · {self.state.count:,} in the grid</small>"
            )

    def _thumb_src(self, ds_id: int, root: str, row: dict[str, Any]) -> str:
        if self._thumb_mode == "route":
            return thumb_url(ds_id, row["id"], prefix=self._prefix)
        result = resources.thumbnails().get(media.join(root, row["filepath"]), row["id"])
        return "data:image/jpeg;base64," + base64.b64encode(result.data).decode()

    def __panel__(self) -> pn.Column:
        return self._layout
