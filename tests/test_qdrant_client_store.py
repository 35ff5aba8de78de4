"""The Qdrant server path (``ClientVectorStore``) against qdrant-client's local mode, which stands in for a server.

No Qdrant server binary (nor Docker) can be installed where these tests run, so local mode answers the requests a
server would get: same client, same models, brute-force answers. What local mode does not keep (shard, replication
and write-consistency settings, payload indexes) is checked on the request itself, through a subclass of the real
``QdrantClient`` that records ``create_collection`` and ``create_payload_index`` and then runs them.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import qdrant_client
import yaml
from pydantic import ValidationError
from qdrant_client import QdrantClient, models

from visionlens.config import Settings, get_settings
from visionlens.store.vectors import (
    FILTER_FIELDS,
    ClientVectorStore,
    EdgeVectorStore,
    IndexParams,
    ServerLayout,
    VectorStoreError,
    open_vector_store_from,
)

ROOT = Path(__file__).resolve().parents[1]
DIM = 32
N = 4000
K = 50
LABELS = ["car", "person", "dog", "cat"]


class Recording(QdrantClient):
    """The real client, recording what it was built with and the requests local mode would drop.

    ``url=`` (a server) is answered by an in-memory local instance, so a store opened from settings runs end to end.
    """

    def __init__(self, **kwargs):
        self.init_kwargs = dict(kwargs)
        self.requests: list[tuple] = []
        if kwargs.get("url"):
            kwargs = {k: v for k, v in kwargs.items() if k not in ("url", "api_key", "timeout")}
            kwargs["location"] = ":memory:"
        super().__init__(**kwargs)

    def create_collection(self, collection_name, **kwargs):
        self.requests.append(("create_collection", collection_name, kwargs))
        return super().create_collection(collection_name, **kwargs)

    def create_payload_index(self, collection_name, field_name, field_schema=None, **kwargs):
        self.requests.append(("create_payload_index", collection_name, field_name, field_schema))
        return super().create_payload_index(collection_name, field_name, field_schema=field_schema, **kwargs)

    def indexes(self, name):
        return {r[2]: r[3] for r in self.requests if r[0] == "create_payload_index" and r[1] == name}


def _no_fsync_dir() -> tempfile.TemporaryDirectory:
    """Local mode on disk commits SQLite once per point: 4000 points took 24 s of fsyncs on a busy disk, 1 s on
    tmpfs. The files are the same; only the disk under them is faster."""
    shm = Path("/dev/shm")
    return tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None, prefix="vl-qdrant-")


@pytest.fixture
def local_dir() -> Iterator[Path]:
    with _no_fsync_dir() as d:
        yield Path(d)


@pytest.fixture
def recording(monkeypatch):
    """ClientVectorStore imports QdrantClient when it is built, so the patched name is the one it uses."""
    monkeypatch.setattr(qdrant_client, "QdrantClient", Recording)


# ----------------------------------------------------------------------------------------------------------------
# The same answers as the embedded engine


def clustered(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = centers[rng.integers(0, clusters, n)] + 0.4 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data():
    """Payloads shaped like the app's (dataset, split, GT labels) plus a float field; two rare subsets."""
    rng = np.random.default_rng(5)
    vectors = clustered(N, DIM, 20, seed=4)
    ids = 2**40 + np.arange(N, dtype=np.int64) * 5 + 3
    dataset = np.ones(N, dtype=np.int64)
    dataset[rng.choice(N, 12, replace=False)] = 2  # 0.3% of the points: a graph walk would come back short
    splits = rng.choice(["train", "val", "test", ""], N, p=[0.6, 0.2, 0.1, 0.1])
    labels = [sorted(set(rng.choice(LABELS, rng.integers(0, 3)).tolist())) for _ in range(N)]
    for i in rng.choice(N, 6, replace=False):  # fewer than k
        labels[i] = labels[i] + ["unicycle"]
    payloads = [
        {"dataset": int(d), "split": s or None, "labels": lab, "brightness": float(b)}
        for d, s, lab, b in zip(dataset, splits, labels, rng.random(N), strict=True)
    ]
    return ids, vectors, payloads


