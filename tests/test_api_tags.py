"""Tags and saved views through the HTTP API of a served app (``panel serve apps/browse.py``): the routes, their
errors, ``RemoteDataset``, and the same plain data from a ``Client`` as from a ``Local`` backend."""

from __future__ import annotations

import urllib.request
from types import SimpleNamespace

import httpx
import pytest

from tests.browser_helpers import serve_app, wait_until
from visionlens.client import Client, Local, RemoteDataset
from visionlens.errors import DatasetExistsError, DatasetNotFoundError, VisionLensError
from visionlens.query import FieldFilter, Filters, LabelFilter, SavedView
from visionlens.server.api import API_PREFIX
from visionlens.server.owner import read_owner

VAL = {"fields": [{"field": "split", "values": ["val"]}]}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory):
    from visionlens.demo import build_demo
    from visionlens.ingestion import ingest
    from visionlens.store.metadata import MetadataStore

    root = tmp_path_factory.mktemp("apitags")
    demo = build_demo(root / "demo", n=30, seed=4)
    preds = {m: str(p) for m, p in demo.predictions.items()}
    served = MetadataStore(root / "home" / "visionlens.duckdb")
    ingest(served, demo.root, "demo", predictions=preds)
    served.close()
    # the same dataset in a file this process opens: what a Local backend answers, to compare with the API's
    local = MetadataStore(root / "local" / "visionlens.duckdb")
    ingest(local, demo.root, "demo", predictions=preds)

    proc, url = serve_app(root / "home", env={"VISIONLENS_ALLOWED_ROOTS": str(root)})
    try:
        urllib.request.urlopen(url + "/browse", timeout=120).read()  # the first session mounts the API
        owner = wait_until(lambda: read_owner(root / "home" / "visionlens.duckdb"), timeout=30)
        client = Client(owner.url, owner.token, poll_s=0.2)
        yield SimpleNamespace(url=url, owner=owner, client=client, local=Local(local), store=local)
        client.close()
    finally:
        local.close()
        proc.terminate()
        proc.wait(timeout=30)


