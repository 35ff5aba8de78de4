"""Plugins: discovery (folders with plugin.yaml, entry points), every hook kind doing its job, and a plugin that
raises in any hook being reported and disabled without breaking an ingest, the app, insights or the CLI.

Test plugins are real folders (``plugins/<name>/plugin.yaml`` + module) written to a temporary directory and
loaded the way the app loads them."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import visionlens as vl
from tests.factories import simple_coco
from visionlens.plugins import BUILTIN, Plugins, load_plugins, set_plugins

ROOT = Path(__file__).resolve().parent.parent

GOOD = '''
"""A plugin using every hook."""
import json

import panel as pn
import typer
from tornado.web import RequestHandler

from visionlens.errors import IngestError
from visionlens.formats.base import AnnotationRecords, ParsedDataset, SampleRecords
from visionlens.hookspecs import ComputedFields, FieldSpec, GridAction, InsightFinder, View, hookimpl
from visionlens.insights.finding import Finding
from visionlens.query import Filters
import numpy as np

CALLS = []


class BoxCsvReader:
    """One line per box: file,width,height,label,x,y,w,h (a made-up format for the test)."""

    name = "boxcsv"

    def detect(self, source):
        return source.endswith(".boxcsv")

    def detect_predictions(self, source):
        return False

    def read(self, source, images, progress):
        rows = [line.split(",") for line in open(source).read().split()]
        files = sorted({r[0] for r in rows})
        labels = sorted({r[3] for r in rows})
        size = {r[0]: (int(r[1]), int(r[2])) for r in rows}
        samples = SampleRecords(
            filepath=files,
            width=np.array([size[f][0] for f in files]),
            height=np.array([size[f][1] for f in files]),
            split=[None] * len(files),
            ext_id=files,
            missing=np.ones(len(files), bool),
        )
        ann = AnnotationRecords(
            np.array([files.index(r[0]) for r in rows]),
            np.array([labels.index(r[3]) for r in rows], np.int32),
            np.array([[float(v) for v in r[4:8]] for r in rows]),
        )
        return ParsedDataset("boxcsv", source, labels, samples, ann)

    def read_predictions(self, source, index, progress):
        raise IngestError("boxcsv has no predictions", source)


class TxtWriter:
    name = "txt"
    image_modes = ()

    def write(self, data, out_dir, options, progress):
        return None


@hookimpl
def format_readers():
    return [BoxCsvReader()]


@hookimpl
def annotation_writers():
    return [TxtWriter()]


@hookimpl
def post_ingest(store, dataset_id, name):
    CALLS.append(("post_ingest", name, store.get_dataset(name).id == dataset_id, store.count(dataset_id, Filters())))


def parity(store, dataset_id, sample_ids, progress):
    progress("parity", len(sample_ids), len(sample_ids))
    return {"id parity": [i % 2 for i in sample_ids]}


@hookimpl
def computed_fields():
    return [ComputedFields("parity", (FieldSpec("id parity"),), parity)]


def first_image(store, dataset_id, models, progress):
    CALLS.append(("finder", tuple(models)))
    first = int(store.sample_index(dataset_id)[1][0])
    return [Finding(kind="slice", title="plugin: the first image", score=0.5, sample_ids=[first])]


@hookimpl
def insight_finders():
    return [InsightFinder("first image", "slice", first_image)]


@hookimpl
def views():
    return [View("Extra", lambda ctx: pn.pane.Markdown("extra tab of " + str(ctx.state.dataset)), 45)]


def count(store, dataset_id, sample_ids, progress):
    CALLS.append(("action", list(sample_ids)))
    progress("count", 1, 1)
    return f"{len(sample_ids)} samples counted"


@hookimpl
def grid_actions():
    return [GridAction("count", "Count", "picked", count)]


class Hello(RequestHandler):
    def get(self):
        self.write("hello")


@hookimpl
def routes():
    return [("/extra/hello", Hello, {})]


@hookimpl
def cli_commands(app):
    @app.command("hello")
    def hello(name: str = "world") -> None:
        """Say hello."""
        typer.echo(f"hello {name}")
'''

# A plugin whose declarations are fine but every callable inside them raises, and whose post-ingest hook raises.
FAILING_CALLABLES = """
import panel as pn