@pytest.fixture(scope="module")
def engines(data):
    """The embedded store with an HNSW graph built over every point, and the client store on disk (local mode)."""
    ids, vectors, payloads = data
    tmp = _no_fsync_dir()
    root = Path(tmp.name)
    edge = EdgeVectorStore(root / "edge", index=IndexParams(full_scan_threshold_kb=16, indexing_threshold_kb=16))
    client = ClientVectorStore(path=root / "client")
    for store in (edge, client):
        store.ensure_collection("emb", DIM)
        store.upsert("emb", ids[:2500], vectors[:2500], payloads[:2500])
        store.upsert("emb", ids[2500:], vectors[2500:], payloads[2500:])
        store.optimize("emb")
    assert edge._shard("emb").info().indexed_vectors_count == N  # the graph exists; filtered search must skip it
    yield edge, client
    edge.close()
    client.close()
    tmp.cleanup()


def matches(payloads, flt):
    def ok(p):
        for key, want in flt.items():
            want = want if isinstance(want, list) else [want]
            have = p.get(key)
            if not set(want) & set(have if isinstance(have, list) else [have]):
                return False
        return True

    return np.array([ok(p) for p in payloads])


def brute_force(ids, vectors, query, k, mask):
    scores = np.where(mask, vectors @ (query / np.linalg.norm(query)), -np.inf)
    order = np.argsort(-scores, kind="stable")[:k]
    return ids[order[np.isfinite(scores[order])]]


FILTERS = [
    None,
    {"split": "val"},
    {"split": ["val", "test"], "labels": ["car"]},
    {"labels": ["unicycle"]},  # 6 points, fewer than k
    {"dataset": 2},  # 12 of 4000 points
    {"dataset": [1]},
    {"dataset": [1, 2], "split": ["train"], "labels": ["dog", "cat"]},
]


@pytest.mark.parametrize("flt", FILTERS, ids=lambda f: "none" if f is None else "-".join(f))
def test_same_exact_answers_as_the_embedded_engine(engines, data, flt):
    """Exact paths: both engines return the brute-force top-k, never fewer than min(k, matching points)."""
    edge, client = engines
    ids, vectors, payloads = data
    mask = np.ones(N, bool) if flt is None else matches(payloads, flt)
    assert edge.count_matching("emb", flt) == client.count_matching("emb", flt) == mask.sum()
    queries = np.vstack([vectors[[0, 1777, 3999]], np.random.default_rng(1).standard_normal((2, DIM))])
    for k in (10, K):
        for q in queries:
            expected = brute_force(ids, vectors, q, k, mask)
            exact = None if flt else True  # a filter alone makes the search exact; no filter asks for it
            got_edge, scores_edge = edge.search("emb", q, k, payload_filter=flt, exact=exact)
            got_client, scores_client = client.search("emb", q, k, payload_filter=flt, exact=exact)
            assert len(got_client) == min(k, mask.sum())
            np.testing.assert_array_equal(got_client, expected)
            np.testing.assert_array_equal(got_edge, got_client)
            np.testing.assert_allclose(scores_edge, scores_client, atol=1e-4)


@pytest.mark.parametrize("size", [8, 300, 2000])
def test_same_answers_under_id_sets(engines, data, size):
    """Small id sets travel as HasId, large ones take the over-fetching scan; both engines stay exact and full."""
    edge, client = engines
    ids, vectors, payloads = data
    allowed = np.random.default_rng(size).choice(ids, size, replace=False)
    far = vectors @ vectors[42]
    for q in (vectors[42], vectors[int(np.argmin(far))]):
        for flt in (None, {"split": ["train", "val"]}):
            mask = np.isin(ids, allowed) & (np.ones(N, bool) if flt is None else matches(payloads, flt))
            got_edge, _ = edge.search("emb", q, K, payload_filter=flt, allowed_ids=allowed)
            got_client, _ = client.search("emb", q, K, payload_filter=flt, allowed_ids=allowed)
            assert len(got_client) == min(K, mask.sum())
            np.testing.assert_array_equal(got_client, brute_force(ids, vectors, q, K, mask))
            np.testing.assert_array_equal(got_edge, got_client)


