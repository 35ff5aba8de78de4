"""The plugins' grid actions as buttons under the Browse toolbar: on the picked tiles, the lasso selection or the
whole filtered view.

Each button names its action and how many samples it would get, so what a click does is never a surprise. An
action runs on the long lane of ``ui/jobs.py`` and is recorded in the server's job registry (the jobs panel and
the API see it, with progress and cancel). Its message, or its error, is shown here and as a notification; an
action that raises disables its plugin (``plugins.run_action``). Afterwards the state is refreshed and the
registry re-read, since an action may have added fields (the sidebar rebuilds when the field set changed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import panel as pn
import param
from panel.viewable import Viewer

from ..hookspecs import GridAction, Scope
from ..plugins import grid_actions, run_action
from .html import text
from .jobs import Jobs, session_doc, user_message
from .notify import notify
from .permissions import guarded, hide_unless
from .state import AppState

SCOPE_WORDS: dict[str, str] = {"picked": "picked", "selection": "in the lasso selection", "view": "in view"}


class ActionsView(Viewer):
    state = param.ClassSelector(class_=AppState)

    @staticmethod
    def height_for(state: AppState) -> int:
        """Its height in the page at load: one row of buttons, none without an action this role may run (see
        ``ToolbarView``)."""
        return 44 if grid_actions() and state.can("plugins") else 0

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._actions: list[tuple[str, GridAction]] = grid_actions()
        self._buttons = [self._button(plugin, action) for plugin, action in self._actions]
        self._progress = pn.indicators.Progress(value=-1, max=100, visible=False, width=220, height=18)
        self._status = pn.pane.HTML("", visible=False, margin=(6, 10), css_classes=["vl-action-status"])
        self._jobs = Jobs("actions", state=self.state)
        self.state.param.watch(self._relabel, ["picked", "selection", "count", "dataset"])
        self._relabel()

    def _button(self, plugin: str, action: GridAction) -> pn.widgets.Button:
        button = pn.widgets.Button(name=action.label, button_type="default", css_classes=["vl-action"])
        button.on_click(guarded(self.state, "plugins", lambda _: self.start(plugin, action)))
        hide_unless(self.state, "plugins", button)
        return button

    def ids_for(self, scope: Scope) -> list[int]:
        """The samples an action of ``scope`` gets now."""
        st = self.state
        if scope == "picked":
            return [int(i) for i in st.picked]
        if scope == "selection":
            return [] if st.selection is None else [int(i) for i in np.asarray(st.selection)]
        return np.asarray(st.result_ids, np.int64).tolist()

    def _relabel(self, *_: Any) -> None:
        busy = self._jobs.running("action")
        for (_, action), button in zip(self._actions, self._buttons, strict=True):
            n = len(self.ids_for(action.scope))
            button.name = f"{action.label} ({n:,} {SCOPE_WORDS[action.scope]})"
            button.disabled = busy or n == 0 or self.state.ds is None

    def start(self, plugin: str, action: GridAction) -> None:
        """Run ``action`` on its samples in the background; a second click while one runs is refused."""
        ds, ids = self.state.ds, self.ids_for(action.scope)
        if ds is None or not ids:
            self._say(f"{text(action.label)}: no samples {SCOPE_WORDS[action.scope]}", "warning")
            return
        if self._jobs.running("action"):
            self._say("another action of this session is still running", "warning")
            return
        store, user = self.state.store, pn.state.user if session_doc() is not None else None

        def work() -> str:
            from ..server.jobs import registry

            with registry().track("action", f"{action.label} on {ds.name!r}", ds.name, user=user) as job:

                def progress(step: str, done: int, total: int) -> None:
                    job.report(step, done, total)
                    self._jobs.post(lambda: self._show_progress(step, done, total), every=0.2)

                return run_action(plugin, action, store, ds.id, ids, progress)

        self._progress.param.update(visible=True, value=-1)
        self._say(f"{text(action.label)}: running on {len(ids):,} samples…", "info")
        self._jobs.submit(work, self._done, self._failed, key="action", lane="long", name=action.name)
        self._relabel()
        for button in self._buttons:
            button.disabled = True

    def _show_progress(self, step: str, done: int, total: int) -> None:
        if self._jobs.running("action"):  # a late tick must not reopen a finished action's bar
            self._progress.param.update(visible=True, value=int(100 * done / total) if total else -1)
            self._say(f"{text(step)}: {done:,}/{total:,}" if total else text(step), "info")

    def _done(self, message: str) -> None:
        self._progress.visible = False
        self._say(text(message), "success")
        notify(text(message), "success", duration=5000)
        self.state.param.trigger("evaluation")  # the filters view rebuilds when the field set changed
        self.state.refresh()
        self._relabel()

    def _failed(self, exc: BaseException) -> None:
        self._progress.visible = False
        self._say(text(user_message(exc)), "danger")
        self._jobs.report(user_message(exc))  # the sidebar's alert and a notification
        self._relabel()

    def _say(self, html: str, kind: str) -> None:
        colour = {"info": "#555", "success": "#2e7d32", "warning": "#b26a00", "danger": "#c62828"}[kind]
        self._status.param.update(object=f'<span style="color:{colour}">{html}</span>', visible=bool(html))

    def wait(self, timeout: float = 120.0) -> None:
        """Block until the running action ended and was applied (scripts and tests)."""
        self._jobs.wait(timeout)

    def __panel__(self) -> pn.Row:
        return pn.Row(
            *self._buttons,
            self._progress,
            self._status,
            visible=bool(self.height_for(self.state)),
            sizing_mode="stretch_width",
            min_height=self.height_for(self.state),
            css_classes=["vl-actions"],
        )
