"""Near-duplicates and train/val leakage on real image files: planted copies are found, look-alikes are not.

The dataset is written with Pillow: distinct synthetic scenes (random gradients, stripes and shapes, so unrelated
images are not trivially alike) plus planted copies of some of them, each made one way (shifted by a few pixels,
brightened, re-encoded at JPEG quality 20, resized, or all at once), some in the other split (leaks) and some in
the same split. Vectors come from the built-in embedder through the real embedding runner into a real embedded
vector store; hashes from ``compute_hashes``.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance

import visionlens as vl
from visionlens.embedding_jobs import embed_dataset
from visionlens.insights import load_findings, save_run
from visionlens.insights.duplicates import (
    DuplicateParams,
    find_near_duplicates,
    hash_candidates,
    knn_graph,
)
from visionlens.insights.hashes import compute_hashes, hamming, hash_dataset
from visionlens.query import Filters
from visionlens.store.vectors import EdgeVectorStore

SIZE = (320, 240)
MARGIN = 8
N_SCENES = 60
VARIANTS = ("shift", "bright", "jpeg", "resize", "combo")


# -- the dataset ---------------------------------------------------------------------------------------------


def _scene(rng: np.random.Generator) -> Image.Image:
    """A canvas MARGIN pixels larger than SIZE on each side, so a shifted copy shows real content, not padding."""
    w, h = SIZE[0] + 2 * MARGIN, SIZE[1] + 2 * MARGIN
    angle = rng.uniform(0, 2 * np.pi)
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    t = np.cos(angle) * xx + np.sin(angle) * yy
    t = (t - t.min()) / (np.ptp(t) + 1e-9)
    img = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
    if rng.random() < 0.5:
        freq, theta = rng.uniform(4, 30), rng.uniform(0, np.pi)
        img += 30 * np.sin(2 * np.pi * freq * (np.cos(theta) * xx + np.sin(theta) * yy))[..., None]
    img += rng.normal(0, 6, img.shape)
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(3, 9))):
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        bw, bh = rng.uniform(15, w / 2.5), rng.uniform(15, h / 2.5)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        kind = int(rng.integers(3))
        if kind == 0:
            draw.ellipse([x0, y0, x0 + bw, y0 + bh], fill=colour)
        elif kind == 1:
            draw.rectangle([x0, y0, x0 + bw, y0 + bh], fill=colour)
        else:
            draw.polygon([tuple(rng.uniform(0, [w, h])) for _ in range(int(rng.integers(3, 6)))], fill=colour)
    return im


def _view(canvas: Image.Image, dx: int = 0, dy: int = 0) -> Image.Image:
    return canvas.crop((MARGIN + dx, MARGIN + dy, MARGIN + dx + SIZE[0], MARGIN + dy + SIZE[1]))


def _reencoded(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _copy(canvas: Image.Image, how: str) -> Image.Image:
    if how == "shift":
        return _view(canvas, 5, -4)
    if how == "bright":
        return ImageEnhance.Brightness(_view(canvas)).enhance(1.25)
    if how == "jpeg":
        return _reencoded(_view(canvas), 20)
    if how == "resize":
        return _view(canvas).resize((200, 150), Image.Resampling.BILINEAR)
    return _reencoded(ImageEnhance.Brightness(_view(canvas, 4, -3)).enhance(1.2), 35)  # all at once


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A YOLO folder (train/val) of N_SCENES distinct scenes and planted copies; returns what was planted.

    Copies 0-14: one per variant kind, three times; even ones land in the other split (a leak), odd ones in the
    same split. Scene 15 has two copies (shift in its split, jpeg in the other): a group of three.
    """
    root = tmp_path_factory.mktemp("scenes")
    rng = np.random.default_rng(11)
    groups: list[list[str]] = []
    split_of: dict[str, str] = {}

    def save(im: Image.Image, split: str, name: str) -> str:
        rel = f"images/{split}/{name}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        im.convert("RGB").save(root / rel, "JPEG", quality=92)
        split_of[rel] = split
        return rel

    for i in range(N_SCENES):
        canvas = _scene(rng)
        split = "val" if i % 4 == 3 else "train"
        base = save(_view(canvas), split, f"scene{i:03d}")
        other = "val" if split == "train" else "train"
        if i < 15:
            how = VARIANTS[i % len(VARIANTS)]
            groups.append([base, save(_copy(canvas, how), other if i % 2 == 0 else split, f"scene{i:03d}_{how}")])
        elif i == 15:
            groups.append(
                [
                    base,
                    save(_copy(canvas, "shift"), split, f"scene{i:03d}_shift"),
                    save(_copy(canvas, "jpeg"), other, f"scene{i:03d}_jpeg"),
                ]
            )
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames:\n  0: thing\n")
    return {"root": root, "groups": groups, "split": split_of}