def test_a_graph_search_still_sends_the_filter(engines, data, monkeypatch):
    """``exact=False`` under a filter is the caller's bet that the filter allows everything (the dataset alone in
    its collection): the filter must still travel, so a wrong bet costs recall, never a point outside it."""
    _, client = engines
    ids, vectors, _ = data
    sent = []
    real = client._client.query_points

    def spy(*args, **kwargs):
        sent.append(kwargs["query_filter"])
        return real(*args, **kwargs)

    monkeypatch.setattr(client._client, "query_points", spy)
    got, _ = client.search("emb", vectors[9], K, payload_filter={"dataset": [1, 2]}, exact=False)
    assert sent[-1].must[0].key == "dataset"  # the filter still travels with the graph walk
    np.testing.assert_array_equal(got, brute_force(ids, vectors, vectors[9], K, np.ones(N, bool)))


# ----------------------------------------------------------------------------------------------------------------
# Collection layout, payload indexes, transport


def test_layout_reaches_create_collection(recording, local_dir):
    layout = ServerLayout(shards=3, replicas=2, write_consistency=2, on_disk=True)
    with ClientVectorStore(path=local_dir / "q", layout=layout) as store:
        store.ensure_collection("emb", DIM)
        # local mode keeps on_disk in the collection's config ...
        params = store._client.get_collection("emb").config.params
        assert params.vectors.on_disk is True and params.vectors.size == DIM
        # ... but not the cluster layout (shard_number stays None there), so check the request a server would get
        [(_, name, kwargs)] = [r for r in store._client.requests if r[0] == "create_collection"]
        assert name == "emb"
        assert (kwargs["shard_number"], kwargs["replication_factor"], kwargs["write_consistency_factor"]) == (3, 2, 2)
        assert kwargs["vectors_config"].on_disk is True
        assert kwargs["hnsw_config"].payload_m == 0
        store.ensure_collection("emb", DIM)  # an existing collection is checked, not created again
        assert sum(r[0] == "create_collection" for r in store._client.requests) == 1
    with ClientVectorStore(path=":memory:") as store:  # unset: the server's defaults
        store.ensure_collection("emb", DIM)
        [(_, _, kwargs)] = [r for r in store._client.requests if r[0] == "create_collection"]
        assert kwargs["shard_number"] is kwargs["replication_factor"] is kwargs["write_consistency_factor"] is None
        assert kwargs["vectors_config"].on_disk is None


def test_payload_indexes_for_filter_fields_and_new_fields(recording, data):
    ids, vectors, payloads = data
    S = models.PayloadSchemaType
    with ClientVectorStore(path=":memory:") as store:
        store.ensure_collection("emb", DIM)
        # the fields VisionLens filters on are indexed when the collection is created, before any point
        assert store._client.indexes("emb") == {"dataset": S.INTEGER, "split": S.KEYWORD, "labels": S.KEYWORD}
        assert set(FILTER_FIELDS) == {"dataset", "split", "labels"}
        store.upsert("emb", ids[:100], vectors[:100], payloads[:100])
        assert store._client.indexes("emb")["brightness"] == S.FLOAT  # a new field, typed from its values
        before = len(store._client.requests)
        store.upsert("emb", ids[100:200], vectors[100:200], payloads[100:200])
        assert len(store._client.requests) == before  # known fields are not asked for again
        store.upsert("emb", ids[:2], vectors[:2], [{"reviewed": True, "note": None}, {"reviewed": False}])
        assert store._client.indexes("emb")["reviewed"] == S.BOOL and "note" not in store._client.indexes("emb")
        # a collection someone else created is asked for its indexes before the first upsert brings fields
        store._client.create_collection("theirs", vectors_config=models.VectorParams(size=DIM, distance="Cosine"))
        store.upsert("theirs", ids[:3], vectors[:3], [{"split": "val"}] * 3)
        assert store._client.indexes("theirs") == {"split": S.KEYWORD}
        store.drop("emb")
        store.ensure_collection("emb", DIM)  # recreated: indexed again
        assert sum(r[0] == "create_payload_index" and r[2] == "dataset" for r in store._client.requests) == 2
        assert store.count("emb") == 0


