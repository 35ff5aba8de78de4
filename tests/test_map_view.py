"""The map view on a real store: selections into the session state, colourings, tap preview, no-map message.

Projections are written with known coordinates (no UMAP), and the streams are driven with ``event(...)`` as the
browser's lasso/box/tap tools would; one browser test checks the served app draws the datashaded map.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.browser_helpers import ARTIFACTS, chromium, serve_app
from visionlens.query import FieldFilter, Filters
from visionlens.ui.map_view import (
    ERROR_COLORS,
    MapView,
    highlight_frame,
    ids_in_bounds,
    ids_in_polygon,
    load_points,
    mix_categories,
    nearest_index,
    point_colors,
)
from visionlens.ui.state import AppState

ROOT = Path(__file__).resolve().parents[1]


def _coords(ids: np.ndarray, seed: int = 0) -> np.ndarray:
    """Known, distinct map coordinates: a few clusters in a 100x100 box."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform(15, 85, (4, 2))
    return centers[np.arange(len(ids)) % 4] + rng.normal(0, 9, (len(ids), 2))


@pytest.fixture
def mapped(demo_ds):
    ids = demo_ds.sample_ids()
    xy = _coords(ids)
    demo_ds.store.write_projection(demo_ds.id, "pca", "test", ids, xy)
    return demo_ds, ids, xy


@pytest.fixture
def view(mapped, store):
    state = AppState(store, dataset="demo")
    v = MapView(state=state)
    v.wait()
    return v


def _crossing_inside(px: float, py: float, poly: np.ndarray) -> bool:
    """Textbook even-odd ray casting: an independent referee for the vectorised hit test."""
    inside = False
    n = len(poly)
    for i in range(n):
        (x1, y1), (x2, y2) = poly[i], poly[(i + 1) % n]
        if (y1 > py) != (y2 > py) and px < (x2 - x1) * (py - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside


def _star(cx: float, cy: float, r_out: float, r_in: float, points: int = 10) -> np.ndarray:
    """A concave 20-vertex polygon, so a bounding-box shortcut alone would be wrong."""
    angles = np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, r_out, r_in)
    return np.column_stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)])


def test_lasso_selects_exactly_the_points_inside(view, mapped):
    ds, ids, xy = mapped
    poly = _star(50, 50, 45, 18)
    expected = {int(i) for i, (x, y) in zip(ids, xy.astype(np.float32)) if _crossing_inside(float(x), float(y), poly)}
    assert 0 < len(expected) < len(ids)
    view.streams["lasso"].event(geometry=poly)
    view.wait()
    st = view.state
    assert st.selection is not None and set(st.selection.tolist()) == expected
    assert st.count == len(expected) and set(st.result_ids.tolist()) == expected
    assert set(view.frame.loc[view.highlighted.index, "sample_id"]) == expected  # the rest is drawn grey
    view.reset_selection()
    view.wait()
    assert st.selection is None and st.count == len(ids)
    assert len(view.highlighted) == len(ids)


def test_box_selection_respects_active_filters(view, mapped):
    ds, ids, xy = mapped
    st = view.state
    st.set_field_filter("split", FieldFilter(field="split", values=("val",)))
    view.wait()
    val = set(ds.sample_ids(Filters(fields=(FieldFilter(field="split", values=("val",)),))).tolist())
    assert len(view.highlighted) == len(val) == st.count  # filtered out points are grey, the rest in colour
    bounds = (20.0, 10.0, 70.0, 60.0)
    inside = {int(i) for i, (x, y) in zip(ids, xy.astype(np.float32)) if 20 <= x <= 70 and 10 <= y <= 60}
    view.streams["box"].event(bounds=bounds)
    view.wait()
    assert set(st.selection.tolist()) == inside
    assert st.count == len(inside & val) < len(inside)
    assert "selected" in view._count.object and f"{len(inside):,}" in view._count.object
    view._reset.clicks += 1  # the button, as a user would
    assert st.selection is None and st.count == len(val)


