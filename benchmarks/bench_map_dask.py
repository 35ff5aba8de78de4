"""Map view speed at 10M points read from Parquet through Dask: cold first render, warm zooms, lasso to ids.

    .venv/bin/python benchmarks/bench_map_dask.py --n 10000000 --renders 20 --lassos 10

The points are ``bench_map``'s Gaussian clusters with a 10-category colour, written with
``visionlens.map_parquet.write_map`` (the files a projection over ``map_parquet_threshold`` gets) and opened as the
view's ``LargeMap``: x/y/row come from the Parquet files on every aggregation, only the colour codes are in memory.
"Cold" is a fresh Python process that imports the view, opens the map and draws the full view once (numba
compiles Datashader's kernels then); "warm" renders are the same HoloViews operations the view runs, on zoom
boxes from 1x to 30x. Hit-tests are checked against the pandas path on the same points. ``--pandas`` adds the
in-memory pandas path at the same size for comparison. ``--store`` also builds a real DuckDB store of ``--n``
samples (one GT box each, a 3-value field) and times ``write_projection`` (rows + Parquet copy) and what the view's
load job costs per colouring: the large map's colour codes versus the whole frame of the pandas path.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_map import CPU_MS, clustered_frame, lasso_polygons, percentiles, time_each, zoom_boxes
from machine import machine

W, H = 800, 600


def layers(frame: Any, colors: dict[str, str]) -> tuple[Any, Any]:
    """The view's two layers for one box, computed right away: colour (datashade) and grey (rasterize count)."""
    import datashader as dsh
    from holoviews import Points
    from holoviews.operation.datashader import rasterize

    from visionlens.ui.map_dask import LargeMap
    from visionlens.ui.map_view import _spread, render_static

    grey = Points(frame.xy() if isinstance(frame, LargeMap) else frame[["x", "y"]], ["x", "y"])
    n = len(frame)

    def colour(box: Any) -> Any:
        img = render_static(frame, colors, box[0], box[1], W, H)
        assert img.dimension_values(2, flat=False).shape == (H, W)
        return img

    def base(box: Any) -> Any:
        agg = rasterize(grey, aggregator=dsh.count(), dynamic=False, x_range=box[0], y_range=box[1], width=W, height=H)
        return _spread(agg, n, dynamic=False)

    return colour, base


def open_map(folder: Path) -> Any:
    """The LargeMap the view would build, from the files and the colour codes saved beside them."""
    from visionlens import map_parquet
    from visionlens.ui.map_dask import LargeMap

    info = map_parquet.read_map(folder / "bench.duckdb", 1, "umap")
    assert info is not None, "no map written"
    saved = np.load(folder / "codes.npz")
    return LargeMap(info, saved["codes"], [str(c) for c in saved["categories"]])


