"""The server's jobs as every session sees them: what runs (from this page, another session or the HTTP API),
its progress, who started it, and a cancel button.

Reads the process's job registry once a second (no database query), and when an ingest, a deletion or new
predictions finish it asks the shared state to re-read the dataset list, so a dataset added through the API
shows up in an open page without a reload.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

from ..server.jobs import Job, registry
from .html import md
from .permissions import guarded, hide_unless
from .state import AppState

REFRESH_MS = 1000
CHANGES_DATASETS = {"ingest", "delete", "predictions"}
SHOWN = 50


def _when(ts: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else ""


def _progress(job: Job) -> str:
    if not job.step:
        return ""
    fraction = job.fraction()
    return f"{job.step} {fraction:.0%}" if fraction is not None else job.step


def jobs_frame(jobs: list[Job]) -> pd.DataFrame:
    rows = [
        {
            "id": j.id,
            "started": _when(j.started or j.created),
            "job": j.title,
            "by": "API client" if j.user == "token" else (j.user or ""),
            "state": j.state,
            "progress": _progress(j) if j.active else "",
            "message": j.error or "",
        }
        for j in reversed(jobs[-SHOWN:])
    ]
    return pd.DataFrame(rows, columns=["id", "started", "job", "by", "state", "progress", "message"])


class JobsView(Viewer):
    """Ingests, evaluations, embeddings and insights running in this server, newest first."""

    state = param.ClassSelector(class_=AppState)

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._table = pn.widgets.Tabulator(
            jobs_frame([]),
            show_index=False,
            disabled=True,
            selectable=1,
            hidden_columns=["id"],
            widths={"job": 260, "by": 110, "progress": 240, "message": 420},
            sizing_mode="stretch_width",
            height=200,
            layout="fit_data_table",
            css_classes=["vl-jobs"],
        )
        self._cancel = pn.widgets.Button(name="Cancel selected job", button_type="warning", width=180)
        self._cancel.on_click(guarded(self.state, "cancel", self._on_cancel))
        hide_unless(self.state, "cancel", self._cancel)
        self._note = pn.pane.HTML("", css_classes=["vl-jobs-note"])
        self._seen = {j.id: j.state for j in registry().list()}  # what finished before this page is old news
        self._layout = pn.Column(
            pn.pane.HTML("<h4>Jobs</h4>"),
            self._table,
            pn.Row(self._cancel, self._note),
            sizing_mode="stretch_width",
        )
        self._table.value = jobs_frame(registry().list())
        if pn.state.curdoc is not None and getattr(pn.state.curdoc, "session_context", None) is not None:
            pn.state.add_periodic_callback(self.refresh, period=REFRESH_MS)

    def refresh(self) -> None:
        jobs = registry().list()
        finished_now = [j for j in jobs if self._seen.get(j.id, "new") != j.state and not j.active]
        changed = any(self._seen.get(j.id) != j.state for j in jobs) or len(jobs) != len(self._seen)
        running = any(j.active for j in jobs)
        self._seen = {j.id: j.state for j in jobs}
        if changed or running:
            self._table.value = jobs_frame(jobs)
        if any(j.kind in CHANGES_DATASETS and j.state == "done" for j in finished_now):
            self.state.reload_datasets()

    def _on_cancel(self, *_: Any) -> None:
        rows = self._table.selection
        if not rows:
            self._note.object = "select a job first"
            return
        job_id = self._table.value.iloc[rows[0]]["id"]
        job = registry().get(job_id)
        if job is None or not job.cancel():
            self._note.object = "that job has already finished"
            return
        self._note.object = f"cancelling {md(job.title)}…"

    def __panel__(self) -> pn.Column:
        return self._layout
