"""The analytical warehouse: one table per data asset, written a whole time window per transaction."""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

import dagster as dg
import duckdb
import polars as pl

# The Dagster concurrency pool every asset that writes the warehouse runs in: production instances cap how many
# such steps run at once (infra/dagster/dagster-postgres.yaml, infra/helm/values.yaml).
WAREHOUSE_WRITERS = "warehouse_writers"

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def ident(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a valid table or column name (lowercase letters, digits, underscores)")
    return f'"{name}"'


def rows_outside_window(frame: pl.DataFrame, start: datetime, end: datetime, time_column: str) -> pl.DataFrame:
    return frame.filter((pl.col(time_column) < start) | (pl.col(time_column) >= end) | pl.col(time_column).is_null())


Combine = Literal["replace", "keep", "min", "max", "sum", "union"]


@dataclass(frozen=True)
class Upsert:
    """Rows keyed by `key`: new keys are inserted; for a key already present each column is combined with the stored
    value by its rule (default "replace": the incoming value wins). "keep": the stored value wins; "min"/"max"/"sum"
    ignore nulls; "union": sorted distinct elements of both lists. Incoming keys must be unique."""

    frame: pl.DataFrame
    key: tuple[str, ...]
    combine: Mapping[str, Combine] = field(default_factory=dict)


def check_windows(frames: Mapping[str, pl.DataFrame], start: datetime, end: datetime, time_column: str) -> None:
    """Refuse a window write before anything is touched: every row must lie in [start, end)."""
    if end <= start:
        raise ValueError(f"empty or inverted window: {start.isoformat()} .. {end.isoformat()}")
    for table, frame in frames.items():
        ident(table)
        if time_column not in frame.columns:
            raise ValueError(f"{table}: frame has no {time_column!r} column")
        outside = rows_outside_window(frame, start, end, time_column)
        if outside.height:
            raise ValueError(
                f"{table}: {outside.height} rows fall outside the window being replaced "
                f"[{start.isoformat()}, {end.isoformat()}), e.g. {outside.head(3).to_dicts()}"
            )


def check_upserts(tables: Mapping[str, Upsert]) -> None:
    for table, change in tables.items():
        ident(table)
        missing = [c for c in (*change.key, *change.combine) if c not in change.frame.columns]
        if missing:
            raise ValueError(f"{table}: upsert names columns the rows lack: {missing}")
        duplicated = change.frame.select(change.key).is_duplicated()
        if duplicated.any():
            raise ValueError(
                f"{table}: {int(duplicated.sum())} incoming rows share a key {change.key}; merge them first"
            )


def type_null_columns(frame: pl.DataFrame, stored: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """A column with no values yet has no type, and a database would guess one (DuckDB: INTEGER) that the first
    real value then contradicts. Such a column takes the table's type where the table has it, else text."""
    untyped = [c for c, dtype in frame.schema.items() if dtype == pl.Null]
    return frame.with_columns(pl.col(c).cast(stored.get(c, pl.String)) for c in untyped) if untyped else frame


def type_change_error(table: str, column: str, stored: str, incoming: str) -> ValueError:
    return ValueError(
        f"table {table}: column {column} is {stored} in the warehouse but {incoming} in the new rows; the table "
        f"was written by an older version. Re-materialize into a fresh warehouse, or migrate the column "
        f"(ALTER TABLE {table} ALTER {column} TYPE {incoming})"
    )


class Warehouse(dg.ConfigurableResource):
    """Where assets keep their tables. Writes replace a whole [start, end) window atomically, so re-running a
    range, however it is chunked, never duplicates rows and a crash never leaves half a window behind."""

    def replace_windows(
        self,
        frames: dict[str, pl.DataFrame],
        start: datetime,
        end: datetime,
        time_column: str = "ts",
        exact_columns: bool = False,
    ) -> None:
        """Replace [start, end) in every table of `frames` in one transaction: all of them or none.

        New columns are added (older rows read NULL). With `exact_columns`, columns the frames no longer carry are
        dropped too, so the table's columns are exactly the frame's (the feature table follows its catalog)."""
        raise NotImplementedError

    def replace_window(
        self,
        table: str,
        frame: pl.DataFrame,
        start: datetime,
        end: datetime,
        time_column: str = "ts",
        exact_columns: bool = False,
    ) -> int:
        self.replace_windows({table: frame}, start, end, time_column, exact_columns)
        return frame.height

    def upsert(self, tables: Mapping[str, Upsert]) -> None:
        """Apply every upsert in one transaction: all of them or none."""
        raise NotImplementedError

    def read_window(
        self,
        table: str,
        start: datetime,
        end: datetime,
        time_column: str = "ts",
        where: str | None = None,
        params: Sequence[object] = (),
    ) -> pl.DataFrame:
        col = ident(time_column)
        clause = f" AND ({where})" if where else ""
        return self.query(
            f"SELECT * FROM {ident(table)} WHERE {col} >= ? AND {col} < ?{clause} ORDER BY {col}",
            [start, end, *params],
        )

    def query(self, sql: str, params: Sequence[object] = ()) -> pl.DataFrame:
        """Run SQL with `?` placeholders; keep it to what DuckDB and PostgreSQL both read."""
        raise NotImplementedError

    def read_keys(self, table: str, column: str, values: Sequence[object]) -> pl.DataFrame:
        """The rows of `table` whose `column` is one of `values`."""
        raise NotImplementedError

    def table_exists(self, table: str) -> bool:
        raise NotImplementedError


_WRITE_LOCKS: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)


# How long a process keeps its DuckDB connection open after the last use. Opening one reads the catalog (the feature
# table is ~100 columns wide): 10-20 ms, paid hundreds of times a replayed day when every query opened its own.
LINGER_SECONDS = 0.025


class _SharedConnection:
    """One process's connection to one DuckDB file, used by its threads in turn, open while queries follow each
    other and closed once idle for `LINGER_SECONDS`, so another process (DuckDB admits one at a time) gets its turn."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.con: duckdb.DuckDBPyConnection | None = None
        self.identity: tuple[int, int] | None = None  # the file it was opened on (a test may replace the file)
        self.users = 0
        self.uses = 0

    def acquire(self, path: str, open_connection) -> duckdb.DuckDBPyConnection:
        self.lock.acquire()
        try:
            if self.con is not None and _file_identity(path) != self.identity:
                self._close()
            if self.con is None:
                self.con = open_connection()
                self.identity = _file_identity(path)
        except BaseException:
            self.lock.release()
            raise
        self.users += 1
        return self.con

    def release(self) -> None:
        self.users -= 1
        self.uses += 1
        if self.users == 0:
            closer = threading.Timer(LINGER_SECONDS, self._close_if_idle, args=(self.uses,))
            closer.daemon = True
            closer.start()
        self.lock.release()

    def _close_if_idle(self, uses: int) -> None:
        with self.lock:
            if self.users == 0 and self.uses == uses:
                self._close()

    def _close(self) -> None:
        if self.con is not None:
            self.con.close()
        self.con, self.identity = None, None


def _file_identity(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


_SHARED: defaultdict[str, _SharedConnection] = defaultdict(_SharedConnection)
# A forked child must not use its parent's connection (nor wait on a lock a parent thread held): it opens its own.
os.register_at_fork(after_in_child=_SHARED.clear)


class DuckDBWarehouse(Warehouse):
    """A DuckDB file on local disk: the embedded default.

    DuckDB admits one writing process at a time. A process shares one connection among its threads and closes it
    when idle for a few milliseconds; opening one waits (up to `lock_timeout_seconds`) for another process to let go
    rather than failing a run at the first collision. The API never opens this file: it serves from snapshots the
    assets publish to the object store.
    """

    path: str
    lock_timeout_seconds: float = 120.0

    @contextmanager
    def _writing(self) -> Iterator[duckdb.DuckDBPyConnection]:
        # Threads of one process share one DuckDB database, whose optimistic transactions abort on a conflicting
        # write (two first writes creating one table, say) instead of waiting; writers here queue instead.
        with _WRITE_LOCKS[str(Path(self.path).resolve())], self.connect() as con:
            yield con

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        if read_only:
            con = self._open(read_only=True)
            try:
                yield con
            finally:
                con.close()
            return
        shared = _SHARED[str(Path(self.path).resolve())]
        con = shared.acquire(self.path, self._open)
        try:
            yield con
        finally:
            shared.release()

    def _open(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_seconds
        delay = 0.005
        while True:
            try:
                con = duckdb.connect(self.path, read_only=read_only)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                # Short waits: the other process holds the file for a burst of queries, then lets go.
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.2)
        con.execute("SET TimeZone = 'UTC'")
        return con

    def table_exists(self, table: str) -> bool:
        with self.connect() as con:
            return _table_exists(con, table)

    def replace_windows(
        self,
        frames: dict[str, pl.DataFrame],
        start: datetime,
        end: datetime,
        time_column: str = "ts",
        exact_columns: bool = False,
    ) -> None:
        check_windows(frames, start, end, time_column)
        with self._writing() as con:
            con.begin()
            try:
                for table, frame in frames.items():
                    _replace(con, table, frame, start, end, time_column, exact_columns)
                con.commit()
            except BaseException:
                con.rollback()
                raise

    def upsert(self, tables: Mapping[str, Upsert]) -> None:
        check_upserts(tables)
        with self._writing() as con:
            con.begin()
            try:
                for table, change in tables.items():
                    if change.frame.height:
                        _upsert(con, table, change)
                con.commit()
            except BaseException:
                con.rollback()
                raise

    def query(self, sql: str, params: Sequence[object] = ()) -> pl.DataFrame:
        with self.connect() as con:
            return con.execute(sql, list(params)).pl()

    def read_keys(self, table: str, column: str, values: Sequence[object]) -> pl.DataFrame:
        return self.query(f"SELECT * FROM {ident(table)} WHERE list_contains(?, {ident(column)})", [list(values)])


def _replace(
    con: duckdb.DuckDBPyConnection,
    table: str,
    frame: pl.DataFrame,
    start: datetime,
    end: datetime,
    time_column: str,
    exact_columns: bool,
) -> None:
    name, column = ident(table), ident(time_column)
    con.register("incoming", _typed(con, table, frame).to_arrow())
    try:
        if not _table_exists(con, table):
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM incoming LIMIT 0")
        else:
            _reconcile_columns(con, table)
            if exact_columns:
                for (stale,) in con.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = 'main' "
                    "AND table_name = ? AND NOT list_contains(?, column_name)",
                    [table, frame.columns],
                ).fetchall():
                    con.execute(f"ALTER TABLE {name} DROP COLUMN {ident(stale)}")
        con.execute(f"DELETE FROM {name} WHERE {column} >= ? AND {column} < ?", [start, end])
        con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM incoming")
    finally:
        con.unregister("incoming")


_COMBINE_SQL = {
    "replace": "i.{c}",
    "keep": "coalesce(t.{c}, i.{c})",
    "min": "least(t.{c}, i.{c})",  # DuckDB's least/greatest skip nulls
    "max": "greatest(t.{c}, i.{c})",
    "sum": "coalesce(t.{c}, 0) + coalesce(i.{c}, 0)",
    "union": "list_sort(list_distinct(list_concat(coalesce(t.{c}, []), coalesce(i.{c}, []))))",
}


def _upsert(con: duckdb.DuckDBPyConnection, table: str, change: Upsert) -> None:
    name = ident(table)
    con.register("incoming", _typed(con, table, change.frame).to_arrow())
    try:
        if not _table_exists(con, table):
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM incoming LIMIT 0")
        else:
            _reconcile_columns(con, table)
        key_join = " AND ".join(f"t.{ident(k)} = i.{ident(k)}" for k in change.key)
        columns = [
            f"{_COMBINE_SQL[change.combine.get(c, 'replace')].format(c=ident(c))} AS {ident(c)}"
            if c not in change.key
            else f"i.{ident(c)} AS {ident(c)}"
            for c in change.frame.columns
        ]
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE upserted AS SELECT {', '.join(columns)} "
            f"FROM incoming i LEFT JOIN {name} t ON {key_join}"
        )
        keys = ", ".join(ident(k) for k in change.key)
        con.execute(f"DELETE FROM {name} WHERE ({keys}) IN (SELECT ({keys}) FROM incoming)")
        con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM upserted")
        con.execute("DROP TABLE upserted")
    finally:
        con.unregister("incoming")


def _typed(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> pl.DataFrame:
    if pl.Null not in frame.dtypes:
        return frame
    stored = con.execute(f"SELECT * FROM {ident(table)} LIMIT 0").pl().schema if _table_exists(con, table) else {}
    return type_null_columns(frame, stored)


def _table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' AND table_name = ?", [table]
    ).fetchone()
    return bool(found and found[0])


def _reconcile_columns(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """New columns (a grown feature set) are added, existing rows reading NULL for them. A column whose type
    changed is refused: an implicit cast (DECIMAL into DOUBLE, say) would silently lose exactness."""
    existing = {row[0]: row[1] for row in con.execute(f"DESCRIBE {ident(table)}").fetchall()}
    for column, column_type, *_ in con.execute("DESCRIBE incoming").fetchall():
        if column not in existing:
            con.execute(f"ALTER TABLE {ident(table)} ADD COLUMN {ident(column)} {column_type}")
        elif existing[column] != column_type and column_type != "NULL":
            raise type_change_error(table, column, existing[column], column_type)
