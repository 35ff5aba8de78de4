"""The Datasets page: the CLI's operations (list, ingest, delete, pre-generate thumbnails) through the same code."""

from __future__ import annotations

from typing import Any

import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

from .. import media
from ..errors import VisionLensError
from ..formats import format_names
from ..ingestion import ingest
from . import resources
from .html import md
from .jobs import Jobs, session_doc, user_message
from .permissions import guarded, hide_unless
from .state import AppState


class DatasetsView(Viewer):
    """Long work (ingest, thumbnails, embeddings) runs on the long-job lane with a progress bar; the session stays
    responsive, and the result (new dataset list, active dataset) is applied on the session's loop."""

    state = param.ClassSelector(class_=AppState)

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._table = pn.widgets.Tabulator(
            pd.DataFrame(),
            show_index=False,
            disabled=True,
            sizing_mode="stretch_width",
            height=220,
            layout="fit_data_table",
        )
        self._path = pn.widgets.TextInput(
            name="Path or gs:// URI", placeholder="/data/coco or gs://bucket/dataset", sizing_mode="stretch_width"
        )
        self._name = pn.widgets.TextInput(name="Name", placeholder="my-dataset", width=200)
        self._format = pn.widgets.Select(name="Format", options=["auto", *format_names()], width=120)
        self._preds = pn.widgets.TextAreaInput(
            name="Predictions (one MODEL=PATH per line)",
            height=80,
            placeholder="yolov8=/data/preds.json",
            sizing_mode="stretch_width",
        )
        self._replace = pn.widgets.Checkbox(name="replace a dataset of the same name")
        self._ingest = pn.widgets.Button(name="Ingest", button_type="primary", width=120)
        self._ingest.on_click(guarded(self.state, "ingest", self._start_ingest))
        self._progress = pn.indicators.Progress(
            value=-1, max=100, visible=False, sizing_mode="stretch_width", height=18
        )
        self._status = pn.pane.Alert("", alert_type="info", visible=False, sizing_mode="stretch_width")
        self._target = pn.widgets.Select(name="Dataset", options=[], width=220, css_classes=["vl-target"])
        self._delete = pn.widgets.Button(name="Delete…", button_type="danger", width=140)
        self._delete.on_click(guarded(self.state, "delete", self._on_delete))
        self._thumbs = pn.widgets.Button(name="Pre-generate thumbnails", button_type="default", width=200)
        self._thumbs.on_click(guarded(self.state, "thumbnails", self._start_thumbnails))
        self._embed = pn.widgets.Button(name="Compute embeddings + map", button_type="default", width=220)
        self._embed.on_click(guarded(self.state, "embed", self._start_embedding))
        self._confirming: str | None = None
        self._tracked: Any = None  # this page's running job in the server's job registry
        self._jobs = Jobs("datasets", state=self.state)
        admin = self.state.can("ingest")
        hide_unless(self.state, "delete", self._delete)
        hide_unless(self.state, "thumbnails", self._thumbs)
        hide_unless(self.state, "embed", self._embed)
        self._layout = pn.Column(
            pn.pane.HTML("<h3>Datasets</h3>"),
            self._table,
            pn.Column(
                pn.pane.HTML("<h4>Add a dataset</h4>"),
                pn.Row(self._path, self._name, self._format, sizing_mode="stretch_width"),
                self._preds,
                pn.Row(self._replace, self._ingest),
                visible=admin,
                sizing_mode="stretch_width",
            ),
            pn.pane.HTML("<h4>Manage</h4>"),
            pn.Row(self._target, self._delete, self._thumbs, self._embed),
            self._progress,
            self._status,
            sizing_mode="stretch_width",
            css_classes=["vl-datasets"],
        )
        self._refresh_list()
        self.state.param.watch(lambda *_: self._refresh_list(), "datasets_version")

    def _refresh_list(self) -> None:
        """The table and the target list; the shared state's list of datasets is re-read by ``reload_datasets``."""
        rows = resources.store().list_datasets()
        df = pd.DataFrame(
            [
                {
                    "name": d["name"],
                    "format": d["format"],
                    "samples": d["samples"],
                    "GT boxes": d["gt_boxes"],
                    "predictions": d["pred_boxes"],
                    "models": ", ".join(d["models"]),
                    "root": d["root"],
                }
                for d in rows
            ]
        )
        self._table.value = df
        names = [d["name"] for d in rows]
        self._target.options = names
        self._target.value = self._target.value if self._target.value in names else (names[0] if names else None)

    def _say(self, markdown: str, kind: str = "info") -> None:
        """Show a message; data in ``markdown`` must already be escaped with ``html.md``."""
        self._status.param.update(object=markdown, alert_type=kind, visible=bool(markdown))

    def _report(self, step: str, done: int, total: int) -> None:
        """Progress from the worker, shown on the session's loop at most five times a second; also recorded in the
        server's job registry, whose cancel turns the next report into ``JobCancelled``."""
        if self._tracked is not None:
            self._tracked.report(step, done, total)
        message = f"{md(step)}: {done:,}/{total:,}" if total else md(step)
        value = int(100 * done / total) if total else -1

        def show() -> None:
            if self._jobs.running("job"):  # a late tick must not reopen a finished job's bar
                self._progress.param.update(visible=True, value=value)
                self._status.param.update(object=message, alert_type="info", visible=True)

        self._jobs.post(show, every=0.2)

    def _run(self, work: Any, done: Any, kind: str, title: str, dataset: str | None) -> None:
        """Run ``work`` on the long-job lane; ``done(result_or_error)`` updates the page on the session's loop. The
        job is recorded in the server's registry, so the jobs panel of every session and the HTTP API see it."""
        if self._jobs.running("job"):
            self._say("another job of this session is still running", "warning")
            return
        self._ingest.disabled = self._thumbs.disabled = self._embed.disabled = True
        self._progress.param.update(visible=True, value=-1)

        def finish(result: Any) -> None:
            self._ingest.disabled = self._thumbs.disabled = self._embed.disabled = False
            self._progress.visible = False
            done(result)

        def failed(exc: BaseException) -> None:
            finish(exc if isinstance(exc, VisionLensError) else RuntimeError(user_message(exc)))

        user = pn.state.user if session_doc() is not None else None

        def tracked() -> Any:
            from ..server.jobs import registry

            with registry().track(kind, title, dataset, user=user) as job:
                self._tracked = job
                try:
                    return work()
                finally:
                    self._tracked = None

        self._jobs.submit(tracked, finish, failed, key="job", lane="long", name="datasets job")

    def wait(self, timeout: float = 600.0) -> None:
        """Block until this page's job ended and was applied (scripts and tests)."""
        self._jobs.wait(timeout)

    def _start_ingest(self, *_: Any) -> None:
        path, name = (self._path.value_input or "").strip(), (self._name.value_input or "").strip()
        if not path or not name:
            self._say("give a path and a name", "warning")
            return
        preds = {}
        for k, line in enumerate((self._preds.value_input or "").splitlines(), 1):
            if line.strip():
                if "=" not in line:
                    self._say(f"predictions line {k}: use MODEL=PATH", "danger")
                    return
                model, p = line.split("=", 1)
                preds[model.strip()] = p.strip()
        fmt, replace = self._format.value, self._replace.value
        served = session_doc() is not None

        def work() -> Any:
            if served:  # a web user may only make the server read inside the configured roots
                from ..server.roots import check_allowed

                check_allowed(path, "dataset path")
                for model, p in preds.items():
                    check_allowed(p, f"predictions of {model!r}")
            return ingest(resources.store(), path, name, fmt, predictions=preds, replace=replace, progress=self._report)

        def done(result: Any) -> None:
            if isinstance(result, Exception):
                self._say(f"**Ingest failed**, nothing was changed: {md(result)}", "danger")
                return
            warnings = "".join(f"<br>⚠ {md(line)}" for line in result.summary_lines())
            self._say(
                f"Ingested **{md(result.name)}**: {result.samples:,} samples, {result.gt_boxes:,} boxes "
                f"in {result.seconds:.1f}s{warnings}",
                "success",
            )
            self.state.reload_datasets()
            self.state.dataset = result.name

        self._run(work, done, "ingest", f"ingest {name!r}", name)

    def _on_delete(self, *_: Any) -> None:
        name = self._target.value
        if not name:
            return
        if self._confirming != name:
            self._confirming = name
            self._delete.name = f"Really delete {name}?"
            return
        self._confirming = None
        self._delete.name = "Delete…"
        store, thumbnails = resources.store(), resources.thumbnails()

        def work() -> Any:
            from ..cleanup import delete_dataset

            # rows, columns, vectors and cached thumbnails: a million samples take a while
            return delete_dataset(name, store=store, thumbnails=thumbnails)

        def done(result: Any) -> None:
            if isinstance(result, Exception):
                self._say(md(result), "danger")
                return
            self._say(
                f"Deleted **{md(name)}**: {result.samples:,} samples, {result.vector_points:,} vectors, "
                f"{result.thumbnails:,} thumbnails (image files untouched).",
                "success",
            )
            self.state.reload_datasets()

        self._run(work, done, "delete", f"delete {name!r}", name)

    def _start_thumbnails(self, *_: Any) -> None:
        name = self._target.value
        if not name:
            return
        store = resources.store()

        def work() -> Any:
            row = store.get_dataset(name)
            index, ids = store.sample_index(row.id)
            items = [(int(i), media.join(row.root, p)) for i, p in zip(ids, index.filepath)]
            return resources.thumbnails().pregenerate(items, progress=lambda d, t: self._report("thumbnails", d, t))

        def done(result: Any) -> None:
            if isinstance(result, Exception):
                self._say(f"Thumbnails failed: {md(result)}", "danger")
            else:
                self._say(
                    f"Thumbnails: {result.generated:,} generated, {result.cached:,} already cached, "
                    f"{result.placeholders:,} unreadable images",
                    "success",
                )

        self._run(work, done, "thumbnails", f"thumbnails of {name!r}", name)

    def _start_embedding(self, *_: Any) -> None:
        """Builtin embedder (no weights needed) + PCA and UMAP maps, resumable, on the worker thread."""
        name = self._target.value
        if not name:
            return
        store = resources.store()

        def work() -> Any:
            from ..embedding_jobs import embed_dataset, project_dataset

            ds_id = store.get_dataset(name).id
            summary = embed_dataset(store, ds_id, "builtin", num_workers=0, progress=self._report)
            for method in ("pca", "umap"):
                project_dataset(store, ds_id, "builtin-colorstats-v1", method, progress=self._report)
            return summary

        def done(result: Any) -> None:
            if isinstance(result, Exception):
                self._say(f"Embedding failed: {md(result)}", "danger")
            else:
                self._say(
                    f"Embedded {result.embedded:,} images ({result.skipped:,} already done, "
                    f"{len(result.failed):,} unreadable); PCA and UMAP maps stored.",
                    "success",
                )
                if self.state.dataset == name:
                    self.state.collection = self.state.collection or "builtin-colorstats-v1"

        self._run(work, done, "embed", f"embed {name!r} with builtin", name)

    def __panel__(self) -> pn.Column:
        return self._layout
