"""Large maps through Parquet and Dask, on a real DuckDB store with the threshold lowered to 1,000 points.

The Parquet copy is checked on disk (written, replaced by a new version on re-projection, removed below the
threshold and with its dataset), and the Dask path against the pandas path on the same stored map: per-pixel
counts from Datashader's Canvas, lasso/box ids, the nearest point and the highlighted result must be identical.
"""

from __future__ import annotations

import json

import datashader as dsh
import holoviews as hv
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from visionlens import map_parquet
from visionlens.formats.base import AnnotationRecords, ParsedDataset, SampleRecords
from visionlens.query import FieldFilter
from visionlens.ui.map_dask import LargeMap
from visionlens.ui.map_view import (
    MapView,
    highlight_frame,
    ids_in_bounds,
    ids_in_polygon,
    load_map,
    load_points,
    nearest_index,
)
from visionlens.ui.state import AppState

N = 3000
LABELS = ["car", "person", "dog", "cat", "bus"]


@pytest.fixture
def big(store, monkeypatch):
    """A 3,000-sample dataset (one GT box each, a custom field) with a clustered 'pca' map over the threshold."""
    monkeypatch.setenv("VISIONLENS_MAP_PARQUET_THRESHOLD", "1000")
    rng = np.random.default_rng(7)
    samples = SampleRecords(
        filepath=[f"{i}.jpg" for i in range(N)],
        width=np.full(N, 64, np.int32),
        height=np.full(N, 64, np.int32),
        split=list(rng.choice(["train", "val"], N, p=[0.7, 0.3])),
        ext_id=[str(i) for i in range(N)],
        missing=np.zeros(N, bool),
        custom={"weather": list(rng.choice(["clear", "rain", "fog"], N))},
    )
    boxes = AnnotationRecords(
        sample_index=np.arange(N),
        label_index=rng.integers(0, len(LABELS), N).astype(np.int32),
        bbox=np.tile([1.0, 1.0, 10.0, 10.0], (N, 1)),
    )
    ds_id = store.insert_dataset("big", ParsedDataset("coco", "/data", LABELS, samples, boxes))
    ids = store.sample_index(ds_id)[1]
    xy = _coords(len(ids), seed=0)
    shuffled = rng.permutation(len(ids))  # the writer must not rely on the caller's order
    store.write_projection(ds_id, "pca", "test", ids[shuffled], xy[shuffled])
    return store, ds_id, ids, xy


def _coords(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.uniform(15, 85, (5, 2))
    return centers[np.arange(n) % 5] + rng.normal(0, 8, (n, 2))


def _star(cx: float, cy: float, r_out: float, r_in: float, points: int = 9) -> np.ndarray:
    angles = np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, r_out, r_in)
    return np.column_stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)])


def _parquet(info: map_parquet.MapFiles) -> pd.DataFrame:
    return pd.concat([pq.read_table(p).to_pandas() for p in info.paths], ignore_index=True)


def test_parquet_copy_is_written_replaced_and_removed(big, tmp_path):
    import visionlens.cleanup as cleanup

    store, ds_id, ids, xy = big
    info = map_parquet.read_map(store.path, ds_id, "pca")
    assert (
        info is not None and info.points == N and info.folder.parent == store.path.parent / "maps" / str(ds_id) / "pca"
    )
    on_disk = _parquet(info)
    assert on_disk["sample_id"].tolist() == sorted(ids.tolist())  # sorted by id whatever order it was written in
    assert on_disk["row"].tolist() == list(range(N))
    assert info.digest == store.projection_digest(ds_id, "pca")[1] != 0  # this very map, as committed
    assert np.array_equal(on_disk[["x", "y"]].to_numpy(), xy.astype(np.float32))  # ids come sorted from the store
    assert info.bounds == pytest.approx((xy[:, 0].min(), xy[:, 0].max(), xy[:, 1].min(), xy[:, 1].max()), rel=1e-6)

    versions = [info.folder.name]
    for seed in (1, 2):  # re-projecting writes a new version and swaps the pointer; only one old version stays
        xy2 = _coords(N, seed)
        store.write_projection(ds_id, "pca", "test", ids, xy2)
        now = map_parquet.read_map(store.path, ds_id, "pca")
        assert now is not None and now.folder.name not in versions
        assert np.array_equal(_parquet(now)[["x", "y"]].to_numpy(), xy2.astype(np.float32))
        versions.append(now.folder.name)
    method_dir = map_parquet.map_dir(store.path, ds_id, "pca")
    assert sorted(p.name for p in method_dir.glob("v-*")) == sorted(versions[-2:])
    assert json.loads((method_dir / "current.json").read_text())["version"] == versions[-1]

    store.write_projection(ds_id, "pca", "test", ids[:800], xy[:800])  # below the threshold: no copy
    assert map_parquet.read_map(store.path, ds_id, "pca") is None and not method_dir.exists()
    assert isinstance(load_map(store, ds_id, "pca", ("label", None)), pd.DataFrame)
    assert not method_dir.exists()

    store.write_projection(ds_id, "pca", "test", ids, xy)
    store.write_projection(ds_id, "odd/../name", "test", ids, xy)  # a method name is never a path
    assert map_parquet.map_dir(store.path, ds_id, "odd/../name").parent == method_dir.parent
    assert map_parquet.read_map(store.path, ds_id, "odd/../name") is not None
    cleanup.delete_dataset("big", store=store)
    assert not (store.path.parent / "maps" / str(ds_id)).exists()