def cold(folder: Path) -> None:
    """Child process: import the view, open the map, draw the full view once (both layers)."""
    t0 = time.perf_counter()
    import visionlens.ui.map_view as mv

    imported = time.perf_counter() - t0
    large = open_map(folder)
    colors = mv.point_colors(large.categories, "field")
    x0, x1, y0, y1 = large.bounds
    t = time.perf_counter()
    colour, base = layers(large, colors)
    colour(((x0, x1), (y0, y1)))
    base(((x0, x1), (y0, y1)))
    first = time.perf_counter() - t
    print(json.dumps({"import_s": imported, "first_render_s": first, "total_s": time.perf_counter() - t0}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--renders", type=int, default=20)
    ap.add_argument("--lassos", type=int, default=10)
    ap.add_argument("--pandas", action="store_true", help="also time the in-memory pandas path at the same size")
    ap.add_argument("--store", action="store_true", help="also time write_projection and loads on a real store")
    ap.add_argument("--cold-child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cold_child:
        cold(args.cold_child)
        return

    from visionlens import map_parquet
    from visionlens.ui.map_view import highlight_frame, ids_in_bounds, ids_in_polygon, nearest_index, point_colors

    with tempfile.TemporaryDirectory(prefix="bench_map_dask_") as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        frame = clustered_frame(args.n)
        gen_s = time.perf_counter() - t
        t = time.perf_counter()
        xy = np.column_stack([frame["x"].to_numpy(), frame["y"].to_numpy()])
        info = map_parquet.write_map(folder / "bench.duckdb", 1, "umap", frame["sample_id"].to_numpy(), xy)
        write_s = time.perf_counter() - t
        del xy
        disk_mb = sum(Path(p).stat().st_size for p in info.paths) / 2**20
        np.savez(
            folder / "codes.npz",
            codes=frame["color"].cat.codes.to_numpy(),
            categories=np.asarray(frame["color"].cat.categories, dtype=str),
        )

        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
        }
        child = subprocess.run(
            [sys.executable, __file__, "--cold-child", str(folder)],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert child.returncode == 0, child.stderr[-3000:]
        cold_run = json.loads(child.stdout.strip().splitlines()[-1])

        large = open_map(folder)
        colors = point_colors(large.categories, "field")
        boxes = zoom_boxes(frame, args.renders)
        colour, base = layers(large, colors)
        t = time.perf_counter()
        colour(boxes[0])
        base(boxes[0])
        first_here_s = time.perf_counter() - t  # this process's first aggregation (numba from its disk cache)
        colour_ms, _ = time_each(colour, boxes)
        grey_ms, _ = time_each(base, boxes)
        zoom_ms = [a + b for a, b in zip(colour_ms, grey_ms)]
        CPU_MS[id(zoom_ms)] = [a + b for a, b in zip(CPU_MS[id(colour_ms)], CPU_MS[id(grey_ms)])]

        polys = lasso_polygons(frame, args.lassos)
        lasso_ms, hits = time_each(lambda p: ids_in_polygon(large, p), polys)
        covered = float(np.mean([len(h) for h in hits])) / args.n
        assert np.array_equal(hits[0], ids_in_polygon(frame, polys[0])), "dask lasso disagrees with the pandas path"
        box_args = [(b[0][0], b[1][0], b[0][1], b[1][1]) for b in boxes[1 : args.lassos + 1]]
        box_ms, box_hits = time_each(lambda b: ids_in_bounds(large, b), box_args)
        assert np.array_equal(box_hits[0], ids_in_bounds(frame, box_args[0])), "dask box disagrees with pandas"
        rng = np.random.default_rng(3)
        taps = [tuple(rng.uniform(-15, 15, 2)) for _ in range(max(3, args.lassos // 2))]
        tap_ms, nearest = time_each(lambda p: large.nearest(*p), taps)
        assert nearest[0][0] == int(frame["sample_id"].iat[nearest_index(frame, *taps[0])])
        results = [np.sort(rng.choice(frame["sample_id"].to_numpy(), args.n // 2, replace=False)) for _ in range(3)]
        hl_ms, _ = time_each(lambda r: highlight_frame(large, r), results)

        rows = [
            (f"colour layer (dask): rasterize+shade+dynspread {W}x{H}, {len(colors)} categories", colour_ms),
            (f"grey layer (dask): rasterize+dynspread {W}x{H}", grey_ms),
            ("zoom total, both layers (dask)", zoom_ms),
            (f"lasso 20 vertices -> ids (~{covered:.0%} of points, dask)", lasso_ms),
            ("box select -> ids (dask)", box_ms),
            ("tap -> nearest point (dask)", tap_ms),
            ("highlight flags for a new result (50% of points, dask)", hl_ms),
        ]
        if args.pandas:
            p_colour, p_base = layers(frame, colors)
            p_colour(boxes[0])
            p_base(boxes[0])
            p_colour_ms, _ = time_each(p_colour, boxes)
            p_grey_ms, _ = time_each(p_base, boxes)
            p_lasso_ms, _ = time_each(lambda p: ids_in_polygon(frame, p), polys)
            rows += [
                ("colour layer (pandas, in memory)", p_colour_ms),
                ("grey layer (pandas, in memory)", p_grey_ms),
                ("lasso -> ids (pandas, in memory)", p_lasso_ms),
            ]

    print(f"\nmap benchmark through Dask: n={args.n:,} points in {len(info.files)} Parquet files ({disk_mb:.0f} MB)")
    print(f"machine: {machine()}")
    print(f"generated in {gen_s:.1f} s, Parquet written in {write_s:.1f} s (sorted by sample id, with row ranks)")
    print()
    print("| cold start (fresh process) | s |")
    print("|---|---:|")
    print(f"| import the map view | {cold_run['import_s']:.2f} |")
    print(
        f"| first render of the full view, both layers (opens the files, compiles numba kernels) | "
        f"{cold_run['first_render_s']:.2f} |"
    )
    print(f"| process start to first image | {cold_run['total_s']:.2f} |")
    print(f"| first render in a process that already ran the view's kernels on other data | {first_here_s:.2f} |")
    print()
    print("| operation | runs | p50 ms | p95 ms | max ms | cpu p50 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, times in rows:
        p50, p95, mx = percentiles(times)
        cpu50 = percentiles(CPU_MS[id(times)])[0]
        print(f"| {name} | {len(times)} | {p50:.0f} | {p95:.0f} | {mx:.0f} | {cpu50:.0f} |")
    print("(wall ms per call; cpu is this process's CPU time, above wall when Dask's threads run in parallel;")
    print(" zoom boxes from the full view to 30x; every render re-reads x/y/row from the Parquet files)")
    if args.store:
        print()
        print("| real DuckDB store (one run each) | s |")
        print("|---|---:|")
        for name, secs in store_timings(args.n):
            print(f"| {name} | {secs:.2f} |")


def store_timings(n: int) -> list[tuple[str, float]]:
    """Ingest n samples, write their map (over the threshold: rows + Parquet), load it as the view would."""
    from visionlens.formats.base import AnnotationRecords, ParsedDataset, SampleRecords
    from visionlens.store.metadata import MetadataStore
    from visionlens.ui.map_dask import LargeMap
    from visionlens.ui.map_view import load_map, load_points

    os.environ["VISIONLENS_MAP_PARQUET_THRESHOLD"] = str(n // 2)
    rng = np.random.default_rng(5)
    out = []
    with tempfile.TemporaryDirectory(prefix="bench_map_store_") as tmp:
        store = MetadataStore(Path(tmp) / "bench.duckdb")
        samples = SampleRecords(
            filepath=[f"{i}.jpg" for i in range(n)],
            width=np.full(n, 64, np.int32),
            height=np.full(n, 64, np.int32),
            split=list(rng.choice(["train", "val"], n)),
            ext_id=[str(i) for i in range(n)],
            missing=np.zeros(n, bool),
            custom={"weather": list(rng.choice(["clear", "rain", "fog"], n))},
        )
        boxes = AnnotationRecords(
            sample_index=np.arange(n),
            label_index=rng.integers(0, 10, n).astype(np.int32),
            bbox=np.tile([1.0, 1.0, 10.0, 10.0], (n, 1)),
        )
        t = time.perf_counter()
        ds_id = store.insert_dataset(
            "big", ParsedDataset("coco", "/data", [f"c{i}" for i in range(10)], samples, boxes)
        )
        out.append((f"ingest {n:,} samples and boxes (setup)", time.perf_counter() - t))
        del samples, boxes
        ids = store.sample_index(ds_id)[1]
        xy = clustered_frame(len(ids))[["x", "y"]].to_numpy()
        t = time.perf_counter()
        store.write_projection(ds_id, "umap", "bench", ids, xy)
        out.append(("write_projection: DuckDB rows + Parquet copy", time.perf_counter() - t))
        for color, label in ((("label", None), "label (most frequent GT)"), (("field", "weather"), "a field")):
            t = time.perf_counter()
            large = load_map(store, ds_id, "umap", color)
            assert isinstance(large, LargeMap)
            out.append((f"load job, large map coloured by {label}: colour codes only", time.perf_counter() - t))
            t = time.perf_counter()
            load_points(store, ds_id, "umap", color)
            out.append((f"load job, pandas path coloured by {label}: whole frame", time.perf_counter() - t))
        store.close()
    return out


if __name__ == "__main__":
    main()
