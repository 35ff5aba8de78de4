"""Assembles the views around one session state; the same layout serves `panel serve` and notebooks."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

import panel as pn

from ..hookspecs import ViewContext
from ..plugins import view_factories
from . import resources

# The built-in tabs' views, looked up here by the built-in plugin's ``views`` hook (so tests can replace one).
from .datasets_view import DatasetsView  # noqa: F401
from .deferred import later
from .detail_view import DetailView  # noqa: F401
from .evaluation_view import EvaluationView  # noqa: F401
from .export_view import ExportView
from .filters_view import FiltersView
from .grid_view import GridView  # noqa: F401
from .insights_view import InsightsView  # noqa: F401
from .jobs import Jobs
from .jobs_view import JobsView  # noqa: F401
from .map_view import MapView  # noqa: F401
from .notify import toast_holder
from .state import AppState
from .tags_view import TagsView  # noqa: F401
from .toolbar_view import ToolbarView  # noqa: F401
from .views_view import SavedViewsView

resources.serve_without_mathjax()

TITLE = "VisionLens"
ACCENT = "#3b6fb6"
HEADER_PX = 52
"""The page header's height: the detail overlay leaves this much room above it."""
CSS = """
html, body { margin: 0; height: 100%; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
.vl-detail { overflow: hidden; }
"""
_HEADER_CSS = f"""
:host {{ background: {ACCENT}; color: white; box-shadow: 0 1px 4px rgba(0, 0, 0, .25); z-index: 2; }}
.vl-brand {{ font-size: 22px; font-weight: 500; letter-spacing: .02em; line-height: {HEADER_PX}px; padding: 0 20px; }}
"""


def _page(sidebar: Any, tabs: Any) -> pn.Column:
    """The served page: a header, the sidebar and the tabs, as plain Panel layouts.

    Not a Panel template: a ``FastListTemplate`` (its design applied to every model, its header, modal, busy
    indicator and theme toggle, a render pass per area) was about a third of each new session's start on the
    event loop every session shares; 20 sessions opened at once waited for 20 of them. The sidebar scrolls on its
    own; the page fills the window, and the grid its part of it."""
    header = pn.pane.HTML(
        f'<div class="vl-brand">{TITLE}</div>',
        height=HEADER_PX,
        sizing_mode="stretch_width",
        margin=0,
        stylesheets=[_HEADER_CSS],
        css_classes=["vl-header"],
    )
    side = pn.Column(
        sidebar,
        width=320,
        sizing_mode="stretch_height",
        scroll=True,
        margin=0,
        styles={"background": "#f8f9fb", "border-right": "1px solid #e3e6eb"},
        css_classes=["vl-sidebar"],
    )
    main = pn.Column(tabs, sizing_mode="stretch_both", margin=(4, 12, 0, 12), css_classes=["vl-main"])
    return pn.Column(
        header, pn.Row(side, main, sizing_mode="stretch_both", margin=0), sizing_mode="stretch_both", margin=0
    )


def _session_user() -> str | None:
    """The logged-in user of a served page (None without a login); a notebook kernel is the owner itself."""
    from ..server.roles import TOKEN_USER
    from .jobs import session_doc

    return pn.state.user if session_doc() is not None else TOKEN_USER


def _denied(user: str | None) -> Any:
    """A page saying no, for a user the roles file gives no role (or when the roles file itself is wrong)."""
    from ..errors import VisionLensError
    from ..server.roles import role_of
    from .html import md

    try:
        if role_of(user) is not None:
            return None
        reason = f"{md(user or 'this session')} has no role on this server; ask an admin to add you to the roles file."
    except VisionLensError as e:
        reason = md(e)
    return pn.pane.Markdown(f"## Access denied\n\n{reason}", css_classes=["vl-denied"])


def _restore_url(state: AppState) -> None:
    """A shared link's dataset, filters, sort and sample, applied before any view exists so each view starts
    from them instead of racing to catch up."""
    loc = pn.state.location
    if loc is None:
        return
    # The raw strings, not Panel's ``query_params``: that one silently drops a value starting with "{" that is not
    # valid JSON, and a user with a broken link would see no word about it.
    query = dict(parse_qsl((loc.search or "").lstrip("?")))
    if query:
        state.apply_query(query)