def test_edge_store_indexes_float_fields_too(tmp_path, data):
    """The index kind is shared with the embedded engine, which must accept the float kind as well."""
    ids, vectors, payloads = data
    with EdgeVectorStore(tmp_path / "e") as store:
        store.ensure_collection("emb", DIM)
        store.upsert("emb", ids[:50], vectors[:50], payloads[:50])
        schema = store._shard("emb").info().payload_schema
        assert {"dataset", "split", "labels", "brightness"} <= set(schema)


def test_prefer_grpc_reaches_the_client_and_local_mode_still_works(recording, local_dir, data):
    ids, vectors, payloads = data
    with ClientVectorStore(path=local_dir / "g", prefer_grpc=True, grpc_port=7334) as store:
        assert store._client.init_kwargs["prefer_grpc"] is True and store._client.init_kwargs["grpc_port"] == 7334
        assert store._client.init_options["grpc_port"] == 7334
        store.ensure_collection("emb", DIM)
        store.upsert("emb", ids[:500], vectors[:500], payloads[:500])
        got, _ = store.search("emb", vectors[3], 10, payload_filter={"dataset": 1})
        mask = matches(payloads[:500], {"dataset": 1})
        np.testing.assert_array_equal(got, brute_force(ids[:500], vectors[:500], vectors[3], 10, mask))


def test_a_real_remote_client_gets_grpc_port_and_api_key(monkeypatch):
    """Nothing listens on port 9: building the remote client sends nothing that must succeed."""
    from qdrant_client.qdrant_remote import QdrantRemote

    # its version check runs in a thread and would warn during a later test
    monkeypatch.setattr(QdrantRemote, "_check_compatibility", staticmethod(lambda *args: None))
    with pytest.warns(UserWarning, match="insecure connection"):
        store = ClientVectorStore(url="http://127.0.0.1:9", prefer_grpc=True, grpc_port=7334, api_key="sekret")
    try:
        remote = store._client._client
        assert type(remote).__name__ == "QdrantRemote"
        assert remote._prefer_grpc is True and remote._grpc_port == 7334
        assert ("api-key", "sekret") in remote._grpc_headers
        assert not store.exclusive  # a server may hold other applications' collections
    finally:
        store.close()


def test_requests_survive_the_grpc_conversion(data):
    """With ``prefer_grpc`` qdrant-client converts each REST model to protobuf; no server is needed to check that
    the filters, search params and payloads this store sends come through unchanged."""
    from qdrant_client import grpc as qdrant_grpc
    from qdrant_client.conversions.conversion import GrpcToRest, RestToGrpc

    ids, _, payloads = data
    with ClientVectorStore(path=":memory:", prefer_grpc=True) as store:
        for flt in FILTERS[1:]:
            for allowed in (None, ids[:5]):
                rest = store._filter(_terms(flt), allowed)
                back = GrpcToRest.convert_filter(RestToGrpc.convert_filter(rest))
                assert back.must == rest.must and not back.should and not back.must_not
        for params in (models.SearchParams(exact=True), models.SearchParams(hnsw_ef=512)):
            assert GrpcToRest.convert_search_params(RestToGrpc.convert_search_params(params)) == params
    for payload in payloads[:50]:  # as the gRPC upsert of a Batch carries them: inside a PointStruct
        point = qdrant_grpc.PointStruct(payload=RestToGrpc.convert_payload(payload))
        assert GrpcToRest.convert_payload(point.payload) == payload