def test_pure_hit_tests_and_nearest():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "sample_id": np.arange(10, 5010, dtype=np.int64),
            "x": rng.uniform(0, 10, 5000).astype(np.float32),
            "y": rng.uniform(0, 10, 5000).astype(np.float32),
            "color": pd.Categorical(["a"] * 5000),
        }
    )
    square = np.array([[2, 2], [6, 2], [6, 6], [2, 6]], float)
    got = ids_in_polygon(frame, square)
    x, y = frame["x"].to_numpy(), frame["y"].to_numpy()
    assert set(got) == set(frame["sample_id"][(x > 2) & (x < 6) & (y > 2) & (y < 6)])
    assert set(ids_in_bounds(frame, (6, 6, 2, 2))) == set(got)  # corners in either order
    bowtie = np.array([[0, 0], [10, 10], [10, 0], [0, 10]], float)  # a lasso that crosses itself
    crossed = ids_in_polygon(frame, bowtie)
    assert 0 < len(crossed) < len(frame)
    assert len(ids_in_polygon(frame, square[:2])) == 0
    k = nearest_index(frame, 3.3, 7.1)
    d = (x - 3.3) ** 2 + (y - 7.1) ** 2
    assert k == int(np.argmin(d))
    empty = highlight_frame(frame, np.array([], np.int64))
    assert len(empty) == 1 and empty["x"].isna().all() and list(empty["color"].cat.categories) == ["a"]


def test_fast_categorical_shading_matches_datashader():
    import datashader as dsh
    import datashader.transfer_functions as tf

    rng = np.random.default_rng(5)
    n = 30_000
    cats = [f"c{i}" for i in range(6)]
    frame = pd.DataFrame(
        {
            "x": rng.normal(0, 1, n),
            "y": rng.normal(0, 1, n),
            "color": pd.Categorical.from_codes(rng.integers(0, 6, n), cats),
        }
    )
    colors = point_colors(cats, "field")
    agg = dsh.Canvas(120, 90).points(frame, "x", "y", dsh.count_cat("color"))
    ref = np.asarray(tf.shade(agg, color_key=colors, how="eq_hist", min_alpha=150).data)
    ours = mix_categories(np.asarray(agg.data), list(colors.values()), 150)
    unpack = lambda a: np.stack([(a >> s) & 255 for s in (0, 8, 16, 24)], -1).astype(int)  # noqa: E731
    r, o = unpack(ref), unpack(ours)
    assert np.array_equal(r[..., 3] > 0, o[..., 3] > 0)
    filled = r[..., 3] > 0
    assert np.abs(r[filled] - o[filled]).max() <= 2
    assert not mix_categories(np.zeros((4, 5, 2), np.uint32), ["#000000", "#ffffff"]).any()


def test_colour_by_label_field_and_error_status(view, mapped):
    ds, ids, _ = mapped
    frame = view.frame
    assert frame["sample_id"].tolist() == sorted(ids.tolist())
    # most frequent GT label per sample, computed here from the annotations
    anns = ds.annotations(ids, sources=["ground_truth"])
    counts = anns.groupby(["sample_id", "label"]).size()
    colour = frame.set_index("sample_id")["color"]
    for sid in ids.tolist():
        if sid not in counts.index.get_level_values(0):
            assert colour[sid] == "(none)"
            continue
        per = counts.loc[sid]
        assert colour[sid] in set(per[per == per.max()].index)  # ties may go either way
    assert set(view.colors) == set(frame["color"].cat.categories) and len(set(view.colors.values())) == len(view.colors)

    view._color.value = ("field", "split")
    view.wait()
    splits = {v for v, _ in ds.value_counts("split")}
    assert set(view.frame["color"].cat.categories) == splits
    val_ids = set(ds.sample_ids({"fields": [{"field": "split", "values": ["val"]}]}).tolist())
    assert set(view.frame.loc[view.frame["color"] == "val", "sample_id"]) == val_ids

    assert not any(k == "errors" for k, _ in view._color.options.values())
    ds.evaluate("detector_a")
    view.state.evaluation = "detector_a"  # the app sets this when an evaluation is picked
    assert ("errors", "detector_a") in view._color.options.values()
    view._color.value = ("errors", "detector_a")
    view.wait()
    errors = view.frame.set_index("sample_id")["color"]
    fp = ds.samples(limit=1000).set_index("id")["detector_a.fp"]
    fn = ds.samples(limit=1000).set_index("id")["detector_a.fn"]
    assert set(errors.cat.categories) <= set(ERROR_COLORS)
    for sid, status in errors.items():
        expect = {(True, True): "FP and FN", (True, False): "has FP", (False, True): "has FN", (False, False): "clean"}[
            (fp[sid] > 0, fn[sid] > 0)
        ]
        assert status == expect
    assert view.colors == {c: ERROR_COLORS[c] for c in errors.cat.categories}

    import holoviews as hv

    fig = hv.render(view._plot.object)  # the legend is drawn by Bokeh from the colour key
    assert fig.legend and fig.legend[0].items


