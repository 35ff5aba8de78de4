"""The one state object of a session. Views read and write only this; they never talk to each other.

It also owns the session's current result (the ordered ids matching filters + selection), recomputed when any of
its inputs change, so every view sees the same ids and the same count.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import param

from ..dataset import Dataset
from ..errors import VisionLensError
from ..query import FieldFilter, Filters, LabelFilter, Sort
from ..store.metadata import GROUND_TRUTH, MetadataStore

log = logging.getLogger(__name__)


class AppState(param.Parameterized):
    """Shared by the grid, the filters, the detail view, the map and the evaluation panel of one session."""

    dataset = param.Selector(default=None, objects=[], allow_None=True, doc="Name of the active dataset.")
    filters = param.ClassSelector(class_=Filters, default=Filters(), doc="Sidebar filters.")
    sort = param.ClassSelector(class_=Sort, default=Sort())
    selection = param.Array(default=None, allow_None=True, doc="Sample ids picked on the map (lasso/box).")
    similar = param.Array(default=None, allow_None=True, doc="Ordered ids of a similarity search; replaces sort.")
    similar_label = param.String(default="", doc="What the similarity search was (shown as a chip).")
    open_sample = param.Integer(default=None, allow_None=True, doc="Sample shown in the detail view.")
    picked = param.List(default=[], item_type=int, doc="Tiles picked with shift/ctrl-click (for tagging).")

    show_gt = param.Boolean(default=True, doc="Draw ground-truth boxes.")
    models = param.List(default=[], item_type=str, doc="Prediction sources to draw.")
    min_confidence = param.Number(default=0.3, bounds=(0.0, 1.0), doc="Hide predictions below this score.")
    labels = param.List(default=[], item_type=str, doc="Labels to draw; empty means all.")
    tile_size = param.Integer(default=180, bounds=(64, 512))
    evaluation = param.String(
        default=None, allow_None=True, doc="Evaluation key whose TP/FP/FN statuses mark the boxes (None: no marks)."
    )
    collection = param.String(default=None, allow_None=True, doc="Vector collection for similarity search.")
    similar_k = param.Integer(default=100, bounds=(1, 10_000), doc="How many similar samples a search returns.")
    box_status = param.ListSelector(
        default=[],
        objects=["tp", "fp", "fn"],
        doc="Draw only boxes with these statuses (e.g. only FPs); empty draws all.",
    )

    active_view = param.String(
        default=None,
        allow_None=True,
        doc="The main view on screen when the layout has tabs (None: all are visible). "
        "Costly views (evaluation) compute only while shown.",
    )

    result_ids = param.Array(default=np.zeros(0, np.int64), precedence=-1, doc="Current result, in display order.")
    count = param.Integer(default=0, precedence=-1, doc="len(result_ids).")
    total = param.Integer(default=0, precedence=-1, doc="Samples in the dataset.")
    version = param.Integer(default=0, precedence=-1, doc="Bumped whenever result_ids changes.")
    busy = param.Boolean(default=False, precedence=-1)
    error = param.String(default="", precedence=-1, doc="Last user-facing error (bad filter, ...).")
    user = param.String(
        default="token", allow_None=True, precedence=-1, doc="Who this session is (roles); a notebook is the owner."
    )
    datasets_version = param.Integer(
        default=0,
        precedence=-1,
        doc="Bumped when the stored datasets changed (an ingest or delete, here or via the API).",
    )
    query_ms = param.Number(default=0.0, precedence=-1)
    data_version = param.Integer(
        default=0,
        precedence=-1,
        doc="Bumped when stored values of the dataset changed in place (tags written): views showing them re-read.",
    )

    _finding_shown: tuple[Filters, str] | None = None
    """The filters an insight was shown with and its title: the sidebar names it while they stay applied."""
    _view_shown: tuple[str, Filters, Sort, np.ndarray | None] | None = None
    """The saved view last opened (name, filters, sort, selection): links name it while the state still shows it."""

    def __init__(self, store: MetadataStore, **params: Any):
        self.store = store
        names = [d["name"] for d in store.list_datasets()]
        super().__init__(**params)
        self.param.dataset.objects = names
        if self.dataset is None and names:
            self.dataset = names[0]  # the watcher resets the view and computes the result
        elif self.dataset is not None:
            self._on_dataset()
        else:
            self.refresh()

    def can(self, action: str) -> bool:
        """Whether this session's user may take ``action`` (``server.roles.ACTIONS``); views hide what it may not."""
        from ..server.roles import can

        return can(self.user, action)

    def allow(self, action: str) -> bool:
        """``can``, and when not, say so where the session shows errors: a view's second check after hiding."""
        if self.can(action):
            return True
        from ..server.roles import require

        try:
            require(self.user, action)
        except VisionLensError as e:
            self.error = str(e)
        return False

    def reload_datasets(self) -> None:
        """Re-read the list of datasets (another session or an API client may have added or removed one)."""
        names = [d["name"] for d in self.store.list_datasets()]
        self.param.dataset.objects = names
        if self.dataset not in names:
            self.dataset = names[0] if names else None
        self.datasets_version += 1

    # -- derived -------------------------------------------------------------------------------------------------

    @property
    def ds(self) -> Dataset | None:
        if self.dataset is None:
            return None
        return self._ds if getattr(self, "_ds", None) is not None and self._ds.name == self.dataset else self._load()

    def _load(self) -> Dataset:
        self._ds = Dataset(self.store, self.store.get_dataset(self.dataset))
        return self._ds

    def effective_filters(self) -> Filters:
        """Sidebar filters plus the map selection: what the grid, counts and metrics are computed over."""
        if self.selection is None:
            return self.filters
        return self.filters.model_copy(update={"sample_ids": tuple(int(i) for i in self.selection)})

    def visible_sources(self) -> list[str]:
        return ([GROUND_TRUTH] if self.show_gt else []) + list(self.models)

    # -- reactions -----------------------------------------------------------------------------------------------

    @param.depends("dataset", watch=True)
    def _on_dataset(self) -> None:
        self._ds = None
        self._finding_shown = None  # an insight of the previous dataset names nothing here
        self._view_shown = None
        ds = self.ds
        with param.parameterized.discard_events(self):
            self.filters = Filters()
            self.selection = None
            self.similar = None
            self.similar_label = ""
            self.open_sample = None
            self.picked = []
            self.sort = Sort()
            self.models = ds.models()[:1] if ds else []
            self.labels = []
            done = {e["key"] for e in ds.evaluations()} if ds else set()
            self.evaluation = self.models[0] if self.models and self.models[0] in done else None
            self.box_status = []
            self.collection = self._first_collection(ds)
        self.refresh()

    @param.depends("filters", "sort", "selection", "similar", watch=True)
    def refresh(self) -> None:
        """Recompute the result. Runs on the session's thread (``--num-threads``), never blocking other sessions."""
        ds = self.ds
        if ds is None:
            self.param.update(result_ids=np.zeros(0, np.int64), count=0, total=0, version=self.version + 1)
            return
        self.busy = True
        start = time.perf_counter()
        try:
            flt = self.effective_filters()
            if self.similar is not None:
                similar = np.asarray(self.similar, np.int64)
                ids = similar[np.isin(similar, ds.sample_ids(flt))]  # keeps the similarity order
            else:
                ids = ds.sample_ids(flt, sort_by=self.sort.field, descending=self.sort.descending)
            total = self.store.count(ds.id, Filters())
            self.param.update(
                result_ids=ids,
                count=len(ids),
                total=total,
                version=self.version + 1,
                error="",
                query_ms=(time.perf_counter() - start) * 1000,
            )
        except VisionLensError as e:
            self.error = str(e)
        finally:
            self.busy = False

    def _first_collection(self, ds: Dataset | None) -> str | None:
        if ds is None:
            return None
        from ..embedding_jobs import dataset_collections

        found = dataset_collections(self.store, ds.id)
        return found[0] if found else None

    def find_similar(self, sample_ids: list[int] | None = None, text: str | None = None) -> None:
        """Top-k among the current filters, by one or several samples (their mean vector) or by text: exact under
        any filter, through the HNSW graph (recall@50 0.99 at 1M) when the whole dataset is searched alone."""
        from .. import similarity
        from ..embedding_jobs import text_embedder, vector_store

        ds = self.ds
        if ds is None:
            return
        if not self.collection:
            self.error = f"no embeddings for {ds.name!r} yet: run `visionlens embed {ds.name}`"
            return
        try:
            if text:
                emb = text_embedder(self.store, self.collection)
                if emb is None:
                    raise VisionLensError(
                        f"{self.collection!r} has no text encoder: embed with `--embedder clip` for text search"
                    )
                ids, _ = similarity.similar_to_text(
                    self.store, ds.id, self.collection, text, emb, self.similar_k, self.effective_filters()
                )
                label = f"“{text}”"
            else:
                picked = [int(i) for i in (sample_ids or [])]
                if not picked:
                    return
                vs = vector_store()
                query = vs.get_vectors(self.collection, np.asarray(picked, np.int64)).mean(axis=0)
                ids, _ = similarity.search_vector(
                    self.store, ds.id, self.collection, query, self.similar_k, self.effective_filters(), vs
                )
                label = f"sample {picked[0]}" if len(picked) == 1 else f"{len(picked)} samples"
        except VisionLensError as e:
            self.error = str(e)
            return
        self.param.update(similar=np.asarray(ids, np.int64), similar_label=label, open_sample=None)

    # -- actions views call --------------------------------------------------------------------------------------

    def set_field_filter(self, field: str, flt: FieldFilter | None) -> None:
        self.filters = self.filters.with_field(flt, field)

    def set_label_filters(self, flts: tuple[LabelFilter, ...]) -> None:
        self.filters = self.filters.model_copy(update={"annotations": flts})

    def reset(self) -> None:
        """Every filter off, an applied insight (``Filters.finding``) included."""
        self.param.update(filters=Filters(), selection=None, similar=None, similar_label="")

    def show_finding(
        self,
        flt: Filters,
        title: str,
        model: str | None = None,
        sort: Sort | None = None,
        open_sample: int | None = None,
    ) -> None:
        """Apply an insight's filter to every view (grid, map, evaluation) and bring Browse to the front.

        A map selection or a similarity search would narrow the insight's samples further, so both are dropped:
        the count a user sees is the insight's. ``model``: the detector the insight is about, drawn with its
        TP/FP/FN marks when it has a stored evaluation. ``title`` names the insight in the sidebar for as long
        as these filters stay as they are (a ``Filters.finding`` is named from the store, even from a link).
        """
        update: dict[str, Any] = {
            "filters": flt,
            "selection": None,
            "similar": None,
            "similar_label": "",
            "open_sample": None,
        }
        if sort is not None:
            update["sort"] = sort
        self._finding_shown = (flt, title)
        self.param.update(**update)
        ds = self.ds
        if model and ds is not None and model in ds.models():
            # one at a time: the grid's overlay watcher takes one event per call
            if model not in self.models:
                self.models = [*self.models, model]
            if model in {e["key"] for e in ds.evaluations()}:
                self.evaluation = model
        if open_sample is not None:  # after the new result exists, so the detail view finds it in there
            self.open_sample = open_sample
        if self.active_view is not None:  # None: a layout without tabs, where every view is on screen already
            self.active_view = "Browse"

    def active_finding(self) -> str | None:
        """The title of the insight the current filters select, for the sidebar; None when none is applied."""
        shown = self._finding_shown
        fid = self.filters.finding
        if fid is not None:
            ds = self.ds
            row = ds.store.finding(ds.id, fid) if ds is not None else None
            return str(row["title"]) if row is not None else f"insight {fid} (no longer stored)"
        if shown is not None and shown[0] == self.filters and not self.filters.is_empty:
            return shown[1]
        return None

    def clear_finding(self) -> None:
        """Take an applied insight off: its member set, or the filters it set when it was a field condition."""
        shown = self._finding_shown
        if self.filters.finding is not None:
            self.filters = self.filters.model_copy(update={"finding": None})
        elif shown is not None and shown[0] == self.filters:
            self.filters = Filters()

    def data_changed(self) -> None:
        """Stored values changed in place (tags written): a tag filter may match other samples now, so the result is
        recomputed, and views that show those values (sidebar counts, tag suggestions) re-read them."""
        self.data_version += 1
        self.refresh()

    def open_view(self, name: str) -> None:
        """Apply a saved view: its filters, lasso selection and sort, and the sources it draws. A similarity search
        would reorder it and is dropped. Raises the store's error for a view this dataset does not have."""
        ds = self.ds
        if ds is None:
            return
        view = ds.view(name)
        selection = None if view.selection is None else np.asarray(view.selection, np.int64)
        self._view_shown = (view.name, view.filters, view.sort, selection)
        self.param.update(
            filters=view.filters, selection=selection, sort=view.sort, similar=None, similar_label="", open_sample=None
        )
        if view.sources is not None:  # one at a time: the grid's overlay watcher takes one event per call
            self.show_gt = GROUND_TRUTH in view.sources
            models = [m for m in view.sources if m in ds.models()]
            if models != list(self.models):
                self.models = models

    def shown_view(self) -> str | None:
        """The name of the saved view on screen, while its filters, sort and selection are still as it set them."""
        if self._view_shown is None:
            return None
        name, flt, sort, sel = self._view_shown
        if sel is None or self.selection is None:
            same_selection = sel is None and self.selection is None
        else:
            same_selection = np.array_equal(sel, self.selection)
        return name if flt == self.filters and sort == self.sort and same_selection else None

    def step(self, delta: int) -> None:
        """Move the detail view to the previous/next sample of the current result."""
        if self.open_sample is None or not len(self.result_ids):
            return
        pos = np.flatnonzero(self.result_ids == self.open_sample)
        k = int(pos[0]) + delta if len(pos) else 0
        if 0 <= k < len(self.result_ids):
            self.open_sample = int(self.result_ids[k])

    def position(self) -> int | None:
        if self.open_sample is None:
            return None
        pos = np.flatnonzero(self.result_ids == self.open_sample)
        return int(pos[0]) if len(pos) else None

    # -- URL -----------------------------------------------------------------------------------------------------

    def to_query(self) -> dict[str, str]:
        """The part of the view a shared link carries: dataset, saved view, filters, sort and the open sample."""
        q: dict[str, str] = {}
        if self.dataset:
            q["dataset"] = self.dataset
        view = self.shown_view()
        if view is not None:
            q["view"] = view  # carries the lasso selection, which the filters below leave out
        if not self.filters.is_empty:
            q["filters"] = self.filters.to_url()
        if self.sort != Sort():
            q["sort"] = ("-" if self.sort.descending else "") + self.sort.field
        if self.open_sample is not None:
            q["sample"] = str(self.open_sample)
        return q

    def apply_query(self, q: dict[str, str]) -> None:
        """Restore a shared link; what is broken in it is left out and named in ``error``.

        A link is text from outside: bad JSON, a field this dataset lacks, a value of the wrong type, an unknown
        sort field or a sample id that is not a number must not leave a blank page. Each part is checked against
        the dataset (the store compiles the filter and the sort, which is where unknown fields and wrong types are
        found) before it is applied, so a broken part leaves the dataset unfiltered and the message says why.
        """
        problems: list[str] = []
        name = q.get("dataset")
        if name and name in self.param.dataset.objects:
            if name != self.dataset:
                self.dataset = name
        elif name:
            problems.append(f"there is no dataset named {name!r}")
        ds = self.ds
        if q.get("view") and ds is not None:
            try:
                self.open_view(q["view"])  # first: filters or a sort also in the link apply over it
            except (ValueError, VisionLensError) as e:
                problems.append(f"its saved view was left out ({_reason(e)})")
        update: dict[str, Any] = {}
        if q.get("filters") and ds is not None:
            try:
                flt = Filters.from_url(q["filters"])
                self.store.count(ds.id, flt)  # compiles the filter against this dataset's fields
                update["filters"] = flt
            except (ValueError, TypeError, VisionLensError) as e:
                problems.append(f"its filters were left out ({_reason(e)})")
        if q.get("sort") and ds is not None:
            s = q["sort"]
            try:
                sort = Sort(field=s.lstrip("-"), descending=s.startswith("-"))
                self.store.page(ds.id, Filters(), sort, 1, 0)
                update["sort"] = sort
            except (ValueError, TypeError, VisionLensError) as e:
                problems.append(f"its sort order was left out ({_reason(e)})")
        if update:
            self.param.update(**update)
        if q.get("sample"):
            try:
                self.open_sample = int(q["sample"])
            except (ValueError, TypeError):
                problems.append(f"{q['sample']!r} is not a sample id")
        if problems:
            self.error = "Could not restore all of the link: " + "; ".join(problems) + "."


def _reason(e: BaseException) -> str:
    """One line for a user: pydantic's first error (where and what) rather than its multi-line report."""
    from pydantic import ValidationError

    if isinstance(e, ValidationError) and e.errors():
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"{where}: {first.get('msg', '')}" if where else str(first.get("msg", ""))
    line = str(e).splitlines()[0] if str(e) else type(e).__name__
    return line if len(line) <= REASON_CHARS else line[: REASON_CHARS - 1] + "…"


REASON_CHARS = 160
"""A store error may list every field of the dataset: the alert shows the start, the field it is about."""