@pytest.fixture
def vectors(tmp_path: Path):
    vs = EdgeVectorStore(tmp_path / "vectors")
    yield vs
    vs.close()


@pytest.fixture
def scenes_ds(store, scenes, vectors):
    """The scenes ingested, embedded with the built-in embedder and hashed."""
    ds = vl.ingest(scenes["root"], "scenes", store=store)
    summary = embed_dataset(store, ds.id, "builtin", vectors=vectors, num_workers=0)
    assert summary.embedded == len(ds.sample_ids()) and not summary.failed
    assert compute_hashes(store, ds.id) == len(ds.sample_ids())
    return ds


def _groups(findings) -> list[frozenset[str]]:
    return [frozenset(f.detail["files"]) for f in findings]


def _kind_of(files: frozenset[str]) -> str:
    return next((f.rsplit("_", 1)[1][:-4] for f in files if "_" in Path(f).name), "?")


# -- hashing ---------------------------------------------------------------------------------------------------


def test_hashes_are_stored_as_uint64_and_resume(store, scenes):
    ds = vl.ingest(scenes["root"], "scenes", store=store)
    n = len(ds.sample_ids())
    assert compute_hashes(store, ds.id, workers=2) == n
    ids, hashes = store.image_hashes(ds.id, "phash")
    assert len(ids) == n and hashes.dtype == np.uint64 and len(np.unique(hashes)) > n * 0.9
    assert len(store.image_hashes(ds.id, "dhash")[0]) == n
    assert compute_hashes(store, ds.id) == 0  # everything hashed: nothing to do
    summary = hash_dataset(store, ds.id)
    assert summary.hashed == 0 and summary.skipped == n and not summary.failed


def test_corrupt_and_missing_images_are_counted_not_raised(store, scenes, tmp_path, caplog):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(scenes["root"], root)
    ds = vl.ingest(root, "broken", store=store)
    n = len(ds.sample_ids())
    (root / "images/train/scene000.jpg").write_bytes(b"this is not a JPEG")
    (root / "images/train/scene001.jpg").unlink()
    truncated = root / "images/train/scene002.jpg"
    truncated.write_bytes(truncated.read_bytes()[:300])
    with caplog.at_level(logging.WARNING, logger="visionlens.insights.hashes"):
        summary = hash_dataset(store, ds.id)
    assert summary.hashed == n - 3 and len(summary.failed) == 3
    reasons = {Path(uri).name: why for _, uri, why in summary.failed}
    assert set(reasons) == {"scene000.jpg", "scene001.jpg", "scene002.jpg"}
    assert "not found" in reasons["scene001.jpg"]
    assert "3 of" in caplog.text and "could not be hashed" in caplog.text
    assert len(store.image_hashes(ds.id, "phash")[0]) == n - 3
    # the failures are retried next time (a restored file gets its hash), the rest is not redone
    shutil.copy(scenes["root"] / "images/train/scene001.jpg", root / "images/train/scene001.jpg")
    assert compute_hashes(store, ds.id) == 1


def test_phash_separates_copies_from_unrelated_scenes_better_than_dhash(scenes_ds, scenes):
    """Why phash is the default hash: the gap between the farthest copy and the closest unrelated scene."""
    samples = scenes_ds.samples(limit=1000)
    sid = dict(zip(samples["filepath"], samples["id"]))
    bases = [sid[f] for f in sid if "_" not in Path(f).name]
    gaps = {}
    for method in ("phash", "dhash"):
        ids, hashes = scenes_ds.store.image_hashes(scenes_ds.id, method)
        h = dict(zip(ids.tolist(), hashes))
        copies = [int(hamming(h[sid[g[0]]], h[sid[c]])) for g in scenes["groups"] for c in g[1:]]
        base_h = np.array([h[i] for i in bases], np.uint64)
        unrelated = hamming(base_h[:, None], base_h[None, :]).astype(int) + 64 * np.eye(len(bases), dtype=int)
        gaps[method] = int(unrelated.min()) - max(copies)
    assert gaps["phash"] >= 6 and gaps["phash"] > gaps["dhash"]


