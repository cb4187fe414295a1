"""The production warehouse: the same tables in PostgreSQL, moved in and out as Arrow through ADBC.

Why PostgreSQL rather than Parquet datasets on S3: every asset write here is a transaction over one or more tables
(`prices` with `prices_rejected`, `news_items` with the source ledger, a decision with the promotion record), and
a window replace must be all-or-nothing while other runs read and write neighbouring windows. Postgres gives that
(and many concurrent writers) out of the box; object-store datasets would need a table format and a catalog to get
the same. Our tables are narrow and hourly (tens of thousands of rows a year per symbol), far below the size where
a columnar lake pays for itself. The run storage already needs a Postgres server in production, so this adds none.

ADBC (Arrow Database Connectivity) ingests a polars frame by binary COPY and returns query results as Arrow: no
per-row Python conversion either way, and list columns (`symbols`, `sources`) map to Postgres arrays and back.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

import polars as pl
import pyarrow as pa

from alphapulse_assets.storage.errors import StorageUnavailable
from alphapulse_assets.storage.warehouse import (
    Upsert,
    Warehouse,
    check_upserts,
    check_windows,
    ident,
    type_change_error,
    type_null_columns,
)

_COMBINE_SQL = {
    "replace": "i.{c}",
    "keep": "coalesce(t.{c}, i.{c})",
    "min": "least(t.{c}, i.{c})",  # Postgres' least/greatest skip nulls, as DuckDB's do
    "max": "greatest(t.{c}, i.{c})",
    "sum": "coalesce(t.{c}, 0) + coalesce(i.{c}, 0)",
    "union": "array(SELECT DISTINCT e FROM unnest(coalesce(t.{c}, '{{}}') || coalesce(i.{c}, '{{}}')) AS e ORDER BY e)",
}
_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"])*\"|\?")


def to_dollar_params(sql: str) -> str:
    """`?` placeholders (DuckDB's, and what asset code writes) as Postgres' `$1, $2, ...`; quoted text is kept."""
    count = 0

    def number(match: re.Match) -> str:
        nonlocal count
        if match.group(0) != "?":
            return match.group(0)
        count += 1
        return f"${count}"

    return _PLACEHOLDER.sub(number, sql)


def redact(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        parsed = parsed._replace(netloc=parsed.netloc.replace(f":{parsed.password}@", ":***@"))
    return urlunparse(parsed)


class PostgresWarehouse(Warehouse):
    """Tables in a PostgreSQL database (`url`: postgresql://user@host:5432/database; libpq takes the password from
    PGPASSWORD or ~/.pgpass, which keeps it out of the resource config the Dagster UI shows).

    Writers of one table are serialised by a transaction-scoped advisory lock, so concurrent runs replacing
    overlapping windows (or creating a table for the first time) queue instead of interleaving; readers never wait.
    """

    url: str
    connect_timeout_seconds: int = 10

    def _dsn(self) -> str:
        parsed = urlparse(self.url)
        if parsed.scheme not in ("postgresql", "postgres"):
            raise ValueError(f"warehouse URL {redact(self.url)!r}: expected postgresql://user@host:5432/database")
        query = dict(parse_qsl(parsed.query))
        query.setdefault("connect_timeout", str(self.connect_timeout_seconds))
        query.setdefault("application_name", "alphapulse")
        return urlunparse(parsed._replace(query=urlencode(query)))

    @contextmanager
    def connect(self) -> Iterator:
        """A connection in a transaction; the caller commits, or nothing it did is kept."""
        import adbc_driver_postgresql.dbapi as dbapi

        try:
            con = dbapi.connect(self._dsn())
        except dbapi.Error as exc:
            raise StorageUnavailable(f"warehouse {redact(self.url)} is unreachable: {exc}") from exc
        try:
            yield con
        finally:
            con.close()  # without a commit, the server rolls the transaction back

    def table_exists(self, table: str) -> bool:
        with self.connect() as con, con.cursor() as cur:
            return _table_exists(cur, table)

    def replace_windows(
        self,
        frames: dict[str, pl.DataFrame],
        start: datetime,
        end: datetime,
        time_column: str = "ts",
        exact_columns: bool = False,
    ) -> None:
        check_windows(frames, start, end, time_column)
        with self.connect() as con, con.cursor() as cur:
            _lock_tables(cur, frames)
            for table, frame in frames.items():
                staged = _stage(cur, table, frame)
                _prepare_table(cur, table, staged, frame.columns, exact_columns)
                column = ident(time_column)
                cur.execute(f"DELETE FROM {ident(table)} WHERE {column} >= $1 AND {column} < $2", [start, end])
                _insert(cur, table, staged, frame.columns)
            con.commit()

    def upsert(self, tables: Mapping[str, Upsert]) -> None:
        check_upserts(tables)
        changes = {table: change for table, change in tables.items() if change.frame.height}
        if not changes:
            return
        with self.connect() as con, con.cursor() as cur:
            _lock_tables(cur, changes)
            for table, change in changes.items():
                staged = _stage(cur, table, change.frame)
                _prepare_table(cur, table, staged, change.frame.columns, exact_columns=False)
                key_join = " AND ".join(f"t.{ident(k)} = i.{ident(k)}" for k in change.key)
                columns = [
                    f"i.{ident(c)}"
                    if c in change.key
                    else _COMBINE_SQL[change.combine.get(c, "replace")].format(c=ident(c))
                    for c in change.frame.columns
                ]
                merged = ident(f"merged_{table}")
                cur.execute(
                    f"CREATE TEMP TABLE {merged} AS SELECT "
                    + ", ".join(f"{expr} AS {ident(c)}" for expr, c in zip(columns, change.frame.columns, strict=True))
                    + f" FROM {staged} i LEFT JOIN {ident(table)} t ON {key_join}"
                )
                keys = ", ".join(ident(k) for k in change.key)
                cur.execute(f"DELETE FROM {ident(table)} WHERE ({keys}) IN (SELECT {keys} FROM {staged})")
                _insert(cur, table, merged, change.frame.columns)
            con.commit()

    def query(self, sql: str, params: Sequence[object] = ()) -> pl.DataFrame:
        with self.connect() as con, con.cursor() as cur:
            cur.execute(to_dollar_params(sql), list(params) or None)
            result = frame_from_arrow(cur.fetch_arrow_table())
            con.commit()
        return result

    def read_keys(self, table: str, column: str, values: Sequence[object]) -> pl.DataFrame:
        if not values:
            return self.query(f"SELECT * FROM {ident(table)} WHERE false")
        with self.connect() as con, con.cursor() as cur:
            staged = _stage(cur, "keys", pl.DataFrame({"value": list(values)}))
            cur.execute(f"SELECT * FROM {ident(table)} WHERE {ident(column)} IN (SELECT value FROM {staged})")
            result = frame_from_arrow(cur.fetch_arrow_table())
            con.commit()
        return result


def _table_exists(cur, table: str) -> bool:
    cur.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1",
        [table],
    )
    return bool(cur.fetchone()[0])


def _lock_tables(cur, tables: Mapping[str, object]) -> None:
    # Sorted, so two transactions writing the same tables take their locks in the same order and cannot deadlock.
    for table in sorted(tables):
        cur.execute("SELECT pg_advisory_xact_lock(hashtext($1))", [f"alphapulse.warehouse.{table}"])


def _stage(cur, table: str, frame: pl.DataFrame) -> str:
    """Copy `frame` into a temporary table (binary COPY); its quoted name. Connections live for one operation,
    so the temporary table goes with it."""
    name = f"incoming_{table}"
    if pl.Null in frame.dtypes:
        frame = type_null_columns(frame, _stored_schema(cur, table))
    cur.adbc_ingest(name, frame.to_arrow(), mode="create", temporary=True)
    # COPY creates NUMERIC without precision and scale; prices are exact decimals, so keep both.
    for column, dtype in frame.schema.items():
        if isinstance(dtype, pl.Decimal):
            cur.execute(
                f"ALTER TABLE {ident(name)} ALTER COLUMN {ident(column)} TYPE numeric({dtype.precision}, {dtype.scale})"
            )
    return ident(name)


def frame_from_arrow(table: pa.Table) -> pl.DataFrame:
    """ADBC hands NUMERIC over as text (an opaque extension type); they become polars Decimals of the column's
    declared precision and scale, as DuckDB returns them (an unconstrained NUMERIC, such as a sum, infers it)."""
    decimals = {}
    for i, field in enumerate(table.schema):
        if not isinstance(field.type, pa.BaseExtensionType):
            continue
        metadata = field.metadata or {}
        if metadata.get(b"POSTGRESQL:type") != b"numeric":
            raise TypeError(f"column {field.name}: PostgreSQL type {field.type} has no polars equivalent")
        typmod = int(metadata.get(b"POSTGRESQL:typmod", b"-1"))
        text = table.column(i).cast(field.type.storage_type)
        if typmod >= 4:
            decimals[field.name] = (((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF)
        else:
            decimals[field.name] = (38, max((len(v.partition(".")[2]) for v in text.to_pylist() if v), default=0))
        table = table.set_column(i, pa.field(field.name, pa.string()), text)
    return pl.from_arrow(table).with_columns(pl.col(name).cast(pl.Decimal(*shape)) for name, shape in decimals.items())


def _stored_schema(cur, table: str) -> dict[str, pl.DataType]:
    if not _table_exists(cur, table):
        return {}
    cur.execute(f"SELECT * FROM {ident(table)} LIMIT 0")
    return dict(frame_from_arrow(cur.fetch_arrow_table()).schema)


def _column_types(cur, relation: str) -> dict[str, str]:
    cur.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        [relation],
    )
    return dict(cur.fetchall())


def _prepare_table(cur, table: str, staged: str, columns: Sequence[str], exact_columns: bool) -> None:
    """Create the table from the staged rows' types, or reconcile: new columns are added (older rows read NULL),
    a changed type is refused, and with `exact_columns` columns the rows no longer carry are dropped."""
    if not _table_exists(cur, table):
        cur.execute(f"CREATE TABLE {ident(table)} AS SELECT * FROM {staged} WITH NO DATA")
        return
    existing = _column_types(cur, ident(table))
    incoming = _column_types(cur, staged)
    for column, column_type in incoming.items():
        if column not in existing:
            cur.execute(f"ALTER TABLE {ident(table)} ADD COLUMN {ident(column)} {column_type}")
        elif existing[column] != column_type:
            raise type_change_error(table, column, existing[column], column_type)
    if exact_columns:
        for stale in set(existing) - set(columns):
            cur.execute(f"ALTER TABLE {ident(table)} DROP COLUMN {ident(stale)}")


def _insert(cur, table: str, source: str, columns: Sequence[str]) -> None:
    names = ", ".join(ident(c) for c in columns)
    cur.execute(f"INSERT INTO {ident(table)} ({names}) SELECT {names} FROM {source}")
