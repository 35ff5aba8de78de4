"""The evaluation panel: live metrics of the filtered view, and clicks that turn a number into the images behind it.

Metrics follow ``state.version`` (filters, map selection) and are computed by a background job (``jobs``), so a
filter change never waits for them; a result a newer request superseded is dropped. Storing per-object results
(``evaluate_model``) runs on the long-job lane with a progress bar. Every click here only writes the state
(filters, ``evaluation``, ``box_status``): the grid follows the state, this view never talks to it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401 - registers the bokeh backend's options without hv.extension()
import numpy as np
import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer

from ..metrics import Metrics, eval_key, evaluate_model, subset_metrics
from ..query import LabelFilter
from ..store.metadata import GROUND_TRUTH
from .colors import label_color
from .html import choices, md, text
from .jobs import Jobs, current_job, user_message
from .permissions import guarded, hide_unless
from .quiet import Quiet
from .state import AppState

log = logging.getLogger(__name__)
BACKGROUND = "background"
ALL_CLASSES = "all classes"
SUMMARY = {
    "mAP": "AP",
    "AP50": "AP50",
    "AP75": "AP75",
    "AP small": "AP_small",
    "AP medium": "AP_medium",
    "AP large": "AP_large",
    "AR100": "AR100",
}
BOX_MODES = {"all boxes": [], "only FPs": ["fp"], "only FNs": ["fn"]}
_MODEL_COLORS = ("#3b6fb6", "#e4572e", "#2a9d8f", "#9c6ade", "#f4a259", "#6b7280")
MAX_LABELLED_CELLS = 24  # above this many classes the counts would overlap: the hover tool shows them instead
MAX_LEGEND = 20  # more curves than this are unreadable as a legend: pick one class to compare models instead


def _button(css: str, text: str, tip: str, color: str) -> str:
    return (
        f'<span class="{css}" title="{tip}" style="padding:0 8px;border:1px solid {color};border-radius:9px;'
        f'color:{color};cursor:pointer;font-size:0.9em">{text}</span>'
    )


def _score(value: float) -> float | None:
    """COCO reports -1 where a class or area range has no ground truth: show an empty cell, not a fake score."""
    return None if value is None or value < 0 else round(float(value), 3)


def summary_frame(metrics: dict[str, Metrics]) -> pd.DataFrame:
    """One row per model: the numbers people compare models by, on the current subset."""
    rows = [
        {"model": name, "images": m.samples, **{col: _score(m.stats[key]) for col, key in SUMMARY.items()}}
        for name, m in metrics.items()
    ]
    return pd.DataFrame(rows, columns=["model", "images", *SUMMARY])


def per_class_frame(metrics: dict[str, Metrics]) -> pd.DataFrame:
    """One row per class, AP and AP50 of every model side by side (empty when the evaluation is class-agnostic)."""
    first = next(iter(metrics.values()), None)
    if first is None or not first.per_class:
        return pd.DataFrame(columns=["label", "GT"])
    df = pd.DataFrame({"label": [c["label"] for c in first.per_class], "GT": [c["gt"] for c in first.per_class]})
    for name, m in metrics.items():
        by_label = {c["label"]: c for c in m.per_class}
        for col in ("AP", "AP50"):
            df[f"{col} {name}"] = [_score(by_label[lbl][col]) if lbl in by_label else None for lbl in df["label"]]
    return df


def confusion_filters(model: str, key: str, gt: str, pred: str) -> tuple[LabelFilter, ...]:
    """The samples behind one confusion cell, as filters on the stored per-object results of ``key``.

    (X, Y): a GT X was missed *and* a Y was predicted wrongly on the same image (both filters must hold);
    (X, background): a GT X was missed; (background, Y): a Y prediction is a false positive; (X, X): a TP.
    """
    missed = LabelFilter(source=GROUND_TRUTH, labels=(gt,), status=("fn",), evaluation=key)
    wrong = LabelFilter(source=model, labels=(pred,), status=("fp",), evaluation=key)
    if gt == BACKGROUND and pred == BACKGROUND:
        return ()
    if pred == BACKGROUND:
        return (missed,)
    if gt == BACKGROUND:
        return (wrong,)
    if gt == pred:
        return (LabelFilter(source=model, labels=(pred,), status=("tp",), evaluation=key),)
    return (missed, wrong)


def confusion_plot(m: Metrics, width: int = 520) -> hv.Overlay:
    """Counts as a heatmap (rows: GT classes then background; columns: predictions then background).

    Colour follows log(1 + count): the diagonal is orders of magnitude above the confusions people look for.
    """
    labels = list(m.confusion_labels)
    cm = np.asarray(m.confusion)
    n = len(labels)
    rows = [(labels[j], labels[i], int(cm[i, j])) for i in range(n) for j in range(n)]
    data = pd.DataFrame(rows, columns=["pred", "gt", "count"])
    data["shade"] = np.log1p(data["count"])
    kdims = [hv.Dimension("pred", label="predicted"), hv.Dimension("gt", label="ground truth")]
    heat = hv.HeatMap(data, kdims=kdims, vdims=["shade", "count"]).opts(
        cmap="Blues",
        colorbar=False,
        tools=["hover", "tap"],
        xrotation=45,
        invert_yaxis=True,
        hover_tooltips=[("ground truth", "@gt"), ("predicted", "@pred"), ("count", "@count")],
        width=width,
        height=width - 40,
        toolbar=None,
        title=f"Confusion · {m.model} (IoU {m.iou:g}; click a cell)",
        backend="bokeh",
    )
    if n > 30:
        heat = heat.opts(fontsize={"xticks": "7pt", "yticks": "7pt"}, backend="bokeh")
    if n > MAX_LABELLED_CELLS:
        return hv.Overlay([heat])
    top = max(float(data["shade"].max()), 1e-9)
    data["text"] = data["count"].astype(str).where(data["count"] > 0, "")
    data["color"] = np.where(data["shade"] > top * 0.6, "white", "#1f2937")
    text = hv.Labels(data, kdims=kdims, vdims=["text", "color"]).opts(
        text_color="color", text_font_size="9pt", backend="bokeh"
    )
    return heat * text


def pr_plot(metrics: dict[str, Metrics], model: str, label: str) -> hv.Overlay:
    """COCO's interpolated PR curves at IoU .5: every class of one model, or every model on one class."""
    curves = []
    if label == ALL_CLASSES and model in metrics:
        res = metrics[model].result
        names = [c["label"] for c in metrics[model].per_class] or [ALL_CLASSES]
        for lbl_id, name in zip(res.labels, names):
            recall, precision = res.pr_curve(int(lbl_id), 0.5)
            if precision[0] >= 0:  # -1: no GT of this class in the subset
                curves.append(
                    hv.Curve((recall, precision), "recall", "precision", label=name).opts(
                        color=label_color(name), backend="bokeh"
                    )
                )
        title = f"PR @ IoU .5 · {model}"
    else:
        for name, m in metrics.items():
            k = [c["label"] for c in m.per_class].index(label) if label in [c["label"] for c in m.per_class] else None
            if k is None:
                continue
            recall, precision = m.result.pr_curve(int(m.result.labels[k]), 0.5)
            if precision[0] >= 0:
                curves.append(
                    hv.Curve((recall, precision), "recall", "precision", label=name).opts(
                        color=_MODEL_COLORS[len(curves) % len(_MODEL_COLORS)], backend="bokeh"
                    )
                )
        title = f"PR @ IoU .5 · {label}"
    if not curves:
        curves = [hv.Curve([], "recall", "precision")]
    curves = [c.opts(line_width=2, tools=["hover"], backend="bokeh") for c in curves]
    return hv.Overlay(curves).opts(
        width=520,
        height=380,
        xlim=(0, 1),
        ylim=(0, 1.02),
        legend_position="right",
        show_legend=len(curves) <= MAX_LEGEND,
        show_grid=True,
        title=title,
        toolbar=None,
        backend="bokeh",
    )


