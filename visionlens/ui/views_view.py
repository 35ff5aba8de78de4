"""Saved views in the sidebar: keep what is on screen under a name, open it again, rename or delete it.

A saved view holds the filters, the lasso selection, the sort and the sources drawn (``store/tags.py``); opening one
applies all of them through the state (``AppState.open_view``), and the URL then names it (``?view=<name>``), so a
link carries even a lasso selection. Writes run as background jobs (``jobs.py``); replacing or deleting a view asks
first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import panel as pn
import param
from panel.viewable import Viewer

from ..errors import VisionLensError
from ..query import SavedView
from ..store.tags import MAX_VIEW_NAME_CHARS, clean_name
from .html import el, text
from .jobs import Jobs
from .permissions import guarded
from .state import AppState


class SavedViewsView(Viewer):
    """A list of the dataset's saved views with Open / Rename / Delete, and a name input with Save."""

    state = param.ClassSelector(class_=AppState)

    def __init__(self, **params: Any):
        super().__init__(**params)
        st = self.state
        self._views = pn.widgets.Select(options=[], sizing_mode="stretch_width", css_classes=["vl-saved-views"])
        self._open = pn.widgets.Button(name="Open", css_classes=["vl-open-view"], margin=(5, 3))
        self._rename = pn.widgets.Button(
            name="Rename", button_type="light", margin=(5, 3), description="Rename the chosen view to the name typed"
        )
        self._delete = pn.widgets.Button(name="Delete", button_type="light", margin=(5, 3))
        self._name = pn.widgets.TextInput(
            placeholder="name what is on screen…", sizing_mode="stretch_width", css_classes=["vl-view-name"]
        )
        self._save = pn.widgets.Button(
            name="Save view", button_type="primary", css_classes=["vl-save-view"], margin=(5, 3)
        )
        self._status = pn.pane.HTML("", css_classes=["vl-view-status"], sizing_mode="stretch_width", margin=(0, 10))
        self._question = pn.pane.HTML("", sizing_mode="stretch_width", margin=(0, 10))
        self._yes = pn.widgets.Button(name="Yes", button_type="danger", css_classes=["vl-view-confirm"], margin=(5, 3))
        self._no = pn.widgets.Button(name="Cancel", button_type="light", margin=(5, 3))
        self._confirm = pn.Column(self._question, pn.Row(self._yes, self._no), visible=False)
        self._pending: Callable[[], None] | None = None
        self._jobs = Jobs("saved views", state=st)

        self._open.on_click(lambda _: self._open_chosen())
        self._save.on_click(guarded(st, "views", lambda _: self._save_current()))
        self._rename.on_click(guarded(st, "views", lambda _: self._rename_chosen()))
        self._delete.on_click(guarded(st, "views", lambda _: self._delete_chosen()))
        self._yes.on_click(guarded(st, "views", lambda _: self._confirmed()))
        self._no.on_click(lambda _: self._ask(None))
        self._views.param.watch(lambda *_: self._show_buttons(), "value")
        st.param.watch(lambda *_: self._load(), ["dataset", "datasets_version"])
        self._load()

    # -- list ----------------------------------------------------------------------------------------------------

    def _load(self, select: str | None = None) -> None:
        """Re-read the dataset's views (another session or the API may have saved some) and choose ``select``."""
        ds = self.state.ds
        if ds is None:
            self._show([], None)
            return
        self._jobs.submit(
            lambda: [v.name for v in ds.views()],
            lambda names: self._show(names, select),
            key="list",
            name="list saved views",
        )

    def _show(self, names: list[str], select: str | None) -> None:
        # a Select shows its options as text, so names need no escaping here; "" stands for "none saved yet"
        self._views.options = {n: n for n in names} if names else {"no saved views yet": ""}
        if select in names:
            self._views.value = select
        elif self._views.value not in names:
            self._views.value = names[0] if names else ""
        self._show_buttons()

    def _show_buttons(self) -> None:
        chosen = bool(self._views.value)
        for button in (self._open, self._rename, self._delete):
            button.disabled = not chosen

    # -- actions -------------------------------------------------------------------------------------------------

    def _open_chosen(self) -> None:
        name = self._views.value
        if not name:
            return
        try:
            self.state.open_view(name)
        except VisionLensError as e:
            self._say(str(e), error=True)
            self._load()
            return
        self._say(f"Opened {el('b', name)}", markup=True)

    def _typed_name(self) -> str | None:
        try:
            return clean_name(self._name.value_input or self._name.value or "", "a view name", MAX_VIEW_NAME_CHARS)
        except VisionLensError as e:
            self._say(str(e), error=True)
            return None

    def _save_current(self) -> None:
        """Save what is on screen; a name in use is replaced only after the user confirms it."""
        name = self._typed_name()
        if name is None or self.state.ds is None:
            return
        if name in self._views.options.values():
            self._ask(lambda: self._write_save(name, replace=True), f"Replace the saved view {el('b', name)}?")
            return
        self._write_save(name, replace=False)

    def _current(self, name: str) -> SavedView:
        st = self.state
        selection = None if st.selection is None else np.asarray(st.selection, np.int64).tolist()
        return SavedView(
            name=name, filters=st.filters, selection=selection, sort=st.sort, sources=tuple(st.visible_sources())
        )

    def _write_save(self, name: str, replace: bool) -> None:
        ds = self.state.ds
        if ds is None:
            return
        view, user = self._current(name), pn.state.user
        self._jobs.submit(
            lambda: ds.store.save_view(ds.id, view, replace=replace, user=user),
            lambda saved: self._saved(saved.name),
            self._failed,
            key="write",
            name="save view",
        )

    def _saved(self, name: str) -> None:
        self._name.value = ""
        self._load(select=name)
        self._open_quietly(name)
        self._say(f"Saved {el('b', name)}; a link now opens it", markup=True)

    def _open_quietly(self, name: str) -> None:
        """Open the view just saved or renamed, so the URL names it; what is shown does not change."""
        try:
            self.state.open_view(name)
        except VisionLensError as e:
            self._say(str(e), error=True)

    def _rename_chosen(self) -> None:
        ds, old, new = self.state.ds, self._views.value, self._typed_name()
        if ds is None or not old or new is None:
            return
        shown = self.state.shown_view() == old

        def done(view: SavedView) -> None:
            self._name.value = ""
            self._load(select=view.name)
            if shown:
                self._open_quietly(view.name)
            self._say(f"Renamed {el('b', old)} to {el('b', view.name)}", markup=True)

        self._jobs.submit(lambda: ds.rename_view(old, new), done, self._failed, key="write", name="rename view")

    def _delete_chosen(self) -> None:
        ds, name = self.state.ds, self._views.value
        if ds is None or not name:
            return

        def delete() -> None:
            self._jobs.submit(
                lambda: ds.delete_view(name),
                lambda _: (self._load(), self._say(f"Deleted {el('b', name)}", markup=True)),
                self._failed,
                key="write",
                name="delete view",
            )

        self._ask(delete, f"Delete the saved view {el('b', name)}?")

    def _ask(self, action: Callable[[], None] | None, question: str = "") -> None:
        """Show a yes/cancel question for ``action`` (None: hide it)."""
        self._pending = action
        self._question.object = question
        self._confirm.visible = action is not None

    def _confirmed(self) -> None:
        action = self._pending
        self._ask(None)
        if action is not None:
            action()

    def _failed(self, exc: BaseException) -> None:
        self._say(str(exc) if isinstance(exc, VisionLensError) else f"{type(exc).__name__}: {exc}", error=True)
        self._load()

    def _say(self, message: str, error: bool = False, markup: bool = False) -> None:
        body = message if markup else text(message)
        style = "color:#b3261e" if error else "font-size:0.85em"
        self._status.object = f'<span class="vl-view-said" style="{style}">{body}</span>'

    def wait(self, timeout: float = 30.0) -> None:
        """Block until this view's background work ended (scripts and tests)."""
        self._jobs.wait(timeout, raise_errors=True)

    def __panel__(self) -> pn.Card:
        return pn.Card(
            self._views,
            pn.Row(self._open, self._rename, self._delete) if self.state.can("views") else self._open,
            pn.Row(self._name, self._save, sizing_mode="stretch_width", visible=self.state.can("views")),
            self._confirm,
            self._status,
            title="Saved views",
            collapsed=False,
            sizing_mode="stretch_width",
            css_classes=["vl-views-card"],
        )
