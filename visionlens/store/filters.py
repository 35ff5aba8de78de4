"""Compiling the typed filter model (``visionlens.query``) into SQL over ``samples s``.

Every field name is looked up in the registry first, so only our own column names reach the SQL text; every value
is a parameter. Field conditions come from the field's kind (``kinds.py``); object conditions are subqueries over
``annotations``.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from ..errors import FilterError
from ..query import FieldFilter, Filters, LabelFilter, Sort
from .registry import Registry
from .sql import Sql, ident

STATUS_CODES = {"tp": 1, "fp": 2, "fn": 3, "ignored": 4}


class FilterCompiler(Registry):
    def _where(self, cur: duckdb.DuckDBPyConnection, dataset_id: int, filters: Filters) -> Sql:
        """The WHERE clause over ``samples s``; a lasso's id set is registered on ``cur`` as a temp table."""
        clauses = [Sql.of("s.dataset_id = $d", d=dataset_id)]
        clauses += [self._field_clause(dataset_id, flt) for flt in filters.fields]
        clauses += [self._label_clause(dataset_id, flt) for flt in filters.annotations]
        if filters.sample_ids is not None:
            name = self._temp_name()
            cur.register(name, pa.table({"id": pa.array(np.asarray(filters.sample_ids, np.int64))}))
            clauses.append(Sql(f"s.id IN (SELECT id FROM {ident(name)})"))
        if filters.finding is not None:
            clauses.append(
                Sql.of(
                    "s.id IN (SELECT m.sample_id FROM finding_members m WHERE m.dataset_id = $d AND m.finding_id = $f)",
                    d=dataset_id,
                    f=int(filters.finding),
                )
            )
        return Sql.join(clauses, " AND ")

    def _field_clause(self, dataset_id: int, flt: FieldFilter) -> Sql:
        info = self.sample_field(dataset_id, flt.field)
        return info.kind.clause(f"s.{ident(info.column)}", flt)

    def _label_clause(self, dataset_id: int, flt: LabelFilter) -> Sql:
        sub = "SELECT a.sample_id FROM annotations a WHERE " + self._object_where(dataset_id, flt)
        if flt.min_count > 1:
            sub += Sql.of(" GROUP BY a.sample_id HAVING count(*) >= $n", n=flt.min_count)
        return sub.wrap(f"s.id {'NOT IN' if flt.exclude else 'IN'} ({{}})")

    def _object_where(self, dataset_id: int, flt: LabelFilter) -> Sql:
        """The per-object conditions of ``flt`` over ``annotations a``: which boxes count (object tagging writes
        to exactly these boxes, the sample filter keeps the images that have them)."""
        sources = self.source_ids(dataset_id)
        if flt.source not in sources:
            raise FilterError(f"unknown source {flt.source!r}; this dataset has: {', '.join(sources)}")
        where = [Sql.of("a.dataset_id = $d AND a.source_id = $src", d=dataset_id, src=sources[flt.source])]
        if flt.labels is not None:
            ids = self.label_ids(dataset_id)
            unknown = [label for label in flt.labels if label not in ids]
            if unknown:
                raise FilterError(f"unknown label(s) {', '.join(map(repr, unknown))}; labels: {', '.join(ids)}")
            where.append(Sql.in_list("a.label_id", [ids[label] for label in flt.labels]))
        for column, rng in (("confidence", flt.confidence), ("area", flt.area)):
            if rng is not None and rng.min is not None:
                where.append(Sql.of(f"a.{column} >= $min", min=rng.min))
            if rng is not None and rng.max is not None:
                where.append(Sql.of(f"a.{column} <= $max", max=rng.max))
        if flt.status:
            codes = Sql.in_list("e.status", [STATUS_CODES[s] for s in flt.status])
            where.append(
                Sql.of(
                    "a.id IN (SELECT e.ann_id FROM eval_objects e WHERE e.dataset_id = $d AND e.eval_key = $key AND ",
                    d=dataset_id,
                    key=flt.evaluation or flt.source,
                )
                + codes
                + ")"
            )
        if flt.tags is not None:
            where.append(Sql.of("list_has_any(a.tags, $tags::VARCHAR[])", tags=[str(t) for t in flt.tags]))
        for field_flt in flt.fields:
            where.append(self._object_field_clause(dataset_id, field_flt))
        return Sql.join(where, " AND ")

    def _object_field_clause(self, dataset_id: int, flt: FieldFilter) -> Sql:
        info = self.object_field(dataset_id, flt.field)
        if info.builtin:  # label, source, confidence, area and iscrowd have their own LabelFilter conditions
            raise FilterError(f"object field {flt.field!r} is built in: use LabelFilter's own condition for it")
        return info.kind.clause(f"a.{ident(info.column)}", flt)

    def _order(self, dataset_id: int, sort: Sort | None) -> str:
        sort = sort or Sort()
        if sort.field == "random":
            return "hash(s.id)"
        info = self.sample_field(dataset_id, sort.field)
        direction = "DESC" if sort.descending else "ASC"
        if info.column == "id":
            return f"s.id {direction}"
        return f"s.{ident(info.column)} {direction} NULLS LAST, s.id"

    def _select_list(self, dataset_id: int) -> tuple[str, list[str]]:
        """Every sample field's column, and the user-facing names to give the result's columns afterwards: a
        field's name is data and never enters the SQL text, not even as an alias."""
        fields = [f for f in self.fields(dataset_id).values() if f.level == "sample"]
        return ", ".join(f"s.{ident(f.column)}" for f in fields), [f.name for f in fields]
