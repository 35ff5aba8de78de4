"""Embedding throughput on a Dask cluster vs the single-process runner, on the same generated JPEGs.

Images/s of ``embed_images`` (one process: decoding threads + the model) and of ``dask_jobs.embed_on_cluster`` on a
``LocalCluster`` of 1 and of 2 worker processes (one thread each), all writing to the same kind of embedded vector
store in this process. Each runner embeds the images twice into fresh collections: *cold* includes building the
embedder (in each worker, for Dask), *warm* reuses it. Starting the cluster is timed on its own. The Dask vectors
are checked against the single-process ones.

    .venv/bin/python benchmarks/bench_dask.py                          # 2000 generated 640x480 JPEGs, builtin
    .venv/bin/python benchmarks/bench_dask.py --n 200 --embedder clip  # ViT-B-32 with random weights (CPU: slow)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine  # noqa: E402

from visionlens.dask_jobs import EmbedderSpec, embed_on_cluster  # noqa: E402
from visionlens.embeddings.runner import embed_images  # noqa: E402
from visionlens.store.vectors import EdgeVectorStore  # noqa: E402


def build(args: argparse.Namespace, tmp: Path) -> tuple[object, EmbedderSpec, str]:
    """(embedder for this process, spec for the workers, description). CLIP gets random weights saved to a file,
    so every worker loads the same ones."""
    if args.embedder == "builtin":
        from visionlens.embeddings.builtin import BuiltinEmbedder

        return BuiltinEmbedder(), EmbedderSpec.of("builtin"), "builtin (numpy)"
    import torch

    from visionlens.embeddings.clip import ClipEmbedder

    source = ClipEmbedder(args.model, random_init=True, device=args.device)
    weights = tmp / "random-clip.pt"
    torch.save(source.model.state_dict(), weights)
    emb = ClipEmbedder(args.model, None, weights=weights, device=args.device)
    spec = EmbedderSpec.of(f"clip:{args.model}", pretrained=None, weights=weights, device=args.device)
    return emb, spec, f"CLIP {args.model} (random weights, {emb.device}, torch threads here {torch.get_num_threads()})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="generated 640x480 JPEGs")
    ap.add_argument("--embedder", choices=["builtin", "clip"], default="builtin")
    ap.add_argument("--model", default="ViT-B-32", help="open_clip model for --embedder clip")
    ap.add_argument("--device", default="cpu", help="for --embedder clip: cpu / cuda")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2, help="decoding threads (single process; per task on Dask)")
    ap.add_argument("--workers", default="1,2", help="Dask worker process counts to measure")
    ap.add_argument("--repeat", type=int, default=3, help="warm runs per runner (the median is shown)")
    args = ap.parse_args()

    from bench_embed import make_jpegs  # here, not at the top: worker processes re-import this module
    from distributed import Client, LocalCluster

    tmp = Path(tempfile.mkdtemp(prefix="bench_dask_"))
    try:
        t = time.perf_counter()
        paths = make_jpegs(tmp / "images", args.n)
        print(f"generated {len(paths)} JPEGs in {time.perf_counter() - t:.1f} s", flush=True)
        items = [(i + 1, p) for i, p in enumerate(paths)]
        t = time.perf_counter()
        emb, spec, what = build(args, tmp)
        load_s = time.perf_counter() - t
        rows: list[tuple[str, str, str, str, str]] = []
        checks: list[str] = []
        with EdgeVectorStore(tmp / "vectors") as store:
            rates = []
            for r in range(1 + args.repeat):  # the model is loaded once here: cold only warms caches and allocators
                s = embed_images(items, emb, store, f"single-{r}", batch_size=args.batch, num_workers=args.threads)
                rates.append(s.embedded / s.seconds)
                print(f"single process, run {r}: {rates[-1]:.1f} images/s", flush=True)
            rows.append(
                ("single process", f"1 ({args.threads} decode threads)", f"{rates[0]:.1f}",
                 f"{np.median(rates[1:]):.1f}", f"model loaded before the clock ({load_s:.1f} s)")
            )  # fmt: skip
            ids = np.array([i for i, _ in items])
            reference = store.get_vectors("single-1", ids)
            for n in [int(w) for w in args.workers.split(",") if w.strip()]:
                t = time.perf_counter()
                cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
                client = Client(cluster, set_as_default=False)
                client.wait_for_workers(n)
                start_s = time.perf_counter() - t
                try:
                    rates = []
                    for r in range(1 + args.repeat):
                        s = embed_on_cluster(
                            items, spec, store, client, f"dask{n}-{r}", batch_size=args.batch,
                            decode_threads=args.threads,
                        )  # fmt: skip
                        rates.append(s.embedded / s.seconds)
                        print(f"dask, {n} worker(s), run {r}: {rates[-1]:.1f} images/s", flush=True)
                    same = np.allclose(store.get_vectors(f"dask{n}-1", ids), reference, atol=1e-5)
                    checks.append(f"{n} worker(s): {'equal' if same else 'DIFFERENT'}")
                    rows.append(
                        ("dask LocalCluster", f"{n} worker(s) x 1 thread ({args.threads} decode threads/task)",
                         f"{rates[0]:.1f}", f"{np.median(rates[1:]):.1f}",
                         f"cluster start {start_s:.1f} s (not in the rates)")
                    )  # fmt: skip
                finally:
                    client.close()
                    cluster.close()

        print()
        print(
            f"bench_dask: {len(items)} generated 640x480 JPEGs, embedder {what}, batch {args.batch}, "
            f"chunks of 4 batches"
        )
        print(f"  machine: {machine()}")
        print()
        print("| runner | processes | cold images/s | warm images/s | notes |")
        print("|---|---|---:|---:|---|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        print()
        print(f"- Dask vectors vs single process (np.allclose, atol 1e-5): {'; '.join(checks)}")
        print(
            f"- cold: the first run (Dask: every worker builds the embedder on its first task); warm: median of "
            f"{args.repeat} more runs, each into a fresh collection. Images are in the page cache for every run "
            "(just written); rates include reading, decoding, the model and writing to the vector store."
        )
        print(
            f"- Dask worker processes run with OMP/MKL/OpenBLAS threads = 1 (Dask's default); this process has "
            f"{os.cpu_count()} cores, which the single-process run's numpy/torch may use."
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
