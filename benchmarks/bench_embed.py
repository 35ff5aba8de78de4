"""Does image decoding keep up with the model? Images/s of the full embedding job vs the model alone.

The job (``embed_images``: fsspec read + JPEG decode + transform in DataLoader workers, model in the main
process, vectors written to an embedded store) should reach >= 90% of what the model does on the same batches
already decoded into tensors. Runs offline with random CLIP weights; on a GPU machine pass ``--device cuda``.

    .venv/bin/python benchmarks/bench_embed.py                       # 512 generated 640x480 JPEGs, ViT-B-32
    .venv/bin/python benchmarks/bench_embed.py --images DIR --workers 8 --batch 128
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine  # noqa: E402

from visionlens.embeddings.clip import ClipEmbedder  # noqa: E402
from visionlens.embeddings.runner import embed_images, load_image  # noqa: E402
from visionlens.media import find_files  # noqa: E402
from visionlens.store.vectors import EdgeVectorStore  # noqa: E402


def make_jpegs(root: Path, n: int, size: tuple[int, int] = (640, 480), seed: int = 0) -> list[str]:
    """Photo-like test images: smooth colour fields plus shapes and grain (random noise alone compresses badly
    and decodes unlike real photos)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        low = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
        img = Image.fromarray(low).resize(size, Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(3, 9))):
            x, y = rng.integers(0, size[0]), rng.integers(0, size[1])
            r = int(rng.integers(10, 120))
            draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        img = img.filter(ImageFilter.GaussianBlur(1))
        grain = rng.normal(0, 6, (size[1], size[0], 3))
        img = Image.fromarray(np.clip(np.asarray(img) + grain, 0, 255).astype(np.uint8))
        path = root / f"img_{i:05d}.jpg"
        img.save(path, quality=90)
        paths.append(str(path))
    return paths


def sync(embedder: ClipEmbedder) -> None:
    """Wait for queued GPU work so the clock measures it."""
    if embedder.device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=512, help="generated images (ignored with --images)")
    ap.add_argument("--images", help="a directory of real images to use instead")
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default=None, help="cuda / mps / cpu (default: best available)")
    ap.add_argument("--rounds", type=int, default=8, help="alternating model-only / job chunks")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_embed_"))
    try:
        if args.images:
            paths = [f"{args.images.rstrip('/')}/{p}" for p in find_files(args.images, (".jpg", ".jpeg", ".png"))]
        else:
            t = time.perf_counter()
            paths = make_jpegs(tmp / "images", args.n)
            print(f"generated {len(paths)} JPEGs in {time.perf_counter() - t:.1f} s", flush=True)
        embedder = ClipEmbedder(args.model, random_init=True, device=args.device)
        items = [(i + 1, p) for i, p in enumerate(paths)]

        t = time.perf_counter()
        pixels = torch.stack([embedder.transform(load_image(p, embedder.image_size)) for p in paths])
        decode_serial = len(paths) / (time.perf_counter() - t)
        embedder.embed_batch(pixels[: args.batch])  # warm-up (allocator, cuDNN autotune, lazy init)

        # The two measurements alternate chunk by chunk, so a change in machine load hits both alike.
        model_s = job_s = 0.0
        ratios = []
        failed = []
        chunk = -(-len(paths) // args.rounds)
        with EdgeVectorStore(tmp / "vectors") as store:
            for r, start in enumerate(range(0, len(paths), chunk)):
                # model alone: the same images in the same batches, decoded and transformed up front
                sync(embedder)
                t = time.perf_counter()
                for b in torch.split(pixels[start : start + chunk], args.batch):
                    embedder.embed_batch(b)
                sync(embedder)
                seconds = time.perf_counter() - t
                model_s += seconds
                # the real job, end to end, into a fresh collection
                summary = embed_images(
                    items[start : start + chunk],
                    embedder,
                    store,
                    f"round{r}",
                    batch_size=args.batch,
                    num_workers=args.workers,
                )
                job_s += summary.seconds
                failed += summary.failed
                n_chunk = len(items[start : start + chunk])
                ratios.append(seconds / summary.seconds)
                job_rate = summary.embedded / summary.seconds
                print(f"chunk {r}: model {n_chunk / seconds:.1f} / job {job_rate:.1f} images/s", flush=True)
        model_only, pipeline = len(paths) / model_s, len(paths) / job_s

        print()
        print(
            f"bench_embed: {len(paths)} images ({'given' if args.images else 'generated 640x480 JPEG'}), "
            f"model {args.model} (random weights), device {embedder.device}, batch {args.batch}, "
            f"workers {args.workers}, torch threads {torch.get_num_threads()}, {args.rounds} alternating chunks"
        )
        print(f"  machine: {machine()}")
        print(f"  decode + transform, one process        {decode_serial:8.1f} images/s")
        print(f"  model only (pre-decoded batches)       {model_only:8.1f} images/s")
        print(f"  embed_images (decode in workers+model) {pipeline:8.1f} images/s")
        print(f"  job / model-only, all images           {pipeline / model_only:8.0%}   (target >= 90%)")
        print(f"  job / model-only, median of chunks     {np.median(ratios):8.0%}   (robust to load changes)")
        if failed:
            print(f"  failed images: {len(failed)}, e.g. {failed[0]}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
