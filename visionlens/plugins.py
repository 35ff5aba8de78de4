"""Finding, registering and calling plugins, so that one failing plugin never takes the app, an ingest or a job down.

Plugins come from three places, in this order: the built-ins (``visionlens.builtin_plugin``: formats, tabs,
commands), installed packages' entry points of group ``visionlens``, and ``plugins/<name>/`` folders holding a
``plugin.yaml`` (``name``, ``module``, ``description``, ``enabled``), searched in the source checkout's
``plugins/`` and in the folders of ``VISIONLENS_PLUGINS_PATH`` (``:``-separated; an entry may be a plugin folder
itself). ``VISIONLENS_DISABLE_PLUGINS=a,b`` turns plugins off by name without removing them.

Every hook is called one implementation at a time (pluggy would stop at the first exception and lose the other
plugins' answers). An exception from a plugin is logged with its traceback, recorded as the plugin's state
(``failed: <message>``) and the plugin is unregistered for the rest of the process; the others' results are still
returned. ``VisionLensError`` is different: it is a message for the user (bad input) and passes through unchanged.
The built-in plugin is VisionLens itself: its exceptions propagate, so a bug shows as one.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import re
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

from . import hookspecs
from .errors import VisionLensError

if TYPE_CHECKING:
    import typer

    from .formats.base import Issue, ProgressCallback
    from .insights.finding import Finding
    from .store.metadata import MetadataStore

__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "PluginError",
    "PluginInfo",
    "Plugins",
    "after_ingest",
    "compute_fields",
    "default_folders",
    "get_plugins",
    "grid_actions",
    "plugin_routes",
    "register_cli",
    "reset_plugins",
    "run_action",
    "run_insight_finders",
    "set_plugins",
    "view_factories",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "visionlens"
PATH_ENV = "VISIONLENS_PLUGINS_PATH"
DISABLE_ENV = "VISIONLENS_DISABLE_PLUGINS"
BUILTIN = "builtin"
T = TypeVar("T")


class PluginError(VisionLensError):
    """A plugin failed (and was disabled); the message names it, for the user."""


@dataclass
class PluginInfo:
    """What ``visionlens plugins`` lists: where a plugin came from and whether it runs."""

    name: str
    source: str
    description: str = ""
    state: str = "enabled"  # "enabled" | "disabled" | "failed: <message>"
    hooks: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.state.startswith("failed")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "description": self.description,
            "state": self.state,
            "hooks": self.hooks,
        }


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Plugins:
    """One pluggy manager and the state of every plugin it was offered (loaded, disabled or failed)."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("visionlens")
        self.pm.add_hookspecs(hookspecs)
        self._info: dict[str, PluginInfo] = {}
        self._lock = threading.RLock()

    # -- registration ------------------------------------------------------------------------------------------

    def add(self, plugin: object, name: str, source: str, description: str = "") -> PluginInfo:
        """Register ``plugin``; a plugin pluggy refuses (unknown hook, bad arguments, name taken) is recorded as
        failed instead of raising."""
        with self._lock:
            if name in self._info:
                return self._record(name, source, description, f"failed: a plugin named {name!r} is already loaded")
            try:
                self.pm.register(plugin, name=name)
            except Exception as exc:  # noqa: BLE001 - pluggy's validation errors, a module registered twice
                if name == BUILTIN:
                    raise
                log.error("plugin %r (%s) could not be registered: %s", name, source, exc)
                return self._record(name, source, description, f"failed: {_describe(exc)}")
            info = self._record(name, source, description, "enabled")
            info.hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
            return info

    def _record(self, name: str, source: str, description: str, state: str) -> PluginInfo:
        key = name if name not in self._info or state == "enabled" else f"{name} ({source})"
        info = PluginInfo(name, source, description, state)
        self._info[key] = info
        return info

    def add_module(self, module_name: str, name: str, source: str, description: str = "") -> PluginInfo:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - an import error is the plugin's failure, not ours
            return self._import_failed(name, source, description, exc)
        return self.add(module, name, source, description or _first_line(module.__doc__))

    def _import_failed(self, name: str, source: str, description: str, exc: BaseException) -> PluginInfo:
        log.error("plugin %r (%s) could not be imported", name, source, exc_info=exc)
        with self._lock:
            return self._record(name, source, description, f"failed: {_describe(exc)}")

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Installed packages' ``[project.entry-points.visionlens]``: each entry's object is a plugin."""
        from importlib.metadata import entry_points

        for ep in entry_points(group=group):
            dist = getattr(ep, "dist", None)
            source = f"entry point {ep.value}" + (f" ({dist.name} {dist.version})" if dist is not None else "")
            if _disabled_by_env(ep.name):
                self._record(ep.name, source, "", f"disabled ({DISABLE_ENV})")
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001
                self._import_failed(ep.name, source, "", exc)
                continue
            self.add(plugin, ep.name, source, _first_line(getattr(plugin, "__doc__", None)))

    def load_folders(self, folders: Iterable[Path]) -> None:
        """``<folder>/<name>/plugin.yaml`` (or ``<folder>/plugin.yaml``) for each folder, in order."""
        for folder in folders:
            for manifest in _manifests(Path(folder)):
                self.load_folder_plugin(manifest)

    def load_folder_plugin(self, manifest: Path) -> PluginInfo:
        folder = manifest.parent
        try:
            meta = _read_manifest(manifest)
        except ValueError as exc:
            log.error("%s: %s", manifest, exc)
            with self._lock:
                return self._record(folder.name, f"folder {folder}", "", f"failed: {exc}")
        name, description, source = meta["name"], meta["description"], f"folder {folder}"
        if not meta["enabled"] or _disabled_by_env(name):
            why = "plugin.yaml: enabled: false" if not meta["enabled"] else DISABLE_ENV
            with self._lock:
                return self._record(name, source, description, f"disabled ({why})")
        try:
            module = _import_from_folder(folder, meta["module"], name)
        except Exception as exc:  # noqa: BLE001
            return self._import_failed(name, source, description, exc)
        return self.add(module, name, source, description or _first_line(module.__doc__))

    # -- state ---------------------------------------------------------------------------------------------------

    def infos(self) -> list[PluginInfo]:
        with self._lock:
            return list(self._info.values())

    def info(self, name: str) -> PluginInfo | None:
        with self._lock:
            return self._info.get(name)

    def enabled(self, name: str) -> bool:
        info = self.info(name)
        return info is not None and info.state == "enabled"

    def fail(self, name: str, where: str, exc: BaseException) -> str:
        """Record that plugin ``name`` raised in ``where`` and disable it; returns the message for the user."""
        message = f"{where}: {_describe(exc)}"
        log.error(
            "plugin %r failed in %s and is disabled\n%s",
            name,
            where,
            "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        )
        with self._lock:
            info = self._info.get(name)
            if info is not None and info.state == "enabled":
                info.state = f"failed: {message}"
            if self.pm.has_plugin(name):
                self.pm.unregister(name=name)
                self.pm.set_blocked(name)
        return f"plugin {name!r} failed and was disabled: {message}"

    # -- calling ---------------------------------------------------------------------------------------------------

    def call(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """``(plugin name, result)`` of every implementation, built-ins first; failing plugins are left out."""
        with self._lock:
            caller = getattr(self.pm.hook, hook)
            impls = sorted(caller.get_hookimpls(), key=lambda i: 0 if i.tryfirst else 2 if i.trylast else 1)
        out = []
        for impl in impls:
            args = [kwargs[a] for a in impl.argnames]
            ok, result = self._guarded(impl.plugin_name, f"{hook}()", impl.function, args, {})
            if ok and result is not None:
                out.append((impl.plugin_name, result))
        return out

    def collect(
        self, hook: str, expected: type[T] | tuple[type, ...] | None = None, **kwargs: Any
    ) -> list[tuple[str, T]]:
        """The items of every implementation's list, tagged with their plugin; a plugin returning something that is
        not an ``expected`` is failed like one that raised."""
        out: list[tuple[str, Any]] = []
        for name, result in self.call(hook, **kwargs):
            items = list(result) if isinstance(result, (list, tuple)) else [result]
            wrong = [i for i in items if expected is not None and not isinstance(i, expected)]
            if wrong:
                names = expected.__name__ if isinstance(expected, type) else "/".join(e.__name__ for e in expected)
                error = TypeError(f"returned {wrong[0]!r}, not a {names}")
                if name == BUILTIN:
                    raise error
                self.fail(name, f"{hook}()", error)
                continue
            out += [(name, i) for i in items]
        return out

    def guard(self, plugin: str, where: str, fn: Callable[..., T], *args: Any, default: T, **kwargs: Any) -> T:
        """``fn(*args)`` for plugin ``plugin``; on a plugin bug, ``default`` (the plugin is failed and disabled)."""
        ok, result = self._guarded(plugin, where, fn, args, kwargs)
        return result if ok else default

    def run(self, plugin: str, where: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args)`` for plugin ``plugin``; a plugin bug raises ``PluginError`` naming it (after disabling it):
        for work a user waits for (an action, computed fields), where there is no default to fall back on."""
        if plugin != BUILTIN and not self.enabled(plugin):
            info = self.info(plugin)
            raise PluginError(f"plugin {plugin!r} is {info.state if info else 'not loaded'}")
        try:
            return fn(*args, **kwargs)
        except VisionLensError:
            raise
        except Exception as exc:
            if plugin == BUILTIN:
                raise
            raise PluginError(self.fail(plugin, where, exc)) from exc

    def _guarded(
        self, plugin: str, where: str, fn: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]
    ) -> tuple[bool, Any]:
        try:
            return True, fn(*args, **kwargs)
        except VisionLensError:
            raise
        except Exception as exc:
            if plugin == BUILTIN:
                raise
            self.fail(plugin, where, exc)
            return False, None