def _terms(flt):
    from visionlens.store.vectors import _filter_terms

    return _filter_terms(flt)


def test_a_server_that_does_not_answer_is_named(monkeypatch):
    """Port 9 refuses connections at once: every entry point says which Qdrant it could not reach."""
    from qdrant_client.qdrant_remote import QdrantRemote

    monkeypatch.setattr(QdrantRemote, "_check_compatibility", staticmethod(lambda *args: None))
    with ClientVectorStore(url="http://127.0.0.1:9", timeout=5) as store:
        for call in (
            lambda: store.ensure_collection("emb", DIM),
            store.collections,
            lambda: store.count("emb"),
            lambda: store.search("emb", np.ones(DIM), 5, payload_filter={"dataset": 1}),
            lambda: store.drop("emb"),
        ):
            with pytest.raises(VectorStoreError, match=r"no usable answer from Qdrant at http://127\.0\.0\.1:9"):
                call()


# ----------------------------------------------------------------------------------------------------------------
# Settings


QDRANT_ENV = {
    "VISIONLENS_QDRANT_URL": "http://qdrant.internal:6333",
    "VISIONLENS_QDRANT_API_KEY": "k-123",
    "VISIONLENS_QDRANT_PREFER_GRPC": "true",
    "VISIONLENS_QDRANT_GRPC_PORT": "16334",
    "VISIONLENS_QDRANT_SHARDS": "4",
    "VISIONLENS_QDRANT_REPLICAS": "2",
    "VISIONLENS_QDRANT_WRITE_CONSISTENCY": "2",
    "VISIONLENS_QDRANT_ON_DISK": "1",
}


def test_settings_from_env_reach_the_server_store(recording, monkeypatch, tmp_path):
    """From the environment to the create request, through the one helper the app uses."""
    monkeypatch.setenv("VISIONLENS_HOME", str(tmp_path))
    for key, value in QDRANT_ENV.items():
        monkeypatch.setenv(key, value)
    settings = get_settings()
    assert (settings.qdrant_shards, settings.qdrant_replicas, settings.qdrant_write_consistency) == (4, 2, 2)
    assert settings.qdrant_prefer_grpc and settings.qdrant_on_disk and settings.qdrant_grpc_port == 16334
    with open_vector_store_from(settings) as store:
        assert isinstance(store, ClientVectorStore) and not store.exclusive
        init = store._client.init_kwargs
        assert init["url"] == "http://qdrant.internal:6333" and init["api_key"] == "k-123"
        assert init["prefer_grpc"] is True and init["grpc_port"] == 16334
        store.ensure_collection("emb", DIM)
        [(_, _, kwargs)] = [r for r in store._client.requests if r[0] == "create_collection"]
        assert (kwargs["shard_number"], kwargs["replication_factor"], kwargs["write_consistency_factor"]) == (4, 2, 2)
        assert kwargs["vectors_config"].on_disk is True
    assert not (tmp_path / "qdrant").exists()  # the embedded store was never opened


def test_without_a_url_the_settings_open_the_embedded_store(monkeypatch, tmp_path):
    monkeypatch.setenv("VISIONLENS_HOME", str(tmp_path))
    monkeypatch.delenv("VISIONLENS_QDRANT_URL", raising=False)
    monkeypatch.setenv("VISIONLENS_QDRANT_SHARDS", "3")  # concerns a server only
    with open_vector_store_from(get_settings()) as store:
        assert isinstance(store, EdgeVectorStore) and store.path == tmp_path / "qdrant"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VISIONLENS_QDRANT_SHARDS": "0"}, "VISIONLENS_QDRANT_SHARDS must be at least 1, got 0"),
        ({"VISIONLENS_QDRANT_REPLICAS": "-1"}, "VISIONLENS_QDRANT_REPLICAS must be at least 1"),
        ({"VISIONLENS_QDRANT_WRITE_CONSISTENCY": "0"}, "VISIONLENS_QDRANT_WRITE_CONSISTENCY must be at least 1"),
        ({"VISIONLENS_QDRANT_GRPC_PORT": "70000"}, "VISIONLENS_QDRANT_GRPC_PORT must be a TCP port"),
        (
            {"VISIONLENS_QDRANT_REPLICAS": "2", "VISIONLENS_QDRANT_WRITE_CONSISTENCY": "3"},
            r"VISIONLENS_QDRANT_WRITE_CONSISTENCY \(3\) cannot exceed VISIONLENS_QDRANT_REPLICAS \(2\)",
        ),
        ({"VISIONLENS_QDRANT_SHARDS": "two"}, "qdrant_shards"),
        ({"VISIONLENS_QDRANT_PREFER_GRPC": "maybe"}, "qdrant_prefer_grpc"),
    ],
)
def test_bad_settings_name_the_variable(monkeypatch, env, message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match=message):
        get_settings()


