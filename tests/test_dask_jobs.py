"""Embeddings and thumbnails on a real Dask cluster: a LocalCluster with a scheduler and two worker processes,
real JPEG/PNG files, real vector stores, and the `visionlens` command in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from distributed import Client, LocalCluster
from PIL import Image

from tests.factories import coco_doc, write_coco
from visionlens.dask_jobs import (
    EmbedderSpec,
    cluster_client,
    embed_on_cluster,
    pregenerate_on_cluster,
    resolve_scheduler,
    worker_embedders,
)
from visionlens.embeddings.builtin import BuiltinEmbedder
from visionlens.embeddings.runner import embed_images
from visionlens.errors import JobCancelled, VisionLensError
from visionlens.store.vectors import EdgeVectorStore
from visionlens.thumbnails import ThumbnailCache

BUILTIN = BuiltinEmbedder.name


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def client(cluster):
    with Client(cluster, set_as_default=False) as c:
        yield c


def photo(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """Smooth colour fields plus grain: decodes like a photo, and every image embeds differently."""
    low = rng.integers(0, 255, (4, 5, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(low).resize(size, Image.Resampling.BICUBIC), np.float32)
    return Image.fromarray(np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """26 readable images (JPEG and PNG, several sizes, one with an EXIF rotation) plus a corrupt file and a
    missing path."""
    root = tmp_path_factory.mktemp("dask_imgs")
    rng = np.random.default_rng(7)
    good = []
    for i in range(26):
        ext = "png" if i % 5 == 0 else "jpg"
        path = root / f"img_{i:02d}.{ext}"
        im = photo(rng, (160, 100) if i == 3 else (int(rng.integers(80, 200)), int(rng.integers(60, 160))))
        if i == 3:
            exif = Image.Exif()
            exif[0x0112] = 6  # rotated: the cluster must apply it like the single-process run
            im.save(path, quality=90, exif=exif)
        else:
            im.save(path, **({"quality": 90} if ext == "jpg" else {}))
        good.append((1000 + i, str(path)))
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" + bytes(300))
    bad = [(2000, str(root / "corrupt.jpg")), (2001, str(root / "missing.jpg"))]
    return good, bad


def single_process(tmp_path: Path, items, embedder, batch_size: int = 4):
    with EdgeVectorStore(tmp_path / "single") as vs:
        summary = embed_images(items, embedder, vs, batch_size=batch_size, num_workers=1)
        ids = np.array(sorted(i for i, _ in items if i not in {f[0] for f in summary.failed}))
        return summary, ids, vs.get_vectors(embedder.name, ids)


def test_cluster_vectors_equal_the_single_process_run_and_bad_images_are_reported(tmp_path, client, images):
    good, bad = images
    items = good[:13] + bad[:1] + good[13:] + bad[1:]
    expected, ids, vectors = single_process(tmp_path, items, BuiltinEmbedder())
    calls = []
    with EdgeVectorStore(tmp_path / "dask") as vs:
        summary = embed_on_cluster(
            items,
            EmbedderSpec.of("builtin"),
            vs,
            client,
            batch_size=4,
            batches_per_chunk=2,
            progress=lambda d, t: calls.append((d, t)),
            write_every=8,
        )
        assert (summary.embedded, summary.skipped) == (26, 0)
        assert sorted(vs.all_ids(BUILTIN).tolist()) == ids.tolist()
        np.testing.assert_allclose(vs.get_vectors(BUILTIN, ids), vectors, atol=1e-5)
    assert {f[0] for f in summary.failed} == {f[0] for f in expected.failed} == {2000, 2001}
    reasons = {sid: reason for sid, _, reason in summary.failed}
    assert "FileNotFound" in reasons[2001] and reasons[2000]
    assert calls[-1] == (28, 28) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    # each worker process built the embedder at most once, in the worker, never in this process
    built = client.run(worker_embedders)
    assert len(built) == 2 and all(names in ([], [BUILTIN]) for names in built.values())
    assert any(built.values()) and worker_embedders() == []


def test_clip_on_the_cluster_gives_the_single_process_vectors(tmp_path, client, images):
    """open_clip with random weights saved to a file: every worker loads the same weights."""
    torch = pytest.importorskip("torch")
    from visionlens.embeddings.clip import ClipEmbedder

    good, bad = images
    items = good[:6] + bad[:1]
    source = ClipEmbedder("ViT-S-32-alt", random_init=True, device="cpu")
    weights = tmp_path / "random-clip.pt"
    torch.save(source.model.state_dict(), weights)
    _, ids, vectors = single_process(tmp_path, items, source, batch_size=3)
    spec = EmbedderSpec.of("clip:ViT-S-32-alt", pretrained=None, weights=weights, device="cpu")
    with EdgeVectorStore(tmp_path / "dask") as vs:
        summary = embed_on_cluster(items, spec, vs, client, batch_size=3, batches_per_chunk=1)
        assert (summary.embedded, [f[0] for f in summary.failed]) == (6, [2000])
        assert vs.collections() == ["clip-ViT-S-32-alt-file-random-clip"]  # named after the weights file
        np.testing.assert_allclose(vs.get_vectors(vs.collections()[0], ids), vectors, atol=1e-5)
    with pytest.raises(VisionLensError, match="weights=PATH"):
        EmbedderSpec.of("clip:ViT-S-32-alt", random_init=True)


def test_a_cancelled_run_resumes_with_only_what_is_missing(tmp_path, client, images):
    good, bad = images
    items = good + bad
    _, ids, clean = single_process(tmp_path, items, BuiltinEmbedder())

    def cancel_after_first_chunk(done: int, total: int) -> None:
        if done:
            raise JobCancelled("stop")

    with EdgeVectorStore(tmp_path / "dask") as vs:
        with pytest.raises(JobCancelled):
            embed_on_cluster(
                items, EmbedderSpec.of("builtin"), vs, client, batch_size=4, batches_per_chunk=2,
                max_in_flight=2, progress=cancel_after_first_chunk,
            )  # fmt: skip
        first = len(vs.all_ids(BUILTIN))
        assert first == 8  # the first chunk (2 batches of 4) arrived before the stop: written, not lost
        # the chunk still queued was cancelled on the cluster, not left running
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and client.run_on_scheduler(
            lambda dask_scheduler: sum(str(k).startswith("visionlens-embed") for k in dask_scheduler.tasks)
        ):
            time.sleep(0.1)
        assert not client.run_on_scheduler(
            lambda dask_scheduler: [k for k in dask_scheduler.tasks if str(k).startswith("visionlens-embed")]
        )
        second = embed_on_cluster(items, EmbedderSpec.of("builtin"), vs, client, batch_size=4, batches_per_chunk=2)
        assert second.skipped == first and second.embedded == len(ids) - first
        assert sorted(vs.all_ids(BUILTIN).tolist()) == ids.tolist()
        np.testing.assert_allclose(vs.get_vectors(BUILTIN, ids), clean, atol=1e-5)
        third = embed_on_cluster(items, EmbedderSpec.of("builtin"), vs, client, batch_size=4)
        assert (third.embedded, third.skipped, len(third.failed)) == (0, len(ids), 2)


@pytest.fixture
def slow_server(images):
    """An HTTP server that answers each image after 3 s: a chunk that takes a while on the workers."""
    import http.server
    import threading

    good, _ = images
    body = Path(good[1][1]).read_bytes()

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            time.sleep(3)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_cancel_is_noticed_while_the_workers_are_still_busy(tmp_path, client, slow_server):
    """A cancelled job must not wait for a slow chunk to finish: progress is asked between results too."""
    items = [(1, f"{slow_server}/a.jpg"), (2, f"{slow_server}/b.jpg")]
    calls = []

    def cancel(done: int, total: int) -> None:
        calls.append((done, total))
        raise JobCancelled("stop")

    started = time.monotonic()
    with EdgeVectorStore(tmp_path / "dask") as vs:
        with pytest.raises(JobCancelled):
            embed_on_cluster(items, EmbedderSpec.of("builtin"), vs, client, batch_size=1, progress=cancel)
        assert time.monotonic() - started < 2.9 and calls == [(0, 2)]
        assert vs.count(BUILTIN) == 0


def test_thumbnails_on_the_cluster_equal_the_single_process_cache(tmp_path, client, images):
    good, bad = images
    items = good + bad
    here = ThumbnailCache(tmp_path / "here", 64)
    stats = here.pregenerate(items, workers=2)
    assert (stats.generated, stats.placeholders) == (26, 2)
    there = ThumbnailCache(tmp_path / "there", 64)
    calls = []
    summary = pregenerate_on_cluster(there, items, client, chunk_size=5, progress=lambda d, t: calls.append((d, t)))
    assert (summary.total, summary.generated, summary.cached) == (28, 26, 0)
    assert sorted(f[0] for f in summary.failed) == [2000, 2001]
    assert calls[-1] == (28, 28)
    assert sorted(there.files()) == sorted(here.files())
    for _, uri in good:
        a, b = here.path_for(uri), there.path_for(uri)
        assert a.read_bytes() == b.read_bytes()
        with Image.open(b) as im:
            assert max(im.size) == 64
    rotated = Image.open(there.path_for(good[3][1]))
    original = Image.open(good[3][1])
    assert rotated.size[0] < rotated.size[1] and original.size[0] > original.size[1]  # EXIF applied on the worker
    again = pregenerate_on_cluster(there, items, client)
    assert (again.generated, again.cached, again.placeholders) == (0, 26, 2)


def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VISIONLENS_HOME": str(home), "COLUMNS": "200", "VISIONLENS_DASK_SCHEDULER": ""}
    return subprocess.run(
        [sys.executable, "-m", "visionlens.cli", *args], capture_output=True, text=True, env=env, timeout=180
    )


def photos_dataset(root: Path, database: Path, files: list[tuple[int, str]]) -> None:
    """A COCO dataset ``photos`` of copies of ``files``, ingested into ``database`` (closed again)."""
    from visionlens.ingestion import ingest
    from visionlens.store.metadata import MetadataStore

    doc = coco_doc([{"id": i + 1, "file_name": Path(uri).name} for i, (_, uri) in enumerate(files)], [])
    write_coco(root, doc, make_images=False)
    (root / "images").mkdir()
    for _, uri in files:
        (root / "images" / Path(uri).name).write_bytes(Path(uri).read_bytes())
    store = MetadataStore(database)
    ingest(store, str(root), "photos")
    store.close()


def test_cli_embeds_and_renders_thumbnails_on_the_cluster(tmp_path, home, cluster, images):
    from visionlens import media
    from visionlens.store.metadata import close_all_stores, open_store

    good, _ = images
    photos_dataset(tmp_path / "coco", home / "visionlens.duckdb", good[:10])

    out = run_cli(home, "embed", "photos", "--dask", cluster.scheduler_address, "--project", "pca")
    assert out.returncode == 0, out.stderr
    assert "embedded 10 images" in out.stderr and "on Dask" in out.stderr
    out = run_cli(home, "thumbnails", "photos", "--dask", cluster.scheduler_address, "--size", "48")
    assert out.returncode == 0, out.stderr
    assert "10 rendered" in out.stderr and "0 unreadable" in out.stderr

    store = open_store()
    ds_id = store.get_dataset("photos").id
    index, sample_ids = store.sample_index(ds_id)
    uris = [media.join(store.dataset_by_id(ds_id).root, p) for p in index.filepath]
    assert store.collection_spec(BUILTIN) is not None  # registered like the single-process run does
    emb = BuiltinEmbedder()
    with EdgeVectorStore(tmp_path / "single") as vs:
        embed_images(list(zip(sample_ids.tolist(), uris)), emb, vs, batch_size=64)
        expected = vs.get_vectors(BUILTIN, sample_ids)
    close_all_stores()
    from visionlens.embedding_jobs import close_vector_stores, vector_store

    try:
        np.testing.assert_allclose(vector_store().get_vectors(BUILTIN, sample_ids), expected, atol=1e-5)
    finally:
        close_vector_stores()
    cache = ThumbnailCache(home / "thumbnails", 48)
    assert all(cache.path_for(u).is_file() for u in uris)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_scheduler_is_a_clear_error(monkeypatch):
    address = f"tcp://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(VisionLensError, match=r"cannot reach the Dask scheduler at .*127\.0\.0\.1.*within 2 s"):
        with cluster_client(address, timeout=2):
            pass
    assert time.monotonic() - started < 15
    monkeypatch.setenv("VISIONLENS_DASK_SCHEDULER", address)
    assert resolve_scheduler(None) == address and resolve_scheduler("none") is None
    assert resolve_scheduler(" tcp://h:1 ") == "tcp://h:1"
    monkeypatch.setitem(sys.modules, "distributed", None)  # as on an install without the extra
    with pytest.raises(VisionLensError, match=r"pip install 'visionlens\[dask\]'"):
        with cluster_client(address):
            pass


def test_the_http_api_runs_embed_and_thumbnails_on_the_cluster(tmp_path, cluster, images):
    """The served app (its own process) is the owner: it sends the work to the cluster and writes the results."""
    from tests.browser_helpers import serve_app, wait_until
    from visionlens.client import Client as ApiClient
    from visionlens.server.owner import read_owner

    good, _ = images
    home = tmp_path / "home"
    photos_dataset(tmp_path / "coco", home / "visionlens.duckdb", good[:8])
    proc, url = serve_app(home, env={"VISIONLENS_DASK_SCHEDULER": "", "VISIONLENS_ALLOWED_ROOTS": str(tmp_path)})
    try:
        urllib.request.urlopen(url + "/browse", timeout=120).read()  # the first session mounts the API
        owner = wait_until(lambda: read_owner(home / "visionlens.duckdb"), timeout=30)
        api = ApiClient(owner.url, owner.token, poll_s=0.2)
        out = api.embed("photos", project="none", dask_scheduler=cluster.scheduler_address)
        assert (out["embedded"], out["dask_scheduler"]) == (8, cluster.scheduler_address)
        again = api.embed("photos", project="none", dask_scheduler=cluster.scheduler_address)
        assert (again["embedded"], again["skipped"]) == (0, 8)
        thumbs = api.thumbnails("photos", size=40, dask_scheduler=cluster.scheduler_address)
        assert (thumbs["generated"], thumbs["placeholders"], thumbs["size"]) == (8, 0, 40)
        api.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert len(list(ThumbnailCache(home / "thumbnails", 40).files())) == 8


def test_only_an_admin_may_name_another_scheduler_over_the_api(tmp_path, monkeypatch):
    """The server unpickles what a scheduler sends back, so editors may use only the server's own (or none)."""
    from visionlens.errors import NotAllowedError
    from visionlens.server.api import _check_scheduler
    from visionlens.server.roles import TOKEN_USER

    roles = tmp_path / "roles.yaml"
    roles.write_text("users:\n  ann: admin\n  bob: editor\n")
    monkeypatch.setenv("VISIONLENS_ROLES_FILE", str(roles))
    monkeypatch.setenv("VISIONLENS_DASK_SCHEDULER", "tcp://ours:8786")
    with pytest.raises(NotAllowedError, match="only an admin"):
        _check_scheduler("bob", "tcp://elsewhere:8786")
    for user, scheduler in [("bob", None), ("bob", "none"), ("bob", "tcp://ours:8786"), ("ann", "tcp://x:1")]:
        _check_scheduler(user, scheduler)
    _check_scheduler(TOKEN_USER, "tcp://elsewhere:8786")