def _sync_url(state: AppState) -> None:
    """Filters, sort, dataset and the open sample live in the URL, so a copied link shows the same view."""
    loc = pn.state.location
    if loc is None:
        return
    jobs = Jobs("url")

    def write() -> None:
        q = state.to_query()
        search = "?" + urlencode(q) if q else ""
        if loc.search != search:
            loc.search = search

    def push(*_: Any) -> None:
        # Changes arrive on worker threads (--num-threads); the location is written on the session's event loop.
        jobs.post(write)

    state.param.watch(push, ["dataset", "filters", "sort", "selection", "open_sample"])  # selection: ?view= may go
    pn.state.onload(push)  # after the browser has reported its own location


def _lazy_tabs(state: AppState, factories: dict[str, Any]) -> pn.Column:
    """Tabs whose views are built on first visit and then kept (hidden, not torn down).

    A page that renders every tab's plots and tables at load takes seconds on a small machine, and Panel's
    ``dynamic`` tabs rebuild a view on every visit, which would throw away the grid's scroll position. A tab's
    holder is made on its first visit too: every model of a new session's first document is paid for by each user
    who opens the app at the same moment.
    """
    names = list(factories)
    header = pn.Tabs(*[(name, pn.Spacer(height=0)) for name in names], sizing_mode="stretch_width")
    layout = pn.Column(header, sizing_mode="stretch_both")
    holders: dict[str, pn.Column] = {}

    def show(index: int) -> None:
        name = names[index]
        if name not in holders:
            holders[name] = pn.Column(factories[name](), sizing_mode="stretch_both", visible=False)
            layout.append(holders[name])
        for other, holder in holders.items():
            holder.visible = other == name
        state.active_view = name

    def follow(name: str | None) -> None:
        """A view asked for another tab through the state (an insight's card brings Browse to the front)."""
        if name in names and names.index(name) != header.active:
            header.active = names.index(name)

    header.param.watch(lambda e: show(e.new), "active")
    state.param.watch(lambda e: follow(e.new), "active_view")
    show(header.active)
    return layout


def build(dataset: str | None = None, thumbnails: str = "route", template: bool = True) -> Any:
    """The app for one session. ``thumbnails="data"`` inlines images for notebooks, where no route is served."""
    from ..server.mount import mount_current

    mount_current()  # image routes + HTTP API on this server, before the page asks for an image
    # the toasts' scripts come with the page, their area with a session's first toast (notify.py)
    pn.extension("tabulator", "notifications", raw_css=[CSS], notifications=False)
    user = _session_user()
    denied = _denied(user)
    if denied is not None:
        return denied
    state = AppState(resources.store(), dataset=dataset, user=user)
    if template:
        _restore_url(state)
    # the tabs (built-in ones too) come from the plugins' ``views`` hook: Browse, Map, Evaluation, Insights, ...
    tabs = _lazy_tabs(state, view_factories(ViewContext(state, thumbnails, template)))
    # served: built once the page is up and no session waits to start (deferred.py); the grid comes first
    sidebar = later(
        lambda: pn.Column(
            FiltersView(state=state), SavedViewsView(state=state), ExportView(state=state), sizing_mode="stretch_width"
        ),
        pn.pane.HTML("<small>Loading filters…</small>", css_classes=["vl-sidebar-loading"], margin=(10, 10)),
        sizing_mode="stretch_width",
    )
    if template:
        _sync_url(state)
        tabs.append(toast_holder())  # where the toasts' area goes (notify.py)
        if pn.state.curdoc is not None:
            pn.state.curdoc.title = TITLE
        page = _page(sidebar, tabs)
        page.state = state  # type: ignore[attr-defined] - handy for tests and debugging
        return page
    layout = pn.Row(pn.Column(sidebar, width=320), tabs, sizing_mode="stretch_width", height=900)
    layout.state = state  # type: ignore[attr-defined]
    return layout


def notebook_app(dataset: Any = None, height: int = 900) -> Any:
    """``vl.app(ds)`` in Jupyter: the same views, images inlined as data URIs (no server route in a kernel)."""
    name = getattr(dataset, "name", dataset)
    layout = build(name, thumbnails="data", template=False)
    layout.height = height
    return layout
