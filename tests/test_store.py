"""The DuckDB store: all-or-nothing writes, filter semantics, safe SQL, and one process per file."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import visionlens as vl
from visionlens.errors import DatasetExistsError, FilterError, StoreLockedError
from visionlens.ingestion import ingest
from visionlens.query import FieldFilter, Filters, LabelFilter, Range, Sort
from visionlens.store.metadata import MetadataStore


def _snapshot(store) -> dict:
    with store.cursor() as cur:
        rows = {
            t: cur.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
            for t in ("datasets", "samples", "annotations", "labels", "sources", "fields", "ingest_issues")
        }
        rows["columns"] = cur.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'samples' ORDER BY column_index"
        ).fetchall()
        return rows


# the write step that raises, and whether it first does its work (so the failure comes after it wrote rows)
_FAIL_IN = {
    "samples": ("_insert_annotations", False),  # samples and labels are written, GT boxes are not
    "annotations": ("_insert_issues", True),  # GT boxes written, then the failure
    "predictions": ("_insert_predictions", True),  # one model's predictions written, then the failure
}


def _inject_failure(monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    name, do_work = _FAIL_IN[step]
    original = next(c.__dict__[name] for c in MetadataStore.__mro__ if name in c.__dict__)
    static = isinstance(original, staticmethod)
    work = original.__func__ if static else original

    def boom(*args, **kwargs):
        if do_work:
            work(*args, **kwargs)
        raise RuntimeError(f"injected failure after {step}")

    monkeypatch.setattr(MetadataStore, name, staticmethod(boom) if static else boom)


@pytest.mark.parametrize("step", ["samples", "annotations", "predictions"])
def test_failure_mid_ingest_leaves_database_unchanged(store, demo_files, step, monkeypatch):
    preds = {m: str(p) for m, p in demo_files.predictions.items()}
    ingest(store, demo_files.root, "first", predictions=preds)
    before = _snapshot(store)
    _inject_failure(monkeypatch, step)
    with pytest.raises(RuntimeError, match="injected"):
        ingest(store, demo_files.root, "second", predictions=preds)
    assert _snapshot(store) == before
    with pytest.raises(RuntimeError, match="injected"):
        ingest(store, demo_files.root, "first", predictions=preds, replace=True)
    assert _snapshot(store) == before


def test_reingest_needs_replace(store, demo_files):
    ingest(store, demo_files.root, "d")
    with pytest.raises(DatasetExistsError, match="--replace"):
        ingest(store, demo_files.root, "d")
    ingest(store, demo_files.root, "d", replace=True)
    assert [d["name"] for d in store.list_datasets()] == ["d"]
    assert store.list_datasets()[0]["samples"] == 120


def test_delete_removes_every_row(store, demo_ds):
    vl.delete_dataset("demo", store)
    counts = store.table_counts()
    assert all(n == 0 for t, n in counts.items()), counts


def test_filters_match_a_pandas_reference(demo_ds):
    ds = demo_ds
    df = ds.samples(limit=1000)
    ann = ds.annotations(df["id"])
    night = set(df[df["time_of_day"] == "night"]["id"])
    bright = set(df[(df["brightness"] >= 0.3) & (df["brightness"] <= 0.5)]["id"])
    cases = {
        Filters(fields=(FieldFilter(field="time_of_day", values=("night",)),)): night,
        Filters(fields=(FieldFilter(field="time_of_day", values=("night",), exclude=True),)): set(df["id"]) - night,
        Filters(fields=(FieldFilter(field="brightness", range=Range(min=0.3, max=0.5)),)): bright,
    }
    a = ann[(ann["source"] == "detector_a") & (ann["label"] == "car") & (ann["confidence"] < 0.6)]
    cases[Filters(annotations=(LabelFilter(source="detector_a", labels=("car",), confidence=Range(max=0.6)),))] = set(
        a["sample_id"]
    )
    gt = ann[ann["source"] == "ground_truth"]
    persons = gt[gt["label"] == "person"].groupby("sample_id").size()
    cases[Filters(annotations=(LabelFilter(labels=("person",), min_count=2),))] = set(persons[persons >= 2].index)
    no_dog = set(df["id"]) - set(gt[gt["label"] == "dog"]["sample_id"])
    cases[Filters(annotations=(LabelFilter(labels=("dog",), exclude=True),))] = no_dog
    some = tuple(int(i) for i in df["id"][::7])
    cases[Filters(sample_ids=some, fields=(FieldFilter(field="split", values=("val",)),))] = set(some) & set(
        df[df["split"] == "val"]["id"]
    )
    for flt, expected in cases.items():
        assert ds.count(flt) == len(expected), flt
        assert set(ds.sample_ids(flt)) == expected, flt
        assert len(expected) > 0, flt


def test_sort_page_and_offset(demo_ds):
    ds = demo_ds
    ids = ds.sample_ids(sort_by="brightness", descending=True)
    values = ds.samples(limit=1000, sort_by="brightness", descending=True)["brightness"].to_numpy()
    assert np.all(np.diff(values) <= 0)
    page = ds.samples(limit=10, offset=20, sort_by="brightness", descending=True)
    assert list(page["id"]) == list(ids[20:30])
    window = ds.store.samples_by_id(ds.id, ids[50:55]).to_pandas()
    assert list(window["id"]) == list(ids[50:55])
    night = {"time_of_day": "night"}
    night_ids = ds.sample_ids(night, sort_by="brightness")
    rows, total = ds.page(night, limit=7, offset=3, sort_by="brightness")
    assert total == ds.count(night) == len(night_ids) and list(rows["id"]) == list(night_ids[3:10])
    rows, total = ds.page(night, limit=7, offset=10_000)
    assert total == len(night_ids) and rows.empty


def test_sidebar_counts_ignore_their_own_filter(demo_ds):
    ds = demo_ds
    flt = Filters(
        fields=(FieldFilter(field="time_of_day", values=("night",)), FieldFilter(field="split", values=("val",)))
    )
    counts = dict(ds.store.value_counts(ds.id, "time_of_day", flt))
    assert counts["day"] == ds.count({"time_of_day": "day", "split": "val"})
    hist = ds.store.numeric_stats(ds.id, "brightness", flt, bins=10)
    assert sum(hist["counts"]) == ds.count(flt) and len(hist["edges"]) == 11


def test_field_names_are_checked_and_values_are_parameters(demo_ds):
    ds = demo_ds
    with pytest.raises(FilterError, match="unknown field"):
        ds.count({'split" OR 1=1 --': "x"})
    assert ds.count({"split": "val' OR '1'='1"}) == 0
    with pytest.raises(FilterError, match="unknown label"):
        ds.count({"annotations": [{"labels": ["unicorn"]}]})
    with pytest.raises(FilterError, match="unknown source"):
        ds.count({"annotations": [{"source": "nope"}]})
    with pytest.raises(FilterError, match="numeric"):
        ds.count({"brightness": "bright"})
    with pytest.raises(FilterError, match="unknown field"):
        ds.samples(sort_by="nope")


def test_filters_round_trip_through_a_url(demo_ds):
    flt = vl.Filters(
        fields=(FieldFilter(field="split", values=("val",)),),
        annotations=(LabelFilter(source="detector_b", labels=("cat", "dog"), confidence=Range(min=0.5)),),
    )
    back = vl.Filters.from_url(flt.to_url())
    assert back == flt and demo_ds.count(back) == demo_ds.count(flt)


def test_second_process_gets_a_clear_lock_error(store, home):
    script = textwrap.dedent(f"""
        from visionlens.store.metadata import MetadataStore
        from visionlens.errors import StoreLockedError
        try:
            MetadataStore({str(store.path)!r})
        except StoreLockedError as e:
            print("LOCKED:", e)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "LOCKED:" in out.stdout, out.stderr
    assert str(store.path) in out.stdout and "another process" in out.stdout
    assert StoreLockedError.__mro__[1].__name__ == "VisionLensError"