def test_workers_read_gs_images(tmp_path, client, images):
    """Workers read ``gs://`` through gcsfs like this process does (here: a GCS emulator both are pointed at)."""
    from tests.gcs_emulator import gcs_emulator
    from visionlens import media

    good, _ = images
    local = tmp_path / "up"
    local.mkdir()
    for _, uri in good[:6]:
        (local / Path(uri).name).write_bytes(Path(uri).read_bytes())
    with gcs_emulator(tmp_path / "emulator") as emu:
        root = emu.upload(local, "imgs")
        items = [(sid, f"{root}/{Path(uri).name}") for sid, uri in good[:6]] + [(3000, f"{root}/gone.jpg")]
        # what a worker machine's environment would say; set here on the running workers
        endpoint = emu.endpoint
        point = lambda: os.environ.update(STORAGE_EMULATOR_HOST=endpoint) or media.configure_gcs()  # noqa: E731
        try:
            assert set(client.run(point).values()) == {emu.endpoint}  # a lambda travels by value, os by name
            _, ids, expected = single_process(tmp_path, items, BuiltinEmbedder())
            with EdgeVectorStore(tmp_path / "dask") as vs:
                summary = embed_on_cluster(items, EmbedderSpec.of("builtin"), vs, client, batch_size=2)
                assert (summary.embedded, [f[0] for f in summary.failed]) == (6, [3000])
                np.testing.assert_allclose(vs.get_vectors(BUILTIN, ids), expected, atol=1e-5)
            thumbs = pregenerate_on_cluster(ThumbnailCache(tmp_path / "thumbs", 32), items, client)
            assert (thumbs.generated, [f[0] for f in thumbs.failed]) == (6, [3000])
        finally:
            client.run(lambda: os.environ.pop("STORAGE_EMULATOR_HOST", None) and media.configure_gcs())