def test_bad_layout_and_port_fail_before_any_request():
    with pytest.raises(VectorStoreError, match="shards must be an integer of at least 1"):
        ServerLayout(shards=0)
    with pytest.raises(VectorStoreError, match="write_consistency"):
        ServerLayout(replicas=1, write_consistency=2)
    with pytest.raises(VectorStoreError, match="grpc_port"):
        ClientVectorStore(path=":memory:", grpc_port=0)


# ----------------------------------------------------------------------------------------------------------------
# deploy/docker-compose.yml (Docker cannot run here: its shape is checked, not started)


def test_compose_recipe_is_consistent_with_the_app():
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    services, volumes = compose["services"], compose["volumes"]
    qdrant, app = services["qdrant"], services["app"]

    assert re.fullmatch(r"qdrant/qdrant:v\d+\.\d+\.\d+", qdrant["image"])  # pinned, never :latest
    ports = {str(p).split(":")[-1] for p in qdrant["ports"]}
    assert {"6333", "6334"} <= ports
    storage = [v for v in qdrant["volumes"] if v.endswith(":/qdrant/storage")]
    assert storage and storage[0].split(":")[0] in volumes
    assert "test" in qdrant["healthcheck"]

    assert app["build"]["dockerfile"] == "deploy/Dockerfile" and (ROOT / "deploy" / "Dockerfile").is_file()
    assert (ROOT / "deploy" / app["build"]["context"]).resolve() == ROOT  # the repository is the build context
    assert app["depends_on"]["qdrant"]["condition"] == "service_healthy"
    command = app["command"]
    assert command[:3] == ["panel", "serve", "apps/browse.py"] and (ROOT / command[2]).is_file()
    assert "--address=0.0.0.0" in command and "--port=5006" in command
    assert any(c.startswith("--allow-websocket-origin=${ORIGIN") for c in command)
    assert any(c.startswith("--basic-auth=") for c in command)

    env = app["environment"]
    settings = {name.upper() for name in Settings.model_fields}
    named = [key for key in env if key.startswith("VISIONLENS_")]
    assert named and all(key.removeprefix("VISIONLENS_") in settings for key in named), named
    assert env["VISIONLENS_QDRANT_URL"] == "http://qdrant:6333"
    assert "PANEL_COOKIE_SECRET" in env  # Panel reads it from the environment, not from a visible argument
    home = env["VISIONLENS_HOME"]
    assert any(v.split(":")[0] in volumes and v.split(":")[1] == home for v in app["volumes"])

    # the optional API-key override sets the same key on both sides
    override = yaml.safe_load((ROOT / "deploy" / "docker-compose.api-key.yml").read_text())["services"]
    app_key = override["app"]["environment"]["VISIONLENS_QDRANT_API_KEY"]
    assert app_key == override["qdrant"]["environment"]["QDRANT__SERVICE__API_KEY"]
    assert "QDRANT_API_KEY".lower() in Settings.model_fields

    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim", dockerfile, re.M)
    assert "pip install" in dockerfile and ".[all]" in dockerfile
