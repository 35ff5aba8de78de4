"""The whole extension surface of VisionLens: every hook a plugin can implement, and the types they return.

A plugin is a module (or any object) with functions marked ``@hookimpl`` whose names are hooks below; it may
implement any subset, with any subset of a hook's arguments. The built-in formats, tabs and commands register
through these same hooks (``visionlens/builtin_plugin.py``), so a list of formats or tabs always comes from one
registry. ``visionlens/plugins.py`` finds plugins (entry points of group ``visionlens`` and ``plugins/<name>/``
folders with a ``plugin.yaml``) and calls them so that one failing plugin is reported and disabled, never taking
the app, an ingest or a job down.

Hooks that declare things (readers, tabs, actions, ...) take no arguments and return a list; they are asked again
whenever the list is needed, so a plugin disabled for failing drops out everywhere. The callables inside those
declarations are run by VisionLens with the same isolation. Raise ``visionlens.errors.VisionLensError`` for a
failure a user should read (bad input): it is shown as it is and leaves the plugin enabled. Any other exception
is a bug of the plugin: it is logged with its traceback, shown, and the plugin is disabled for this process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    import typer

    from .formats.base import FormatReader, ProgressCallback
    from .formats.writers import ExportInput, WriteOptions, WriteResult
    from .insights.finding import Finding
    from .store.metadata import MetadataStore

__all__ = [
    "AnnotationWriter",
    "ComputedFields",
    "FieldSpec",
    "GridAction",
    "InsightFinder",
    "Route",
    "Scope",
    "View",
    "ViewContext",
    "hookimpl",
    "hookspec",
]

hookspec = pluggy.HookspecMarker("visionlens")
hookimpl = pluggy.HookimplMarker("visionlens")

Scope = Literal["picked", "selection", "view"]
"""Which samples a grid action gets: the shift-clicked tiles, the map's lasso selection, or the whole filtered view."""

Route = tuple[str, Any, dict]
"""A Tornado route ``(pattern, RequestHandler class, kwargs)``, mounted on the app's server under its prefix."""


class AnnotationWriter(Protocol):
    """Writes a view of a dataset out in one format, the counterpart of a ``FormatReader`` (the shape of
    ``visionlens.formats.writers.Writer``): it gets plain data, never the store.

    ``write(data, out_dir, options, progress)`` fills the empty folder ``out_dir`` from ``data.batches()`` and
    returns what it wrote (``WriteResult``); raise to fail (the caller removes the folder). ``image_modes``: which
    of ``copy``/``link``/``in_place`` it supports (empty: it writes no images).
    """

    name: ClassVar[str]
    image_modes: ClassVar[tuple[str, ...]]

    def write(
        self, data: ExportInput, out_dir: Path, options: WriteOptions, progress: ProgressCallback
    ) -> WriteResult: ...


@dataclass(frozen=True)
class ViewContext:
    """What a tab's factory gets: the session's state (the only thing views share), how images are served
    (``"route"``, or ``"data"`` in notebooks) and whether the page has the template's header."""

    state: Any
    thumbnails: str = "route"
    template: bool = True


@dataclass(frozen=True)
class View:
    """One tab of the app. ``factory`` builds it on first visit (a ``pn.viewable.Viewer`` that reads and writes
    only ``ctx.state``); tabs are ordered by ``order`` (built-ins use 10..50)."""

    name: str
    factory: Callable[[ViewContext], Any]
    order: int = 100


@dataclass(frozen=True)
class GridAction:
    """A button in the Browse toolbar. ``run(store, dataset_id, sample_ids, progress)`` runs as a background job
    on the samples of ``scope`` and returns the message shown when it is done."""

    name: str
    label: str
    scope: Scope
    run: Callable[[MetadataStore, int, Sequence[int], ProgressCallback], str]


@dataclass(frozen=True)
class FieldSpec:
    """A field a plugin computes: its name (shared with the dataset's own fields) and kind (``numeric`` fields get
    a range filter and become slice candidates for insights)."""

    name: str
    kind: str = "numeric"
    level: Literal["sample"] = "sample"


@dataclass(frozen=True)
class ComputedFields:
    """Fields computed together (one image decode for several measures).

    ``compute(store, dataset_id, ids, progress)`` returns ``{field name: values aligned with ids}`` (None where
    it cannot measure). ``level="sample"``: ids are sample ids, values become sample fields. ``level="object"``:
    ids are box (annotation) ids of those samples (``store.annotations_by_id`` reads them), values become object
    fields, filtered with ``LabelFilter.fields``. Run by ``visionlens plugins compute DATASET`` or the Browse
    action "Compute plugin fields".
    """

    name: str
    fields: tuple[FieldSpec, ...]
    compute: Callable[[MetadataStore, int, Sequence[int], ProgressCallback], Mapping[str, Sequence[Any]]]
    level: Literal["sample", "object"] = "sample"


@dataclass(frozen=True)
class InsightFinder:
    """An analysis run with the built-in ones (``visionlens insights``, the Insights tab) when ``kind`` is asked
    for. ``find(store, dataset_id, models, progress)`` returns findings of that kind; they are stored as the run
    ``plugin:<name>`` and shown with the built-in findings of their kind."""

    name: str
    kind: str
    find: Callable[[MetadataStore, int, Sequence[str], ProgressCallback], list[Finding]]


# -- the hooks --------------------------------------------------------------------------------------------------


@hookspec
def format_readers() -> list[FormatReader]:
    """Annotation format readers (ground truth and predictions), tried in order on ``format="auto"``."""


@hookspec
def annotation_writers() -> list[AnnotationWriter]:
    """Annotation format writers for export."""


@hookspec
def post_ingest(store: MetadataStore, dataset_id: int, name: str, progress: ProgressCallback) -> None:
    """Called after an ingest committed: add fields, validate, index; a failure here never undoes the ingest."""


@hookspec
def computed_fields() -> list[ComputedFields]:
    """Sample fields computed from a dataset's images or boxes."""


@hookspec
def insight_finders() -> list[InsightFinder]:
    """Analyses that add findings to the Insights tab."""


@hookspec
def views() -> list[View]:
    """Tabs of the app."""


@hookspec
def grid_actions() -> list[GridAction]:
    """Actions on the picked tiles, the lasso selection or the whole filtered view."""


@hookspec
def routes() -> list[Route]:
    """HTTP routes added to the app's server (subclass ``visionlens.server.api.ApiHandler`` for the API's auth)."""


@hookspec
def cli_commands(app: typer.Typer) -> None:
    """Add commands to the ``visionlens`` command line (``@app.command()``, ``app.add_typer``)."""
