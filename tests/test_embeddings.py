"""Embedders, the embedding job and vector import, on real JPEG files and real engines (no weights needed)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from visionlens.embeddings import EmbedderError, load_embedder
from visionlens.embeddings.builtin import BuiltinEmbedder
from visionlens.embeddings.clip import ClipEmbedder
from visionlens.embeddings.runner import embed_images, import_npy, import_parquet, load_image
from visionlens.store.vectors import ClientVectorStore, EdgeVectorStore


def striped(rng: np.random.Generator, hue: str, vertical: bool) -> Image.Image:
    """Two looks: warm horizontal stripes vs cool vertical stripes, with random size, phase and noise."""
    h, w = int(rng.integers(120, 400)), int(rng.integers(120, 400))
    period = int(rng.integers(8, 20))
    axis = np.arange(w if vertical else h)
    band = ((axis + rng.integers(0, period)) // (period // 2)) % 2
    band = np.broadcast_to(band[None, :] if vertical else band[:, None], (h, w)).astype(np.float32)
    base = np.array([200, 60, 40] if hue == "warm" else [40, 80, 200], np.float32)
    img = base * (0.55 + 0.45 * band[..., None]) + rng.normal(0, 12, (h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """20 good JPEGs in two visual groups, one corrupt file, one truncated JPEG and one missing path."""
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    items, groups = [], {}
    for i in range(20):
        group = i % 2
        path = root / f"img_{i:02d}.jpg"
        striped(rng, "warm" if group == 0 else "cool", vertical=bool(group)).save(path, quality=90)
        items.append((100 + i, str(path)))
        groups[100 + i] = group
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" + bytes(200))
    whole = (root / "img_00.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    bad = [(900, str(root / "corrupt.jpg")), (901, str(root / "truncated.jpg")), (902, str(root / "missing.jpg"))]
    return items, bad, groups


@pytest.fixture(scope="module")
def clip_model():
    return ClipEmbedder("ViT-B-32", random_init=True, device="cpu")


def pixels_of(embedder, uris):
    """A batch as the runner builds it: numpy for the builtin embedder, a tensor for CLIP."""
    items = [embedder.transform(load_image(u, embedder.image_size)) for u in uris]
    return np.stack(items) if isinstance(items[0], np.ndarray) else torch.stack(items)


def test_builtin_embedder_groups_similar_looking_images(images):
    items, _, groups = images
    emb = BuiltinEmbedder()
    assert emb.name == "builtin-colorstats-v1" and 64 <= emb.dim <= 256
    vectors = emb.embed_batch(pixels_of(emb, [u for _, u in items]))
    assert vectors.shape == (20, emb.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors, emb.embed_batch(pixels_of(emb, [u for _, u in items])))
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -1)
    labels = np.array([groups[i] for i, _ in items])
    assert (labels[sims.argmax(1)] == labels).all()


def test_runner_embeds_skips_done_ids_and_reports_bad_files(tmp_path, images):
    items, bad, groups = images
    emb = BuiltinEmbedder()
    calls = []
    with EdgeVectorStore(tmp_path / "vec") as store:
        first = embed_images(
            items[:12] + bad,
            emb,
            store,
            batch_size=4,
            num_workers=2,
            progress=lambda done, total: calls.append((done, total)),
            payload_fn=lambda ids: [{"look": "warm" if groups[int(i)] == 0 else "cool"} for i in ids],
        )
        assert first.embedded == 12 and first.skipped == 0
        assert sorted(f[0] for f in first.failed) == [900, 901, 902]
        assert all(reason for _, _, reason in first.failed)
        assert "missing.jpg" in dict((f[0], f[1]) for f in first.failed)[902]
        assert calls[-1] == (15, 15) and [d for d, _ in calls] == sorted(d for d, _ in calls)
        assert store.count(emb.name) == 12

        # ids and vectors stay paired through the worker processes
        ids = np.array([i for i, _ in items[:12]])
        direct = emb.embed_batch(pixels_of(emb, [u for _, u in items[:12]]))
        np.testing.assert_allclose(store.get_vectors(emb.name, ids), direct, atol=1e-5)

        # a second run only does what is new; failed images are retried (and fail again)
        second = embed_images(items + bad, emb, store, batch_size=4, num_workers=0)
        assert (second.embedded, second.skipped, len(second.failed)) == (8, 12, 3)
        assert store.count(emb.name) == 20

        # payloads written by the first run drive filtered similarity search
        hits, _ = store.search(emb.name, direct[0], 5, payload_filter={"look": "cool"})
        assert len(hits) == 5 and all(groups[int(i)] == 1 for i in hits)


def test_clip_random_init_embeds_images_and_text(tmp_path, images, clip_model):
    items, bad, _ = images
    assert clip_model.name == "clip-ViT-B-32-random" and clip_model.dim == 512
    with EdgeVectorStore(tmp_path / "vec") as store:
        summary = embed_images(items[:6] + bad[:1], clip_model, store, batch_size=3, num_workers=1)
        assert (summary.embedded, len(summary.failed)) == (6, 1)
        stored = store.get_vectors(clip_model.name, np.array([i for i, _ in items[:6]]))
    np.testing.assert_allclose(np.linalg.norm(stored, axis=1), 1.0, atol=1e-5)
    direct = clip_model.embed_batch(pixels_of(clip_model, [u for _, u in items[:6]]))
    np.testing.assert_allclose(stored, direct, atol=1e-4)
    text = clip_model.embed_text(["a red car", "a dog on a beach"])
    assert text.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(text[0], text[1])


def test_clip_loads_a_local_weights_file(tmp_path, images):
    items, _, _ = images
    source = ClipEmbedder("ViT-S-32-alt", random_init=True, device="cpu")  # small: the file is written and read
    weights = tmp_path / "my-clip.pt"
    torch.save(source.model.state_dict(), weights)
    loaded = ClipEmbedder("ViT-S-32-alt", None, weights=weights, device="cpu")
    assert loaded.name == "clip-ViT-S-32-alt-file-my-clip"
    px = pixels_of(source, [u for _, u in items[:3]])
    np.testing.assert_allclose(loaded.embed_batch(px), source.embed_batch(px), atol=1e-5)


def test_clip_fails_fast_and_clearly_without_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EmbedderError, match=r"not in the Hugging Face cache.*weights=PATH"):
        ClipEmbedder("ViT-B-32", "openai", cache_dir=str(tmp_path / "empty-cache"))
    with pytest.raises(EmbedderError, match="does not exist"):
        ClipEmbedder("ViT-B-32", "openai", weights=tmp_path / "nope.pt")
    with pytest.raises(EmbedderError, match="no pretrained tag 'nope'"):
        ClipEmbedder("ViT-B-32", "nope")
    with pytest.raises(EmbedderError, match="no model"):
        ClipEmbedder("ViT-Nonexistent", random_init=True)
    with pytest.raises(EmbedderError, match="unknown embedder"):
        load_embedder("word2vec")
    assert load_embedder("builtin").name == "builtin-colorstats-v1"


def clustered_vectors(n=300, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, dim)).astype(np.float32)


def test_import_npy_with_npy_or_text_ids(tmp_path):
    vectors = clustered_vectors()
    ids = np.arange(1, 301, dtype=np.int64) * 7
    np.save(tmp_path / "v.npy", vectors)
    np.save(tmp_path / "ids.npy", ids)
    np.savetxt(tmp_path / "ids.txt", ids, fmt="%d")
    seen = []
    with ClientVectorStore(path=":memory:") as store:
        summary = import_npy(
            tmp_path / "v.npy",
            tmp_path / "ids.npy",
            store,
            "pre",
            payload_fn=lambda chunk: seen.append(len(chunk)) or [{"split": "val"}] * len(chunk),
            batch=128,
        )
        assert (summary.imported, summary.dim) == (300, 16) and seen == [128, 128, 44]
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        np.testing.assert_allclose(store.get_vectors("pre", ids[[0, 299]]), unit[[0, 299]], atol=1e-5)
        import_npy(tmp_path / "v.npy", tmp_path / "ids.txt", store, "pre2")
        assert store.count("pre2") == 300


def test_import_errors_name_the_problem(tmp_path):
    vectors = clustered_vectors()
    np.save(tmp_path / "v.npy", vectors)
    np.save(tmp_path / "short_ids.npy", np.arange(1, 200))
    np.save(tmp_path / "dup_ids.npy", np.r_[np.arange(1, 300), 5])
    np.save(tmp_path / "ids.npy", np.arange(1, 301))
    np.save(tmp_path / "v8.npy", vectors[:, :8])
    with ClientVectorStore(path=":memory:") as store:
        with pytest.raises(EmbedderError, match="199 ids but .* 300 vectors"):
            import_npy(tmp_path / "v.npy", tmp_path / "short_ids.npy", store, "pre")
        with pytest.raises(EmbedderError, match="appear twice, e.g. \\[5\\]"):
            import_npy(tmp_path / "v.npy", tmp_path / "dup_ids.npy", store, "pre")
        with pytest.raises(EmbedderError, match="not samples of this dataset"):
            import_npy(tmp_path / "v.npy", tmp_path / "ids.npy", store, "pre", valid_ids=np.arange(1, 101))
        import_npy(tmp_path / "v.npy", tmp_path / "ids.npy", store, "pre")
        with pytest.raises(EmbedderError, match="8-d vectors do not fit collection 'pre'"):
            import_npy(tmp_path / "v8.npy", tmp_path / "ids.npy", store, "pre")
        assert store.count("pre") == 300


def test_import_parquet_by_sample_id_or_file_path(tmp_path):
    vectors = clustered_vectors(n=50, dim=12)
    paths = [f"images/{i}.jpg" for i in range(50)]
    table = pa.table(
        {
            "sample_id": pa.array(np.arange(11, 61), pa.int64()),
            "file": paths,
            "embedding": pa.array(list(vectors), pa.list_(pa.float32())),
        }
    )
    pq.write_table(table, tmp_path / "e.parquet", row_group_size=16)
    mapping = {p: 1000 + i for i, p in enumerate(paths)}
    with EdgeVectorStore(tmp_path / "vec") as store:
        assert import_parquet(str(tmp_path / "e.parquet"), store, "by_id", batch=16).imported == 50
        assert store.search("by_id", vectors[3], 1, exact=True)[0][0] == 14
        import_parquet(str(tmp_path / "e.parquet"), store, "by_path", path_column="file", path_to_id=mapping)
        assert store.search("by_path", vectors[3], 1, exact=True)[0][0] == 1003
        with pytest.raises(EmbedderError, match="not in the dataset, e.g. \\['images/0.jpg'"):
            import_parquet(str(tmp_path / "e.parquet"), store, "x", path_column="file", path_to_id={})
        with pytest.raises(EmbedderError, match="no column 'vec'"):
            import_parquet(str(tmp_path / "e.parquet"), store, "x", vector_column="vec")
        ragged = pa.table({"sample_id": [1, 2], "embedding": [[0.1, 0.2], [0.3]]})
        pq.write_table(ragged, tmp_path / "r.parquet")
        with pytest.raises(EmbedderError, match="different lengths"):
            import_parquet(str(tmp_path / "r.parquet"), store, "x")
        assert "x" not in store.collections()