def test_replaced_or_crashed_datasets_leave_no_map_behind(big, demo_files):
    import visionlens as vl
    from visionlens.cleanup import find_orphans, fix_orphans

    store, ds_id, ids, xy = big
    demo = vl.ingest(demo_files.root, "demo", store=store)
    store.write_projection(demo.id, "pca", "test", demo.sample_ids(), _coords(len(demo.sample_ids()), 4))
    assert map_parquet.read_map(store.path, demo.id, "pca") is None  # 120 points: under the threshold
    map_parquet.write_map(store.path, demo.id, "pca", demo.sample_ids(), _coords(len(demo.sample_ids()), 4))
    old = map_parquet.map_dir(store.path, demo.id, "pca").parent
    vl.ingest(demo_files.root, "demo", store=store, replace=True)  # new ids: the old dataset's maps go
    assert not old.exists() and map_parquet.read_map(store.path, ds_id, "pca") is not None

    store.delete_dataset("big")  # DuckDB only, as if the process died before the map folder went
    report = find_orphans(store=store)
    stray = {k.kind: k for k in report.kinds}["stray_maps"]
    assert stray.count == 1 and stray.examples == [str(store.path.parent / "maps" / str(ds_id))]
    assert fix_orphans(report)["stray_maps"] == 1 and not (store.path.parent / "maps" / str(ds_id)).exists()


def test_a_map_stored_without_a_copy_gets_one_when_first_opened(big, monkeypatch):
    store, ds_id, ids, xy = big
    monkeypatch.setenv("VISIONLENS_MAP_PARQUET_THRESHOLD", "5000")  # as before this feature: no copy written
    store.write_projection(ds_id, "umap", "test", ids, xy)
    assert map_parquet.read_map(store.path, ds_id, "umap") is None
    assert isinstance(load_map(store, ds_id, "umap", ("label", None)), pd.DataFrame)
    monkeypatch.setenv("VISIONLENS_MAP_PARQUET_THRESHOLD", "1000")
    large = load_map(store, ds_id, "umap", ("label", None))
    assert isinstance(large, LargeMap) and map_parquet.read_map(store.path, ds_id, "umap") is not None
    assert np.array_equal(_parquet(large.files)[["x", "y"]].to_numpy(), xy.astype(np.float32))

    # a copy that is not of the rows in DuckDB (a writer died between the two; an export lost a race) is redone
    map_parquet.write_map(store.path, ds_id, "umap", ids, _coords(N, 9), digest=large.files.digest ^ 1)
    again = load_map(store, ds_id, "umap", ("label", None))
    assert isinstance(again, LargeMap) and again.files.digest == store.projection_digest(ds_id, "umap")[1]
    assert np.array_equal(_parquet(again.files)[["x", "y"]].to_numpy(), xy.astype(np.float32))


