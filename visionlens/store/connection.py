"""The DuckDB connection of a process: cursors, transactions, and memos that only a write can invalidate.

DuckDB locks a database file to one process, so a process holds one connection per file; each call takes its own
cursor so Panel sessions on different threads never share a statement.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from ..errors import StoreLockedError
from . import schema

T = TypeVar("T")
_MEMO_LIMIT = 512
LRU_LIMITS = {"large": 8, "window": 128}
"""Answers kept per kind, the least recently used dropped first: ``large`` (a result's id array, 8 MB at 1M samples:
the few views sessions are opening now), ``window`` (a grid window's rows and boxes: the pages sessions look at)."""


class Connection:
    """One DuckDB connection with a write lock, a generation counter and generation-keyed memos."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(str(self.path))
        except duckdb.IOException as e:
            if "lock" in str(e).lower():
                holder = re.search(r"\(PID \d+\)", str(e))
                raise StoreLockedError(
                    f"{self.path} is open in another process{' ' + holder.group(0) if holder else ''}. "
                    "DuckDB lets one process write a database file: stop that process (for example the running "
                    "app, whose Datasets page does the same work) or point VISIONLENS_HOME elsewhere."
                ) from None
            raise
        self._write_lock = threading.RLock()
        self._cursor_lock = threading.Lock()
        self._active = 0  # cursors in use: closing the connection under one of them is refused by DuckDB
        self._idle = threading.Condition(self._cursor_lock)
        self._cache_lock = threading.Lock()
        self._names = itertools.count()
        self.generation = 0  # bumped by every committed write, so caches of derived data know when to drop
        self._memo: dict[Any, Any] = {}  # results that only a write can change, keyed with the generation
        self._lru: dict[str, OrderedDict[Any, Any]] = {kind: OrderedDict() for kind in LRU_LIMITS}
        self.closed = False
        with self.cursor() as cur:
            schema.create(cur)

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        # DuckDB 2 refuses (rather than waits) when two threads call the shared connection at once, and making a
        # cursor is such a call: serialise only that, queries then run on their own cursors in parallel.
        with self._cursor_lock:
            cur = self._con.cursor()
            self._active += 1
        try:
            yield cur
        finally:
            with self._cursor_lock:  # closing a cursor is a call on the shared connection too
                cur.close()
                self._active -= 1
                self._idle.notify_all()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One writer at a time in this process; everything inside commits together or not at all."""
        with self._write_lock, self.cursor() as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")
            with self._cache_lock:
                self.generation += 1
                self._memo.clear()
                for kept in self._lru.values():
                    kept.clear()

    def close(self, wait_s: float = 30.0) -> None:
        """Close once the cursors in use are done (a background query of a closing app or test finishes first;
        DuckDB refuses to close a connection that one of them is using)."""
        with self._cursor_lock:
            self._idle.wait_for(lambda: self._active == 0, timeout=wait_s)
            if not self.closed:
                self._con.close()
                self.closed = True

    def _memoised(self, key: Any, compute: Callable[[], T], lru: str | None = None) -> T:
        """Answers every session asks for (registry, dataset list, field ranges, totals) until the next write.

        The generation is read before computing: an answer computed while a write commits is filed under the old
        generation, which nobody asks for again, so a stale answer can never be served as current. With ``lru``
        (a kind of ``LRU_LIMITS``) only the answers of that kind asked for last are kept.
        """
        with self._cache_lock:
            full = (self.generation, key)
            if lru is None and full in self._memo:
                return self._memo[full]
            if lru is not None and full in self._lru[lru]:
                self._lru[lru].move_to_end(full)
                return self._lru[lru][full]
        value = compute()
        with self._cache_lock:
            if full[0] != self.generation:
                return value
            if lru is None:
                if len(self._memo) > _MEMO_LIMIT:
                    self._memo.clear()
                self._memo[full] = value
                return value
            kept = self._lru[lru]
            kept[full] = value
            while len(kept) > LRU_LIMITS[lru]:
                kept.popitem(last=False)
        return value

    def _temp_name(self) -> str:
        return f"_vl_tmp_{next(self._names)}"