# -- folder plugins ----------------------------------------------------------------------------------------------


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n", 1)[0].strip()


def _disabled_by_env(name: str) -> bool:
    return name in {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def _manifests(folder: Path) -> list[Path]:
    if (folder / "plugin.yaml").is_file():
        return [folder / "plugin.yaml"]
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*/plugin.yaml") if p.is_file())


def _read_manifest(path: Path) -> dict[str, Any]:
    """``name`` (default: the folder's name), ``module`` (a .py file or a package folder inside the plugin's
    folder; default ``plugin.py``), ``description``, ``enabled`` (default true)."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"plugin.yaml unreadable: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError("plugin.yaml must be a mapping (name, module, description, enabled)")
    unknown = set(raw) - {"name", "module", "description", "enabled"}
    if unknown:
        raise ValueError(f"plugin.yaml: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    name = str(raw.get("name") or path.parent.name)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ValueError(f"plugin.yaml: name {name!r} must be letters, digits, '_', '-' or '.'")
    return {
        "name": name,
        "module": str(raw.get("module") or "plugin.py"),
        "description": str(raw.get("description") or ""),
        "enabled": bool(raw.get("enabled", True)),
    }


def _import_from_folder(folder: Path, module: str, name: str) -> ModuleType:
    """Import the plugin's module under a name of its own (``visionlens_plugin_<name>``), never from ``sys.path``:
    two plugins' ``plugin.py`` must not be the same module."""
    target = (folder / module).resolve()
    if not target.is_relative_to(folder.resolve()):
        raise ValueError(f"module {module!r} is outside the plugin's folder")
    if target.suffix != ".py" and not target.is_dir():
        target = target.with_suffix(".py")
    mod_name = "visionlens_plugin_" + re.sub(r"\W", "_", name)
    if target.is_dir():
        spec = importlib.util.spec_from_file_location(
            mod_name, target / "__init__.py", submodule_search_locations=[str(target)]
        )
    else:
        spec = importlib.util.spec_from_file_location(mod_name, target)
    if spec is None or spec.loader is None or not Path(spec.origin or "").is_file():
        raise FileNotFoundError(f"no module {module!r} in {folder}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(mod_name, None)
        raise
    return mod


def default_folders() -> list[Path]:
    """The source checkout's ``plugins/`` (not when installed: site-packages has no such folder of ours), then
    ``VISIONLENS_PLUGINS_PATH``."""
    out = []
    repo = Path(__file__).resolve().parent.parent
    if (repo / "pyproject.toml").is_file() and (repo / "plugins").is_dir():
        out.append(repo / "plugins")
    out += [Path(p).expanduser() for p in os.environ.get(PATH_ENV, "").split(os.pathsep) if p.strip()]
    return out


# -- the process's plugins ---------------------------------------------------------------------------------------

_lock = threading.Lock()
_current: list[Plugins] = []


def load_plugins(folders: Iterable[Path] | None = None, entry_points: bool = True) -> Plugins:
    """A new manager with the built-ins, the entry points and the folder plugins."""
    plugins = Plugins()
    plugins.add_module("visionlens.builtin_plugin", BUILTIN, "built-in", "VisionLens' own formats, tabs and commands")
    if entry_points:
        plugins.load_entry_points()
    plugins.load_folders(default_folders() if folders is None else folders)
    return plugins


def get_plugins() -> Plugins:
    """This process's plugins, loaded on first use."""
    with _lock:
        if not _current:
            _current.append(load_plugins())
        return _current[0]


def set_plugins(plugins: Plugins | None) -> Plugins | None:
    """Replace this process's plugins (tests; None: load again on next use); returns the previous ones."""
    with _lock:
        previous = _current[0] if _current else None
        _current[:] = [plugins] if plugins is not None else []
        return previous


def reset_plugins() -> None:
    """Forget the loaded plugins: the next use finds them again (after installing one, in tests)."""
    set_plugins(None)


# -- what the rest of VisionLens calls ---------------------------------------------------------------------------


def view_factories(ctx: hookspecs.ViewContext) -> dict[str, Callable[[], Any]]:
    """The app's tabs by name, in order; a plugin tab that fails to build shows its error in its place."""
    plugins = get_plugins()
    views = sorted(plugins.collect("views", hookspecs.View), key=lambda pv: pv[1].order)
    out: dict[str, Callable[[], Any]] = {}
    for plugin, view in views:
        if view.name in out:
            plugins.fail(plugin, "views()", ValueError(f"a tab named {view.name!r} exists"))
            continue
        out[view.name] = _view_factory(plugins, plugin, view, ctx)
    return out


def _view_factory(plugins: Plugins, plugin: str, view: hookspecs.View, ctx: hookspecs.ViewContext) -> Callable[[], Any]:
    def build() -> Any:
        try:
            return plugins.run(plugin, f"tab {view.name!r}", view.factory, ctx)
        except VisionLensError as exc:
            import panel as pn

            message = str(exc)
            if getattr(ctx.state, "error", None) is not None:
                ctx.state.error = message
            from .ui.html import md, text
            from .ui.notify import notify

            notify(text(message))
            return pn.pane.Alert(md(message), alert_type="danger", sizing_mode="stretch_width")

    return build


def grid_actions() -> list[tuple[str, hookspecs.GridAction]]:
    return get_plugins().collect("grid_actions", hookspecs.GridAction)


def run_action(
    plugin: str,
    action: hookspecs.GridAction,
    store: MetadataStore,
    dataset_id: int,
    sample_ids: Sequence[int],
    progress: ProgressCallback,
) -> str:
    """Run a grid action; a plugin bug raises ``PluginError`` (the plugin is disabled), its message says so."""
    result = get_plugins().run(plugin, f"action {action.name!r}", action.run, store, dataset_id, sample_ids, progress)
    return str(result) if result is not None else f"{action.label}: done"


def after_ingest(store: MetadataStore, dataset_id: int, name: str, progress: ProgressCallback) -> list[Issue]:
    """The post-ingest hooks, after the ingest committed; a failing plugin becomes a warning of the ingest."""
    from .formats.base import Issue

    plugins = get_plugins()
    before = {i.name for i in plugins.infos() if i.failed}
    plugins.call("post_ingest", store=store, dataset_id=dataset_id, name=name, progress=progress)
    return [
        Issue("plugin_failed", "", f"plugin {i.name}", f"post-ingest hook failed, plugin disabled: {i.state[8:]}")
        for i in plugins.infos()
        if i.failed and i.name not in before
    ]


@dataclass
class ComputeReport:
    """What ``compute_fields`` stored (field -> samples measured) and which plugins failed."""

    fields: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


def computed_field_providers() -> list[tuple[str, hookspecs.ComputedFields]]:
    return get_plugins().collect("computed_fields", hookspecs.ComputedFields)


def compute_fields(
    store: MetadataStore,
    dataset_id: int,
    names: Sequence[str] | None = None,
    sample_ids: Sequence[int] | None = None,
    progress: ProgressCallback | None = None,
) -> ComputeReport:
    """Compute the plugins' fields (all, or the providers of ``names``) for ``sample_ids`` (default: every sample)
    and store them as sample fields. A failing provider is reported; the others' fields are still stored."""
    import numpy as np

    from .formats.base import no_progress

    progress = progress or no_progress
    providers = computed_field_providers()
    known = {f.name for _, p in providers for f in p.fields}
    unknown = [n for n in names or () if n not in known]
    if unknown:
        raise VisionLensError(
            f"no plugin computes {', '.join(map(repr, unknown))}; computed fields: {', '.join(sorted(known)) or 'none'}"
        )
    if sample_ids is None:
        sample_ids = store.sample_index(dataset_id)[1]
    ids = np.asarray(sample_ids, np.int64)
    box_ids: Any = None  # read once, if an object-level provider runs
    report = ComputeReport()
    for plugin, provider in providers:
        if names and not {f.name for f in provider.fields} & set(names):
            continue
        if provider.level == "object" and box_ids is None:
            box_ids = store.annotation_ids(dataset_id, ids)
        rows = box_ids if provider.level == "object" else ids
        try:
            values = get_plugins().run(
                plugin, f"computed fields {provider.name!r}", provider.compute, store, dataset_id, rows, progress
            )
            report.fields.update(_store_fields(store, dataset_id, provider, rows, values))
        except PluginError as exc:
            report.failed.append(str(exc))
    return report


def _store_fields(
    store: MetadataStore, dataset_id: int, provider: hookspecs.ComputedFields, ids: Any, values: Any
) -> dict[str, int]:
    what = "boxes" if provider.level == "object" else "samples"
    if provider.level not in ("sample", "object"):
        raise PluginError(f"computed fields {provider.name!r}: level {provider.level!r} is not 'sample' or 'object'")
    columns = {}
    for spec in provider.fields:
        got = list(values.get(spec.name, ())) if hasattr(values, "get") else []
        if len(got) != len(ids):
            raise PluginError(
                f"computed fields {provider.name!r}: {len(got)} values of {spec.name!r} for {len(ids)} {what}"
            )
        columns[spec.name] = (spec.kind, ids, got)
    if provider.level == "object":
        store.set_object_fields(dataset_id, columns)
    else:
        store.set_sample_fields(dataset_id, columns)
    return {name: sum(v is not None for v in got) for name, (_, _, got) in columns.items()}


def run_insight_finders(
    store: MetadataStore, dataset_id: int, models: Sequence[str], kinds: Sequence[str], progress: ProgressCallback
) -> list[Finding]:
    """The plugins' analyses of ``kinds``, each stored as run ``plugin:<name>``; a failing one is left out."""
    from .insights.finding import save_run

    plugins = get_plugins()
    out: list[Finding] = []
    for plugin, finder in plugins.collect("insight_finders", hookspecs.InsightFinder):
        if finder.kind not in kinds:
            continue
        try:
            found = plugins.run(
                plugin, f"insight finder {finder.name!r}", finder.find, store, dataset_id, list(models), progress
            )
            found = [f.model_copy(update={"kind": finder.kind}) if f.kind != finder.kind else f for f in found or []]
        except PluginError as exc:
            log.warning("%s", exc)
            continue
        out += save_run(store, dataset_id, f"plugin:{finder.name}", found)
    return out


def plugin_routes() -> list[hookspecs.Route]:
    """Every plugin's routes (the built-in ones come from the server itself)."""
    out = []
    for plugin, route in get_plugins().collect("routes", tuple):
        if len(route) != 3:
            get_plugins().fail(plugin, "routes()", ValueError(f"a route is (pattern, handler, kwargs), got {route!r}"))
            continue
        out.append(route)
    return out


def register_cli(app: typer.Typer) -> None:
    """Let every plugin add commands; a command that would replace an existing one, or a hook that raises, fails
    its plugin, and a plugin command that raises prints the error and fails the plugin instead of a traceback."""
    plugins = get_plugins()
    with plugins._lock:
        impls = list(plugins.pm.hook.cli_commands.get_hookimpls())
    for impl in impls:
        before_cmds, before_groups = list(app.registered_commands), list(app.registered_groups)
        taken = {_command_name(c) for c in before_cmds} | {_group_name(g) for g in before_groups}
        ok = plugins.guard(impl.plugin_name, "cli_commands()", _call_impl, impl, app, default=False)
        if ok and impl.plugin_name != BUILTIN:  # typer reads every signature when the CLI starts: check it now
            ok = plugins.guard(impl.plugin_name, "cli_commands()", _builds, app, default=False)
        new_cmds = app.registered_commands[len(before_cmds) :]
        new_groups = app.registered_groups[len(before_groups) :]
        clash = [n for n in [*map(_command_name, new_cmds), *map(_group_name, new_groups)] if n in taken]
        if not ok or clash:
            app.registered_commands[:], app.registered_groups[:] = before_cmds, before_groups
            if clash:
                plugins.fail(impl.plugin_name, "cli_commands()", ValueError(f"command {clash[0]!r} exists"))
            continue
        if impl.plugin_name != BUILTIN:
            for cmd in new_cmds:
                cmd.callback = _guarded_command(plugins, impl.plugin_name, _command_name(cmd), cmd.callback)


def _builds(app: Any) -> bool:
    from typer.main import get_command

    get_command(app)
    return True


def _call_impl(impl: Any, app: Any) -> bool:
    impl.function(*[{"app": app}[a] for a in impl.argnames])
    return True


def _command_name(cmd: Any) -> str:
    from typer.main import get_command_name

    return cmd.name or get_command_name(cmd.callback.__name__)


def _group_name(group: Any) -> str | None:
    return group.name or getattr(getattr(group.typer_instance, "info", None), "name", None)


def _guarded_command(plugins: Plugins, plugin: str, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    import functools

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        import typer

        try:
            return plugins.run(plugin, f"command {name!r}", fn, *args, **kwargs)
        except VisionLensError as exc:
            from rich.console import Console

            Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return run
