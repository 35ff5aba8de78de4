"""The ``visionlens`` command: the same operations as the app, through the same package code."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .errors import VisionLensError

if TYPE_CHECKING:
    from .cleanup import HomeReport

app = typer.Typer(
    help="VisionLens: browse, filter and evaluate object-detection datasets.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)


@contextmanager
def progress_bar() -> Iterator[object]:
    """A rich progress bar that ingest steps report into as ``progress(step, done, total)``."""
    with Progress(
        TextColumn("[bold]{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        tasks: dict[str, int] = {}

        def report(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total or None)
            bar.update(tasks[step], completed=done, total=total or None)

        yield report


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Our errors are for people: print them plainly and exit 1; anything else is a bug and keeps its traceback."""
    try:
        yield
    except VisionLensError as e:
        console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _store():  # noqa: ANN202 - imported lazily so `--help` stays fast
    from .store.metadata import open_store

    return open_store()


def _backend():  # noqa: ANN202
    """The running app that owns the database (through its HTTP API), else the database opened here."""
    from .client import connect

    return connect()


def _formats_help() -> str:
    """``auto, coco, yolo, voc`` and any plugin's formats: the same registry auto-detection uses."""
    from .formats import format_names

    return "auto, " + ", ".join(format_names()) + "."


_DASK_HELP = (
    "Dask scheduler to run on (tcp://HOST:8786; needs visionlens\\[dask]); default: the VISIONLENS_DASK_SCHEDULER "
    "setting; 'none' runs here."
)


def _scheduler(option: str | None) -> str | None:
    """The ``--dask`` option, else this shell's setting: sent along when a running app does the work, so the
    command means the same cluster with or without an app (None leaves the app's own setting)."""
    from .config import get_settings

    return option if option is not None else get_settings().dask_scheduler


def _parse_predictions(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise typer.BadParameter(f"{item!r}: use MODEL=PATH, e.g. yolov8=preds.json", param_hint="--predictions")
        model, path = item.split("=", 1)
        out[model.strip()] = path.strip()
    return out


@app.command()
def ingest(
    path: Annotated[str, typer.Argument(help="Dataset folder or annotation file; local path or gs:// URI.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Name to store the dataset under.")],
    format: Annotated[str, typer.Option(help=_formats_help())] = "auto",
    images: Annotated[Optional[str], typer.Option(help="Image folder, when it is not next to the annotations.")] = None,
    predictions: Annotated[
        list[str],
        typer.Option(
            "--predictions", "-p", help="MODEL=PATH, repeatable: COCO results JSON, YOLO txt folder or VOC XML folder."
        ),
    ] = [],  # noqa: B006 - typer reads the default
    replace: Annotated[bool, typer.Option(help="Overwrite a dataset of the same name.")] = False,
) -> None:
    """Read a COCO, YOLO or Pascal VOC dataset (and any models' predictions) into the database, all or nothing."""
    with friendly_errors(), progress_bar() as report:
        result = _backend().ingest(
            path, name, format, images, _parse_predictions(predictions), replace=replace, progress=report
        )
    preds = ", ".join(f"{m}: {n:,}" for m, n in result["predictions"].items()) or "none"
    console.print(
        f"[green]ingested[/] {result['name']!r} ({result['format']}): {result['samples']:,} samples, "
        f"{result['gt_boxes']:,} ground-truth boxes, predictions {preds} in {result['seconds']:.1f}s"
    )
    for line in result["warnings"]:
        console.print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)


@app.command("add-predictions")
def add_predictions(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    model: Annotated[str, typer.Argument(help="Model name to store the predictions under.")],
    path: Annotated[str, typer.Argument(help="COCO results JSON, YOLO txt folder or VOC XML folder.")],
    format: Annotated[str, typer.Option(help=_formats_help())] = "auto",
    replace: Annotated[bool, typer.Option(help="Overwrite this model's predictions.")] = False,
) -> None:
    """Add one model's predictions to an existing dataset."""
    with friendly_errors(), progress_bar() as report:
        n = _backend().add_predictions(name, model, path, format, replace, progress=report)["predictions"]
    console.print(f"[green]added[/] {n:,} predictions of {model!r} to {name!r}")


@app.command("list")
def list_cmd() -> None:
    """List the datasets in the database."""
    with friendly_errors():
        rows = _backend().list_datasets()
    table = Table("name", "format", "samples", "GT boxes", "predictions", "models", "root")
    for d in rows:
        table.add_row(
            d["name"],
            d["format"],
            f"{d['samples']:,}",
            f"{d['gt_boxes']:,}",
            f"{d['pred_boxes']:,}",
            ", ".join(d["models"]),
            d["root"],
        )
    Console().print(table if rows else "no datasets yet: try `visionlens demo` or `visionlens ingest PATH --name NAME`")