def test_tap_shows_the_nearest_sample(view, mapped):
    ds, ids, xy = mapped
    target = 17
    view.streams["tap"].event(x=float(xy[target, 0]) + 0.01, y=float(xy[target, 1]) - 0.01)
    view.wait()
    name = ds.samples(limit=1000).set_index("id").loc[int(ids[target]), "filepath"].rsplit("/", 1)[-1]
    html = view._thumb.object
    assert f'data-id="{int(ids[target])}"' in html and name in html
    assert 'src="data:image/jpeg;base64,' in html  # not served: the thumbnail is inlined


def test_dataset_without_map_shows_the_command_and_switching_is_safe(view, demo_files, store):
    import visionlens as vl

    vl.ingest(demo_files.root, "nomap", store=store)
    st = view.state
    st.param.dataset.objects = [d["name"] for d in store.list_datasets()]
    st.dataset = "nomap"
    view.wait()
    assert "visionlens embed nomap" in view.message and view.frame is None
    assert view.select_polygon(_star(50, 50, 40, 20)) is None and st.selection is None
    assert view.tap(1.0, 1.0) is None
    st.dataset = "demo"
    view.wait()
    assert view.message == "" and len(view.frame) == st.total and view._method.options == ["pca"]
    assert view.frame.equals(load_points(store, st.ds.id, "pca", ("label", None)))
    assert len(view.select_bounds((-1e9, -1e9, 1e9, 1e9))) == st.total == st.count


# -- the served app ---------------------------------------------------------------------------------------------

_MAP_SCRIPT = """
import numpy as np, visionlens as vl
ds = vl.load("demo")
ids = ds.sample_ids()
rng = np.random.default_rng(4)
centers = rng.uniform(-10, 10, (5, 2))
xy = centers[np.arange(len(ids)) % 5] + rng.normal(0, 1.2, (len(ids), 2))
ds.store.write_projection(ds.id, "umap", "test", ids, xy)
"""


@pytest.fixture(scope="module")
def map_server(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("maphome")
    env = {**os.environ, "VISIONLENS_HOME": str(home)}
    for args in (["-m", "visionlens.cli", "demo", "--n", "80", "--seed", "2"], ["-c", _MAP_SCRIPT]):
        out = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
    proc, base = serve_app(home)
    yield base + "/browse"
    proc.terminate()
    proc.wait(10)


def _colored_pixels(png: bytes) -> int:
    """Pixels that are neither white/grey background nor grey dimmed points: the coloured map."""
    import io

    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int(((rgb.max(axis=2) - rgb.min(axis=2)) > 60).sum())


def _wait_text(page, selector: str, predicate, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = page.locator(selector).first.inner_text()
            if predicate(text):
                return text
        except Exception:  # noqa: BLE001 - not rendered yet
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector} never matched")
        time.sleep(0.2)


@pytest.mark.browser
def test_map_tab_renders_datashaded_points_and_lasso_narrows_the_grid(map_server):
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1500, "height": 950})
        page.goto(map_server, timeout=60000)
        page.wait_for_selector(".vl-tile img", timeout=60000)
        page.locator(".bk-tab:text-is('Map')").click()
        plot = page.locator(".vl-map-plot").first
        plot.wait_for(state="visible", timeout=20000)
        deadline = time.monotonic() + 20
        while _colored_pixels(plot.screenshot()) < 300:  # the datashaded image arrived and was drawn
            assert time.monotonic() < deadline, "the map image never rendered"
            time.sleep(0.5)
        _wait_text(page, ".vl-count-n", lambda t: t.replace(",", "") == "80")

        page.locator(".bk-OnOffButton[title='Lasso Select']").first.click()
        box = plot.bounding_box()
        cx, cy, r = box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.55, box["height"] * 0.3
        page.mouse.move(cx + r, cy)
        page.mouse.down()
        for a in np.linspace(0, 2 * np.pi, 30)[1:]:
            page.mouse.move(cx + r * np.cos(a), cy + r * np.sin(a))
        page.mouse.up()
        n = int(_wait_text(page, ".vl-count-n", lambda t: int(t.replace(",", "")) < 80).replace(",", ""))
        assert n > 0
        _wait_text(page, ".vl-map-selected", lambda t: t == f"{n:,}")  # the map says how many it selected
        time.sleep(1.5)  # let the recoloured image arrive before the screenshot
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "map.png"))
        page.locator(".vl-map-reset button").first.click()
        _wait_text(page, ".vl-count-n", lambda t: t.replace(",", "") == "80")


def test_points_load_only_once_the_map_tab_is_shown(mapped, store):
    state = AppState(store, dataset="demo", active_view="Browse")
    view = MapView(state=state)
    view.wait()
    assert view.frame is None  # another tab is on screen: nothing loaded yet
    state.active_view = "Map"
    view.wait()
    assert view.frame is not None and len(view.frame) == state.total
