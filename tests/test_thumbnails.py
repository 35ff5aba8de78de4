"""ThumbnailCache and full_image against real JPEG/PNG files written with Pillow."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import fsspec
import numpy as np
import pytest
from PIL import Image

from visionlens.thumbnails import ThumbnailCache, full_image, placeholder_jpeg


def decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    assert im.format == "JPEG"
    im.load()
    return im


def halves(w: int, h: int, left: tuple[int, int, int], right: tuple[int, int, int]) -> Image.Image:
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = left
    a[:, w // 2 :] = right
    return Image.fromarray(a, "RGB")


RED, BLUE = (220, 20, 20), (20, 20, 220)


def close(px: tuple[int, ...], want: tuple[int, int, int], tol: int = 40) -> bool:
    return all(abs(int(a) - b) <= tol for a, b in zip(px[:3], want))


@pytest.fixture
def cache(tmp_path: Path) -> ThumbnailCache:
    return ThumbnailCache(tmp_path / "cache", size=64)


def test_exif_orientation_is_applied(tmp_path: Path, cache: ThumbnailCache) -> None:
    src = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, must be shown rotated 90 degrees clockwise
    halves(200, 100, RED, BLUE).save(src, "JPEG", exif=exif, quality=95)

    res = cache.get(str(src), 1)
    im = decode(res.data)
    assert not res.placeholder
    assert im.size == (32, 64)  # portrait after rotation
    # clockwise rotation moves the stored left half (red) to the top
    assert close(im.getpixel((16, 5)), RED)
    assert close(im.getpixel((16, 58)), BLUE)

    full = decode(full_image(str(src), max_side=100).data)
    assert full.size == (50, 100)
    assert close(full.getpixel((25, 5)), RED)


def test_big_jpeg_decodes_in_draft_mode(tmp_path: Path, cache: ThumbnailCache) -> None:
    src = tmp_path / "big.jpg"
    gx = np.linspace(0, 255, 4000, dtype=np.uint8)
    a = np.repeat(np.broadcast_to(gx, (3000, 4000))[..., None], 3, axis=2)
    Image.fromarray(np.ascontiguousarray(a), "RGB").save(src, "JPEG", quality=85)

    res = cache.get(str(src), 7, max_side=256)
    # libjpeg scaled by 1/8 while decoding: never the full 12 MP, never below the requested box
    assert res.decoded_size == (500, 375)
    assert decode(res.data).size == (256, 192)

    full = full_image(str(src), max_side=1000)
    assert full.decoded_size == (1000, 750)
    assert decode(full.data).size == (1000, 750)


def test_png_with_alpha_is_flattened_on_white(tmp_path: Path, cache: ThumbnailCache) -> None:
    src = tmp_path / "alpha.png"
    a = np.zeros((64, 64, 4), np.uint8)
    a[:, :32] = (0, 0, 0, 0)  # transparent black: must not come out black
    a[:, 32:] = (20, 160, 20, 255)
    Image.fromarray(a, "RGBA").save(src)

    im = decode(cache.get(str(src), 2).data)
    assert im.mode == "RGB"
    assert close(im.getpixel((8, 32)), (255, 255, 255), tol=12)
    assert close(im.getpixel((56, 32)), (20, 160, 20))


def test_palette_and_cmyk_images(tmp_path: Path, cache: ThumbnailCache) -> None:
    pal = tmp_path / "pal.gif"
    halves(40, 40, RED, BLUE).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(pal)
    cmyk = tmp_path / "cmyk.jpg"
    halves(40, 40, RED, BLUE).convert("CMYK").save(cmyk, "JPEG", quality=95)
    for src in (pal, cmyk):
        res = cache.get(str(src), 3)
        im = decode(res.data)
        assert not res.placeholder, res.error
        assert im.mode == "RGB"
        assert close(im.getpixel((4, 20)), RED, tol=60)
        assert close(im.getpixel((36, 20)), BLUE, tol=60)


def test_16bit_png_keeps_its_range(tmp_path: Path, cache: ThumbnailCache) -> None:
    src = tmp_path / "deep.png"
    ramp = np.linspace(0, 65535, 128).astype(np.uint16)
    Image.fromarray(np.ascontiguousarray(np.broadcast_to(ramp, (64, 128)))).save(src)
    assert Image.open(src).mode.startswith("I")

    im = decode(cache.get(str(src), 4).data).convert("L")
    row = np.asarray(im)[16]
    # Pillow's plain convert() would clip everything above 255 to white
    assert row[0] < 20 and row[-1] > 235
    assert 100 < row[len(row) // 2] < 156


@pytest.mark.parametrize("kind", ["truncated", "garbage", "missing", "missing-remote"])
def test_broken_sources_give_the_placeholder(tmp_path: Path, cache: ThumbnailCache, kind: str) -> None:
    src = tmp_path / "broken.jpg"
    uri = str(src)
    if kind == "truncated":
        buf = io.BytesIO()
        halves(300, 200, RED, BLUE).save(buf, "JPEG")
        src.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    elif kind == "garbage":
        src.write_bytes(os.urandom(5000))
    elif kind == "missing-remote":
        uri = "memory://visionlens-test/nothing-here.jpg"

    res = cache.get(uri, 5)
    assert res.placeholder
    assert res.error
    assert res.data == placeholder_jpeg(64)
    assert decode(res.data).size == (64, 64)
    assert not list((tmp_path / "cache").rglob("*.jpg"))  # failures are not cached

    full = full_image(uri, max_side=300)
    assert full.placeholder and decode(full.data).size == (300, 300)


def test_cache_hit_does_not_read_the_source(tmp_path: Path, cache: ThumbnailCache) -> None:
    src = tmp_path / "a.jpg"
    halves(120, 80, RED, BLUE).save(src, "JPEG")
    first = cache.get(str(src), 1)
    assert not first.from_cache

    # Same size and mtime but undecodable content: only a cache hit can still return the thumbnail.
    st = src.stat()
    src.write_bytes(b"\0" * st.st_size)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = cache.get(str(src), 1)
    assert second.from_cache and not second.placeholder
    assert second.data == first.data

    # A real edit (new mtime) invalidates the entry.
    halves(120, 80, BLUE, RED).save(src, "JPEG")
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = cache.get(str(src), 1)
    assert not third.from_cache
    assert close(decode(third.data).getpixel((2, 20)), BLUE)


def test_remote_uri_through_fsspec_is_cached(tmp_path: Path, cache: ThumbnailCache) -> None:
    uri = "memory://visionlens-test/remote.png"
    buf = io.BytesIO()
    halves(90, 60, RED, BLUE).save(buf, "PNG")
    with fsspec.open(uri, "wb") as f:
        f.write(buf.getvalue())
    first = cache.get(uri, 9)
    assert not first.placeholder and decode(first.data).size == (64, 43)

    fsspec.filesystem("memory").rm(uri)
    second = cache.get(uri, 9)
    assert second.from_cache and second.data == first.data


def test_concurrent_gets_of_one_item(tmp_path: Path, cache: ThumbnailCache) -> None:
    src = tmp_path / "c.jpg"
    halves(800, 600, RED, BLUE).save(src, "JPEG")
    n = 12
    barrier = threading.Barrier(n)
    results: list[bytes] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait()
            results.append(cache.get(str(src), 1).data)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == n
    assert len(set(results)) == 1
    assert decode(results[0]).size == (64, 48)
    files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].suffix == ".jpg"  # no temp files left behind

    # A second cache object (another session/process) sees the same file.
    other = ThumbnailCache(tmp_path / "cache", size=64).get(str(src), 1)
    assert other.from_cache and other.data == results[0]


def test_pregenerate_skips_cached_and_reports_progress(tmp_path: Path, cache: ThumbnailCache) -> None:
    items = []
    for i in range(6):
        p = tmp_path / f"p{i}.jpg"
        halves(100 + i, 80, RED, BLUE).save(p, "JPEG")
        items.append((i, str(p)))
    items.append((99, str(tmp_path / "gone.jpg")))
    cache.get(items[0][1], 0)

    calls: list[tuple[int, int]] = []
    stats = cache.pregenerate(iter(items), progress=lambda d, t: calls.append((d, t)), workers=2)
    assert (stats.total, stats.generated, stats.cached, stats.placeholders) == (7, 5, 1, 1)
    assert calls[-1] == (7, 7) and [d for d, _ in calls] == list(range(1, 8))
    for sid, uri in items[:6]:
        assert cache.get(uri, sid).from_cache

    again = cache.pregenerate(items[:6], workers=3)
    assert (again.generated, again.cached) == (0, 6)


def test_housekeeping_names_removes_and_finds_stray_files(tmp_path: Path, cache: ThumbnailCache) -> None:
    """Deleting a dataset and `doctor` rely on this: a source's files at every size, and files of no source."""
    srcs = []
    for i in range(3):
        p = tmp_path / f"h{i}.jpg"
        halves(90 + i, 60, RED, BLUE).save(p, "JPEG")
        srcs.append(str(p))
    for uri in srcs:
        for side in (64, 128):
            assert not cache.get(uri, 1, side).placeholder
    assert cache.sizes() == [64, 128]
    assert sorted(cache.files()) == sorted(cache.keys_for(srcs)) and len(cache.keys_for(srcs)) == 6
    foreign = tmp_path / "cache" / "README.txt"
    foreign.write_text("not a thumbnail")
    young = cache.path_for(srcs[0]).parent / ".tmp-young123.jpg"
    young.write_bytes(b"half a jpeg")
    stale = cache.path_for(srcs[0]).parent / ".tmp-stale456.jpg"
    stale.write_bytes(b"left by a crash")
    os.utime(stale, (1, 1))

    assert cache.remove([srcs[0]]) == 2
    assert not cache.path_for(srcs[0]).exists() and not cache.path_for(srcs[0], 128).exists()
    assert cache.remove([srcs[0]]) == 0

    stray = cache.stray_files([srcs[1]])  # srcs[2] is "no longer a sample"
    expected = sorted(cache.keys_for([srcs[2]]) | {str(stale.relative_to(tmp_path / "cache"))})
    assert stray == expected  # the young temp file and the foreign file are not listed
    os.utime(srcs[1], ns=(1, 1))  # the image changed: its old thumbnails no longer match it
    assert len(cache.stray_files([srcs[1]])) == len(expected) + 2
    assert cache.remove_files(stray) == 3 and foreign.exists() and young.exists()
    with pytest.raises(ValueError, match="not a thumbnail cache file"):
        cache.remove_files(["../../etc/passwd"])
    assert ThumbnailCache(tmp_path / "nothing-here").stray_files(srcs) == []
