"""The one SQL builder: a statement's text and its parameters travel together as an ``Sql`` value.

Fragments are written with named parameters (``$lo``), which keeps a clause readable where it is written, and
are composed into one statement whose parameters are positional in text order. Composition can therefore never
mix up whose value belongs to which placeholder, and two fragments may reuse a name (``$min`` in two filters)
without clashing. Identifiers never come from user text: only our own column names (registry ids) pass
through ``ident``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

_NAMED = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class Sql:
    """SQL text with ``?`` placeholders and the values that fill them, in order."""

    text: str
    params: tuple[Any, ...] = ()

    @classmethod
    def of(cls, text: str, **named: Any) -> Sql:
        """A fragment from text with ``$name`` placeholders; every name must be given, none may be left over."""
        order: list[Any] = []
        used: set[str] = set()

        def take(m: re.Match[str]) -> str:
            key = m.group(1)
            if key not in named:
                raise KeyError(f"SQL parameter ${key} was not given a value")
            used.add(key)
            order.append(named[key])
            return "?"

        out = _NAMED.sub(take, text)
        unused = set(named) - used
        if unused:
            raise KeyError(f"SQL parameters {sorted(unused)} do not appear in {text!r}")
        return cls(out, tuple(order))

    def __add__(self, other: Sql | str) -> Sql:
        if isinstance(other, str):
            return Sql(self.text + other, self.params)
        return Sql(self.text + other.text, self.params + other.params)

    def __radd__(self, other: str) -> Sql:
        return Sql(other + self.text, self.params)

    def wrap(self, template: str) -> Sql:
        """Put this fragment where ``{}`` stands in a parameterless template, e.g. ``"NOT ({})"``."""
        before, after = template.split("{}")
        return Sql(before + self.text + after, self.params)

    @staticmethod
    def join(parts: Iterable[Sql], sep: str) -> Sql:
        parts = list(parts)
        return Sql(sep.join(p.text for p in parts), tuple(v for p in parts for v in p.params))

    @staticmethod
    def in_list(column: str, values: Sequence[Any]) -> Sql:
        """``column IN (?, ?, ...)``; an empty list matches nothing (``IN ()`` is not SQL)."""
        if not values:
            return Sql("false")
        return Sql(f"{column} IN ({', '.join('?' * len(values))})", tuple(values))

    def run(self, cur: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        return cur.execute(self.text, list(self.params))

    def first(self, cur: duckdb.DuckDBPyConnection) -> Any:
        return first(self.run(cur))

    def arrow(self, cur: duckdb.DuckDBPyConnection) -> pa.Table:
        """Straight into Arrow through a relation, which avoids the extra copy of a DB-API result."""
        rel = cur.sql(self.text, params=list(self.params) or None)
        return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()


TRUE = Sql("true")


def ident(identifier: str) -> str:
    """A quoted identifier. Only the store's own names (``f_12``, built-in columns, temp tables) come here."""
    return '"' + identifier.replace('"', '""') + '"'


def first(result: duckdb.DuckDBPyConnection) -> Any:
    """First row or None, reading the result to its end: DuckDB 2 refuses other work on a cursor whose result
    was only partly fetched."""
    rows = result.fetchall()
    return rows[0] if rows else None
