"""Run every benchmark at sizes that fit in about 15 minutes on a 2-core box and write benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/run_all.py [--only bench_eval bench_eval_parity ...] [--no-browser] [--out FILE]

Each script runs in its own process with its size flags; its printed table, command and wall time go into one
Markdown file together with the machine line, date and git commit.  A benchmark that fails (or runs past
``--timeout``) is recorded as failed with its last lines, and the run goes on.  ``bench_app`` drives Debian's
chromium (``make browser`` installs it) against the served app at 1M samples; ``--no-browser`` leaves it out.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

from machine import machine

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# name -> arguments: sizes chosen so the whole set fits in about 15 minutes on 2 cores (defaults are larger).
BENCHMARKS: dict[str, list[str]] = {
    "bench_eval_parity": [],
    "bench_eval": ["--sizes", "5000,10000", "--repeat", "3"],
    "bench_ingest_query": ["--images", "50000", "--query-samples", "500000"],
    "bench_vectors": ["--n", "100000", "--queries", "50"],
    "bench_map": ["--n", "200000"],
    # 10M points from Parquet through Dask (cold process, warm zooms, lasso/box/tap/highlight): about a minute
    "bench_map_dask": ["--n", "10000000", "--renders", "10", "--lassos", "5"],
    "bench_embed": ["--n", "128", "--rounds", "2"],
    # single process vs a LocalCluster of 1 and 2 worker processes, builtin embedder: about 55 s
    "bench_dask": ["--n", "800", "--repeat", "2"],
    "bench_insights": ["--images", "50000"],
    "bench_insights_slices": ["--images", "50000"],
    "bench_duplicates": ["--n", "100000"],
    "bench_similarity": ["--n", "100000", "--queries", "30"],
    # the served app in chromium at the size its targets are for: about 2 minutes, the 1M build (~25 s) included
    "bench_app": ["--samples", "1000000", "--runs", "5", "--cold-runs", "3"],
    # 20 chromium sessions opened at once on 100K samples while an embed job runs, then 30 s of actions: ~3 minutes
    "bench_load": ["--samples", "100000", "--sessions", "20", "--seconds", "30"],
}
BROWSER = {"bench_app", "bench_load"}  # these need chromium
TAIL = 30


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "visionlens"], cwd=ROOT, capture_output=True)
        return out.stdout.strip() + (" (visionlens/ modified)" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def run_one(name: str, args: list[str], timeout: float) -> dict:
    cmd = [sys.executable, str(HERE / f"{name}.py"), *args]
    shown = " ".join([".venv/bin/python", f"benchmarks/{name}.py", *args])
    print(f"\n=== {shown}", flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        out, rc = (
            proc.stdout + (f"\n[stderr]\n{proc.stderr}" if proc.returncode and proc.stderr else ""),
            proc.returncode,
        )
    except subprocess.TimeoutExpired as e:
        text = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = (e.stderr or b"").decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        out, rc = text + (f"\n[stderr]\n{err}" if err else "") + f"\n[timed out after {timeout:.0f} s]", None
    secs = time.perf_counter() - t0
    ok = rc == 0
    print(out if ok else "\n".join(out.rstrip().splitlines()[-TAIL:]), flush=True)
    print(f"=== {name}: {'ok' if ok else 'FAILED'} in {secs:.0f} s", flush=True)
    return {"name": name, "cmd": shown, "ok": ok, "rc": rc, "secs": secs, "out": out.rstrip()}


def write_markdown(path: Path, results: list[dict], planned: list[str], started: str, total: float) -> None:
    lines = [
        "# Benchmark results",
        "",
        "Written by `benchmarks/run_all.py` (`make bench`); rerun it to refresh this file.",
        "",
        f"- machine: {machine()}",
        f"- date: {started}",
        f"- git commit: {git_commit()}",
        f"- total wall time: {total:.0f} s",
    ]
    every = list(BENCHMARKS)
    if [r["name"] for r in results] != every:
        not_run = [name for name in every if name not in {r["name"] for r in results}]
        pending = [name for name in planned if name in not_run]
        lines.append(
            f"- **partial run**: not run: {', '.join(not_run)}"
            + (f" (still running or interrupted: {', '.join(pending)})" if pending else "")
        )
    failed = [r["name"] for r in results if not r["ok"]]
    lines.append(f"- failed: {', '.join(failed) if failed else 'none'}")
    lines += ["", "| benchmark | status | wall time |", "|---|---|---|"]
    lines += [f"| {r['name']} | {'ok' if r['ok'] else 'FAILED'} | {r['secs']:.0f} s |" for r in results]
    for r in results:
        lines += ["", f"## {r['name']}", "", f"`{r['cmd']}`", ""]
        if r["ok"]:
            lines.append(f"Wall time: {r['secs']:.0f} s.")
            body = r["out"]
        else:
            status = "timed out" if r["rc"] is None else f"exit code {r['rc']}"
            lines.append(f"**FAILED** ({status}) after {r['secs']:.0f} s; last {TAIL} lines:")
            body = "\n".join(r["out"].splitlines()[-TAIL:])
        lines += ["", "```", body.replace("```", "'''"), "```"]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    every = list(BENCHMARKS)
    ap.add_argument("--only", nargs="+", choices=every, metavar="NAME", help=f"run only these: {', '.join(every)}")
    ap.add_argument("--no-browser", action="store_true", help=f"leave out {', '.join(BROWSER)} (needs chromium)")
    ap.add_argument("--browser", action="store_true", help=argparse.SUPPRESS)  # the default now; old command lines
    ap.add_argument("--timeout", type=float, default=600, help="seconds one benchmark may run")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = ap.parse_args()
    plan = {name: a for name, a in BENCHMARKS.items() if not (args.no_browser and name in BROWSER)}
    if args.only:
        plan = {name: BENCHMARKS[name] for name in args.only}
    started = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    t0 = time.perf_counter()
    results = []
    for name, bench_args in plan.items():
        results.append(run_one(name, bench_args, args.timeout))
        write_markdown(args.out, results, list(plan), started, time.perf_counter() - t0)  # keep what ran so far
    failed = [r["name"] for r in results if not r["ok"]]
    print(f"\nwrote {args.out}; {len(results) - len(failed)} ok, failed: {', '.join(failed) or 'none'}")


if __name__ == "__main__":
    main()