def test_sort_field_random_is_stable(demo_ds):
    a = demo_ds.sample_ids(sort_by="random")
    b = demo_ds.store.matching_ids(demo_ds.id, Filters(), Sort(field="random"))
    assert list(a) == list(b) and sorted(a) == sorted(demo_ds.sample_ids()) and list(a) != sorted(a)


def test_many_threads_query_one_store(demo_ds):
    """Panel serves sessions on a thread pool: concurrent queries must all succeed and agree."""
    import threading

    ds = demo_ds
    expected = ds.count({"split": "val"})
    errors, results = [], []

    def work() -> None:
        try:
            for _ in range(15):
                results.append(ds.count({"split": "val"}))
                ds.page({"split": "val"}, limit=5, offset=3)
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(repr(e))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and results == [expected] * 120


def test_results_and_windows_are_shared_until_a_write(demo_ds):
    """Sessions opening the same view share one result (read-only) and one grid window; any write starts over, so
    what a session reads after a tag is never the answer from before it."""
    flt = {"split": "val"}
    first, again = demo_ds.sample_ids(flt), demo_ds.sample_ids(flt)
    assert again is first and len(first) > 2
    with pytest.raises(ValueError):
        first[0] = -1  # shared between sessions: nobody may change it in place
    assert demo_ds.sample_ids(flt, sort_by="random") is not first  # another sort, another answer

    window = first[:3]
    boxes = demo_ds.annotations(window, as_="arrow")
    assert demo_ds.annotations(window, as_="arrow") is boxes
    rows = demo_ds.store.samples_by_id(demo_ds.id, window)
    assert demo_ds.store.samples_by_id(demo_ds.id, window) is rows

    demo_ds.tag("picked pair", sample_ids=window[:2])
    tagged = demo_ds.sample_ids({"tags": ["picked pair"]})
    assert sorted(tagged.tolist()) == sorted(window[:2].tolist())
    assert demo_ds.sample_ids(flt) is not first and demo_ds.sample_ids(flt).tolist() == first.tolist()
    fresh = demo_ds.store.samples_by_id(demo_ds.id, window).to_pylist()
    assert [sorted(r["tags"] or []) for r in fresh] == [["picked pair"], ["picked pair"], []]

    box = boxes.to_pylist()[0]
    demo_ds.tag_objects("loose box", ann_ids=[box["id"]])
    after = {r["id"]: r["tags"] for r in demo_ds.annotations(window, as_="arrow").to_pylist()}
    assert after[box["id"]] == ["loose box"]


def test_the_open_store_is_found_without_opening_a_file(home):
    """What the image route's event-loop path uses: the process's store if open, never a new connection."""
    from visionlens.store.metadata import close_all_stores, open_store, open_store_if_open

    assert open_store_if_open() is None and not (home / "visionlens.duckdb").exists()
    store = open_store()
    assert open_store_if_open() is store
    close_all_stores()
    assert open_store_if_open() is None
