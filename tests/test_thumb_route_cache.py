"""The image routes find a sample's file in memory (filled by grid windows and earlier requests) instead of asking
the store per tile; that memory must never outlive a write, lend one dataset's samples to another, or refuse
parallel requests."""

from __future__ import annotations

import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.browser_helpers import serve_panel
from visionlens.ui import resources


@pytest.fixture
def base(demo_ds):
    """Base URL of an in-process server with the image routes, on the test's home."""
    import panel as pn

    from visionlens.ui.routes import ROUTES

    with serve_panel(lambda: pn.pane.Markdown("routes"), extra_patterns=ROUTES) as url:
        yield url.rsplit("/", 1)[0]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _thumb(base: str, dataset_id: int, sample_id: int) -> tuple[int, bytes]:
    return _get(f"{base}/vl/thumb/{dataset_id}/{sample_id}")


def _expected(ds, sample_id: int) -> bytes:
    """The thumbnail of the file the store names for this sample (rendered here if the route has not yet)."""
    (row,) = ds.store.samples_by_id(ds.id, [sample_id]).to_pylist()
    result = resources.thumbnails().get(ds.uri(row["filepath"]), sample_id)
    assert not result.placeholder
    return result.data


def _no_store_reads(monkeypatch: pytest.MonkeyPatch, store) -> None:
    def refuse(*_a, **_k):
        raise AssertionError("the route asked the store although the file was in memory")

    monkeypatch.setattr(store, "sample_files", refuse)


def _window(store, dataset: str = "demo", n: int = 48) -> list[int]:
    """Open the grid as a page does; its first window hands its samples' files to the routes."""
    from visionlens.ui.grid_view import GridView
    from visionlens.ui.state import AppState

    view = GridView(state=AppState(store, dataset=dataset))
    return [t["id"] for t in view.window(0, n)]


def test_a_grid_window_fills_the_memory_and_the_route_serves_the_right_images_from_it(
    base, demo_ds, store, monkeypatch
):
    ids = _window(store)
    assert len(resources.sample_uris(store)) >= len(ids) == 48
    _no_store_reads(monkeypatch, store)
    for sid in ids[:6]:
        assert _thumb(base, demo_ds.id, sid) == (200, _expected(demo_ds, sid))


def test_a_miss_reads_the_sample_and_its_neighbours_once(base, demo_ds, store, monkeypatch):
    ids = [int(i) for i in demo_ds.sample_ids()[:5]]
    assert _thumb(base, demo_ds.id, ids[0]) == (200, _expected(demo_ds, ids[0]))
    _no_store_reads(monkeypatch, store)
    for sid in ids[1:]:
        assert _thumb(base, demo_ds.id, sid) == (200, _expected(demo_ds, sid))


def test_a_file_changed_by_a_write_is_never_served_from_memory(base, demo_ds, store):
    a, b = (int(i) for i in demo_ds.sample_ids()[:2])
    old, new = _expected(demo_ds, a), _expected(demo_ds, b)
    assert old != new
    assert _thumb(base, demo_ds.id, a) == (200, old)  # now in memory
    (path_b,) = store.samples_by_id(demo_ds.id, [b]).column("filepath").to_pylist()
    with store.transaction() as cur:  # the same sample id now names another file
        cur.execute("UPDATE samples SET filepath = ? WHERE id = ?", [path_b, a])
    assert _thumb(base, demo_ds.id, a) == (200, new)


def test_a_deleted_dataset_is_not_served_from_memory(base, demo_ds, store):
    ids = _window(store)
    assert _thumb(base, demo_ds.id, ids[0])[0] == 200
    store.delete_dataset("demo")
    for sid in ids[:3]:
        assert _thumb(base, demo_ds.id, sid)[0] == 404


def test_a_replaced_dataset_serves_its_new_files_and_never_the_old_ones(base, demo_ds, store, tmp_path):
    import visionlens as vl
    from visionlens.demo import build_demo

    old_ids = _window(store)
    assert _thumb(base, demo_ds.id, old_ids[0])[0] == 200
    other = build_demo(tmp_path / "other", n=12, seed=11)
    new_ds = vl.ingest(other.root, "demo", replace=True, store=store)
    assert new_ds.id != demo_ds.id
    for sid in old_ids[:3]:
        assert _thumb(base, demo_ds.id, sid)[0] == 404  # the old dataset id names nothing now
        assert _thumb(base, new_ds.id, sid)[0] == 404  # and its sample ids are not the new dataset's
    new_ids = _window(store)
    assert new_ids and not set(new_ids) & set(old_ids)
    for sid in new_ids[:3]:
        assert _thumb(base, new_ds.id, sid) == (200, _expected(new_ds, sid))


def test_a_sample_of_another_dataset_is_not_served_under_this_one(base, demo_ds, store, demo_files):
    import visionlens as vl

    other = vl.ingest(demo_files.root, "other", store=store)
    mine, theirs = [int(i) for i in demo_ds.sample_ids()], [int(i) for i in other.sample_ids()]
    _window(store, "other")  # their files are in memory now, under their dataset id
    assert _thumb(base, other.id, theirs[0])[0] == 200
    assert _thumb(base, demo_ds.id, mine[-1])[0] == 200  # a miss whose neighbour range reaches into theirs
    for sid in (theirs[0], theirs[1], theirs[-1]):
        assert _thumb(base, demo_ds.id, sid)[0] == 404
        assert _get(f"{base}/vl/image/{demo_ds.id}/{sid}?max=200")[0] == 404
    assert _thumb(base, other.id, mine[0])[0] == 404


@pytest.mark.parametrize("path", ["/vl/thumb/1/99999999999999999999", "/vl/thumb/99999999999999999999/1"])
def test_ids_beyond_any_stored_id_are_not_found(base, path):
    assert _get(base + path)[0] == 404


def test_parallel_requests_on_a_warm_memory_all_succeed(base, demo_ds, store):
    ids = _window(store)
    expected = {sid: _expected(demo_ds, sid) for sid in ids}
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda sid: _thumb(base, demo_ds.id, sid), ids * 3))
    assert answers == [(200, expected[sid]) for sid in ids * 3]


def test_rows_read_before_a_write_are_not_filed_after_it():
    cache = resources.SampleUris(limit=10)
    cache.put(0, [(1, 5, "/a.jpg")])
    assert cache.get(0, 1, 5) == "/a.jpg" and cache.get(0, 2, 5) is None
    assert cache.get(1, 1, 5) is None  # a write committed: everything goes
    cache.put(0, [(1, 5, "/a.jpg")])  # read before that write: not current
    assert cache.get(1, 1, 5) is None


def test_the_memory_keeps_the_newest_entries_within_its_limit():
    cache = resources.SampleUris(limit=8)
    cache.put(0, [(1, i, f"/{i}.jpg") for i in range(20)])
    assert len(cache) <= 8 and cache.get(0, 1, 19) == "/19.jpg" and cache.get(0, 1, 0) is None


def test_settings_follow_the_environment(home, monkeypatch, tmp_path):
    first = resources.store()
    assert resources.store() is first
    monkeypatch.setenv("VISIONLENS_HOME", str(tmp_path / "elsewhere"))
    elsewhere = tmp_path / "elsewhere"
    assert resources.store() is not first and resources.store().path == (elsewhere / "visionlens.duckdb").resolve()
    assert resources.thumbnails().cache_dir == elsewhere / "thumbnails"