class EvaluationView(Quiet, Viewer):
    """Model picker, evaluate button, live summary / per-class / PR / confusion of the current filtered view."""

    state = param.ClassSelector(class_=AppState)

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.metrics: dict[str, Metrics] = {}
        self.computed_version = -1  # state.version the shown metrics belong to (tests wait on it)
        self._jobs = Jobs("evaluation", state=self.state)
        self._inputs: tuple[Any, ...] | None = None
        self._built_for: str | None = None

        self._models = pn.widgets.MultiChoice(label="Models", options=[], width=300)
        self._iou = pn.widgets.RadioButtonGroup(
            options={"IoU 0.5": 0.5, "IoU 0.75": 0.75}, value=0.5, color="light", margin=(24, 10, 0, 10)
        )
        self._agnostic = pn.widgets.Checkbox(label="class-agnostic", margin=(30, 10, 0, 10))
        self._evaluate = pn.widgets.Button(
            label="Evaluate / store per-object results",
            color="primary",
            margin=(24, 10, 0, 10),
            css_classes=["vl-evaluate"],
        )
        self._progress = pn.indicators.Progress(
            value=-1, max=100, visible=False, width=200, height=16, margin=(34, 10, 0, 10)
        )
        self._spinner = pn.indicators.LoadingSpinner(value=False, size=20, width=20, margin=(30, 5, 0, 5))
        self._focus = pn.widgets.Select(label="Model for curves, confusion and clicks", options=[], width=260)
        self._boxes = pn.widgets.RadioButtonGroup(
            options=list(BOX_MODES),
            value="all boxes",
            color="light",
            margin=(24, 10, 0, 10),
            css_classes=["vl-box-mode"],
        )
        self._pr_class = pn.widgets.Select(label="PR curves of", options=[ALL_CLASSES], width=200)
        self._info = pn.pane.HTML("", css_classes=["vl-eval-info"], margin=(5, 10))
        self._message = pn.pane.Alert("", alert_type="info", visible=False, sizing_mode="stretch_width")
        self._summary = pn.widgets.Tabulator(
            pd.DataFrame(),
            show_index=False,
            disabled=True,
            layout="fit_data_table",
            sizing_mode="stretch_width",
            css_classes=["vl-eval-summary"],
        )
        self._classes = pn.widgets.Tabulator(
            pd.DataFrame(),
            show_index=False,
            disabled=True,
            layout="fit_data_table",
            height=400,
            min_width=420,
            selectable=1,
            css_classes=["vl-eval-classes"],
            buttons={
                "FPs": _button("vl-fp-button", "FPs", "images with false positives of this class", "#c2410c"),
                "FNs": _button("vl-fn-button", "FNs", "images where this class was missed", "#1d4ed8"),
            },
        )
        self._pr = pn.pane.HoloViews(None, backend="bokeh", css_classes=["vl-eval-pr"])
        self._confusion = pn.pane.HoloViews(None, backend="bokeh", css_classes=["vl-eval-confusion"])
        self._tap: hv.streams.Tap | None = None

        self._evaluate.on_click(guarded(self.state, "evaluate", lambda _: self.evaluate_selected()))
        hide_unless(self.state, "evaluate", self._evaluate)
        self._classes.on_click(self._on_class_click)
        self._models.param.watch(self._on_models, "value")
        for w in (self._iou, self._agnostic):
            w.param.watch(lambda _: self._schedule(), "value")
        self._focus.param.watch(lambda _: self._on_focus(), "value")
        self._pr_class.param.watch(lambda _: self._draw_pr(), "value")
        self._boxes.param.watch(self._on_box_mode, "value")
        self.state.param.watch(lambda _: self._on_dataset(), "dataset")
        self.state.param.watch(lambda _: self._schedule(), "version")
        self.state.param.watch(lambda e: self._schedule() if getattr(self, "_stale", False) else None, "active_view")
        self.state.param.watch(self._on_state_boxes, "box_status")
        self._layout = pn.Column(
            pn.Row(
                self._models, self._iou, self._agnostic, self._evaluate, self._progress, sizing_mode="stretch_width"
            ),
            pn.Row(self._focus, self._boxes, self._info, self._spinner, sizing_mode="stretch_width"),
            self._message,
            self._summary,
            pn.Row(
                pn.Column(
                    pn.pane.HTML(
                        "<b>Per class</b> <small>(click a row for its PR curves; FPs / FNs show the "
                        "images with those errors in Browse)</small>",
                        width=560,
                    ),
                    self._classes,
                ),
                pn.Column(self._pr_class, self._pr),
            ),
            self._confusion,
            sizing_mode="stretch_width",
            css_classes=["vl-evaluation"],
        )
        self._on_dataset()

    # -- plumbing ------------------------------------------------------------------------------------------------

    def _say(self, markdown: str, kind: str = "info") -> None:
        """Show a message; data in ``markdown`` must already be escaped with ``html.md``."""
        self._message.param.update(object=markdown, alert_type=kind, visible=bool(markdown))

    @property
    def focus(self) -> str | None:
        """The model whose curves, confusion matrix and error clicks are shown."""
        return self._focus.value

    def key(self, model: str | None = None, class_agnostic: bool | None = None) -> str:
        agnostic = self._agnostic.value if class_agnostic is None else class_agnostic
        return eval_key(model or self.focus or "", float(self._iou.value), bool(agnostic))

    # -- inputs --------------------------------------------------------------------------------------------------

    def _on_dataset(self) -> None:
        ds = self.state.ds
        self._built_for = self.state.dataset
        self.metrics, self._inputs = {}, None
        models = ds.models() if ds else []
        with self._silently():
            self._models.options = choices(models)
            self._models.value = list(models)
            self._focus.options = list(models)
            self._focus.value = models[0] if models else None
            self._pr_class.options = [ALL_CLASSES, *(ds.labels() if ds else [])]
            self._pr_class.value = ALL_CLASSES
        self._evaluate.disabled = not models
        if ds is None:
            self._say("No dataset yet: add one on the **Datasets** tab.")
        elif not models:
            self._say(f"**{md(ds.name)}** has no predictions yet: add a model's predictions on the **Datasets** tab.")
        else:
            self._say("")
        self._schedule()

    def _on_models(self, event: Any) -> None:
        chosen = list(event.new)
        self._focus.options = chosen
        if self._focus.value not in chosen:
            self._focus.value = chosen[0] if chosen else None
        if not self._quiet:
            self._schedule()

    def _on_focus(self) -> None:
        self._draw_plots()

    # -- live metrics --------------------------------------------------------------------------------------------

    def _schedule(self) -> None:
        """Recompute for the current filters on the pool; an identical request is answered from the last one."""
        if self._quiet:
            return
        st = self.state
        if st.active_view not in (None, "Evaluation"):
            self._stale = True  # computed when the tab is opened: metrics over 1M images are not free
            return
        self._stale = False
        if self._built_for != st.dataset:
            self._on_dataset()  # the new dataset's result arrived before our dataset watcher ran
            return
        ds = st.ds
        version = st.version
        if ds is None or not self._models.value:
            self._jobs.supersede("metrics")
            self._apply(version, None, {}, 0.0)
            return
        flt = st.effective_filters()
        models = tuple(self._models.value)
        inputs = (ds.id, ds.store.generation, flt, models, float(self._iou.value), bool(self._agnostic.value))
        if inputs == self._inputs and self.metrics:
            self.computed_version = version
            return
        self._spinner.value = True
        store = ds.store
        self._jobs.submit(
            lambda: self._compute(inputs, store),
            lambda out: self._apply(version, inputs, *out) if out is not None else None,
            self._failed,
            key="metrics",
            name="metrics",
        )

    @staticmethod
    def _compute(inputs: tuple[Any, ...], store: Any) -> tuple[dict[str, Metrics], float] | None:
        """On a worker: the metrics of every chosen model (None when a newer request superseded this one)."""
        ds_id, _, flt, models, iou, agnostic = inputs
        out: dict[str, Metrics] = {}
        seconds = 0.0
        job = current_job()
        for model in models:
            if job is not None and job.superseded:
                return None  # a newer request is queued; it will answer
            m = subset_metrics(store, ds_id, model, flt, iou, agnostic)
            out[model] = m
            seconds += m.seconds
        return out, seconds

    def _failed(self, exc: BaseException) -> None:
        self._spinner.value = False
        self._say(f"Metrics failed: {md(user_message(exc))}", "danger")

    def _apply(self, version: int, inputs: tuple[Any, ...] | None, metrics: dict[str, Metrics], seconds: float) -> None:
        """On the session's loop: show the metrics of the latest request (older ones were dropped by ``jobs``)."""
        self.metrics, self._inputs = metrics, inputs
        self._spinner.value = False
        self._summary.value = summary_frame(metrics)
        classes = per_class_frame(metrics)
        self._classes.param.update(
            value=classes,
            height=min(420, 60 + 29 * len(classes)),
            # Tabulator draws group titles as HTML: model names go in escaped
            groups={text(name): [f"AP {name}", f"AP50 {name}"] for name in metrics} if len(classes) else {},
            titles={f"{col} {name}": col for name in metrics for col in ("AP", "AP50")},
        )
        first = next(iter(metrics.values()), None)
        if first is not None:
            what = "current filters" if not self.state.effective_filters().is_empty else "whole dataset"
            self._info.object = (
                f"<span class='vl-eval-images'>{first.samples:,}</span> images ({what}) · {seconds * 1000:.0f} ms"
            )
        else:
            self._info.object = ""
        self._draw_plots()
        self.computed_version = version

    def _draw_plots(self) -> None:
        self._draw_pr()
        m = self.metrics.get(self.focus or "")
        if m is None or m.confusion is None:
            self._confusion.object = None
            return
        n = len(m.confusion_labels)
        plot = confusion_plot(m, width=int(min(900, max(420, 180 + 34 * n))))
        heat = plot.get(0) if isinstance(plot, hv.Overlay) else plot
        self._tap = hv.streams.Tap(source=heat)
        self._tap.add_subscriber(lambda x=None, y=None: self.on_tap(x, y))
        self._confusion.object = plot

    def _draw_pr(self) -> None:
        if not self.metrics or self.focus not in self.metrics:
            self._pr.object = None
            return
        agnostic = not next(iter(self.metrics.values())).per_class
        self._pr_class.disabled = agnostic
        label = ALL_CLASSES if agnostic else self._pr_class.value
        self._pr.object = pr_plot(self.metrics, self.focus, label)

    # -- evaluation jobs -----------------------------------------------------------------------------------------

    def stored_keys(self) -> set[str]:
        ds = self.state.ds
        return {e["key"] for e in ds.evaluations()} if ds else set()

    def evaluate_selected(self) -> None:
        """Store per-object results for every chosen model at the chosen IoU; then the grid marks TP/FP/FN."""
        specs = [(m, float(self._iou.value), bool(self._agnostic.value)) for m in self._models.value]
        self._run_evaluations(specs, lambda: setattr(self.state, "evaluation", self.key()))

    def ensure_evaluated(self, model: str, class_agnostic: bool, then: Callable[[], None]) -> None:
        """Filters on TP/FP/FN need stored per-object results: run the evaluation first when it is missing."""
        if self.key(model, class_agnostic) in self.stored_keys():
            then()
            return
        self._run_evaluations([(model, float(self._iou.value), class_agnostic)], then)

    def _run_evaluations(self, specs: list[tuple[str, float, bool]], then: Callable[[], None]) -> None:
        ds = self.state.ds
        if ds is None or not specs:
            return
        if self._jobs.running("evaluate"):
            self._say("An evaluation of this session is still running.", "warning")
            return
        store, ds_id, n = ds.store, ds.id, len(specs)
        self._evaluate.disabled = True
        self._progress.param.update(visible=True, value=0)
        self._say(f"Evaluating {', '.join(md(m) for m, _, _ in specs)} …")

        def work() -> None:
            for i, (model, iou, agnostic) in enumerate(specs):

                def progress(_step: str, done: int, total: int, i: int = i) -> None:
                    value = int(100 * (i + (done / total if total else 0)) / n)
                    self._jobs.post(lambda: setattr(self._progress, "value", value), every=0.2)

                evaluate_model(store, ds_id, model, iou, agnostic, progress)

        self._jobs.submit(
            work,
            lambda _: self._evaluated(specs, None, then),
            lambda exc: self._evaluated(specs, user_message(exc), then),
            key="evaluate",
            lane="long",
            name="evaluate",
        )

    def _evaluated(self, specs: list[tuple[str, float, bool]], error: str | None, then: Callable[[], None]) -> None:
        self._evaluate.disabled = False
        self._progress.visible = False
        if error:
            self._say(f"Evaluation failed: {md(error)}", "danger")
            return
        keys = ", ".join(eval_key(*s) for s in specs)
        self._say(
            f"Stored per-object results ({md(keys)}): boxes in Browse show TP / FP / FN; filter images by "
            f"`<key>.fp` etc.",
            "success",
        )
        then()

    def wait(self, timeout: float = 60.0) -> None:
        """Block until this view's background work (metrics, evaluations) ended and was applied (scripts, tests)."""
        self._jobs.wait(timeout)

    # -- clicks -> state -----------------------------------------------------------------------------------------

    def show_errors(self, label: str, status: str) -> None:
        """Images with this class's false positives ("fp") or misses ("fn") of the focus model, in the grid."""
        model = self.focus
        if not model:
            return
        agnostic = bool(self._agnostic.value)
        key = self.key(model, agnostic)
        source = model if status in ("fp", "tp") else GROUND_TRUTH
        flt = LabelFilter(source=source, labels=(label,), status=(status,), evaluation=key)
        self.ensure_evaluated(model, agnostic, lambda: self._show((flt,), model, key))

    def on_tap(self, x: Any, y: Any) -> None:
        """A confusion cell was tapped: x is the predicted class, y the ground-truth class (or background)."""
        model = self.focus
        if not model or x is None or y is None:
            return
        key = self.key(model, class_agnostic=False)  # the matrix is per class even when AP is class-agnostic
        flts = confusion_filters(model, key, str(y), str(x))
        if flts:
            self.ensure_evaluated(model, False, lambda: self._show(flts, model, key))

    def _show(self, flts: tuple[LabelFilter, ...], model: str, key: str) -> None:
        st = self.state
        models = st.models if model in st.models else [*st.models, model]
        st.param.update(models=models, evaluation=key, show_gt=True)
        st.set_label_filters(flts)
        if st.error:
            self._say(md(st.error), "danger")
        else:
            self._say(f"Browse shows {st.count:,} images: " + " and ".join(_describe(f) for f in flts), "success")

    def _on_class_click(self, event: Any) -> None:
        df = self._classes.value
        if df is None or event.row is None or event.row >= len(df):
            return
        label = str(df["label"].iloc[event.row])
        if event.column == "FPs":
            self.show_errors(label, "fp")
        elif event.column == "FNs":
            self.show_errors(label, "fn")
        else:
            self._pr_class.value = label

    def _on_box_mode(self, event: Any) -> None:
        if self._quiet:
            return
        statuses = BOX_MODES[event.new]
        model = self.focus
        if not statuses or not model:
            self.state.box_status = []
            return
        key = self.key(model)
        self.ensure_evaluated(model, bool(self._agnostic.value), lambda: self._mark(model, key, statuses))

    def _mark(self, model: str, key: str, statuses: list[str]) -> None:
        st = self.state
        models = st.models if model in st.models else [*st.models, model]
        st.param.update(models=models, evaluation=key, box_status=list(statuses))

    def _on_state_boxes(self, event: Any) -> None:
        mode = next((k for k, v in BOX_MODES.items() if v == sorted(event.new or [])), "all boxes")
        with self._silently():
            self._boxes.value = mode

    def __panel__(self) -> pn.Column:
        return self._layout


def _describe(flt: LabelFilter) -> str:
    what = {"fp": "false positive", "fn": "missed", "tp": "true positive"}[flt.status[0]] if flt.status else "any"
    who = "ground truth" if flt.source == GROUND_TRUTH else md(flt.source)
    return f"{who} **{md(', '.join(flt.labels or ()))}** {what}"
