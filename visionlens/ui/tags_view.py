"""Tagging on the Browse tab: the picked tiles, the map's lasso selection or the whole filtered view.

A tag is typed (the dataset's tags are suggested) and written by one store call on a background job (``jobs.py``).
Afterwards the state's ``data_changed`` recomputes the result (a tag filter may match other samples now), which
refreshes the sidebar's tag counts, and these suggestions are re-read. Tagging or untagging the whole view asks
first: a view can be a million samples.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import panel as pn
import param
from panel.viewable import Viewer

from ..errors import VisionLensError
from ..query import Filters, LabelFilter
from ..store.tags import clean_tags, sample_target
from .html import el, text
from .jobs import Jobs
from .permissions import guarded, hide_unless
from .state import AppState

Target = str
"""Which samples a tag action names: ``picked`` (shift-clicked tiles), ``lasso`` (the map's selection) or ``view``
(everything the grid shows)."""


_EMPTY = {"picked": "shift-click tiles first", "lasso": "select with the lasso on the Map first", "view": "empty view"}


class TagsView(Viewer):
    """A tag input with suggestions, buttons to tag the picked tiles, the lasso selection or the whole view, and a
    menu to remove the tag from any of them."""

    state = param.ClassSelector(class_=AppState)

    @staticmethod
    def height_for(state: AppState) -> int:
        """Its height in the page at load: one row, none for a role that may not tag (see ``ToolbarView``)."""
        return 50 if state.can("tag") else 0

    def __init__(self, **params: Any):
        super().__init__(**params)
        st = self.state
        self._tag = pn.widgets.AutocompleteInput(
            placeholder="tag…",
            options=[],
            restrict=False,
            case_sensitive=False,
            min_characters=1,
            search_strategy="includes",
            width=170,
            margin=(5, 5, 5, 10),
            css_classes=["vl-tag-input"],
        )
        self._picked = pn.widgets.Button(name="Tag picked", css_classes=["vl-tag-picked"], margin=(5, 3))
        self._lasso = pn.widgets.Button(name="Tag lasso selection", css_classes=["vl-tag-lasso"], margin=(5, 3))
        self._view = pn.widgets.Button(name="Tag whole view", css_classes=["vl-tag-view"], margin=(5, 3))
        # the boxes the sidebar's Objects filter picks (every ground-truth box when it is off), on these samples
        self._boxes = pn.widgets.MenuButton(
            name="Tag boxes",
            items=[("of picked", "picked"), ("of lasso selection", "lasso"), ("of whole view", "view")],
            button_type="light",
            css_classes=["vl-tag-boxes"],
            margin=(5, 3),
        )
        self._remove = pn.widgets.MenuButton(
            name="Remove tag",
            items=[
                ("from picked", "picked"),
                ("from lasso selection", "lasso"),
                ("from whole view", "view"),
                None,
                ("from boxes of picked", "boxes:picked"),
                ("from boxes of lasso selection", "boxes:lasso"),
                ("from boxes of whole view", "boxes:view"),
            ],
            button_type="light",
            css_classes=["vl-untag"],
            margin=(5, 3),
        )
        self._status = pn.pane.HTML("", css_classes=["vl-tag-status"], margin=(12, 8, 0, 8))
        self._question = pn.pane.HTML("", margin=(12, 8, 0, 8))
        self._yes = pn.widgets.Button(name="Yes", button_type="danger", css_classes=["vl-tag-confirm"], margin=(5, 3))
        self._no = pn.widgets.Button(name="Cancel", button_type="light", margin=(5, 3))
        self._confirm = pn.Row(self._question, self._yes, self._no, visible=False, css_classes=["vl-tag-ask"])
        self._pending: tuple[Target, bool, bool] | None = None
        self._jobs = Jobs("tags", state=st)

        self._picked.on_click(guarded(st, "tag", lambda _: self._ask("picked", remove=False)))
        self._lasso.on_click(guarded(st, "tag", lambda _: self._ask("lasso", remove=False)))
        self._view.on_click(guarded(st, "tag", lambda _: self._ask("view", remove=False)))
        self._boxes.on_click(guarded(st, "tag", lambda e: self._ask(e.new, remove=False, boxes=True)))
        self._remove.on_click(
            guarded(st, "tag", lambda e: self._ask(e.new.removeprefix("boxes:"), True, e.new.startswith("boxes:")))
        )
        self._yes.on_click(guarded(st, "tag", lambda _: self._confirmed()))
        self._may_tag = hide_unless(st, "tag", self._picked, self._lasso, self._view, self._boxes, self._remove)
        self._no.on_click(lambda _: self._cancel())
        st.param.watch(self._show_counts, ["picked", "selection", "count"])
        st.param.watch(lambda *_: self._load_suggestions(), ["dataset", "data_version"])
        self._show_counts()
        self._load_suggestions()

    # -- state -> widgets ----------------------------------------------------------------------------------------

    def _show_counts(self, *_: Any) -> None:
        st = self.state
        n_picked = len(st.picked)
        n_lasso = 0 if st.selection is None else len(st.selection)
        self._picked.param.update(name=f"Tag {n_picked} picked" if n_picked else "Tag picked", disabled=not n_picked)
        self._lasso.param.update(name=f"Tag lasso ({n_lasso:,})" if n_lasso else "Tag lasso", disabled=not n_lasso)
        self._view.param.update(name=f"Tag whole view ({st.count:,})", disabled=not st.count)

    def _load_suggestions(self) -> None:
        ds = self.state.ds
        if ds is None:
            self._tag.options = []
            return
        self._jobs.submit(
            lambda: sorted({t for kind in ds.tag_counts().values() for t in kind}),  # sample and box tags
            lambda names: setattr(self._tag, "options", names),
            key="suggestions",
            name="tag suggestions",
        )

    # -- actions -------------------------------------------------------------------------------------------------

    def _typed(self) -> list[str] | None:
        """The tag in the input (typed or picked from the suggestions), checked; None after saying what is wrong."""
        raw = self._tag.value_input or self._tag.value or ""
        try:
            return clean_tags(raw)
        except VisionLensError as e:
            self._say(str(e), error=True)
            return None

    def _ask(self, target: Target, remove: bool, boxes: bool = False) -> None:
        """Run the action at once, or, for the whole view, after the user confirms it."""
        tags = self._typed()
        if tags is None or (boxes and self._box_filter() is None):
            return
        if target != "view":
            self._run(target, tags, remove, boxes)
            return
        n = self.state.count
        what = f"Remove {el('b', tags[0])} from" if remove else f"Tag with {el('b', tags[0])}"
        if boxes:
            self._question.object = f"{what} the {text(self._describe_boxes())} of all {n:,} samples of this view?"
            self._yes.name = f"{'Untag' if remove else 'Tag'} boxes of {n:,} samples"
        else:
            self._question.object = f"{what} all {n:,} samples of this view?"
            self._yes.name = f"{'Remove from' if remove else 'Tag'} {n:,} samples"
        self._pending = (target, remove, boxes)
        self._confirm.visible = True

    def _box_filter(self) -> LabelFilter | None:
        """Which boxes "Tag boxes" names on its samples: those the sidebar's Objects filter picks, or every
        ground-truth box when it is off. None (after saying why) when that filter describes images, not boxes."""
        flts = self.state.filters.annotations
        if not flts:
            return LabelFilter()
        if flts[0].exclude:
            self._say("The Objects filter says 'has none': it names images, not boxes to tag", error=True)
            return None
        return flts[0].model_copy(update={"min_count": 1})

    def _describe_boxes(self) -> str:
        flt = self._box_filter() or LabelFilter()
        what = [", ".join(flt.labels) if flt.labels else "all", "boxes", f"of {flt.source}"]
        if flt.status:
            what.append("(" + "/".join(s.upper() for s in flt.status) + ")")
        if flt.tags:
            what.append("tagged " + ", ".join(flt.tags))
        return " ".join(what)

    def _confirmed(self) -> None:
        pending, self._pending = self._pending, None
        self._confirm.visible = False
        tags = self._typed()
        if pending is not None and tags is not None:
            self._run(pending[0], tags, pending[1], pending[2])

    def _cancel(self) -> None:
        self._pending = None
        self._confirm.visible = False

    def _target(self, target: Target) -> tuple[Filters | None, np.ndarray | None, int]:
        """(filters, sample ids, how many) of a target, read from the state now, before the job runs."""
        st = self.state
        if target == "picked":
            ids = np.asarray(st.picked, np.int64)
            return None, ids, len(ids)
        if target == "lasso":
            ids = np.zeros(0, np.int64) if st.selection is None else np.asarray(st.selection, np.int64)
            return None, ids, len(ids)
        if st.similar is not None:  # a similarity search's top-k: exactly the samples shown
            return None, np.asarray(st.result_ids, np.int64), st.count
        return st.effective_filters(), None, st.count

    def _run(self, target: Target, tags: list[str], remove: bool, boxes: bool = False) -> None:
        ds = self.state.ds
        if ds is None:
            return
        filters, ids, n = self._target(target)
        if n == 0:
            self._say(f"Nothing to tag: {_EMPTY[target]}", error=True)
            return
        objects = self._box_filter() if boxes else None
        if boxes and objects is None:
            return
        if boxes:
            samples = sample_target(filters, ids)
            box_write = ds.untag_objects if remove else ds.tag_objects

            def write() -> int:
                return box_write(tags, filters=samples, objects=objects)
        else:
            sample_write: Callable[..., int] = ds.untag if remove else ds.tag

            def write() -> int:
                return sample_write(tags, filters, ids)

        start = time.perf_counter()
        self._busy(True)
        self._say("Removing…" if remove else "Tagging…")
        self._jobs.submit(
            write,
            lambda changed: self._done(tags[0], n, changed, remove, time.perf_counter() - start, boxes),
            lambda exc: self._failed(exc),
            key="write",
            lane="long",
            name="untag" if remove else "tag",
        )

    def _done(self, tag: str, n: int, changed: int, remove: bool, seconds: float, boxes: bool = False) -> None:
        """Say what changed, then let every view re-read: the result, the sidebar's tag counts, the suggestions."""
        self._busy(False)
        if boxes:
            verb = "Removed" if remove else "Tagged"
            prep = "from" if remove else "with"
            message = f"{verb} {changed:,} boxes on {n:,} samples {prep} {el('b', tag)}"
        elif remove:
            message = f"Removed {el('b', tag)} from {changed:,} samples"
        else:
            already = f", {n - changed:,} had it already" if changed < n else ""
            message = f"Tagged {n:,} samples with {el('b', tag)}{already}"
        self._say(f"{message} ({seconds:.1f} s)", markup=True)
        self.state.data_changed()

    def _failed(self, exc: BaseException) -> None:
        self._busy(False)
        self._say(str(exc) if isinstance(exc, VisionLensError) else f"{type(exc).__name__}: {exc}", error=True)

    def _busy(self, busy: bool) -> None:
        for button in (self._remove, self._boxes, self._yes):
            button.disabled = busy
        if busy:
            for button in (self._picked, self._lasso, self._view):
                button.disabled = True
        else:
            self._show_counts()

    def _say(self, message: str, error: bool = False, markup: bool = False) -> None:
        """One line of feedback; plain text is escaped here, markup was built with ``html.el``."""
        body = message if markup else text(message)
        style = "color:#b3261e" if error else "font-size:0.85em"
        self._status.object = f'<span class="vl-tag-said" style="{style}">{body}</span>'

    def wait(self, timeout: float = 30.0) -> None:
        """Block until this view's background work ended (scripts and tests)."""
        self._jobs.wait(timeout, raise_errors=True)

    def __panel__(self) -> pn.Column:
        if not self._may_tag:  # a viewer: nothing here they may use
            return pn.Column(visible=False)
        return pn.Column(
            pn.Row(
                self._tag,
                self._picked,
                self._lasso,
                self._view,
                self._boxes,
                self._remove,
                self._status,
                sizing_mode="stretch_width",
                css_classes=["vl-tags-row"],
            ),
            self._confirm,
            sizing_mode="stretch_width",
            min_height=self.height_for(self.state),
            css_classes=["vl-tags"],
        )
