"""Export the current view (sidebar filters, map selection, similarity result) from the app, with progress.

The same ``visionlens.export.export_view`` the CLI and the API run, on the long-job lane of ``ui.jobs`` and
recorded in the server's job registry, so the jobs panel shows it and can cancel it. In a served session the
destination must lie inside the allowed roots, as an ingest's paths must: a web user may not make the server
write (or replace an earlier export) anywhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import panel as pn
import param
from panel.viewable import Viewer

from ..errors import VisionLensError
from ..query import Filters
from . import resources
from .html import choices, md
from .jobs import Jobs, session_doc, user_message
from .permissions import guarded
from .state import AppState

FORMATS = {
    "COCO": "coco",
    "YOLO": "yolo",
    "Pascal VOC": "voc",
    "Parquet (fields only)": "parquet",
    "CSV (fields only)": "csv",
}
IMAGE_MODES = {"copy": "copy", "link": "link", "leave in place": "in_place"}


def served() -> bool:
    """A browser session of a server (not a notebook or a script): the allowed roots apply."""
    return session_doc() is not None


def default_folder(dataset: str | None, fmt: str) -> str:
    """``<VISIONLENS_HOME>/exports/<dataset>-<format>``; in a served session, when that is outside the allowed
    roots, ``<first allowed root>/visionlens-exports/...`` instead, so the suggestion is one the server accepts."""
    from ..config import get_settings
    from ..errors import NotAllowedError
    from ..server.roots import allowed_roots, check_allowed

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in (dataset or "dataset"))
    preferred = get_settings().home / "exports" / f"{safe}-{fmt}"
    if not served():
        return str(preferred)
    try:
        return check_allowed(preferred, "export folder")
    except NotAllowedError:
        local = [r for r in allowed_roots() if "://" not in r]
        return str(Path(local[0]) / "visionlens-exports" / f"{safe}-{fmt}") if local else str(preferred)


def view_filters(state: AppState) -> Filters:
    """What the grid shows: the filters and the map selection, narrowed to a similarity result when one is on."""
    flt = state.effective_filters()
    if state.similar is not None:
        flt = flt.model_copy(update={"sample_ids": tuple(int(i) for i in state.result_ids)})
    return flt


class ExportView(Viewer):
    """Format, destination, images and models; one button exports exactly the samples the grid shows."""

    state = param.ClassSelector(class_=AppState)

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._format = pn.widgets.Select(name="Format", options=FORMATS, value="coco", sizing_mode="stretch_width")
        self._images = pn.widgets.Select(name="Images", options=IMAGE_MODES, value="copy", sizing_mode="stretch_width")
        self._models = pn.widgets.MultiChoice(name="Predictions of", options={}, sizing_mode="stretch_width")
        self._folder = pn.widgets.TextInput(name="Destination folder", sizing_mode="stretch_width")
        self._button = pn.widgets.Button(name="Export", button_type="primary", width=120, css_classes=["vl-export"])
        self._button.on_click(guarded(self.state, "export", lambda *_: self.start()))
        self._summary = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["vl-export-summary"])
        self._progress = pn.indicators.Progress(
            value=-1, max=100, visible=False, sizing_mode="stretch_width", height=18
        )
        self._status = pn.pane.Alert("", alert_type="info", visible=False, sizing_mode="stretch_width")
        self._jobs = Jobs("export", state=self.state)
        self._tracked: Any = None
        self._auto_folder = ""
        # A collapsed card: one line under the filters until it is wanted; it exports what the filters select.
        # the card's body is sent to the browser when it is first opened: every new session skips its models
        self._body = [
            self._summary,
            self._format,
            self._images,
            self._models,
            self._folder,
            self._button,
            self._progress,
            self._status,
        ]
        self._layout = pn.Card(
            title="Export this view…",
            collapsed=True,
            sizing_mode="stretch_width",
            css_classes=["vl-export-panel"],
        )
        self._layout.param.watch(self._open, "collapsed")
        self._format.param.watch(self._on_format, "value")
        self.state.param.watch(self._on_dataset, "dataset")
        self.state.param.watch(lambda *_: self._show_summary(), ["count", "dataset"])
        self._on_dataset()

    def _open(self, event: Any) -> None:
        if not event.new and not self._layout.objects:
            self._layout.objects = list(self._body)

    # -- reading the page ------------------------------------------------------------------------------------

    def summary(self) -> str:
        st = self.state
        if st.dataset is None:
            return "No dataset yet."
        narrowed = " (filters, map selection or similarity applied)" if st.count != st.total else ""
        return f"{st.count:,} samples of <b>{md(st.dataset)}</b>{narrowed}"

    def message(self) -> str:
        return self._status.object if self._status.visible else ""

    def _show_summary(self) -> None:
        self._summary.object = self.summary()

    def _on_dataset(self, *_: Any) -> None:
        ds = self.state.ds
        models = ds.models() if ds is not None else []
        self._models.options = choices(models)
        self._models.value = list(models)
        self._update_folder()
        self._show_summary()

    def _on_format(self, *_: Any) -> None:
        fmt = self._format.value
        writes_images = fmt in ("coco", "yolo", "voc")
        self._images.disabled = not writes_images
        self._models.disabled = not writes_images
        if fmt == "yolo" and self._images.value == "in_place":
            self._images.value = "copy"
        self._update_folder()

    def _update_folder(self) -> None:
        """Suggest ``<home>/exports/<dataset>-<format>`` until the user types a folder of their own."""
        suggestion = default_folder(self.state.dataset, self._format.value)
        if not self._folder.value or self._folder.value == self._auto_folder:
            self._folder.value = suggestion
        self._auto_folder = suggestion

    def set_options(self, format: str, folder: str, images: str = "copy", models: list[str] | None = None) -> None:
        """What a user picks on the page (scripts and tests)."""
        self._format.value = format
        self._images.value = images
        self._folder.value = folder
        if models is not None:
            self._models.value = list(models)

    # -- running ---------------------------------------------------------------------------------------------

    def _say(self, markdown: str, kind: str = "info") -> None:
        """Show a message; data in ``markdown`` must already be escaped with ``html.md``."""
        self._status.param.update(object=markdown, alert_type=kind, visible=bool(markdown))

    def _report(self, step: str, done: int, total: int) -> None:
        if self._tracked is not None:
            self._tracked.report(step, done, total)  # raises JobCancelled once the jobs panel cancelled it
        message = f"{md(step)}: {done:,}/{total:,}" if total else md(step)
        value = int(100 * done / total) if total else -1

        def show() -> None:
            if self._jobs.running("export"):
                self._progress.param.update(visible=True, value=value)
                self._say(message)

        self._jobs.post(show, every=0.2)

    def start(self) -> None:
        """Export the samples the grid shows now, in the background."""
        st = self.state
        if st.dataset is None:
            self._say("no dataset to export", "warning")
            return
        if self._jobs.running("export"):
            self._say("an export of this page is still running", "warning")
            return
        folder = (self._folder.value or "").strip()
        if not folder:
            self._say("give a destination folder", "warning")
            return
        name, fmt, images = st.dataset, self._format.value, self._images.value
        models = list(self._models.value)
        flt = view_filters(st)
        check = served()
        user = pn.state.user if check else None

        def work() -> Any:
            from ..export import export_view
            from ..server.jobs import registry

            target = Path(folder).expanduser()
            if check:
                from ..server.roots import check_allowed

                check_allowed(target, "export folder")
            with registry().track("export", f"export {name!r} as {fmt}", name, user=user) as job:
                self._tracked = job
                try:
                    return export_view(resources.store(), name, target, fmt, flt, models, images, self._report)
                finally:
                    self._tracked = None

        self._button.disabled = True
        self._progress.param.update(visible=True, value=-1)
        self._say(f"exporting {st.count:,} samples…")
        self._jobs.submit(work, self._done, self._failed, key="export", lane="long", name="export")

    def _finish(self) -> None:
        self._button.disabled = False
        self._progress.visible = False

    def _done(self, report: Any) -> None:
        self._finish()
        notes = "".join(f"<br>⚠ {md(n)}" for n in report.notes)
        boxes = f", {report.gt_boxes:,} boxes" if report.format in ("coco", "yolo", "voc") else ""
        preds = "".join(f", {n:,} predictions of {md(m)}" for m, n in report.predictions.items())
        self._say(
            f"Exported **{report.samples:,} samples**{boxes}{preds} as {md(report.format)} to "
            f"{md(report.out)} in {report.seconds:.1f}s{notes}",
            "success",
        )

    def _failed(self, exc: BaseException) -> None:
        self._finish()
        text = str(exc) if isinstance(exc, VisionLensError) else user_message(exc)
        self._say(f"**Export failed**, nothing was written: {md(text)}", "danger")

    def wait(self, timeout: float = 600.0) -> None:
        """Block until this page's export ended and its message is shown (scripts and tests)."""
        self._jobs.wait(timeout)

    def __panel__(self) -> pn.Card | pn.Column:
        return self._layout if self.state.can("export") else pn.Column(visible=False)
