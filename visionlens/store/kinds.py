"""Field kinds: one class per kind of sample field, holding everything that differs between kinds.

A kind knows its DuckDB type, whether a column of raw values looks like it, how to turn values into Arrow, how to
coerce a value typed by a user, the filter clause it compiles to, how to say that filter in words, and which
sidebar control shows it. Adding a kind is adding a class here, not another branch in the store and the views.

Kinds are ``str`` subclasses whose value is their name ("numeric", ...), so a kind stored in the registry table,
sent to the browser or compared with a name reads as that name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import pyarrow as pa

from ..errors import FilterError
from ..query import FieldFilter
from .sql import Sql

CATEGORICAL_MAX_DISTINCT = 1000


class FieldKind(str):
    """Base: an any-of filter over scalar values (``IN``), with missing values matched by ``None``."""

    sql_type: ClassVar[str] = "VARCHAR"
    control: ClassVar[str] = "values"
    """Sidebar control: ``values`` (multi-select with counts), ``bool`` (yes/no/any), ``range`` (slider and
    histogram) or ``none`` (not shown)."""

    def matches(self, present: Sequence[Any]) -> bool:
        """Whether these non-null raw values (from a file) look like this kind."""
        raise NotImplementedError

    def to_arrow(self, values: Sequence[Any]) -> pa.Array:
        return pa.array([None if v is None else str(v) for v in values], pa.string())

    def coerce(self, value: Any, field: str) -> Any:
        return str(value)

    def clause(self, column: str, flt: FieldFilter) -> Sql:
        """The WHERE fragment for ``flt`` on ``column`` (a quoted column of ours)."""
        parts: list[Sql] = []
        if flt.values is not None:
            parts.append(self._values_clause(column, flt))
        if flt.range is not None:
            parts.append(self._range_clause(column, flt))
        if not parts:
            return Sql("true")
        sql = Sql.join(parts, " AND ").wrap("({})")
        return sql.wrap("({} IS NOT TRUE)") if flt.exclude else sql

    def _values_clause(self, column: str, flt: FieldFilter) -> Sql:
        values = [self.coerce(v, flt.field) for v in flt.values or () if v is not None]
        options = [Sql.in_list(column, values)] if values else []
        if None in (flt.values or ()):
            options.append(Sql(f"{column} IS NULL"))
        return Sql.join(options, " OR ").wrap("({})") if options else Sql("false")

    def _range_clause(self, column: str, flt: FieldFilter) -> Sql:
        raise FilterError(f"field {flt.field!r} is {self}, a range needs a numeric field")

    def describe(self, flt: FieldFilter) -> str:
        """The filter in words, for titles, findings and tooltips (plain text: callers escape it for HTML)."""
        text = " and ".join(self._describe_parts(flt)) or f"{flt.field} (any)"
        return f"not ({text})" if flt.exclude else text

    def _describe_parts(self, flt: FieldFilter) -> list[str]:
        if flt.values is None:
            return []
        shown = ["(missing)" if v is None else str(v) for v in flt.values]
        return [f"{flt.field} is {' or '.join(shown)}" if shown else f"{flt.field} is nothing"]


class Categorical(FieldKind):
    def matches(self, present: Sequence[Any]) -> bool:
        return len(set(map(str, present))) <= CATEGORICAL_MAX_DISTINCT


class Text(FieldKind):
    """Free text (file paths, captions): too many distinct values for a multi-select."""

    control = "none"

    def matches(self, present: Sequence[Any]) -> bool:
        return True


class Numeric(FieldKind):
    sql_type = "DOUBLE"
    control = "range"

    def matches(self, present: Sequence[Any]) -> bool:
        return bool(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)

    def to_arrow(self, values: Sequence[Any]) -> pa.Array:
        return pa.array([None if v is None else float(v) for v in values], pa.float64())

    def coerce(self, value: Any, field: str) -> float:
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise FilterError(f"field {field!r} is numeric; {value!r} is not a number") from None
        if math.isnan(out):
            raise FilterError(f"field {field!r}: NaN matches nothing; filter on missing values with None")
        return out

    def _range_clause(self, column: str, flt: FieldFilter) -> Sql:
        rng = flt.range
        parts = []
        if rng is not None and rng.min is not None:
            parts.append(Sql.of(f"{column} >= $min", min=self.coerce(rng.min, flt.field)))
        if rng is not None and rng.max is not None:
            parts.append(Sql.of(f"{column} <= $max", max=self.coerce(rng.max, flt.field)))
        return Sql.join(parts, " AND ") if parts else Sql("true")

    def _describe_parts(self, flt: FieldFilter) -> list[str]:
        out = super()._describe_parts(flt)
        rng = flt.range
        if rng is not None and rng.min is not None and rng.max is not None:
            out.append(f"{rng.min:g} ≤ {flt.field} ≤ {rng.max:g}")
        elif rng is not None and rng.min is not None:
            out.append(f"{flt.field} ≥ {rng.min:g}")
        elif rng is not None and rng.max is not None:
            out.append(f"{flt.field} ≤ {rng.max:g}")
        return out


class Bool(FieldKind):
    sql_type = "BOOLEAN"
    control = "bool"

    def matches(self, present: Sequence[Any]) -> bool:
        return bool(present) and all(isinstance(v, bool) for v in present)

    def to_arrow(self, values: Sequence[Any]) -> pa.Array:
        return pa.array(values, pa.bool_())

    def coerce(self, value: Any, field: str) -> bool:
        if isinstance(value, str):
            if value.lower() in ("true", "1", "yes"):
                return True
            if value.lower() in ("false", "0", "no"):
                return False
            raise FilterError(f"field {field!r} is true/false; {value!r} is neither")
        return bool(value)

    def _describe_parts(self, flt: FieldFilter) -> list[str]:
        if flt.values is None:
            return []
        shown = ["missing" if v is None else ("yes" if self.coerce(v, flt.field) else "no") for v in flt.values]
        return [f"{flt.field} is {' or '.join(shown)}"]


class Tags(FieldKind):
    """A list of strings per sample; a filter keeps samples carrying any of the given tags."""

    sql_type = "VARCHAR[]"

    def matches(self, present: Sequence[Any]) -> bool:
        return bool(present) and all(isinstance(v, (list, tuple)) for v in present)

    def to_arrow(self, values: Sequence[Any]) -> pa.Array:
        return pa.array([None if v is None else [str(x) for x in v] for v in values], pa.list_(pa.string()))

    def _values_clause(self, column: str, flt: FieldFilter) -> Sql:
        return Sql.of(
            f"list_has_any({column}, $tags::VARCHAR[])", tags=[str(v) for v in flt.values or () if v is not None]
        )

    def _describe_parts(self, flt: FieldFilter) -> list[str]:
        if flt.values is None:
            return []
        return [f"{flt.field} has {' or '.join(str(v) for v in flt.values)}"]


NUMERIC = Numeric("numeric")
CATEGORICAL = Categorical("categorical")
TEXT = Text("text")
BOOL = Bool("bool")
TAGS = Tags("tags")

KINDS: dict[str, FieldKind] = {k: k for k in (NUMERIC, CATEGORICAL, TEXT, BOOL, TAGS)}
_INFERENCE_ORDER: tuple[FieldKind, ...] = (BOOL, NUMERIC, TAGS, CATEGORICAL, TEXT)


def kind_named(name: str) -> FieldKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown field kind {name!r}; kinds: {', '.join(KINDS)}") from None


def infer_kind(values: Sequence[Any]) -> FieldKind:
    """The first kind (most specific first) whose test the non-null values pass."""
    present = [v for v in values if v is not None]
    return next(k for k in _INFERENCE_ORDER if k.matches(present))
