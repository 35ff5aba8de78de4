"""VisionLens' own formats, tabs, actions, routes and commands, registered through the same hooks as any plugin.

So the formats the CLI accepts and auto-detection tries, and the app's tabs, are whatever the plugins (this one
first) declare: one registry, no second list to keep in step. Imports are inside the hooks so that loading the
plugin (every ``visionlens`` command does) stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer  # the command's annotations are read by typer at run time

from .hookspecs import GridAction, Route, View, ViewContext, hookimpl

if TYPE_CHECKING:
    from .formats.base import FormatReader, ProgressCallback
    from .hookspecs import AnnotationWriter
    from .store.metadata import MetadataStore


@hookimpl
def format_readers() -> list[FormatReader]:
    from .formats.coco import CocoReader
    from .formats.voc import VocReader
    from .formats.yolo import YoloReader

    return [CocoReader(), YoloReader(), VocReader()]  # COCO first: a JSON file is unambiguous


@hookimpl
def annotation_writers() -> list[AnnotationWriter]:
    from .formats.writers import WRITERS

    return list(WRITERS.values())  # COCO, YOLO, VOC, Parquet, CSV


# -- tabs ------------------------------------------------------------------------------------------------------------


# The view classes are looked up on ``visionlens.ui.app``, where the app names its views (tests replace them there).


def _browse(ctx: ViewContext) -> Any:
    import panel as pn

    from .ui import app
    from .ui.actions_view import ActionsView
    from .ui.deferred import later

    st = ctx.state
    views = (app.ToolbarView, app.TagsView, ActionsView)
    # served: the rows above the grid come just after the page loads (ui/deferred.py), in a placeholder of their
    # height, so the tiles do not move under a click when they arrive; the grid and its thumbnails come first
    controls = later(
        lambda: pn.Column(*(view(state=st) for view in views), sizing_mode="stretch_width"),
        pn.pane.HTML("", height=sum(view.height_for(st) for view in views), margin=0, css_classes=["vl-controls-wait"]),
        sizing_mode="stretch_width",
    )
    column = pn.Column(controls, app.GridView(state=st, thumbnails=ctx.thumbnails), sizing_mode="stretch_both")
    _detail_when_opened(ctx, column)
    return column


def _detail_when_opened(ctx: ViewContext, column: Any) -> None:
    """The detail view, appended to Browse when a sample is first opened (at once when a link opens one).

    Hidden until then, it was a tenth of a new session's document (two tables, an annotated image, buttons) built
    and sent before the first thumbnail; the first click builds it instead, in about a tenth of a second."""
    from .ui import app

    st = ctx.state
    built: list[Any] = []

    def build(*_: Any) -> None:
        if st.open_sample is None or built:
            return
        st.param.unwatch(watcher)
        built.append(
            app.DetailView(state=st, thumbnails=ctx.thumbnails, top_offset=app.HEADER_PX + 10 if ctx.template else 10)
        )
        column.append(built[0])

    watcher = st.param.watch(build, "open_sample")
    build()


def _map(ctx: ViewContext) -> Any:
    from .ui import app

    return app.MapView(state=ctx.state, thumbnails=ctx.thumbnails)


def _evaluation(ctx: ViewContext) -> Any:
    from .ui import app

    return app.EvaluationView(state=ctx.state)


def _insights(ctx: ViewContext) -> Any:
    from .ui import app

    return app.InsightsView(state=ctx.state, thumbnails=ctx.thumbnails)


def _datasets(ctx: ViewContext) -> Any:
    import panel as pn

    from .ui import app

    return pn.Column(app.DatasetsView(state=ctx.state), app.JobsView(state=ctx.state), sizing_mode="stretch_width")


@hookimpl
def views() -> list[View]:
    return [
        View("Browse", _browse, 10),
        View("Map", _map, 20),
        View("Evaluation", _evaluation, 30),
        View("Insights", _insights, 40),
        View("Datasets", _datasets, 50),
    ]


# -- grid actions ----------------------------------------------------------------------------------------------------


def _compute_fields(
    store: MetadataStore, dataset_id: int, sample_ids: Sequence[int], progress: ProgressCallback
) -> str:
    from .plugins import compute_fields

    report = compute_fields(store, dataset_id, sample_ids=sample_ids, progress=progress)
    done = ", ".join(report.fields) or "no fields"
    failed = f"; {'; '.join(report.failed)}" if report.failed else ""
    return f"computed {done} for {len(sample_ids):,} samples{failed}"


@hookimpl
def grid_actions() -> list[GridAction]:
    from .plugins import computed_field_providers

    if not computed_field_providers():
        return []
    return [GridAction("compute_fields", "Compute plugin fields", "view", _compute_fields)]


# -- routes ----------------------------------------------------------------------------------------------------------


@hookimpl
def routes() -> list[Route]:
    """``GET /vl/api/v1/plugins`` (the app's plugins and their state) and ``POST .../datasets/NAME/fields``
    (compute plugin fields, a job): what ``visionlens plugins`` asks a running app for."""
    from .server.api import _NAME, API_PREFIX, ApiHandler

    class PluginsHandler(ApiHandler):
        async def get(self) -> None:
            from .plugins import get_plugins

            self._send(200, {"plugins": [i.to_json() for i in get_plugins().infos()]})

    class FieldsHandler(ApiHandler):
        needs = {"POST": "plugins"}

        async def post(self, name: str) -> None:
            await self._run(self._post, name)

        def _post(self, name: str) -> None:
            import orjson

            from .server.api import ApiError, _store

            body = orjson.loads(self.request.body or b"{}")
            fields = body.get("fields") if isinstance(body, dict) else None
            if fields is not None and not (isinstance(fields, list) and all(isinstance(f, str) for f in fields)):
                raise ApiError(400, "bad request body: fields must be a list of field names")
            _store().get_dataset(name)
            self.start_job("fields", f"plugin fields of {name!r}", name, compute_for_api, name=name, fields=fields)

    return [
        (rf"{API_PREFIX}/plugins", PluginsHandler, {}),
        (rf"{API_PREFIX}/datasets/{_NAME}/fields", FieldsHandler, {}),
    ]


def compute_for_api(
    store: MetadataStore, name: str, fields: list[str] | None, progress: ProgressCallback
) -> dict[str, Any]:
    from .plugins import compute_fields

    report = compute_fields(store, store.get_dataset(name).id, fields or None, progress=progress)
    return {"fields": report.fields, "failed": report.failed}


# -- commands --------------------------------------------------------------------------------------------------------


@hookimpl
def cli_commands(app: typer.Typer) -> None:
    group = typer.Typer(help="Plugins: list them and their state; compute their fields.", no_args_is_help=False)

    @group.callback(invoke_without_command=True)
    def plugins(ctx: typer.Context) -> None:
        """List the plugins (built-in, entry points, plugins/ folders) and whether they run or failed."""
        if ctx.invoked_subcommand is None:
            _list_plugins()

    @group.command("compute")
    def compute(
        name: Annotated[str, typer.Argument(help="Dataset name.")],
        field: Annotated[
            Optional[list[str]], typer.Option("--field", "-f", help="Only the plugin computing this field.")
        ] = None,
    ) -> None:
        """Compute the plugins' fields (e.g. image quality) for every sample of a dataset."""
        _compute(name, field or None)

    app.add_typer(group, name="plugins")


def _list_plugins() -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from .plugins import get_plugins

    out = Console()
    _exercise()
    rows = [i.to_json() for i in get_plugins().infos()]  # declarations that raised are failed now
    app_rows = _app_plugins()
    title = "plugins" + (" (this command; the running app's are below)" if app_rows is not None else "")
    for caption, items in ((title, rows), ("plugins of the running app", app_rows)):
        if items is None:
            continue
        table = Table("name", "state", "source", "hooks", "description", title=caption, title_justify="left")
        for r in items:
            colour = "green" if r["state"] == "enabled" else "red" if r["state"].startswith("failed") else "yellow"
            table.add_row(
                escape(r["name"]),
                f"[{colour}]{escape(r['state'])}[/]",
                escape(r["source"]),
                escape(", ".join(r["hooks"])),
                escape(r["description"]),
            )
        out.print(table)


def _exercise() -> None:
    """Ask every declaring hook once, so a plugin whose declarations raise is listed as failed."""
    from .plugins import get_plugins

    for hook in ("format_readers", "annotation_writers", "computed_fields", "insight_finders", "views", "grid_actions"):
        get_plugins().collect(hook)


def _app_plugins() -> list[dict[str, Any]] | None:
    """The running app's plugins (its failures happened there), when an app owns the database."""
    from .client import Client
    from .config import get_settings
    from .errors import VisionLensError
    from .server.owner import live_owner

    found = live_owner(get_settings().database)
    if found is None:
        return None
    client = Client(found.url, found.token)
    try:
        return client._request("GET", "/plugins")["plugins"]
    except VisionLensError:
        return None
    finally:
        client.close()


def _compute(name: str, fields: list[str] | None) -> None:
    from .cli import console, friendly_errors, progress_bar
    from .client import Client, _ds
    from .config import get_settings
    from .server.owner import live_owner

    with friendly_errors(), progress_bar() as report:
        found = live_owner(get_settings().database)
        if found is not None:
            client = Client(found.url, found.token)
            result = client._job(_ds(name, "/fields"), {"fields": fields}, True, report)
            client.close()
        else:
            from .store.metadata import open_store

            result = compute_for_api(open_store(), name, fields, report)
    done = ", ".join(f"{f} ({n:,} measured)" for f, n in result["fields"].items()) or "no fields"
    console.print(f"[green]computed[/] {done}")
    for line in result["failed"]:
        console.print(f"[red]failed:[/] {line}", highlight=False, soft_wrap=True)