from visionlens.hookspecs import ComputedFields, FieldSpec, GridAction, InsightFinder, View, hookimpl


def boom(*args, **kwargs):
    raise RuntimeError("boom")


class Reader:
    name = "broken"
    detect = detect_predictions = read = read_predictions = staticmethod(boom)


@hookimpl
def format_readers():
    return [Reader()]


@hookimpl
def post_ingest(store, dataset_id):
    boom()


@hookimpl
def computed_fields():
    return [ComputedFields("broken", (FieldSpec("broken field"),), boom)]


@hookimpl
def insight_finders():
    return [InsightFinder("broken", "slice", boom)]


@hookimpl
def views():
    return [View("Broken", boom, 60)]


@hookimpl
def grid_actions():
    return [GridAction("broken", "Break", "view", boom)]


@hookimpl
def cli_commands(app):
    @app.command("explode")
    def explode() -> None:
        boom()
"""

# A plugin whose hooks themselves raise.
FAILING_HOOKS = """
from visionlens.hookspecs import hookimpl


def boom():
    raise RuntimeError("declarations boom")


@hookimpl
def format_readers():
    boom()


@hookimpl
def views():
    boom()


@hookimpl
def routes():
    boom()


@hookimpl
def cli_commands(app):
    boom()
"""


def write_plugin(folder: Path, name: str, source: str, enabled: bool = True, module: str = "plugin.py") -> Path:
    target = folder / name
    target.mkdir(parents=True, exist_ok=True)
    (target / "plugin.yaml").write_text(
        f"name: {name}\nmodule: {module}\ndescription: test plugin {name}\nenabled: {str(enabled).lower()}\n"
    )
    (target / module).write_text(textwrap.dedent(source))
    return target


@pytest.fixture
def use_plugins(tmp_path: Path) -> Iterator[Callable[..., Plugins]]:
    """Load plugin folders written from sources (name -> module source) as this process's plugins."""
    saved: list[Plugins | None] = []

    def load(**sources: str) -> Plugins:
        folder = tmp_path / "plugins"
        for name, source in sources.items():
            write_plugin(folder, name, source)
        plugins = load_plugins(folders=[folder], entry_points=False)
        previous = set_plugins(plugins)
        if not saved:
            saved.append(previous)
        return plugins

    yield load
    set_plugins(saved[0] if saved else None)