@app.command()
def info(name: Annotated[str, typer.Argument(help="Dataset name.")]) -> None:
    """Show a dataset's counts, splits, fields, labels and ingest warnings."""
    out = Console()
    with friendly_errors():
        info = _backend().dataset_info(name)
    out.print(f"[bold]{escape(info['name'])}[/] ({info['format']}) at {escape(info['root'])}")
    out.print(f"{info['samples']:,} samples, {info['gt_boxes']:,} GT boxes, {info['pred_boxes']:,} predictions")
    out.print("splits: " + escape(", ".join(f"{k}: {v:,}" for k, v in info["splits"].items())))
    fields = Table("field", "level", "kind", title="fields")
    for f in info["fields"]:
        fields.add_row(escape(f["name"]), f["level"], f["kind"])
    out.print(fields)
    counts = info["label_counts"]
    labels = Table("label", *counts, title="boxes per label")
    for label in info["label_names"]:
        labels.add_row(escape(label), *[f"{c.get(label, 0):,}" for c in counts.values()])
    out.print(labels)
    first = info["first_issue"]
    if first:
        out.print(
            f"[yellow]{info['issues']} ingest warnings[/], first: "
            + escape(f"{first['file']} {first['location']}: {first['message']}")
        )


@app.command()
def delete(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a dataset: its rows, vectors and cached thumbnails (image files are not touched)."""
    with friendly_errors():
        backend = _backend()
        backend.dataset_info(name)  # a missing dataset is an error before the question
        if not yes and not typer.confirm(f"Delete dataset {name!r}?"):
            raise typer.Exit(1)
        report = backend.delete(name)
    vectors = ", ".join(f"{n:,} from {c!r}" for c, n in report["vectors"].items()) or "none"
    console.print(
        "[green]deleted[/] "
        + escape(
            f"{name!r}: {report['samples']:,} samples; vectors: {vectors}; {report['thumbnails']:,} cached thumbnails"
        ),
        highlight=False,
    )


@app.command()
def demo(
    n: Annotated[int, typer.Option("--n", help="Number of images (1K takes well under a minute).")] = 1000,
    name: Annotated[str, typer.Option(help="Dataset name.")] = "demo",
    out: Annotated[
        Optional[Path], typer.Option(help="Where to write the files (default: VISIONLENS_HOME/demo).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    no_images: Annotated[bool, typer.Option("--no-images", help="Annotation files only (for benchmarks).")] = False,
    if_missing: Annotated[bool, typer.Option("--if-missing", help="Do nothing if any dataset exists.")] = False,
    replace: Annotated[bool, typer.Option(help="Overwrite a dataset of the same name.")] = False,
    source: Annotated[
        str, typer.Option(help="'generated' (offline) or 'coco-val2017' (downloads ~1 GB).")
    ] = "generated",
    analyse: Annotated[
        bool,
        typer.Option(
            "--analyse/--no-analyse",
            help="Also evaluate the two models, embed "
            "the images (builtin embedder, PCA map) and find insights, so every view "
            "has data.",
        ),
    ] = True,
    base_url: Annotated[Optional[str], typer.Option(help="Mirror to download COCO from.")] = None,
) -> None:
    """Generate the offline demo dataset (JPEGs, COCO ground truth, two models with planted failures) and ingest it."""
    from .config import get_settings
    from .demo import build_demo
    from .ingestion import ingest as run_ingest

    with friendly_errors():
        store = _store()
        if if_missing and store.list_datasets():
            console.print("datasets exist; nothing to do")
            return
        target = out or get_settings().demo_dir / name
        if source == "coco-val2017":
            from .download import COCO_BASE_URL, download_coco_val2017

            with progress_bar() as report:
                root = download_coco_val2017(target, base_url or COCO_BASE_URL, report)
                result = run_ingest(store, root, name, "coco", replace=replace, progress=report)
            console.print(f"[green]COCO val2017 ready[/]: {result.samples:,} images, {result.gt_boxes:,} boxes")
            return
        if source != "generated":
            raise typer.BadParameter(f"unknown source {source!r}: use 'generated' or 'coco-val2017'")
        with progress_bar() as report:
            paths = build_demo(target, n=n, seed=seed, images=not no_images, progress=report)
            result = run_ingest(
                store,
                paths.root,
                name,
                "coco",
                predictions={m: str(p) for m, p in paths.predictions.items()},
                replace=replace,
                progress=report,
            )
        if analyse:
            from .embedding_jobs import close_vector_stores, embed_dataset, project_dataset

            with progress_bar() as report:
                ds_id = store.get_dataset(name).id
                from .metrics import evaluate_model

                for model in result.predictions:
                    evaluate_model(store, ds_id, model, progress=report)
                emb = embed_dataset(store, ds_id, "builtin", progress=report)
                project_dataset(store, ds_id, "builtin-colorstats-v1", "pca", progress=report)
                from .insights.runner import run_insights

                found = run_insights(store, ds_id, progress=report)
            close_vector_stores()
            console.print(
                f"evaluated {', '.join(result.predictions)}; embedded {emb.embedded:,} images (builtin), PCA map "
                f"stored; {len(found):,} insights found. For UMAP: `visionlens embed {name} --project umap`"
            )
    console.print(
        f"[green]demo ready[/]: {result.samples:,} images, {result.gt_boxes:,} GT boxes, "
        + ", ".join(f"{m}: {k:,}" for m, k in result.predictions.items())
        + f" in {target}"
    )


@app.command()
def evaluate(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    models: Annotated[list[str], typer.Argument(help="Model name(s); several are shown side by side.")],
    iou: Annotated[
        float, typer.Option(help="IoU threshold of the stored per-object TP/FP/FN (mAP always uses .50:.95).")
    ] = 0.5,
    class_agnostic: Annotated[bool, typer.Option("--class-agnostic", help="Match boxes ignoring labels.")] = False,
) -> None:
    """COCO-exact evaluation: mAP table, per-class AP; per-object TP/FP/FN stored for filtering in the app."""
    from .client import _metrics

    out = Console()
    results = []
    with friendly_errors(), progress_bar() as report:
        backend = _backend()
        for model in models:
            results.append(_metrics(backend.evaluate(name, model, iou, class_agnostic, progress=report)))
    summary = Table(
        "metric", *[m.model for m in results], title=f"{name}: COCO bbox metrics ({results[0].samples:,} images)"
    )
    for stat in results[0].stats:
        summary.add_row(stat, *[f"{m.stats[stat]:.4f}" for m in results])
    out.print(summary)
    if not class_agnostic:
        per_class = Table(
            "label",
            "GT",
            *[f"AP {m.model}" for m in results],
            *[f"AP50 {m.model}" for m in results],
            title="per-class AP",
        )
        for k, row in enumerate(results[0].per_class):
            per_class.add_row(
                row["label"],
                f"{row['gt']:,}",
                *[f"{m.per_class[k]['AP']:.3f}" for m in results],
                *[f"{m.per_class[k]['AP50']:.3f}" for m in results],
            )
        out.print(per_class)
    for m in results:
        console.print(
            f"stored per-object results as [bold]{m.key}[/]: filter with fields {m.key}.tp / .fp / .fn "
            f"({m.seconds:.2f}s)"
        )


@app.command()
def insights(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    model: Annotated[
        Optional[list[str]], typer.Option("--model", "-m", help="Model(s) to analyse (default: all).")
    ] = None,
    kind: Annotated[
        Optional[list[str]],
        typer.Option("--kind", "-k", help="slice, error_pattern, label_mistake, near_duplicate (default: all)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help='Print one JSON object {"findings": [...]}.')] = False,
    top: Annotated[int, typer.Option(help="Findings shown per kind (the table only; --json prints all).")] = 10,
) -> None:
    """Find blind spots, error patterns, label mistakes and near-duplicates; stored for the app's Insights tab."""
    import orjson

    from .insights import KINDS

    with friendly_errors(), progress_bar() as report:
        doc = _backend().insights(name, model or None, kind or list(KINDS), progress=report)
    if as_json:
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    out = Console()
    for k in kind or KINDS:
        rows = [f for f in doc["findings"] if f["kind"] == k]
        table = Table(
            "score", "finding", "model", "images", title=f"{k.replace('_', ' ')}s: {len(rows)}", title_justify="left"
        )
        for f in rows[:top]:
            table.add_row(f"{f['score']:.3g}", escape(f["title"]), escape(f["model"] or ""), f"{len(f['files']):,}")
        out.print(table)


@app.command()
def embed(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    embedder: Annotated[
        str, typer.Option(help="'builtin' (offline, no weights) or 'clip[:MODEL[/PRETRAINED]]'.")
    ] = "builtin",
    weights: Annotated[
        Optional[Path], typer.Option(help="Local open_clip checkpoint, when the hub is unreachable.")
    ] = None,
    project: Annotated[str, typer.Option(help="Map to compute afterwards: umap, pca, both or none.")] = "both",
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 64,
    workers: Annotated[int, typer.Option(help="Threads decoding images (per task on a Dask cluster).")] = 2,
    dask: Annotated[Optional[str], typer.Option("--dask", help=_DASK_HELP)] = None,
) -> None:
    """Compute image embeddings into the vector store (resumable), then the 2-D map for the app."""
    with friendly_errors(), progress_bar() as report:
        summary = _backend().embed(
            name,
            embedder,
            str(weights) if weights else None,
            project,
            batch_size,
            workers,
            progress=report,
            dask_scheduler=_scheduler(dask),
        )
    where = f" on Dask ({summary['dask_scheduler']})" if summary.get("dask_scheduler") else ""
    console.print(
        f"[green]embedded[/] {summary['embedded']:,} images into {summary['collection']!r}{where} "
        f"({summary['skipped']:,} already there, {len(summary['failed']):,} unreadable) in {summary['seconds']:.1f}s; "
        f"maps: {', '.join(summary['maps']) or 'none'}"
    )
    for failure in summary["failed"][:5]:
        console.print(f"[yellow]warning:[/] {failure}", highlight=False)


@app.command()
def thumbnails(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    size: Annotated[
        Optional[int], typer.Option(help="Thumbnail side in pixels (default: the thumbnail_size setting, 256).")
    ] = None,
    workers: Annotated[int, typer.Option(help="Threads rendering thumbnails (without a Dask cluster).")] = 2,
    dask: Annotated[Optional[str], typer.Option("--dask", help=_DASK_HELP)] = None,
) -> None:
    """Render every sample's thumbnail into the cache ahead of browsing (skips those already there)."""
    with friendly_errors(), progress_bar() as report:
        result = _backend().thumbnails(name, size, workers, progress=report, dask_scheduler=_scheduler(dask))
    where = f" on Dask ({result['dask_scheduler']})" if result.get("dask_scheduler") else ""
    console.print(
        f"[green]thumbnails[/] ({result['size']} px){where}: {result['generated']:,} rendered, "
        f"{result['cached']:,} already cached, {result['placeholders']:,} unreadable in {result['seconds']:.1f}s"
    )
    for failure in result["failed"][:5]:
        console.print(f"[yellow]warning:[/] {failure}", highlight=False)


@app.command()
def export(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    out: Annotated[str, typer.Argument(help="Folder to write: new, empty, or an earlier export's (replaced).")],
    format: Annotated[str, typer.Option("--format", "-f", help="coco, yolo, voc, parquet or csv.")] = "coco",
    filters: Annotated[
        Optional[str], typer.Option(help='Filters as JSON, e.g. \'{"split": "val"}\' or the full Filters form.')
    ] = None,
    tag: Annotated[Optional[str], typer.Option(help="Only samples carrying this tag.")] = None,
    models: Annotated[
        Optional[str], typer.Option(help="Predictions to include, comma-separated (default: every model).")
    ] = None,
    no_predictions: Annotated[bool, typer.Option("--no-predictions", help="Ground truth only.")] = False,
    images: Annotated[
        str, typer.Option(help="copy, link (symbolic links) or in-place (COCO/VOC name the original files).")
    ] = "copy",
) -> None:
    """Write a view of a dataset as COCO, YOLO or VOC (ground truth and predictions), or its fields as Parquet/CSV.

    Nothing is overwritten: OUT must be new, empty, or made by an earlier export; a failed export leaves nothing."""
    import shlex

    import orjson

    from .export import tag_filters

    if models is not None and no_predictions:
        raise typer.BadParameter("give --models or --no-predictions, not both", param_hint="--models")
    try:
        raw = orjson.loads(filters) if filters else None
    except orjson.JSONDecodeError as e:
        raise typer.BadParameter(f"not JSON: {e}", param_hint="--filters") from None
    chosen = [] if no_predictions else ([m.strip() for m in models.split(",") if m.strip()] if models else None)
    with friendly_errors():
        flt = tag_filters(raw, tag)
        with progress_bar() as report:
            result = _backend().export(name, str(Path(out).expanduser().absolute()), format, flt, chosen, images,
                                       progress=report)  # fmt: skip
    preds = "".join(f", {n:,} predictions of {m!r}" for m, n in result["predictions"].items())
    boxes = f", {result['gt_boxes']:,} ground-truth boxes" if result["ingest"] else ""
    console.print(
        escape(f"exported {result['samples']:,} samples{boxes}{preds} as {result['format']} to {result['out']}")
        + f" in {result['seconds']:.1f}s",
        highlight=False,
        soft_wrap=True,
    )
    for note in result["notes"]:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    hint = result["ingest"]
    if hint:
        args = ["visionlens", "ingest", hint["path"], "--name", f"{name}-export", "--format", hint["format"]]
        args += ["--images", hint["images"]] if hint["images"] else []
        for model, path in hint["predictions"].items():
            args += ["-p", f"{model}={path}"]
        console.print("read it back with: " + escape(shlex.join(args)), highlight=False, soft_wrap=True)


@app.command()
def doctor(
    name: Annotated[Optional[str], typer.Argument(help="Dataset name; without one, check the whole home.")] = None,
    fix: Annotated[bool, typer.Option("--fix", help="Remove the orphans found (whole-home check only).")] = False,
) -> None:
    """Check that the stores agree. Without a name: report orphans of every kind in the home (vectors, rows,
    columns, collections, thumbnails); exit code 1 while any remain. With a name: that dataset's vectors."""
    with friendly_errors():
        if name is None:
            _doctor_home(fix)
            return
        if fix:
            raise typer.BadParameter("--fix repairs the whole home: run `visionlens doctor --fix` without a name")
        _doctor_dataset(name)


def _doctor_dataset(name: str) -> None:
    """One dataset: every collection holds a vector per sample, and no vector lacks its sample."""
    from .embedding_jobs import doctor as check
    from .embedding_jobs import vector_store

    store = _store()
    ds_id = store.get_dataset(name).id
    collections = vector_store().collections()
    problems = 0
    for collection in collections:
        r = check(store, ds_id, collection)
        state = "[green]ok[/]" if r.ok else "[red]mismatch[/]"
        console.print(
            f"{escape(collection)}: {state}: {r.in_qdrant:,}/{r.in_duckdb:,} samples have vectors; "
            f"{len(r.missing_vectors):,} missing, {len(r.orphan_vectors):,} vectors without a sample"
        )
        problems += len(r.orphan_vectors)
    if not collections:
        console.print("no vector collections yet: run `visionlens embed NAME`")
    if problems:
        raise typer.Exit(1)


def _print_report(out: Console, report: HomeReport) -> None:
    """One line per orphan kind (``ok`` or ``ORPHANS``, the title, the count), then its examples indented."""
    for kind in report.kinds:
        state = "[red]ORPHANS[/]" if kind.count else "[green]ok[/]     "
        out.print(f"{state} {escape(kind.title)}: {kind.count:,}", highlight=False)
        for example in kind.examples:
            out.print(f"          {escape(example)}", highlight=False, soft_wrap=True)
    for note in report.notes:
        out.print(f"[yellow]note[/]    {escape(note)}", highlight=False, soft_wrap=True)


def _doctor_home(fix: bool) -> None:
    """Whole home: print every orphan kind; with ``fix``, remove them and check again. Exit 1 while any remain."""
    from .cleanup import find_orphans, fix_orphans
    from .config import get_settings

    settings = get_settings()
    out = Console()
    vectors = settings.qdrant_url or settings.vectors
    out.print(
        escape(f"checking {settings.database}, vectors {vectors}, thumbnails {settings.thumbnails}"),
        highlight=False,
        soft_wrap=True,
    )
    report = find_orphans(_store())
    _print_report(out, report)
    if report.clean:
        out.print("no orphans")
        return
    if not fix:
        kinds = sum(1 for k in report.kinds if k.count)
        out.print(f"{report.total:,} orphans of {kinds} kind(s): run `visionlens doctor --fix` to remove them")
        raise typer.Exit(1)
    removed = fix_orphans(report)
    out.print("removed: " + ", ".join(f"{k} {n:,}" for k, n in removed.items()))
    again = find_orphans(_store())
    if not again.clean:
        out.print("[red]still there after --fix:[/]")
        _print_report(out, again)
        raise typer.Exit(1)
    out.print("no orphans left")


def _register_plugin_commands() -> None:
    """``visionlens plugins`` and every plugin's commands, through the ``cli_commands`` hook; a plugin that fails
    here is listed as failed by ``visionlens plugins`` and the other commands still work."""
    from .plugins import register_cli

    register_cli(app)


_register_plugin_commands()


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