# -- the search building blocks --------------------------------------------------------------------------------


def test_partitioned_knn_graph_finds_near_copies_like_exact_search():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((40, 64)).astype(np.float32)
    x = centres[rng.integers(0, 40, 6000)] + 0.8 * rng.standard_normal((6000, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    copies = rng.choice(6000, 300, replace=False)
    x[copies[150:]] = x[copies[:150]] + 0.05 * rng.standard_normal((150, 64)).astype(np.float32)
    exact_i, exact_s = knn_graph(x.copy(), 5, cell_size=10_000)
    ivf_i, ivf_s = knn_graph(x.copy(), 5, cell_size=500, nprobe=3)
    assert (exact_i[:, 0] != np.arange(6000)).all()  # a row is never its own neighbour
    assert np.all(np.diff(exact_s, axis=1) <= 0)  # best first
    # every planted copy is the first neighbour in both
    assert (exact_i[copies[:150], 0] == copies[150:]).all()
    assert (ivf_i[copies[:150], 0] == copies[150:]).all()
    assert np.mean(ivf_i[:, 0] == exact_i[:, 0]) > 0.8


def test_hash_candidates_in_sorted_orders_find_close_pairs_and_every_identical_one():
    rng = np.random.default_rng(1)
    h = rng.integers(0, 2**63, 50_000, dtype=np.int64).astype(np.uint64) * np.uint64(2) + np.uint64(1)
    h[:40] = h[40]  # 41 identical hashes: more than any window
    src = 100 + rng.choice(49_900, 600, replace=False)
    distance = rng.integers(0, 7, 300)
    for i, j, d in zip(src[:300], src[300:], distance):
        h[j] = h[i] ^ np.uint64(sum(1 << int(b) for b in rng.choice(64, int(d), replace=False)))
    a, b, d = hash_candidates(h, 6, exact_limit=0)
    found = set(zip(a.tolist(), b.tolist()))
    hit = np.array([(min(i, j), max(i, j)) in found for i, j in zip(src[:300].tolist(), src[300:].tolist())])
    assert hit[distance <= 3].all() and hit.mean() > 0.97
    assert (d == hamming(h[a], h[b])).all() and (d <= 6).all()
    from visionlens.insights.duplicates import group_pairs

    labels, _ = group_pairs(len(h), a, b)
    assert len(set(labels[:41].tolist())) == 1  # identical hashes always end up in one group
    small = h[:3000]
    ea, eb, _ = hash_candidates(small, 6)
    ra, rb, _ = hash_candidates(small, 6, exact_limit=0)
    assert set(zip(ra.tolist(), rb.tolist())) <= set(zip(ea.tolist(), eb.tolist()))
    assert len(ea) == int((hamming(small[:, None], small[None, :]) <= 6).sum() - 3000) // 2


def test_tiny_inputs_give_no_pairs_and_no_errors():
    from visionlens.insights.duplicates import near_duplicate_pairs

    one = np.ones((1, 8), np.float32)
    assert len(near_duplicate_pairs(1, np.array([0]), one, np.array([0]), np.array([5], np.uint64))) == 0
    assert knn_graph(np.ones((3, 4), np.float32), 10)[0].shape == (3, 2)
    assert len(hash_candidates(np.array([], np.uint64), 4)[0]) == 0
    two = near_duplicate_pairs(2, np.array([0, -1]), one, np.array([0, 1]), np.array([5, 5], np.uint64))
    assert two.duplicate.tolist() == [True] and np.isnan(two.cosine[0])  # one image has no vector: hash decides


def test_params_decide_each_signal_combination():
    p = DuplicateParams()
    cos = np.array([0.99, 0.6, 0.75, np.nan, np.nan, 0.985, 0.97], np.float32)
    ham = np.array([12, 5, 9, 6, 7, -1, -1], np.int16)
    assert p.decide(cos, ham).tolist() == [True, True, False, True, False, True, False]


# -- finding duplicates ----------------------------------------------------------------------------------------


def test_planted_copies_are_grouped_and_nothing_else(scenes_ds, scenes, vectors):
    findings = find_near_duplicates(scenes_ds.store, scenes_ds.id, vectors=vectors)
    found = _groups(findings)
    planted = [frozenset(g) for g in scenes["groups"]]
    assert sorted(found, key=sorted) == sorted(planted, key=sorted)  # recall and precision 1
    for f in findings:
        assert f.kind == "near_duplicate" and f.title.startswith(f"{len(f.sample_ids)} near-identical images")
        assert f.evidence["signals"] == ["vectors", "phash"] and f.evidence["collection"].startswith("builtin")
        assert len(f.detail["pairs"]) == f.evidence["pairs"] >= len(f.sample_ids) - 1
        assert all(a in f.detail["files"] and b in f.detail["files"] for a, b in f.detail["pairs"])
        assert len(f.detail["similarity"]) == len(f.detail["pairs"])
    three = next(f for f in findings if len(f.sample_ids) == 3)
    assert three.title.startswith("3 near-identical images")


def test_leaks_are_exactly_the_groups_across_splits_and_rank_first(scenes_ds, scenes, vectors):
    findings = find_near_duplicates(scenes_ds.store, scenes_ds.id, vectors=vectors)
    split = scenes["split"]
    expected_leaks = {frozenset(g) for g in scenes["groups"] if len({split[f] for f in g}) > 1}
    leaks = [f for f in findings if f.evidence["leakage"]]
    assert {frozenset(f.detail["files"]) for f in leaks} == expected_leaks and len(expected_leaks) == 9
    assert all(f.title.endswith("across 2 splits (leak)") for f in leaks)
    assert findings[: len(leaks)] == leaks  # every leak ranks above every plain group
    assert min(f.score for f in leaks) > max(f.score for f in findings if not f.evidence["leakage"])
    for f in leaks:
        assert f.detail["cross_split_pairs"] and all(split[a] != split[b] for a, b in f.detail["cross_split_pairs"])
        assert f.evidence["splits"] == {
            s: sum(split[x] == s for x in f.detail["files"])
            for s in ("train", "val")
            if any(split[x] == s for x in f.detail["files"])
        }


def test_hash_only_finds_copies_that_keep_their_bits(scenes_ds, scenes, vectors):
    findings = find_near_duplicates(scenes_ds.store, scenes_ds.id, vectors=vectors, use_vectors=False)
    found = set(_groups(findings))
    planted = [frozenset(g) for g in scenes["groups"]]
    assert found <= set(planted) or all(any(g <= p for p in planted) for g in found)  # nothing unrelated grouped
    kinds = {_kind_of(g) for g in planted if g in found}
    assert {"jpeg", "resize", "bright"} <= kinds
    assert len(found) >= 10
    assert all(f.evidence["signals"] == ["phash"] and f.detail["similarity"][0]["cosine"] is None for f in findings)
    assert "perceptual-hash" in findings[0].description


def test_vector_only_finds_copies_that_keep_their_colours(scenes_ds, scenes, vectors):
    findings = find_near_duplicates(scenes_ds.store, scenes_ds.id, vectors=vectors, use_hashes=False)
    found = set(_groups(findings))
    planted = [frozenset(g) for g in scenes["groups"]]
    assert all(any(g <= p for p in planted) for g in found)  # nothing unrelated grouped
    by_kind = {}
    for g in planted[:15]:
        by_kind.setdefault(_kind_of(g), []).append(g in found)
    assert all(by_kind["shift"]) and all(by_kind["jpeg"]) and all(by_kind["resize"])
    assert all(f.evidence["signals"] == ["vectors"] and f.evidence["hash_method"] is None for f in findings)


def test_without_any_vectors_the_hashes_decide(store, scenes, tmp_path):
    ds = vl.ingest(scenes["root"], "scenes", store=store)
    compute_hashes(store, ds.id)
    with EdgeVectorStore(tmp_path / "empty") as empty:
        findings = find_near_duplicates(store, ds.id, vectors=empty)
    assert findings and all(f.evidence["signals"] == ["phash"] for f in findings)
    assert "no collection" in findings[0].evidence["vectors_note"]


def test_images_missing_a_vector_fall_back_to_their_hash(scenes_ds, scenes, vectors):
    collection = vectors.collections()[0]
    files = dict(zip(scenes_ds.samples(limit=1000)["filepath"], scenes_ds.samples(limit=1000)["id"]))
    jpeg_copies = [g[1] for g in scenes["groups"][:15] if g[1].endswith("_jpeg.jpg")]
    vectors.delete_ids(collection, np.array([files[f] for f in jpeg_copies], np.int64))
    findings = find_near_duplicates(scenes_ds.store, scenes_ds.id, vectors=vectors)
    found = _groups(findings)
    for f in jpeg_copies:
        group = next(g for g in found if f in g)
        finding = findings[found.index(group)]
        assert finding.detail["similarity"][0]["cosine"] is None  # decided by the hash alone
    assert findings[0].evidence["images_with_vectors"] == len(files) - len(jpeg_copies)


def test_findings_save_and_filter_by_their_members(scenes_ds, vectors):
    findings = find_near_duplicates(scenes_ds.store, scenes_ds.id, vectors=vectors)
    saved = save_run(scenes_ds.store, scenes_ds.id, "near_duplicates", findings)
    loaded = load_findings(scenes_ds.store, scenes_ds.id, kind="near_duplicate")
    assert [f.title for f in loaded] == [f.title for f in saved]
    assert loaded[0].detail["pairs"] == saved[0].detail["pairs"]
    assert scenes_ds.count(Filters(finding=saved[0].id)) == len(saved[0].sample_ids)


def test_demo_planted_near_duplicates_are_found_as_leaks(demo_ds, demo_files, vectors):
    store = demo_ds.store
    embed_dataset(store, demo_ds.id, "builtin", vectors=vectors, num_workers=0)
    compute_hashes(store, demo_ds.id)
    findings = find_near_duplicates(store, demo_ds.id, vectors=vectors)
    planted = json.loads(Path(demo_files.planted).read_text())["near_duplicates"]
    assert planted
    for pair in planted:
        group = next(
            (
                f
                for f in findings
                if any(x.endswith("/" + pair["train"]) for x in f.detail["files"])
                and any(x.endswith("/" + pair["val"]) for x in f.detail["files"])
            ),
            None,
        )
        assert group is not None, pair
        assert group.evidence["leakage"]


def test_a_chain_of_look_alike_pairs_is_not_one_group():
    """a~b, b~c, c~d are each accepted, but a and d are far apart: complete linkage keeps groups of copies."""
    from visionlens.insights.duplicates import (
        link_groups,
        near_duplicate_pairs,
        pair_decisions,
    )

    angles = np.radians([0.0, 8.0, 16.0, 24.0, 90.0])  # consecutive cosines 0.99, a-d 0.91; e far from all
    vecs = np.stack([np.cos(angles), np.sin(angles), np.zeros(5)], axis=1).astype(np.float32)
    hashes = np.array([0, 0xF, 0xFF, 0xFFF, (1 << 64) - 1], np.uint64)  # 4 bits per step: a-d 12 bits apart
    rows = np.arange(5, dtype=np.int64)
    p = DuplicateParams()
    pairs = near_duplicate_pairs(5, rows, vecs.copy(), rows, hashes, p)
    accepted = {(int(a), int(b)) for a, b in zip(pairs.a[pairs.duplicate], pairs.b[pairs.duplicate])}
    assert {(0, 1), (1, 2), (2, 3)} <= accepted and (0, 3) not in accepted  # the chain; its far ends refused
    labels, sizes = link_groups(5, pairs, rows, vecs / np.linalg.norm(vecs, axis=1, keepdims=True), rows, hashes, p)
    assert labels[0] != labels[3] and labels[4] not in {labels[0], labels[3]}
    for g in np.flatnonzero(sizes >= 2):  # every group is a set of mutual copies
        members = np.flatnonzero(labels == g)
        ok = pair_decisions(members, members, rows, vecs / np.linalg.norm(vecs, axis=1, keepdims=True), rows, hashes, p)
        assert ok[~np.eye(len(members), dtype=bool)].all()
    assert sizes[labels[1]] >= 2 and sizes[labels[2]] >= 2  # the chain's middle still sits in groups
    # connected components alone would have chained all four
    from visionlens.insights.duplicates import group_pairs

    cc, _ = group_pairs(5, pairs.a[pairs.duplicate], pairs.b[pairs.duplicate])
    assert cc[0] == cc[3]