@pytest.fixture
def app_jobs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every view's background jobs (``ui.jobs.Jobs``) of a test that builds the app, waited for before the store
    closes (ask for this fixture after ``store``/``demo_ds``: it is torn down first)."""
    from visionlens.ui import jobs

    made: list[Any] = []
    original = jobs.Jobs.__init__

    def record(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(jobs.Jobs, "__init__", record)
    yield made
    for j in made:
        j.wait(60)


def states(plugins: Plugins) -> dict[str, str]:
    return {i.name: i.state for i in plugins.infos()}


def boxcsv(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "boxes.boxcsv"
    path.parent.mkdir(parents=True)
    path.write_text("a.jpg,64,48,car,1,2,10,10\na.jpg,64,48,person,5,5,4,4\nb.jpg,32,32,car,0,0,8,8\n")
    return path


# -- discovery -------------------------------------------------------------------------------------------------


def test_folder_plugins_are_found_and_listed_with_their_state(tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    write_plugin(folder, "good", GOOD)
    write_plugin(folder, "off", GOOD, enabled=False)
    write_plugin(folder, "typo", "import no_such_module_here\n")
    bad = folder / "badyaml"
    bad.mkdir()
    (bad / "plugin.yaml").write_text("name: [unclosed\n")
    single = write_plugin(tmp_path / "elsewhere", "single", "from visionlens.hookspecs import hookimpl\n")
    plugins = load_plugins(folders=[folder, single], entry_points=False)
    st = states(plugins)
    assert st[BUILTIN] == "enabled" and st["good"] == "enabled" and st["single"] == "enabled"
    assert st["off"].startswith("disabled") and "enabled: false" in st["off"]
    assert st["typo"].startswith("failed: ModuleNotFoundError") and "no_such_module_here" in st["typo"]
    assert st["badyaml"].startswith("failed: plugin.yaml unreadable")
    good = plugins.info("good")
    assert good is not None and good.description == "test plugin good" and "format_readers" in good.hooks


def test_plugins_path_env_and_disable_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "mine"
    write_plugin(folder, "one", GOOD)
    write_plugin(folder, "two", "from visionlens.hookspecs import hookimpl\n")
    monkeypatch.setenv("VISIONLENS_PLUGINS_PATH", str(folder))
    monkeypatch.setenv("VISIONLENS_DISABLE_PLUGINS", "two")
    st = states(load_plugins(entry_points=False))
    assert st["one"] == "enabled" and st["two"].startswith("disabled")


def test_entry_point_plugins_are_loaded_and_a_broken_one_is_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "vl_ep_plugin.py").write_text(textwrap.dedent(GOOD))
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [
        importlib.metadata.EntryPoint("epgood", "vl_ep_plugin", "visionlens"),
        importlib.metadata.EntryPoint("epbad", "vl_no_such_module", "visionlens"),
    ]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [e for e in eps if e.group == group])
    plugins = Plugins()
    plugins.load_entry_points()
    st = states(plugins)
    assert st["epgood"] == "enabled" and st["epbad"].startswith("failed: ModuleNotFoundError")


def test_a_plugin_with_an_unknown_hook_or_argument_is_refused(tmp_path: Path) -> None:
    source = "from visionlens.hookspecs import hookimpl\n\n@hookimpl\ndef views(nonsense):\n    return []\n"
    plugins = load_plugins(folders=[write_plugin(tmp_path, "wrongargs", source)], entry_points=False)
    assert states(plugins)["wrongargs"].startswith("failed: PluginValidationError")


# -- each hook kind --------------------------------------------------------------------------------------------


def test_format_reader_hook_one_registry_for_auto_detection_format_names_and_errors(
    use_plugins: Callable[..., Plugins], store: Any, tmp_path: Path
) -> None:
    from visionlens.errors import IngestError
    from visionlens.formats import READERS, detect_format, format_names, get_reader

    use_plugins(good=GOOD)
    assert format_names() == ["coco", "yolo", "voc", "boxcsv"]  # built-ins first, through the same hook
    assert set(READERS) == {"coco", "yolo", "voc", "boxcsv"}
    src = boxcsv(tmp_path)
    assert detect_format(str(src)).name == "boxcsv"
    ds = vl.ingest(src, "csvds", store=store)  # format auto
    assert ds.count() == 2 and sorted(ds.labels()) == ["car", "person"]
    with pytest.raises(IngestError, match="known: auto, coco, yolo, voc, boxcsv"):
        get_reader("nope")


def test_writer_hook(use_plugins: Callable[..., Plugins]) -> None:
    from visionlens.formats import WRITERS, get_writer, registered_writers

    use_plugins(good=GOOD)
    assert list(registered_writers())[:3] == ["coco", "yolo", "voc"]
    assert "txt" in registered_writers() and "txt" in WRITERS and get_writer("txt").name == "txt"


def test_failing_writer_fails_the_export_call_with_its_name(use_plugins: Callable[..., Plugins]) -> None:
    from visionlens.formats import get_writer
    from visionlens.plugins import PluginError

    plugins = use_plugins(good=GOOD.replace("        return None\n", "        raise OSError('disk full')\n", 1))
    with pytest.raises(PluginError, match="plugin 'good' failed and was disabled: txt.write: OSError: disk full"):
        get_writer("txt").write(None, None, None, None)
    assert states(plugins)["good"].startswith("failed: txt.write")


def test_post_ingest_hook_runs_after_the_commit(
    use_plugins: Callable[..., Plugins], store: Any, tmp_path: Path
) -> None:
    use_plugins(good=GOOD)
    module = sys.modules["visionlens_plugin_good"]
    vl.ingest(simple_coco(tmp_path / "coco"), "c", store=store)
    assert ("post_ingest", "c", True, 3) in module.CALLS  # the dataset was committed and whole when it ran


def test_computed_fields_hook_stores_ordinary_sample_fields(
    use_plugins: Callable[..., Plugins], store: Any, tmp_path: Path
) -> None:
    from visionlens.plugins import compute_fields

    use_plugins(good=GOOD)
    ds = vl.ingest(simple_coco(tmp_path / "coco"), "c", store=store)
    steps: list[tuple[str, int, int]] = []
    report = compute_fields(store, ds.id, progress=lambda *a: steps.append(a))
    assert report.fields == {"id parity": 3} and not report.failed and steps[-1] == ("parity", 3, 3)
    info = store.fields(ds.id)["id parity"]
    assert info.kind == "numeric" and info.kind.control == "range" and info.owner is None and not info.builtin
    ids = store.sample_index(ds.id)[1]
    rows = store.samples_by_id(ds.id, ids)["id parity"].to_pylist()
    assert rows == [float(i % 2) for i in ids]
    assert ds.count({"fields": [{"field": "id parity", "range": {"min": 1}}]}) == sum(int(i) % 2 for i in ids)
    compute_fields(store, ds.id, ["id parity"])  # computing again rewrites the same field
    with pytest.raises(vl.VisionLensError, match="no plugin computes 'nope'"):
        compute_fields(store, ds.id, ["nope"])


def test_computed_field_may_not_replace_a_builtin_or_evaluation_field(store: Any, tmp_path: Path) -> None:
    from visionlens.errors import FieldNameError

    ds = vl.ingest(simple_coco(tmp_path / "coco"), "c", store=store)
    ids = store.sample_index(ds.id)[1]
    for name in ("width", "Weather"):  # built-in; differs only in case from the dataset's "weather"
        with pytest.raises(FieldNameError):
            store.set_sample_fields(ds.id, {name: ("numeric", ids, [1.0] * len(ids))})
    with pytest.raises(FieldNameError, match="is numeric but"):
        store.set_sample_fields(ds.id, {"weather": ("numeric", ids, [1.0] * len(ids))})
    store.set_sample_fields(ds.id, {"score x": ("numeric", ids, [1.0, float("nan"), float("inf")])})
    assert store.samples_by_id(ds.id, ids)["score x"].to_pylist() == [1.0, None, None]


def test_insight_finder_hook(use_plugins: Callable[..., Plugins], demo_ds: Any, store: Any) -> None:
    from visionlens.insights.runner import run_insights

    use_plugins(good=GOOD)
    found = run_insights(store, demo_ds.id, models=["detector_a"], kinds=["slice"])
    mine = [f for f in found if f.run == "plugin:first image"]
    assert len(mine) == 1 and mine[0].title == "plugin: the first image"
    assert any(f.run == "slices:detector_a" for f in found)  # the built-in analysis ran too
    assert ("finder", ("detector_a",)) in sys.modules["visionlens_plugin_good"].CALLS
    run_insights(store, demo_ds.id, models=["detector_a"], kinds=["error_pattern"])  # not a slice: not run
    assert sys.modules["visionlens_plugin_good"].CALLS.count(("finder", ("detector_a",))) == 1


def _tab_names(layout: Any) -> list[str]:
    return list(layout[1][0]._names)


def test_views_hook_adds_a_tab_after_the_builtin_ones(
    use_plugins: Callable[..., Plugins], demo_ds: Any, app_jobs: list[Any]
) -> None:
    from visionlens.ui import app

    use_plugins(good=GOOD)
    layout = app.build("demo", thumbnails="data", template=False)
    names = _tab_names(layout)
    assert names == ["Browse", "Map", "Evaluation", "Insights", "Extra", "Datasets"]
    layout[1][0].active = names.index("Extra")
    shown = [holder for holder in layout[1][1:] if holder.visible]  # a tab's holder is made on its first visit
    assert len(shown) == 1 and "extra tab of demo" in shown[0].objects[0].object


def test_grid_action_hook_runs_on_the_picked_tiles(
    use_plugins: Callable[..., Plugins], demo_ds: Any, store: Any
) -> None:
    from visionlens.ui.actions_view import ActionsView
    from visionlens.ui.state import AppState

    use_plugins(good=GOOD)
    state = AppState(store, dataset="demo")
    view = ActionsView(state=state)
    labels = {b.name for b in view._buttons}
    assert "Count (0 picked)" in labels and any(n.startswith("Compute plugin fields (120 in view)") for n in labels)
    count = next(b for b in view._buttons if b.name.startswith("Count"))
    assert count.disabled
    picked = [int(i) for i in state.result_ids[:3]]
    state.picked = picked
    assert count.name == "Count (3 picked)" and not count.disabled
    count.clicks += 1
    view.wait()
    assert ("action", picked) in sys.modules["visionlens_plugin_good"].CALLS
    assert "3 samples counted" in view._status.object and not state.error


def test_compute_fields_action_adds_filters_to_the_sidebar(
    use_plugins: Callable[..., Plugins], demo_ds: Any, store: Any
) -> None:
    from visionlens.ui.actions_view import ActionsView
    from visionlens.ui.filters_view import FiltersView
    from visionlens.ui.state import AppState

    use_plugins(good=GOOD)
    state = AppState(store, dataset="demo")
    sidebar, view = FiltersView(state=state), ActionsView(state=state)
    assert "id parity" not in sidebar._controls
    compute = next(b for b in view._buttons if b.name.startswith("Compute plugin fields"))
    compute.clicks += 1
    view.wait()
    assert "computed id parity for 120 samples" in view._status.object
    assert "id parity" in sidebar._controls  # rebuilt: the field set changed
    sidebar.wait()


def test_routes_hook_adds_routes_to_the_server(use_plugins: Callable[..., Plugins]) -> None:
    from visionlens.server.mount import routes

    use_plugins(good=GOOD)
    patterns = [r[0] for r in routes("/pre")]
    assert "/pre/extra/hello" in patterns
    assert "/pre/vl/api/v1/plugins" in patterns and "/pre/vl/api/v1/datasets" in patterns


def _cli(plugins_loaded: Plugins) -> typer.Typer:
    """A fresh command line with one built-in-like command, plus whatever the plugins add."""
    from visionlens.plugins import register_cli

    app = typer.Typer()

    @app.command("ok")
    def ok() -> None:
        typer.echo("still works")

    register_cli(app)
    return app


def test_cli_commands_hook_adds_commands_and_visionlens_plugins_lists_them(
    use_plugins: Callable[..., Plugins], home: Path
) -> None:
    app = _cli(use_plugins(good=GOOD))
    runner = CliRunner()
    r = runner.invoke(app, ["hello", "--name", "you"])
    assert r.exit_code == 0 and "hello you" in r.output
    r = runner.invoke(app, ["plugins"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "good" in r.output and "enabled" in r.output and "builtin" in r.output


def test_api_lists_plugins_and_computes_fields(use_plugins: Callable[..., Plugins], demo_ds: Any, home: Path) -> None:
    import httpx

    from visionlens.server.mount import launch_app, token

    use_plugins(good=GOOD)
    server = launch_app(port=0)
    try:
        api = httpx.Client(base_url=server.url + "/vl/api/v1", headers={"Authorization": f"Bearer {token()}"})
        names = {p["name"]: p["state"] for p in api.get("/plugins").json()["plugins"]}
        assert names["good"] == "enabled" and names[BUILTIN] == "enabled"
        job = api.post("/datasets/demo/fields", json={"fields": ["id parity"]}).json()["job"]
        done = api.get(f"/jobs/{job['id']}", params={"wait": 20}).json()["job"]
        assert done["state"] == "done" and done["result"]["fields"] == {"id parity": 120}
        assert httpx.get(server.url + "/extra/hello").text == "hello"
    finally:
        server.stop()


# -- a failing plugin is isolated --------------------------------------------------------------------------------


def test_failing_detect_does_not_stop_auto_detection(
    use_plugins: Callable[..., Plugins], store: Any, tmp_path: Path
) -> None:
    from visionlens.ingestion import ingest

    plugins = use_plugins(good=GOOD, broken=FAILING_CALLABLES)  # "broken" is asked before "good"
    assert states(plugins)["broken"] == "enabled"
    result = ingest(store, boxcsv(tmp_path), "csvds")
    assert result.format == "boxcsv" and result.samples == 2 and store.has_dataset("csvds")
    assert states(plugins)["broken"].startswith("failed: broken.detect: RuntimeError: boom")
    assert states(plugins)["good"] == "enabled"


def test_failing_post_ingest_becomes_a_warning_of_the_ingest(
    use_plugins: Callable[..., Plugins], store: Any, tmp_path: Path
) -> None:
    from visionlens.ingestion import ingest

    plugins = use_plugins(broken=FAILING_CALLABLES)
    result = ingest(store, simple_coco(tmp_path / "coco"), "c", format="coco")  # detect is not asked
    assert store.has_dataset("c") and result.samples == 3
    lines = result.summary_lines()
    assert any(line.startswith("plugin_failed: plugin broken") and "RuntimeError: boom" in line for line in lines)
    assert states(plugins)["broken"] == "failed: post_ingest(): RuntimeError: boom"
    result = ingest(store, simple_coco(tmp_path / "coco2"), "d", format="coco")  # disabled: not called again
    assert not result.summary_lines()


def test_failing_computed_field_leaves_the_other_plugins_fields(
    use_plugins: Callable[..., Plugins], store: Any, tmp_path: Path
) -> None:
    from visionlens.ingestion import ingest
    from visionlens.plugins import compute_fields

    use_plugins(good=GOOD)
    ds_id = ingest(store, simple_coco(tmp_path / "coco"), "c", format="coco") and store.get_dataset("c").id
    plugins = use_plugins(broken=FAILING_CALLABLES)  # good and broken
    report = compute_fields(store, ds_id)
    assert report.fields == {"id parity": 3}
    assert len(report.failed) == 1 and "plugin 'broken' failed and was disabled" in report.failed[0]
    assert "broken field" not in store.fields(ds_id) and "id parity" in store.fields(ds_id)
    assert states(plugins)["broken"].startswith("failed: computed fields 'broken': RuntimeError: boom")


def test_failing_insight_finder_leaves_the_builtin_findings(
    use_plugins: Callable[..., Plugins], demo_ds: Any, store: Any
) -> None:
    from visionlens.insights.runner import run_insights

    plugins = use_plugins(good=GOOD, broken=FAILING_CALLABLES)
    found = run_insights(store, demo_ds.id, models=["detector_a"], kinds=["slice"])
    runs = {f.run for f in found}
    assert "slices:detector_a" in runs and "plugin:first image" in runs and "plugin:broken" not in runs
    assert states(plugins)["broken"].startswith("failed: insight finder 'broken': RuntimeError: boom")


def test_failing_tab_shows_its_error_in_place_and_the_app_builds(
    use_plugins: Callable[..., Plugins], demo_ds: Any, app_jobs: list[Any]
) -> None:
    from visionlens.ui import app

    plugins = use_plugins(broken=FAILING_CALLABLES)
    layout = app.build("demo", thumbnails="data", template=False)
    names = _tab_names(layout)
    assert names[-1] == "Broken" and names[0] == "Browse"
    layout[1][0].active = names.index("Broken")
    alert = next(holder for holder in layout[1][1:] if holder.visible).objects[0]
    assert "plugin 'broken' failed and was disabled" in alert.object and "RuntimeError: boom" in alert.object
    assert "RuntimeError: boom" in layout.state.error
    assert states(plugins)["broken"].startswith("failed: tab 'Broken'")
    layout2 = app.build("demo", thumbnails="data", template=False)  # a new session: the tab is gone
    assert "Broken" not in _tab_names(layout2)


def test_failing_declaration_hooks_leave_the_builtin_tabs_routes_formats_and_commands(
    use_plugins: Callable[..., Plugins], demo_ds: Any, app_jobs: list[Any]
) -> None:
    from visionlens.formats import format_names
    from visionlens.ui import app

    plugins = use_plugins(broken=FAILING_HOOKS)
    assert format_names() == ["coco", "yolo", "voc"]
    assert states(plugins)["broken"] == "failed: format_readers(): RuntimeError: declarations boom"
    plugins = use_plugins(broken2=FAILING_HOOKS.replace("def format_readers", "def _no"))
    names = _tab_names(app.build("demo", thumbnails="data", template=False))
    assert names == ["Browse", "Map", "Evaluation", "Insights", "Datasets"]
    assert states(plugins)["broken2"] == "failed: views(): RuntimeError: declarations boom"


def test_failing_routes_hook_leaves_the_builtin_routes(use_plugins: Callable[..., Plugins]) -> None:
    from visionlens.server.mount import routes

    plugins = use_plugins(broken=FAILING_HOOKS.replace("def format_readers", "def _no").replace("def views", "def _v"))
    patterns = [r[0] for r in routes()]
    assert "/vl/api/v1/datasets" in patterns and "/vl/api/v1/plugins" in patterns
    assert states(plugins)["broken"] == "failed: routes(): RuntimeError: declarations boom"


def test_failing_grid_action_is_shown_and_disables_its_plugin(
    use_plugins: Callable[..., Plugins], demo_ds: Any, store: Any
) -> None:
    from visionlens.ui.actions_view import ActionsView
    from visionlens.ui.state import AppState

    plugins = use_plugins(broken=FAILING_CALLABLES)
    state = AppState(store, dataset="demo")
    view = ActionsView(state=state)
    button = next(b for b in view._buttons if b.name.startswith("Break"))
    assert button.name == "Break (120 in view)"
    button.clicks += 1
    view.wait()
    assert "plugin 'broken' failed and was disabled: action 'broken': RuntimeError: boom" in state.error
    assert "RuntimeError: boom" in view._status.object
    assert states(plugins)["broken"].startswith("failed: action 'broken'")
    button.clicks += 1  # the button of a session built before: refused with the plugin's state
    view.wait()
    assert "plugin 'broken' is failed" in state.error


def test_failing_cli_hook_and_command_leave_the_cli_working(use_plugins: Callable[..., Plugins], home: Path) -> None:
    runner = CliRunner()
    plugins = use_plugins(broken=FAILING_HOOKS.replace("def format_readers", "def _no"))
    app = _cli(plugins)
    assert runner.invoke(app, ["ok"]).output.strip() == "still works"
    r = runner.invoke(app, ["plugins"], env={"COLUMNS": "250"})
    assert r.exit_code == 0 and "failed: cli_commands(): RuntimeError:" in r.output

    plugins = use_plugins(broken2=FAILING_CALLABLES)
    app = _cli(plugins)
    r = runner.invoke(app, ["explode"])
    assert r.exit_code == 1 and "plugin 'broken2' failed and was disabled" in r.output and "Traceback" not in r.output
    assert runner.invoke(app, ["ok"]).exit_code == 0

    clash = (
        "from visionlens.hookspecs import hookimpl\n\n@hookimpl\ndef cli_commands(app):\n    app.command('ok')(print)\n"
    )
    plugins = use_plugins(clash=clash)
    app = _cli(plugins)
    assert runner.invoke(app, ["ok"]).output.strip() == "still works"
    assert states(plugins)["clash"] == "failed: cli_commands(): ValueError: command 'ok' exists"

    untyped = "from visionlens.hookspecs import hookimpl\n\n@hookimpl\ndef cli_commands(app):\n    @app.command('x')\n    def x(a: 'NoSuchType'):\n        pass\n"
    plugins = use_plugins(untyped=untyped)
    app = _cli(plugins)
    assert runner.invoke(app, ["ok"]).exit_code == 0  # typer could not read x's signature: x is not added
    assert states(plugins)["untyped"].startswith("failed: cli_commands(): NameError")


def test_visionlens_command_with_a_broken_plugin_installed(tmp_path: Path) -> None:
    """The real command in a fresh process: other commands work and ``visionlens plugins`` shows the failure."""
    write_plugin(tmp_path / "plugins", "broken", FAILING_HOOKS)
    write_plugin(tmp_path / "plugins", "good", GOOD)
    env = {
        **os.environ,
        "VISIONLENS_HOME": str(tmp_path / "home"),
        "VISIONLENS_PLUGINS_PATH": str(tmp_path / "plugins"),
        "COLUMNS": "250",
    }
    exe = [sys.executable, "-m", "visionlens.cli"]
    listed = subprocess.run([*exe, "list"], env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "no datasets yet" in listed.stdout
    shown = subprocess.run([*exe, "plugins"], env=env, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    line = next(x for x in shown.stdout.splitlines() if "broken" in x)
    assert "failed: cli_commands(): RuntimeError: declarations boom" in line  # the first hook asked
    helped = subprocess.run([*exe, "ingest", "--help"], env=env, capture_output=True, text=True, timeout=120)
    assert "auto, coco, yolo, voc, boxcsv." in helped.stdout  # the CLI's list is the registry's
    hello = subprocess.run([*exe, "hello", "--name", "x"], env=env, capture_output=True, text=True, timeout=120)
    assert hello.stdout.strip() == "hello x"
    assert any("image_quality" in x and "enabled" in x for x in shown.stdout.splitlines())
    ingest = subprocess.run(
        [*exe, "ingest", str(simple_coco(tmp_path / "coco")), "--name", "c"], env=env, capture_output=True, text=True
    )
    assert ingest.returncode == 0 and "ingested" in ingest.stderr
