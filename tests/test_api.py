"""The HTTP API of a served app (`panel serve apps/browse.py`, no other flag), route by route, with and without
credentials, and the allowed-roots check on every path a request can make the server read."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.request
from types import SimpleNamespace

import httpx
import pytest

from tests.browser_helpers import serve_app, wait_until
from visionlens.client import Client
from visionlens.errors import DatasetExistsError, DatasetNotFoundError, NotAllowedError, VisionLensError
from visionlens.server.api import API_PREFIX
from visionlens.server.owner import read_owner, record_path


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory):
    from visionlens.demo import build_demo
    from visionlens.ingestion import ingest
    from visionlens.store.metadata import MetadataStore

    root = tmp_path_factory.mktemp("api")
    home, allowed, outside = root / "home", root / "allowed", root / "outside"
    demo = build_demo(allowed / "demo", n=40, seed=5)
    store = MetadataStore(home / "visionlens.duckdb")
    ingest(store, demo.root, "demo", predictions={m: str(p) for m, p in demo.predictions.items()})
    store.close()
    second = build_demo(allowed / "second", n=12, seed=6)
    build_demo(outside / "secret", n=6, seed=7)

    proc, url = serve_app(home, env={"VISIONLENS_ALLOWED_ROOTS": str(allowed)})
    try:
        # Before any page opened the app has not run: no routes, no owner record, the database not open.
        assert not record_path(home / "visionlens.duckdb").exists()
        urllib.request.urlopen(url + "/browse", timeout=120).read()  # the first session mounts the API
        owner = wait_until(lambda: read_owner(home / "visionlens.duckdb"), timeout=30)
        client = Client(owner.url, owner.token, poll_s=0.2)
        yield SimpleNamespace(
            url=url, home=home, allowed=allowed, outside=outside, owner=owner, client=client, proc=proc,
            demo=demo, second=second,
        )  # fmt: skip
        client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _raw(api, method: str, path: str, token: str | None = "owner", **kwargs) -> httpx.Response:
    headers = {}
    if token == "owner":
        headers["Authorization"] = f"Bearer {api.owner.token}"
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.request(method, api.url + API_PREFIX + path, headers=headers, timeout=60, **kwargs)


# --- the owner record ------------------------------------------------------------------------------------------


def test_owner_record_is_private_and_names_the_server(api):
    path = record_path(api.home / "visionlens.duckdb")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc["pid"] == api.proc.pid and doc["url"] == api.url and len(doc["token"]) >= 32
    assert api.client.health()["pid"] == api.proc.pid


# --- credentials -------------------------------------------------------------------------------------------------

ROUTES = [
    ("GET", "/health"),
    ("GET", "/datasets"),
    ("POST", "/datasets"),
    ("GET", "/datasets/demo"),
    ("DELETE", "/datasets/demo"),
    ("POST", "/datasets/demo/predictions"),
    ("GET", "/datasets/demo/samples"),
    ("POST", "/datasets/demo/samples"),
    ("POST", "/datasets/demo/annotations"),
    ("POST", "/datasets/demo/evaluate"),
    ("POST", "/datasets/demo/metrics"),
    ("GET", "/datasets/demo/evaluations"),
    ("POST", "/datasets/demo/embed"),
    ("POST", "/datasets/demo/thumbnails"),
    ("POST", "/datasets/demo/similar"),
    ("GET", "/datasets/demo/insights"),
    ("POST", "/datasets/demo/insights"),
    ("GET", "/datasets/demo/tags"),
    ("POST", "/datasets/demo/tags"),
    ("GET", "/datasets/demo/views"),
    ("POST", "/datasets/demo/views"),
    ("GET", "/datasets/demo/views/demo"),
    ("PATCH", "/datasets/demo/views/demo"),
    ("DELETE", "/datasets/demo/views/demo"),
    ("POST", "/datasets/demo/export"),
    ("GET", "/jobs"),
    ("GET", "/jobs/0123456789ab"),
    ("DELETE", "/jobs/0123456789ab"),
]


def test_every_route_is_listed_here():
    from visionlens.server.api import ROUTES as SERVED

    served = {pattern.replace(API_PREFIX, "").replace("([^/]+)", "demo") for pattern, _, _ in SERVED}
    served = {p.replace("([0-9a-f]+)", "0123456789ab") for p in served}
    assert served == {path for _, path in ROUTES}


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_every_route_refuses_a_request_without_the_token(api, method, path, token):
    body = b'{"path": "/etc", "name": "x", "model": "m"}' if method == "POST" else None
    r = _raw(api, method, path, token=token, content=body)
    assert r.status_code == 401, (method, path, r.status_code, r.text)
    assert "token" in r.json()["error"]
    assert _raw(api, "GET", "/datasets").json()[0]["name"] == "demo"  # nothing was deleted or started


def test_image_routes_are_mounted_without_plugins_flag(api):
    ids = api.client.samples("demo", limit=1)["rows"]
    r = httpx.get(f"{api.url}/vl/thumb/1/{ids[0]['id']}", timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"


# --- reading -----------------------------------------------------------------------------------------------------


def test_list_info_samples(api):
    c = api.client
    (demo,) = [d for d in c.list_datasets() if d["name"] == "demo"]
    assert demo["samples"] == 40 and set(demo["models"]) == set(api.demo.predictions)
    info = c.dataset_info("demo")
    assert info["samples"] == 40 and sum(info["splits"].values()) == 40
    assert {"split", "weather"} <= {f["name"] for f in info["fields"]}
    assert set(info["label_counts"]) == {"ground_truth", *api.demo.predictions}

    val = {"fields": [{"field": "split", "values": ["val"]}]}
    page = c.samples("demo", val, limit=5)
    assert page["count"] == info["splits"]["val"] and len(page["rows"]) == min(5, page["count"])
    assert {r["split"] for r in page["rows"]} == {"val"}
    # the same query as GET with the filters in the query string
    got = _raw(api, "GET", "/datasets/demo/samples", params={"filters": json.dumps(val), "limit": "5"}).json()
    assert got == page
    # sorting and paging: two pages of a sorted listing are its first rows in order
    sort = {"field": "id", "descending": True}
    first, second = c.samples("demo", {}, sort, 0, 3)["rows"], c.samples("demo", {}, sort, 3, 3)["rows"]
    ids = [r["id"] for r in first + second]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 6

    anns = c.annotations("demo", ids[:3])["rows"]
    assert anns and {a["sample_id"] for a in anns} <= set(ids[:3])


BODIES = {
    "/predictions": {"model": "m", "path": "annotations.json"},
    "/evaluate": {"model": "m"},
    "/metrics": {"model": "m"},
    "/annotations": {"sample_ids": [1]},
    "/similar": {"sample_id": 1},
}


def test_unknown_dataset_is_404_everywhere(api):
    for method, path in ROUTES:
        if "/datasets/demo" not in path:
            continue
        tail = path.removeprefix("/datasets/demo")
        body = BODIES.get(tail, {}) if method == "POST" else None
        r = _raw(api, method, "/datasets/nope" + tail, json=body)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
        assert "nope" in r.json()["error"]
    with pytest.raises(DatasetNotFoundError):
        api.client.dataset_info("nope")


def test_names_are_data_in_urls(api):
    """A dataset name with a slash, a question mark and a quote reaches the server whole."""
    with pytest.raises(DatasetNotFoundError, match="a/b\\?c'd"):
        api.client.dataset_info("a/b?c'd")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"not json", "not JSON"),
        (b'{"model": "m", "iou": 2}', "iou"),
        (b'{"model": "m", "typo": 1}', "typo"),
        (b"{}", "model"),
    ],
)
def test_bad_bodies_are_400_naming_the_problem(api, body, needle):
    r = _raw(api, "POST", "/datasets/demo/evaluate", content=body)
    assert r.status_code == 400 and needle in r.json()["error"], r.text


# --- jobs --------------------------------------------------------------------------------------------------------


def test_evaluate_metrics_evaluations(api):
    c = api.client
    model = sorted(api.demo.predictions)[0]
    job = c.evaluate("demo", model, wait=False)
    assert job["state"] in ("queued", "running", "done") and job["kind"] == "evaluate"
    steps: list[tuple[str, int, int]] = []
    result = c.wait(job["id"], progress=lambda s, d, t: steps.append((s, d, t)))
    assert 0 <= result["stats"]["AP"] <= 1 and result["samples"] == 40 and result["key"] == model
    assert steps and steps[-1][1] == steps[-1][2]  # progress arrived, up to the end
    assert any(e["key"] == model for e in c.evaluations("demo"))
    val = {"fields": [{"field": "split", "values": ["val"]}]}
    sub = c.metrics("demo", model, val)
    assert sub["samples"] == c.samples("demo", val, limit=0)["count"]
    assert c.job(job["id"])["state"] == "done"
    assert job["id"] in {j["id"] for j in c.jobs()}
    r = _raw(api, "DELETE", f"/jobs/{job['id']}")
    assert r.status_code == 409 and r.json()["cancelled"] is False  # finished: nothing to cancel
    assert _raw(api, "GET", "/jobs/0123456789ab").status_code == 404


def test_a_failing_job_reports_its_error(api):
    with pytest.raises(VisionLensError, match="no-such-model"):
        api.client.evaluate("demo", "no-such-model")


def test_embed_then_similar(api):
    c = api.client
    out = c.embed("demo", project="pca", workers=0)
    assert out["embedded"] == 40 and out["maps"] == ["pca"]
    anchor = c.samples("demo", limit=1)["rows"][0]["id"]
    near = c.similar("demo", sample_id=anchor, k=5)
    assert len(near["ids"]) == 5 and near["ids"][0] == anchor and near["scores"][0] == pytest.approx(1, abs=1e-4)
    val = {"fields": [{"field": "split", "values": ["val"]}]}
    val_ids = {r["id"] for r in c.samples("demo", val, limit=1000)["rows"]}
    got = c.similar("demo", sample_id=anchor, k=5, filters=val)["ids"]
    assert got and set(got) <= val_ids
    with pytest.raises(VisionLensError, match="exactly one"):
        c.similar("demo", k=3)


def test_insights_job_then_stored_findings(api):
    c = api.client
    doc = c.insights("demo", kinds=["near_duplicate", "error_pattern"])
    stored = c.findings("demo")["findings"]
    assert [f["id"] for f in stored] == [f["id"] for f in doc["findings"]]
    assert {f["kind"] for f in stored} <= {"near_duplicate", "error_pattern"}


def test_ingest_predictions_delete_from_an_allowed_root(api):
    c = api.client
    preds = {m: str(p) for m, p in api.second.predictions.items()}
    report = c.ingest(str(api.second.root), "second", predictions=preds)
    assert report["samples"] == 12 and set(report["predictions"]) == set(preds)
    assert "second" in {d["name"] for d in c.list_datasets()}
    with pytest.raises(DatasetExistsError):
        c.ingest(str(api.second.root), "second")
    model, path = next(iter(preds.items()))
    added = c.add_predictions("second", "again", path)
    assert added["predictions"] == report["predictions"][model]
    assert "again" in c.dataset_info("second")["models"]
    deleted = c.delete("second")
    assert deleted["samples"] == 12 and "second" not in {d["name"] for d in c.list_datasets()}


def test_export_into_an_allowed_root(api):
    c = api.client
    val = {"fields": [{"field": "split", "values": ["val"]}]}
    out = api.allowed / "exports" / "val"
    report = c.export("demo", str(out), "yolo", val, images="link")
    assert report["samples"] == c.samples("demo", val, limit=0)["count"] and (out / "data.yaml").is_file()
    assert set(report["predictions"]) == set(api.demo.predictions) and report["ingest"]["format"] == "yolo"
    assert [j["kind"] for j in c.jobs()].count("export") == 1
    with pytest.raises(NotAllowedError, match="VISIONLENS_ALLOWED_ROOTS"):
        c.export("demo", str(api.outside / "taken"), "coco")
    with pytest.raises(VisionLensError, match="unknown export format"):
        c.export("demo", str(out), "tfrecord")
    assert not (api.outside / "taken").exists() and (out / "data.yaml").is_file()


# --- allowed roots -----------------------------------------------------------------------------------------------


def test_paths_outside_the_allowed_roots_are_refused(api, tmp_path):
    c = api.client
    secret = api.outside / "secret"
    link = api.allowed / "link-to-secret"
    if not link.exists():
        link.symlink_to(secret, target_is_directory=True)
    attempts = [
        lambda: c.ingest(str(secret), "stolen"),
        lambda: c.ingest(str(link), "stolen"),  # a link inside a root pointing outside it
        lambda: c.ingest("/etc", "stolen"),
        lambda: c.ingest(str(api.allowed / ".." / "outside" / "secret"), "stolen"),
        lambda: c.ingest(str(api.second.root), "stolen", images=str(secret / "images")),
        lambda: c.ingest(str(api.second.root), "stolen", predictions={"m": str(secret / "annotations.json")}),
        lambda: c.add_predictions("demo", "m", "/etc/passwd"),
        lambda: c.embed("demo", weights="/etc/passwd"),
    ]
    for attempt in attempts:
        with pytest.raises(NotAllowedError, match="VISIONLENS_ALLOWED_ROOTS"):
            attempt()
    assert "stolen" not in {d["name"] for d in c.list_datasets()}
    assert not [j for j in c.jobs() if j["dataset"] == "stolen"]  # refused before any job started


def test_cli_goes_through_the_api_while_the_app_owns_the_database(api):
    env = {**os.environ, "VISIONLENS_HOME": str(api.home), "COLUMNS": "200"}
    out = subprocess.run(
        [sys.executable, "-m", "visionlens.cli", "list"], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "demo" in out.stdout and "open in another process" not in out.stderr


def test_with_a_login_the_api_takes_the_login_cookie_or_the_token(tmp_path):
    """``--basic-auth``: a logged-in browser's cookie counts, the owner's token still works, nothing else does."""
    from visionlens.demo import build_demo
    from visionlens.ingestion import ingest
    from visionlens.store.metadata import MetadataStore

    home = tmp_path / "home"
    demo = build_demo(tmp_path / "demo", n=6, seed=1)
    store = MetadataStore(home / "visionlens.duckdb")
    ingest(store, demo.root, "demo")
    store.close()
    proc, url = serve_app(home, "--basic-auth", "s3cret-pass", "--cookie-secret", "y" * 32)
    try:
        with httpx.Client(base_url=url, timeout=60, follow_redirects=False) as web:
            assert web.get("/browse").status_code in (302, 401, 403)  # the page itself wants the login
            login = web.post("/login", data={"username": "ann", "password": "s3cret-pass"})
            assert login.status_code == 302 and "error" not in login.headers.get("location", "")
            assert web.get("/browse").status_code == 200  # the first session mounts the API
            owner = wait_until(lambda: read_owner(home / "visionlens.duckdb"), timeout=30)
            me = web.get(API_PREFIX + "/health")
            assert me.status_code == 200 and me.json()["user"] == "ann"
            assert [d["name"] for d in web.get(API_PREFIX + "/datasets").json()] == ["demo"]
        anonymous = httpx.get(url + API_PREFIX + "/datasets", timeout=30)
        assert anonymous.status_code == 401
        forged = httpx.get(url + API_PREFIX + "/datasets", cookies={"user": "ann"}, timeout=30)
        assert forged.status_code == 401  # an unsigned cookie is not a login
        with_token = httpx.get(
            url + API_PREFIX + "/health", headers={"Authorization": f"Bearer {owner.token}"}, timeout=30
        )
        assert with_token.status_code == 200 and with_token.json()["user"] == "token"
    finally:
        proc.terminate()
        proc.wait(30)


def test_python_api_in_another_process_goes_through_the_app(api):
    code = (
        "import json, visionlens as vl; ds = vl.load('demo'); "
        "m = ds.metrics(sorted(ds.models())[0], {'fields': [{'field': 'split', 'values': ['val']}]}); "
        "print(json.dumps({'names': [d['name'] for d in vl.list_datasets()], 'type': type(ds).__name__, "
        "'count': ds.count(), 'val': ds.count({'fields': [{'field': 'split', 'values': ['val']}]}), "
        "'page': len(ds.samples(limit=7)), 'metric_samples': m.samples}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "VISIONLENS_HOME": str(api.home)},
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    val = api.client.samples("demo", {"fields": [{"field": "split", "values": ["val"]}]}, limit=0)["count"]
    assert got["type"] == "RemoteDataset" and "demo" in got["names"]
    assert got["count"] == 40 and got["val"] == val == got["metric_samples"] and got["page"] == 7


def test_plugins_flag_stays_harmless(tmp_path):
    from visionlens.demo import build_demo
    from visionlens.ingestion import ingest
    from visionlens.store.metadata import MetadataStore

    home = tmp_path / "home"
    demo = build_demo(tmp_path / "demo", n=4, seed=1)
    store = MetadataStore(home / "visionlens.duckdb")
    ingest(store, demo.root, "demo")
    store.close()
    proc, url = serve_app(home, "--plugins", "visionlens.ui.routes")
    try:
        # the plugin's route, before any page: the process opens the database, so it records itself as owner
        assert httpx.get(url + "/vl/thumb/1/1", timeout=60).status_code == 200
        owner = wait_until(lambda: read_owner(home / "visionlens.duckdb"), timeout=30)
        assert httpx.get(url + "/browse", timeout=120).status_code == 200
        assert httpx.get(url + "/vl/thumb/1/1", timeout=60).status_code == 200
        health = httpx.get(url + API_PREFIX + "/health", headers={"Authorization": f"Bearer {owner.token}"})
        assert health.status_code == 200 and health.json()["pid"] == proc.pid
    finally:
        proc.terminate()
        proc.wait(30)