def test_dask_aggregates_the_same_pixels_as_pandas(big):
    store, ds_id, _, _ = big
    large = load_map(store, ds_id, "pca", ("field", "weather"))
    small = load_points(store, ds_id, "pca", ("field", "weather"))
    assert isinstance(large, LargeMap) and len(large) == len(small) == N
    assert large.categories == list(small["color"].cat.categories)
    canvas = dsh.Canvas(160, 120, x_range=(0, 100), y_range=(0, 100))
    counts_dask = canvas.points(large.xy(), "x", "y", dsh.count())
    counts_pandas = canvas.points(small, "x", "y", dsh.count())
    assert int(counts_dask.sum()) > N * 0.9 and np.array_equal(counts_dask.data, counts_pandas.data)
    by_cat_dask = canvas.points(large.colored(), "x", "y", dsh.count_cat("color"))
    by_cat_pandas = canvas.points(small, "x", "y", dsh.count_cat("color"))
    assert np.array_equal(by_cat_dask.data, by_cat_pandas.data)


def test_hit_tests_and_highlight_match_pandas_across_partitions(big):
    store, ds_id, ids, xy = big
    digest = store.projection_digest(ds_id, "pca")[1]
    map_parquet.write_map(store.path, ds_id, "pca", ids, xy, rows_per_file=700, digest=digest)  # five partitions
    large = load_map(store, ds_id, "pca", ("label", None))
    small = load_points(store, ds_id, "pca", ("label", None))
    assert isinstance(large, LargeMap) and len(large.files.files) == 5
    for poly in (_star(50, 50, 40, 15), _star(30, 70, 25, 10), np.array([[0, 0], [100, 100], [100, 0], [0, 100.0]])):
        expected = ids_in_polygon(small, poly)
        got = ids_in_polygon(large, poly)
        assert 0 < len(expected) < N and np.array_equal(got, expected)
    for bounds in ((20.0, 10.0, 70.0, 60.0), (90.0, 80.0, 10.0, 35.0)):
        expected = ids_in_bounds(small, bounds)
        assert 0 < len(expected) < N and np.array_equal(ids_in_bounds(large, bounds), expected)
    assert len(ids_in_polygon(large, np.array([[0, 0], [1, 1.0]]))) == 0
    for x, y in ((50.0, 50.0), (12.5, 90.0), (float(xy[123, 0]), float(xy[123, 1]))):
        row = nearest_index(small, x, y)
        assert large.nearest(x, y) == (int(small["sample_id"].iat[row]), str(small["color"].iat[row]))

    result = np.random.default_rng(3).choice(ids, 1100, replace=False)
    want = highlight_frame(small, result).reset_index(drop=True)
    got = highlight_frame(large, result).compute().reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    far = np.append(result, 10**12)  # ids spread too wide for a flag table: binary search instead
    pd.testing.assert_frame_equal(highlight_frame(large, far).compute().reset_index(drop=True), want, check_dtype=False)
    assert len(highlight_frame(large, ids).compute()) == N
    empty = highlight_frame(large, np.array([], np.int64))
    assert len(empty) == 1 and empty["x"].isna().all() and list(empty["color"].cat.categories) == large.categories


def test_map_view_draws_the_dask_map_and_its_selections_narrow_the_state(big):
    store, ds_id, ids, xy = big
    small = load_points(store, ds_id, "pca", ("label", None))
    state = AppState(store, dataset="big")
    view = MapView(state=state, thumbnails="route")
    view.wait()
    assert isinstance(view.frame, LargeMap) and len(view.frame) == N
    assert set(view.colors) == set(small["color"].cat.categories)
    fig = hv.render(view._plot.object)  # runs both layers' Datashader aggregations over the Dask frame
    assert fig.legend and fig.legend[0].items
    assert len(view.highlighted.compute()) == N  # no filter: every point in colour

    poly = _star(50, 50, 40, 15)
    view.streams["lasso"].event(geometry=poly)
    view.wait()
    expected = ids_in_polygon(small, poly)
    assert state.selection is not None and np.array_equal(np.sort(state.selection), expected)
    assert state.count == len(expected)
    assert len(view.highlighted.compute()) == len(expected)  # the rest is grey
    hv.render(view._plot.object)

    view.streams["box"].event(bounds=(20.0, 10.0, 70.0, 60.0))
    view.wait()
    assert np.array_equal(np.sort(state.selection), ids_in_bounds(small, (20.0, 10.0, 70.0, 60.0)))
    view.reset_selection()
    state.set_field_filter("split", FieldFilter(field="split", values=("val",)))
    view.wait()
    assert 0 < state.count < N and len(view.highlighted.compute()) == state.count

    target = 321
    view.streams["tap"].event(x=float(xy[target, 0]), y=float(xy[target, 1]))
    view.wait()
    assert f'data-id="{int(ids[target])}"' in view._thumb.object
