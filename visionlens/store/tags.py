"""Tags on samples and objects, and saved views: what users write about a dataset, kept beside its rows.

Tagging a view is one ``UPDATE`` whose row set is the view's compiled filter (the same WHERE the grid reads), never
a loop over rows, so a million-sample view is tagged in about a second. Only rows that change are written, and the
count that comes back says how many did.

Tag names and view names are data: any text, trimmed, non-empty and of bounded length (``clean_name``), always
passed as parameters, never pasted into SQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from ..errors import DatasetExistsError, DatasetNotFoundError, FilterError, VisionLensError
from ..query import Filters, LabelFilter, SavedView, Sort
from .filters import FilterCompiler
from .sql import Sql, ident

__all__ = [
    "MAX_TAGS",
    "MAX_TAG_CHARS",
    "MAX_VIEW_NAME_CHARS",
    "TagError",
    "Tagging",
    "ViewExistsError",
    "ViewNotFoundError",
    "clean_name",
    "clean_tags",
]

MAX_TAG_CHARS = 100
MAX_TAGS = 100
"""Tags in one call: a tag is a word a user types, not a data column."""
MAX_VIEW_NAME_CHARS = 200

# What a tag write does to a row's list, and which rows it changes at all (the others are not rewritten).
_ADD = "list_sort(list_distinct(list_concat(coalesce(tags, []), $tags::VARCHAR[])))"
_ADD_NEEDED = "NOT list_has_all(coalesce(tags, []), $tags::VARCHAR[])"
_REMOVE = "list_filter(tags, lambda t: NOT list_contains($tags::VARCHAR[], t))"
_REMOVE_NEEDED = "list_has_any(tags, $tags::VARCHAR[])"

_VIEW_COLUMNS = "name, filters, sort, sources, len(selection), created_at, updated_at, username"


class TagError(VisionLensError):
    """A tag or view name that cannot be stored (empty, too long, not text), or a tag call naming no rows."""


class ViewNotFoundError(DatasetNotFoundError):
    """No saved view of that name (a 404 through the API, like a missing dataset)."""


class ViewExistsError(DatasetExistsError):
    """A saved view of that name exists and the call did not ask to replace it (a 409 through the API)."""


def clean_name(value: Any, what: str, max_chars: int) -> str:
    """``value`` trimmed, refused when it is not text, empty, or longer than ``max_chars``."""
    if not isinstance(value, str):
        raise TagError(f"{what} must be text, not {type(value).__name__}")
    name = value.strip()
    if not name:
        raise TagError(f"{what} must not be empty")
    if len(name) > max_chars:
        raise TagError(f"{what} may be at most {max_chars} characters long (this one has {len(name)})")
    return name


def clean_tags(tags: str | Iterable[str]) -> list[str]:
    """One tag or several, each checked, duplicates dropped, order kept."""
    items = [tags] if isinstance(tags, str) else list(tags)
    out = list(dict.fromkeys(clean_name(t, "a tag", MAX_TAG_CHARS) for t in items))
    if not out:
        raise TagError("give at least one tag")
    if len(out) > MAX_TAGS:
        raise TagError(f"at most {MAX_TAGS} tags at once ({len(out)} given)")
    return out


def sample_target(filters: Filters | None, sample_ids: Sequence[int] | np.ndarray | None) -> Filters:
    """The samples a tag call names: a filter, an id set, or both (their intersection). Naming neither is refused,
    so that a forgotten argument never tags a whole dataset (``Filters()`` says "all" on purpose)."""
    if filters is None and sample_ids is None:
        raise TagError("say which samples: filters=... (Filters() for all of them) or sample_ids=[...]")
    flt = filters or Filters()
    if sample_ids is None:
        return flt
    ids = np.asarray(sample_ids, np.int64).ravel()
    if flt.sample_ids is not None:
        ids = np.intersect1d(ids, np.asarray(flt.sample_ids, np.int64))
    return flt.model_copy(update={"sample_ids": tuple(int(i) for i in ids)})


def _utc(value: datetime | None) -> datetime | None:
    """Timestamps are stored as naive UTC (DuckDB ``TIMESTAMP``); they come back marked as UTC, as JSON carries them."""
    return None if value is None else value.replace(tzinfo=UTC)


class Tagging(FilterCompiler):
    """Sample tags, object tags and saved views of a dataset."""

    # -- sample tags ---------------------------------------------------------------------------------------------

    def tag_samples(
        self,
        dataset_id: int,
        tags: str | Iterable[str],
        filters: Filters | None = None,
        sample_ids: Sequence[int] | np.ndarray | None = None,
    ) -> int:
        """Add ``tags`` to the samples named (see ``sample_target``); returns how many samples changed."""
        return self._tag_samples(dataset_id, clean_tags(tags), sample_target(filters, sample_ids), remove=False)

    def untag_samples(
        self,
        dataset_id: int,
        tags: str | Iterable[str],
        filters: Filters | None = None,
        sample_ids: Sequence[int] | np.ndarray | None = None,
    ) -> int:
        """Remove ``tags`` from the samples named; returns how many samples changed."""
        return self._tag_samples(dataset_id, clean_tags(tags), sample_target(filters, sample_ids), remove=True)

    def _tag_samples(self, dataset_id: int, tags: list[str], filters: Filters, remove: bool) -> int:
        with self.transaction() as cur:
            rows = "SELECT s.id FROM samples s WHERE " + self._where(cur, dataset_id, filters)
            return self._write_tags(cur, "samples", dataset_id, tags, rows, remove)

    @staticmethod
    def _write_tags(
        cur: duckdb.DuckDBPyConnection, table: str, dataset_id: int, tags: list[str], rows: Sql, remove: bool
    ) -> int:
        """One UPDATE of ``table``'s tag lists over the ids ``rows`` selects; the number of rows changed."""
        change, needed = (_REMOVE, _REMOVE_NEEDED) if remove else (_ADD, _ADD_NEEDED)
        sql = (
            Sql.of(
                f"UPDATE {ident(table)} SET tags = {change} WHERE dataset_id = $d AND {needed} AND id IN (",
                tags=tags,
                d=dataset_id,
            )
            + rows
            + ")"
        )
        # the two $tags of the fragment are two placeholders: Sql.of fills each in text order
        return int(sql.run(cur).fetchall()[0][0])

    # -- object tags ---------------------------------------------------------------------------------------------

    def tag_objects(
        self,
        dataset_id: int,
        tags: str | Iterable[str],
        ann_ids: Sequence[int] | np.ndarray | None = None,
        filters: Filters | None = None,
        objects: LabelFilter | None = None,
    ) -> int:
        """Add ``tags`` to boxes: those in ``ann_ids``, and/or the boxes matching ``objects`` (a ``LabelFilter``'s
        per-box conditions: source, labels, confidence, area, status, tags) on the samples matching ``filters``.
        With ``filters`` alone, every box of those samples. Returns how many boxes changed."""
        return self._tag_objects(dataset_id, clean_tags(tags), ann_ids, filters, objects, remove=False)

    def untag_objects(
        self,
        dataset_id: int,
        tags: str | Iterable[str],
        ann_ids: Sequence[int] | np.ndarray | None = None,
        filters: Filters | None = None,
        objects: LabelFilter | None = None,
    ) -> int:
        """Remove ``tags`` from the boxes named as in ``tag_objects``; returns how many boxes changed."""
        return self._tag_objects(dataset_id, clean_tags(tags), ann_ids, filters, objects, remove=True)

    def _tag_objects(
        self,
        dataset_id: int,
        tags: list[str],
        ann_ids: Sequence[int] | np.ndarray | None,
        filters: Filters | None,
        objects: LabelFilter | None,
        remove: bool,
    ) -> int:
        if ann_ids is None and filters is None and objects is None:
            raise TagError("say which objects: ann_ids=[...], filters=... (their samples' boxes) or objects=...")
        if objects is not None and (objects.exclude or objects.min_count > 1):
            raise TagError("objects= picks boxes; 'has none' and 'at least N' describe images (put them in filters=)")
        with self.transaction() as cur:
            parts = [Sql.of("a.dataset_id = $d", d=dataset_id)]
            if objects is not None:
                parts.append(self._object_where(dataset_id, objects))
            if filters is not None:
                parts.append(
                    "a.sample_id IN (SELECT s.id FROM samples s WHERE " + self._where(cur, dataset_id, filters) + ")"
                )
            if ann_ids is not None:
                parts.append(Sql(f"a.id IN (SELECT id FROM {ident(self._register_ids(cur, ann_ids))})"))
            rows = "SELECT a.id FROM annotations a WHERE " + Sql.join(parts, " AND ")
            return self._write_tags(cur, "annotations", dataset_id, tags, rows, remove)

    def _register_ids(self, cur: duckdb.DuckDBPyConnection, ids: Sequence[int] | np.ndarray) -> str:
        """An id list as a temp table ``(id, pos)`` on ``cur``: a million ids travel as one Arrow column, not as
        a million parameters."""
        arr = np.asarray(ids, np.int64).ravel()
        name = self._temp_name()
        cur.register(name, pa.table({"id": pa.array(arr), "pos": pa.array(np.arange(len(arr)))}))
        return name

    # -- counts --------------------------------------------------------------------------------------------------

    def tag_counts(self, dataset_id: int, filters: Filters | None = None) -> dict[str, dict[str, int]]:
        """Samples per sample tag and boxes per object tag, most used first, over ``filters`` (default: all). The
        unfiltered answer is what tag suggestions read in every session: kept until the next write."""
        if filters is None or filters.is_empty:
            return self._memoised(("tag_counts", dataset_id), lambda: self._tag_counts(dataset_id, Filters()))
        return self._tag_counts(dataset_id, filters)

    def _tag_counts(self, dataset_id: int, filters: Filters) -> dict[str, dict[str, int]]:
        with self.cursor() as cur:
            where = self._where(cur, dataset_id, filters)
            samples = (
                (
                    "SELECT t, count(*) AS n FROM (SELECT unnest(s.tags) AS t FROM samples s WHERE "
                    + where
                    + ") GROUP BY t ORDER BY n DESC, t"
                )
                .run(cur)
                .fetchall()
            )
            on_samples = (
                Sql("") if filters.is_empty else " AND a.sample_id IN (SELECT s.id FROM samples s WHERE " + where + ")"
            )
            objects = (
                (
                    Sql.of(
                        "SELECT t, count(*) AS n FROM (SELECT unnest(a.tags) AS t FROM annotations a "
                        "WHERE a.dataset_id = $d AND len(a.tags) > 0",
                        d=dataset_id,
                    )
                    + on_samples
                    + ") GROUP BY t ORDER BY n DESC, t"
                )
                .run(cur)
                .fetchall()
            )
        return {"samples": {t: int(n) for t, n in samples}, "objects": {t: int(n) for t, n in objects}}

    # -- saved views ---------------------------------------------------------------------------------------------

    def save_view(self, dataset_id: int, view: SavedView, replace: bool = False, user: str | None = None) -> SavedView:
        """Store ``view`` under its name; an existing view of that name is replaced only with ``replace`` (it keeps
        its creation time). The view is checked against the dataset first, so a saved view always opens."""
        name = clean_name(view.name, "a view name", MAX_VIEW_NAME_CHARS)
        filters, selection = _split_selection(view)
        self._check_view(dataset_id, filters, view.sort, view.sources)
        now = datetime.now(UTC).replace(tzinfo=None)
        with self.transaction() as cur:
            old = self._view_row(cur, dataset_id, name, "created_at")
            if old is not None and not replace:
                raise ViewExistsError(f"a view named {name!r} exists; save it with replace=True to overwrite it")
            self._where_view(dataset_id, name).wrap("DELETE FROM saved_views WHERE {}").run(cur)
            ids = (
                Sql("NULL")
                if selection is None
                else Sql(
                    f"(SELECT coalesce(list(id ORDER BY pos), []) FROM {ident(self._register_ids(cur, selection))})"
                )
            )
            (
                Sql.of(
                    "INSERT INTO saved_views (dataset_id, name, filters, selection, sort, sources, created_at, "
                    "updated_at, username) SELECT $d, $n, $f, ",
                    d=dataset_id,
                    n=name,
                    f=filters.model_dump_json(exclude_defaults=True),
                )
                + ids
                + Sql.of(
                    ", $s, $src::VARCHAR[], $created, $now, $u",
                    s=view.sort.model_dump_json(),
                    src=None if view.sources is None else list(view.sources),
                    created=old[0] if old is not None else now,
                    now=now,
                    u=user,
                )
            ).run(cur)
        return self.get_view(dataset_id, name)

    def _check_view(self, dataset_id: int, filters: Filters, sort: Sort, sources: Sequence[str] | None) -> None:
        """Compile the filters and the sort against this dataset (unknown fields, labels, sources are errors)."""
        with self.cursor() as cur:
            self._where(cur, dataset_id, filters)
        self._order(dataset_id, sort)
        known = self.source_ids(dataset_id)
        unknown = [s for s in sources or () if s not in known]
        if unknown:
            raise FilterError(
                f"unknown source(s) {', '.join(map(repr, unknown))}; this dataset has: {', '.join(known)}"
            )

    def list_views(self, dataset_id: int) -> list[SavedView]:
        """Every saved view of the dataset by name, without the selections' ids (``selected`` counts them)."""
        with self.cursor() as cur:
            rows = (
                Sql.of(f"SELECT {_VIEW_COLUMNS} FROM saved_views WHERE dataset_id = $d ORDER BY name", d=dataset_id)
                .run(cur)
                .fetchall()
            )
        return [_view_of(row) for row in rows]

    def get_view(self, dataset_id: int, name: str) -> SavedView:
        """One saved view with its selection's ids, in the order they were saved."""
        name = clean_name(name, "a view name", MAX_VIEW_NAME_CHARS)
        with self.cursor() as cur:
            row = self._view_row(cur, dataset_id, name, _VIEW_COLUMNS)
            if row is None:
                raise self._no_view(dataset_id, name)
            ids = None
            if row[4] is not None:
                sql = self._where_view(dataset_id, name).wrap(
                    "SELECT unnest(selection) AS id FROM saved_views WHERE {}"
                )
                ids = np.asarray(sql.run(cur).fetchnumpy()["id"], np.int64)
        return _view_of(row, ids)

    def rename_view(self, dataset_id: int, name: str, new_name: str) -> SavedView:
        """Give a saved view another name; refused when another view has that name already."""
        name = clean_name(name, "a view name", MAX_VIEW_NAME_CHARS)
        new = clean_name(new_name, "a view name", MAX_VIEW_NAME_CHARS)
        with self.transaction() as cur:
            if self._view_row(cur, dataset_id, name, "1") is None:
                raise self._no_view(dataset_id, name)
            if new != name and self._view_row(cur, dataset_id, new, "1") is not None:
                raise ViewExistsError(f"a view named {new!r} exists; delete or rename it first")
            (
                Sql.of("UPDATE saved_views SET name = $new, updated_at = $now WHERE ", new=new,
                       now=datetime.now(UTC).replace(tzinfo=None))
                + self._where_view(dataset_id, name)
            ).run(cur)  # fmt: skip
        return self.get_view(dataset_id, new)

    def delete_view(self, dataset_id: int, name: str) -> None:
        name = clean_name(name, "a view name", MAX_VIEW_NAME_CHARS)
        with self.transaction() as cur:
            if self._view_row(cur, dataset_id, name, "1") is None:
                raise self._no_view(dataset_id, name)
            self._where_view(dataset_id, name).wrap("DELETE FROM saved_views WHERE {}").run(cur)

    @staticmethod
    def _where_view(dataset_id: int, name: str) -> Sql:
        return Sql.of("dataset_id = $d AND name = $n", d=dataset_id, n=name)

    def _view_row(self, cur: duckdb.DuckDBPyConnection, dataset_id: int, name: str, columns: str) -> Any:
        return (f"SELECT {columns} FROM saved_views WHERE " + self._where_view(dataset_id, name)).first(cur)

    def _no_view(self, dataset_id: int, name: str) -> ViewNotFoundError:
        names = [v.name for v in self.list_views(dataset_id)]
        shown = ", ".join(map(repr, names[:10])) + (" ..." if len(names) > 10 else "")
        return ViewNotFoundError(f"no saved view named {name!r} (saved: {shown or 'none'})")


def _split_selection(view: SavedView) -> tuple[Filters, tuple[int, ...] | None]:
    """Filters without an id set, and the selection: ids given inside the filters count as the selection (both
    given: the ids in both), so a view keeps one id list and its filters stay small enough for a link."""
    flt, sel = view.filters, view.selection
    if flt.sample_ids is None:
        return flt, sel
    ids = flt.sample_ids if sel is None else tuple(int(i) for i in np.intersect1d(sel, flt.sample_ids))
    return flt.model_copy(update={"sample_ids": None}), ids


def _view_of(row: Sequence[Any], ids: np.ndarray | None = None) -> SavedView:
    name, filters, sort, sources, selected, created, updated, user = row
    return SavedView(
        name=name,
        filters=Filters.model_validate_json(filters),
        selection=None if ids is None else ids.tolist(),
        sort=Sort.model_validate_json(sort) if sort else Sort(),
        sources=None if sources is None else tuple(sources),
        selected=None if selected is None else int(selected),
        created_at=_utc(created),
        updated_at=_utc(updated),
        user=user,
    )