def _raw(api, method: str, path: str, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {api.owner.token}"}
    return httpx.request(method, api.url + API_PREFIX + path, headers=headers, timeout=60, **kwargs)


def _without_times(doc):
    if isinstance(doc, list):
        return [_without_times(d) for d in doc]
    return {k: v for k, v in doc.items() if k not in ("created_at", "updated_at", "user")}


def test_tags_through_the_api_match_a_local_backend(api):
    """Each step on the served database and on the same dataset opened here gives the same plain data."""
    steps = [
        ("tag", ("demo", ["review"]), {"sample_ids": [1, 2, 3]}),
        ("tag", ("demo", "it's <b>data</b>"), {"filters": VAL}),
        ("tag", ("demo", ["car box"]), {"filters": {}, "objects": {"labels": ["car"]}}),
        ("tag", ("demo", ["review"]), {"sample_ids": [2], "remove": True}),
        ("tag_counts", ("demo",), {}),
        ("tag_counts", ("demo",), {"filters": VAL}),
        ("save_view", ("demo", {"name": "val", "filters": VAL, "sort": {"field": "width"}}), {}),
        ("save_view", ("demo", {"name": "picked", "selection": [3, 1, 2]}), {}),
        ("views", ("demo",), {}),
        ("view", ("demo", "picked"), {}),
        ("rename_view", ("demo", "picked", "a/b?c'd"), {}),
        ("view", ("demo", "a/b?c'd"), {}),
        ("delete_view", ("demo", "a/b?c'd"), {}),
        ("views", ("demo",), {}),
    ]
    for method, args, kwargs in steps:
        remote = getattr(api.client, method)(*args, **kwargs)
        local = getattr(api.local, method)(*args, **kwargs)
        assert _without_times(remote) == _without_times(local), method
    counts = api.client.tag_counts("demo")
    assert counts["samples"]["review"] == 2 and counts["objects"]["car box"] > 0
    assert api.client.view("demo", "val")["user"] == "token"  # who saved it: the token's holder


def test_remote_dataset_has_the_same_methods(api):
    ds = RemoteDataset(api.client, api.client.dataset_info("demo"))
    ids = [int(r["id"]) for r in api.client.samples("demo", limit=4)["rows"]]
    assert ds.tag("remote", sample_ids=ids) == 4
    assert ds.count(Filters(fields=(FieldFilter(field="tags", values=("remote",)),))) == 4
    assert ds.untag("remote", Filters()) == 4
    boxes = api.client.annotations("demo", ids[:1], ["ground_truth"])["rows"]
    assert ds.tag_objects("one", ann_ids=[b["id"] for b in boxes]) == len(boxes) > 0
    assert ds.count(Filters(annotations=(LabelFilter(tags=("one",)),))) == 1
    assert ds.untag_objects("one", filters=Filters()) == len(boxes)
    with pytest.raises(VisionLensError, match="say which"):
        ds.tag("x")
    saved = ds.save_view("remote view", {"split": "val"}, selection=ids, sort="-width", sources=["ground_truth"])
    assert isinstance(saved, SavedView) and saved.selection == tuple(ids) and saved.sort.descending
    assert "remote view" in [v.name for v in ds.views()]
    with pytest.raises(DatasetExistsError):
        ds.save_view("remote view")
    assert ds.save_view("remote view", replace=True).selection is None
    assert ds.rename_view("remote view", "renamed").name == "renamed"
    assert ds.view("renamed").filters == Filters()
    ds.delete_view("renamed")
    with pytest.raises(DatasetNotFoundError):
        ds.view("renamed")
    assert ds.tag_counts()["samples"].get("remote") is None


def test_routes_answer_errors_as_json(api):
    r = _raw(api, "POST", "/datasets/demo/tags", json={"tags": ["x"]})
    assert r.status_code == 400 and "say which samples" in r.json()["error"]
    r = _raw(api, "POST", "/datasets/demo/tags", json={"tags": ["  "], "filters": {}})
    assert r.status_code == 400 and "empty" in r.json()["error"]
    r = _raw(api, "POST", "/datasets/demo/tags", json={"tags": [], "filters": {}})
    assert r.status_code == 400 and "tags" in r.json()["error"]
    r = _raw(api, "POST", "/datasets/demo/tags", json={"tags": ["x"], "filters": {}, "typo": 1})
    assert r.status_code == 400 and "typo" in r.json()["error"]
    r = _raw(api, "POST", "/datasets/demo/tags", json={"tags": ["x"], "action": "toggle", "filters": {}})
    assert r.status_code == 400 and "action" in r.json()["error"]
    r = _raw(api, "GET", "/datasets/demo/tags", params={"filters": "{not json"})
    assert r.status_code == 400
    r = _raw(api, "POST", "/datasets/demo/views", json={"name": "x", "filters": {"fields": [{"field": "nope"}]}})
    assert r.status_code == 400 and "nope" in r.json()["error"]
    assert _raw(api, "POST", "/datasets/demo/views", json={"name": "dup"}).status_code == 201
    r = _raw(api, "POST", "/datasets/demo/views", json={"name": "dup"})
    assert r.status_code == 409 and "replace" in r.json()["error"]
    assert _raw(api, "POST", "/datasets/demo/views", json={"name": "dup", "replace": True}).status_code == 201
    assert _raw(api, "POST", "/datasets/demo/views", json={"name": "other"}).status_code == 201
    r = _raw(api, "PATCH", "/datasets/demo/views/dup", json={"name": "other"})
    assert r.status_code == 409
    assert _raw(api, "PATCH", "/datasets/demo/views/nope", json={"name": "z"}).status_code == 404
    assert _raw(api, "DELETE", "/datasets/demo/views/dup").json() == {"deleted": "dup"}
    assert _raw(api, "GET", "/datasets/demo/views/dup").status_code == 404
    assert _raw(api, "DELETE", "/datasets/demo/views/other").status_code == 200
