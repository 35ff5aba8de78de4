"""Reads: the dataset list, filtered counts and pages, boxes, and the sidebar's statistics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from ..errors import DatasetNotFoundError, FilterError
from ..query import Filters, Sort
from .filters import FilterCompiler
from .registry import DatasetRow
from .schema import GROUND_TRUTH
from .sql import Sql, first, ident

T = TypeVar("T")
WINDOW_IDS = 256
"""Reads of up to this many samples (a grid window) are memoised for the sessions showing the same one."""


class Queries(FilterCompiler):
    # -- datasets --------------------------------------------------------------------------------------------

    def list_datasets(self) -> list[dict[str, Any]]:
        return [dict(d) for d in self._memoised("datasets", self._list_datasets)]

    def _list_datasets(self) -> list[dict[str, Any]]:
        with self.cursor() as cur:
            rows = cur.execute(
                """SELECT d.id, d.name, d.format, d.root, d.created_at,
                          (SELECT count(*) FROM samples s WHERE s.dataset_id = d.id) AS samples,
                          (SELECT count(*) FROM annotations a WHERE a.dataset_id = d.id AND a.source_id = 0) AS gt,
                          (SELECT count(*) FROM annotations a WHERE a.dataset_id = d.id AND a.source_id > 0) AS preds,
                          (SELECT list(name ORDER BY id) FROM sources c WHERE c.dataset_id = d.id AND c.id > 0)
                   FROM datasets d ORDER BY d.name"""
            ).fetchall()
        keys = ["id", "name", "format", "root", "created_at", "samples", "gt_boxes", "pred_boxes", "models"]
        out = [dict(zip(keys, r)) for r in rows]
        for d in out:
            d["models"] = list(d["models"] or [])  # a list, not a joined string: model names may hold commas
        return out

    def get_dataset(self, name: str) -> DatasetRow:
        with self.cursor() as cur:
            row = first(
                cur.execute("SELECT id, name, format, root, created_at, info FROM datasets WHERE name = ?", [name])
            )
        if row is None:
            known = [d["name"] for d in self.list_datasets()]
            raise DatasetNotFoundError(f"no dataset named {name!r} (known: {', '.join(map(repr, known)) or 'none'})")
        return DatasetRow(*row)

    def dataset_by_id(self, dataset_id: int) -> DatasetRow:
        with self.cursor() as cur:
            row = first(
                cur.execute("SELECT id, name, format, root, created_at, info FROM datasets WHERE id = ?", [dataset_id])
            )
        if row is None:
            raise DatasetNotFoundError(f"no dataset with id {dataset_id}")
        return DatasetRow(*row)

    def has_dataset(self, name: str) -> bool:
        with self.cursor() as cur:
            return first(cur.execute("SELECT 1 FROM datasets WHERE name = ?", [name])) is not None

    def table_counts(self) -> dict[str, int]:
        with self.cursor() as cur:
            return {
                t: first(cur.execute(f"SELECT count(*) FROM {ident(t)}"))[0]
                for t in ("datasets", "samples", "annotations", "labels", "sources", "fields", "ingest_issues")
            }

    # -- samples ---------------------------------------------------------------------------------------------

    def count(self, dataset_id: int, filters: Filters) -> int:
        if filters.is_empty:
            return self._memoised(("total", dataset_id), lambda: self._count(dataset_id, filters))
        return self._count(dataset_id, filters)

    def _count(self, dataset_id: int, filters: Filters) -> int:
        with self.cursor() as cur:
            return ("SELECT count(*) FROM samples s WHERE " + self._where(cur, dataset_id, filters)).first(cur)[0]

    def page(
        self, dataset_id: int, filters: Filters, sort: Sort | None = None, limit: int = 100, offset: int = 0
    ) -> pa.Table:
        return self.page_and_count(dataset_id, filters, sort, limit, offset)[0]

    def page_and_count(
        self, dataset_id: int, filters: Filters, sort: Sort | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[pa.Table, int]:
        """One page of rows and the total count, from a single filtered scan.

        The scan keeps only (sort key, id) through the top-N and counts with a window, then the page's rows are
        read by id: carrying every column through a top-N at offset 500K, or scanning twice for the count, is what
        made this slow.
        """
        with self.cursor() as cur:
            sql = (
                "SELECT s.id, count(*) OVER () AS n FROM samples s WHERE "
                + self._where(cur, dataset_id, filters)
                + Sql.of(
                    f" ORDER BY {self._order(dataset_id, sort)} LIMIT $limit OFFSET $offset",
                    limit=int(limit),
                    offset=int(offset),
                )
            )
            res = sql.run(cur).fetchnumpy()
        ids = np.asarray(res["id"], np.int64)
        total = int(res["n"][0]) if len(ids) else self.count(dataset_id, filters)
        return self.samples_by_id(dataset_id, ids), total

    def matching_ids(self, dataset_id: int, filters: Filters, sort: Sort | None = None) -> np.ndarray:
        """Ids of every matching sample in display order: 8 MB for 1M samples, so a grid can page by slicing.

        Read-only and shared: the sessions that open the same view (the app's first page, a shared link) get one
        array until the next write, computed once."""
        if filters.sample_ids is not None:
            return self._matching_ids(dataset_id, filters, sort)
        return self._memoised(
            ("matching_ids", dataset_id, filters, sort), lambda: self._matching_ids(dataset_id, filters, sort), "large"
        )

    def _matching_ids(self, dataset_id: int, filters: Filters, sort: Sort | None) -> np.ndarray:
        with self.cursor() as cur:
            sql = (
                "SELECT s.id FROM samples s WHERE "
                + self._where(cur, dataset_id, filters)
                + f" ORDER BY {self._order(dataset_id, sort)}"
            )
            res = sql.run(cur).fetchnumpy()
        ids = np.array(res["id"], np.int64)
        ids.flags.writeable = False
        return ids

    def all_sample_ids(self) -> np.ndarray:
        with self.cursor() as cur:
            return np.asarray(cur.execute("SELECT id FROM samples ORDER BY id").fetchnumpy()["id"], np.int64)

    def samples_by_id(self, dataset_id: int, ids: Sequence[int] | np.ndarray) -> pa.Table:
        """Rows for the given ids, in the order given (a grid window is a slice of ``matching_ids``), with every
        field under its own name. A grid window's (up to ``WINDOW_IDS``) is shared by the sessions showing it."""
        ids = np.asarray(ids, np.int64)
        if len(ids) <= WINDOW_IDS:
            key = ("samples_by_id", dataset_id, ids.tobytes())
            return self._memoised(key, lambda: self._samples_by_id(dataset_id, ids), "window")
        return self._samples_by_id(dataset_id, ids)

    def _samples_by_id(self, dataset_id: int, ids: np.ndarray) -> pa.Table:
        columns, names = self._select_list(dataset_id)
        with self.cursor() as cur:
            name = self._temp_name()
            cur.register(name, pa.table({"id": pa.array(ids), "pos": pa.array(np.arange(len(ids)))}))
            table = Sql.of(
                f"SELECT {columns} FROM samples s JOIN {ident(name)} w ON s.id = w.id "
                "WHERE s.dataset_id = $d ORDER BY w.pos",
                d=dataset_id,
            ).arrow(cur)
        return table.rename_columns(names)

    def sample_files(self, dataset_id: int, first_id: int, last_id: int) -> list[tuple[int, str, str]]:
        """``(sample id, dataset root, file path)`` of the dataset's samples with ids in ``first_id .. last_id``.

        All the image routes need to find a file: ``samples_by_id`` selects every field through a temp table, several
        times the cost of this range read (ids are allocated in order, so zone maps skip all but a row group or two).
        """
        sql = Sql.of(
            "SELECT s.id, d.root, s.filepath FROM samples s JOIN datasets d ON d.id = s.dataset_id "
            "WHERE s.dataset_id = $d AND s.id BETWEEN $lo AND $hi ORDER BY s.id",
            d=dataset_id,
            lo=int(first_id),
            hi=int(last_id),
        )
        with self.cursor() as cur:
            return sql.run(cur).fetchall()

    def evaluation_image_order(self, dataset_id: int) -> np.ndarray:
        """Sample ids in the order of their source's image ids (numeric where they are numbers).

        pycocotools visits images sorted by image id, and that order breaks ties between equal scores on
        different images; following it keeps our numbers equal to its on any file, whatever order it lists images.
        """

        def load() -> np.ndarray:
            with self.cursor() as cur:
                res = cur.execute(
                    "SELECT id FROM samples WHERE dataset_id = ? "
                    "ORDER BY TRY_CAST(ext_id AS BIGINT) NULLS LAST, ext_id, id",
                    [dataset_id],
                ).fetchnumpy()
            return np.asarray(res["id"], np.int64)

        return self._memoised(("evaluation_image_order", dataset_id), load)

    def payloads(self, dataset_id: int, sample_ids: np.ndarray) -> list[dict[str, Any]]:
        """What the vector store keeps per point for filtered similarity search: dataset, split, GT labels."""
        ids = np.asarray(sample_ids, np.int64)
        with self.cursor() as cur:
            name = self._temp_name()
            cur.register(name, pa.table({"id": pa.array(ids), "pos": pa.array(np.arange(len(ids)))}))
            rows = cur.execute(
                f"""SELECT w.pos, s.split, list_sort(list_distinct(list(l.name) FILTER (WHERE l.name IS NOT NULL)))
                    FROM {ident(name)} w JOIN samples s ON s.id = w.id
                    LEFT JOIN annotations a ON a.sample_id = s.id AND a.dataset_id = s.dataset_id AND a.source_id = 0
                    LEFT JOIN labels l ON l.dataset_id = a.dataset_id AND l.id = a.label_id
                    WHERE s.dataset_id = ? GROUP BY w.pos, s.split ORDER BY w.pos""",
                [dataset_id],
            ).fetchall()
        out: list[dict[str, Any]] = [{"dataset": dataset_id, "split": None, "labels": []} for _ in range(len(ids))]
        for pos, split, labels in rows:
            out[pos] = {"dataset": dataset_id, "split": split, "labels": labels or []}
        return out

    # -- boxes -----------------------------------------------------------------------------------------------

    def annotations(
        self,
        dataset_id: int,
        sample_ids: Sequence[int] | np.ndarray,
        sources: Sequence[str] | None = None,
        evaluation: str | None = None,
    ) -> pa.Table:
        """Boxes of the given samples with label and source names resolved.

        With ``evaluation`` (a key), each box also gets its ``status`` (tp/fp/fn/ignored) and FP ``error`` from
        that evaluation: predictions of the evaluated model and ground truth; other boxes get NULL. A grid window's
        are shared as ``samples_by_id``'s.
        """
        ids = np.asarray(sample_ids, np.int64)
        if len(ids) <= WINDOW_IDS:
            key = ("annotations", dataset_id, ids.tobytes(), None if sources is None else tuple(sources), evaluation)
            return self._memoised(key, lambda: self._annotations(dataset_id, ids, sources, evaluation), "window")
        return self._annotations(dataset_id, ids, sources, evaluation)

    def _annotations(
        self, dataset_id: int, ids: np.ndarray, sources: Sequence[str] | None, evaluation: str | None
    ) -> pa.Table:
        source_clause = Sql("")
        if sources is not None:
            known = self.source_ids(dataset_id)
            source_clause = " AND " + Sql.in_list("a.source_id", [known[s] for s in sources if s in known])
        lo, hi = (int(ids.min()), int(ids.max())) if len(ids) else (0, -1)
        extra, _ = self._object_field_columns(dataset_id)
        with self.cursor() as cur:
            tmp = self._temp_name()
            cur.register(tmp, pa.table({"id": pa.array(ids)}))
            name = ident(tmp)
            sql = Sql.of(
                f"""SELECT a.id, a.sample_id, c.name AS source, l.name AS label, a.x, a.y, a.w, a.h,
                           a.confidence, a.iscrowd, a.area,
                           CASE e.status WHEN 1 THEN 'tp' WHEN 2 THEN 'fp' WHEN 3 THEN 'fn' WHEN 4 THEN 'ignored'
                           END AS status,
                           CASE e.error WHEN 1 THEN 'localization' WHEN 2 THEN 'confusion' WHEN 3 THEN 'duplicate'
                                WHEN 4 THEN 'background' END AS error,
                           e.iou AS match_iou, a.tags{extra}
                    FROM annotations a
                    JOIN labels l ON l.dataset_id = a.dataset_id AND l.id = a.label_id
                    JOIN sources c ON c.dataset_id = a.dataset_id AND c.id = a.source_id
                    LEFT JOIN (
                        -- only this window's rows of the evaluation: its table has a row per box of the dataset
                        SELECT ann_id, status, error, iou FROM eval_objects
                        WHERE eval_key = $key AND dataset_id = $d AND sample_id BETWEEN $lo AND $hi
                          AND sample_id IN (SELECT id FROM {name})
                    ) e ON e.ann_id = a.id
                    WHERE a.dataset_id = $d AND a.sample_id BETWEEN $lo AND $hi
                      AND a.sample_id IN (SELECT id FROM {name})""",
                key=evaluation or "",
                d=dataset_id,
                lo=lo,
                hi=hi,
            )
            sql += source_clause + " ORDER BY a.sample_id, a.source_id, a.confidence DESC NULLS FIRST, a.id"
            return self._named_object_fields(dataset_id, sql.arrow(cur))

    def _object_field_columns(self, dataset_id: int) -> tuple[str, dict[str, str]]:
        """The custom object fields' columns for a SELECT list over ``annotations a``, and column -> field name to
        rename them by afterwards (a field's name is data: never an alias in the SQL text)."""
        custom = [f for f in self.fields(dataset_id).values() if f.level == "annotation" and not f.builtin]
        return "".join(f", a.{ident(f.column)}" for f in custom), {f.column: f.name for f in custom}

    def _named_object_fields(self, dataset_id: int, table: pa.Table) -> pa.Table:
        _, names = self._object_field_columns(dataset_id)
        return table.rename_columns([names.get(c, c) for c in table.column_names]) if names else table

    def object_field_summary(self, dataset_id: int, name: str, max_values: int = 200) -> dict[str, Any]:
        """What a sidebar control of a custom object field needs: ``{"min", "max"}`` over the dataset's boxes for a
        range, else ``{"values"}`` (the most common ``max_values``)."""
        info = self.object_field(dataset_id, name)
        column = f"a.{ident(info.column)}"
        with self.cursor() as cur:
            if info.kind.control == "range":
                lo, hi = (
                    Sql.of(
                        f"SELECT min({column}), max({column}) FROM annotations a WHERE a.dataset_id = $d", d=dataset_id
                    )
                    .run(cur)
                    .fetchall()[0]
                )
                return {"min": lo, "max": hi}
            rows = (
                Sql.of(
                    f"SELECT {column} AS v, count(*) AS n FROM annotations a WHERE a.dataset_id = $d AND {column} IS NOT "
                    "NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $k",
                    d=dataset_id,
                    k=max_values,
                )
                .run(cur)
                .fetchall()
            )
        return {"values": [r[0] for r in rows]}

    def annotations_by_id(self, dataset_id: int, ann_ids: Sequence[int] | np.ndarray) -> pa.Table:
        """Boxes by annotation id, in the order given (ids of other datasets or unknown ids are left out): what a
        plugin computing object fields reads."""
        ids = np.asarray(ann_ids, np.int64)
        extra, _ = self._object_field_columns(dataset_id)
        with self.cursor() as cur:
            tmp = self._temp_name()
            cur.register(tmp, pa.table({"id": pa.array(ids), "pos": pa.array(np.arange(len(ids)))}))
            name = ident(tmp)
            table = Sql.of(
                f"""SELECT a.id, a.sample_id, c.name AS source, l.name AS label, a.x, a.y, a.w, a.h, a.confidence,
                           a.iscrowd, a.area, a.tags{extra}
                    FROM annotations a JOIN {name} t ON t.id = a.id
                    JOIN labels l ON l.dataset_id = a.dataset_id AND l.id = a.label_id
                    JOIN sources c ON c.dataset_id = a.dataset_id AND c.id = a.source_id
                    WHERE a.dataset_id = $d ORDER BY t.pos""",
                d=dataset_id,
            ).arrow(cur)
        return self._named_object_fields(dataset_id, table)

    def annotation_ids(self, dataset_id: int, sample_ids: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Every box id of the dataset (or of ``sample_ids``), in sample order."""
        with self.cursor() as cur:
            if sample_ids is None:
                return (
                    Sql.of("SELECT id FROM annotations WHERE dataset_id = $d ORDER BY sample_id, id", d=dataset_id)
                    .arrow(cur)["id"]
                    .to_numpy()
                )
            tmp = self._temp_name()
            cur.register(tmp, pa.table({"id": pa.array(np.asarray(sample_ids, np.int64))}))
            name = ident(tmp)
            return (
                Sql.of(
                    f"SELECT id FROM annotations WHERE dataset_id = $d AND sample_id IN (SELECT id FROM {name}) "
                    "ORDER BY sample_id, id",
                    d=dataset_id,
                )
                .arrow(cur)["id"]
                .to_numpy()
            )

    def boxes(self, dataset_id: int, source: str) -> dict[str, np.ndarray]:
        """All boxes of one source as numpy columns (float64, as the files gave them): what the evaluator reads.

        ``ext_id`` (the file's own annotation id) is a masked array: formats without ids leave it NULL, and a
        NULL must not read as id 0."""
        sources = self.source_ids(dataset_id)
        if source not in sources:
            raise FilterError(f"unknown source {source!r}; this dataset has: {', '.join(sources)}")
        with self.cursor() as cur:
            res = cur.execute(
                "SELECT id, sample_id, label_id, x, y, w, h, confidence, iscrowd, area, ext_id FROM annotations "
                "WHERE dataset_id = ? AND source_id = ? ORDER BY id",
                [dataset_id, sources[source]],
            ).fetchnumpy()
        out = {k: np.asarray(v) for k, v in res.items() if k != "ext_id"}
        out["ext_id"] = np.ma.asarray(res["ext_id"])
        return out

    # -- sidebar statistics ----------------------------------------------------------------------------------

    def value_counts(
        self, dataset_id: int, field: str, filters: Filters | None = None, limit: int = 200
    ) -> list[tuple[Any, int]]:
        """Counts per value of a categorical/bool/tags field, under the other active filters (for the sidebar).

        Shared by every session until the next write (``_memoised``): sessions opened at once ask for the same
        counts, and so do users flipping the same filter."""
        filters = (filters or Filters()).without_field(field)
        counts = self._shared_stats(
            ("value_counts", dataset_id, field, filters, int(limit)),
            filters,
            lambda: self._value_counts(dataset_id, field, filters, limit),
        )
        return list(counts)  # the caller's own list

    def _shared_stats(self, key: Any, filters: Filters, compute: Callable[[], T]) -> T:
        """``compute()`` memoised under the store's generation, unless the filters carry a selection of sample
        ids (a map lasso, a similarity search): one of those is rarely asked twice and would make a large key."""
        if filters.sample_ids is not None:
            return compute()
        return self._memoised(key, compute)

    def _value_counts(self, dataset_id: int, field: str, filters: Filters, limit: int) -> list[tuple[Any, int]]:
        info = self.sample_field(dataset_id, field)
        col = f"s.{ident(info.column)}"
        value = f"unnest({col})" if info.kind == "tags" else col
        with self.cursor() as cur:
            sql = (
                f"SELECT v, count(*) AS n FROM (SELECT {value} AS v FROM samples s WHERE "
                + self._where(cur, dataset_id, filters)
                + Sql.of(") GROUP BY v ORDER BY n DESC, v LIMIT $limit", limit=int(limit))
            )
            rows = sql.run(cur).fetchall()
        return [(r[0], r[1]) for r in rows]

    def numeric_stats(
        self, dataset_id: int, field: str, filters: Filters | None = None, bins: int = 20
    ) -> dict[str, Any]:
        """Min, max and a histogram of a numeric field under the other active filters (shared by every session
        until the next write, as ``value_counts``)."""
        filters = (filters or Filters()).without_field(field)
        stats = self._shared_stats(
            ("numeric_stats", dataset_id, field, filters, int(bins)),
            filters,
            lambda: self._numeric_stats(dataset_id, field, filters, bins),
        )
        return {**stats, "counts": list(stats["counts"]), "edges": list(stats["edges"])}  # callers' own lists

    def _numeric_stats(self, dataset_id: int, field: str, filters: Filters, bins: int) -> dict[str, Any]:
        info = self.sample_field(dataset_id, field)
        if info.kind != "numeric":
            raise FilterError(f"field {field!r} is {info.kind}, not numeric")
        col = f"s.{ident(info.column)}"
        lo, hi = self._memoised(("range", dataset_id, info.column), lambda: self._range(dataset_id, col))
        if lo is None:
            return {"min": None, "max": None, "counts": [], "edges": []}
        width = (hi - lo) / bins if hi > lo else 1.0
        with self.cursor() as cur:
            sql = (
                Sql.of(
                    f"SELECT least(CAST(floor(({col} - $lo) / $width) AS INTEGER), $last) AS b, count(*) "
                    "FROM samples s WHERE ",
                    lo=lo,
                    width=width,
                    last=bins - 1,
                )
                + self._where(cur, dataset_id, filters)
                + f" AND {col} IS NOT NULL AND isfinite({col}) GROUP BY b"
            )
            rows = sql.run(cur).fetchall()
        counts = [0] * bins
        for b, n in rows:
            counts[int(b)] = n
        return {"min": lo, "max": hi, "counts": counts, "edges": [lo + i * width for i in range(bins + 1)]}

    def _range(self, dataset_id: int, col: str) -> tuple[Any, Any]:
        """Finite min and max: one NaN or infinity in a file must not make the histogram useless."""
        with self.cursor() as cur:
            return Sql.of(
                f"SELECT min({col}), max({col}) FROM samples s WHERE s.dataset_id = $d AND isfinite({col})",
                d=dataset_id,
            ).first(cur)

    def label_counts(
        self, dataset_id: int, source: str = GROUND_TRUTH, filters: Filters | None = None
    ) -> list[tuple[str, int]]:
        """Boxes per label for one source over the filtered samples."""
        sources = self.source_ids(dataset_id)
        if source not in sources:
            raise FilterError(f"unknown source {source!r}; this dataset has: {', '.join(sources)}")
        with self.cursor() as cur:
            sql = (
                Sql.of(
                    """SELECT l.name, count(*) AS n FROM annotations a
                    JOIN labels l ON l.dataset_id = a.dataset_id AND l.id = a.label_id
                    WHERE a.dataset_id = $d AND a.source_id = $src
                      AND a.sample_id IN (SELECT s.id FROM samples s WHERE """,
                    d=dataset_id,
                    src=sources[source],
                )
                + self._where(cur, dataset_id, filters or Filters())
                + ") GROUP BY l.name ORDER BY n DESC, l.name"
            )
            rows = sql.run(cur).fetchall()
        return [(r[0], r[1]) for r in rows]
