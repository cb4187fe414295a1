"""A faster SQLite event log for the embedded Dagster instance, plugged in through `dagster.yaml`.

Dagster's `SqliteEventLogStorage` pays for every event in full: a new SQLAlchemy engine (NullPool) per write, a
transaction per shard per event, and SQLite's default rollback journal with a full sync on each commit. An hourly
single-run backfill writes two events per asset partition (planned, then materialized), so that bookkeeping,
not our compute, sets the cost of a long backfill.

This subclass keeps the schema and every read path of the original and changes four things:
- one cached engine per shard (the run shards of a long-lived webserver or daemon are kept in a small LRU);
- WAL journal with `synchronous=NORMAL`: a committed event survives a crash of the process (kill -9); only a
  power loss can drop the last commits, which for an event log is a fair price, and readers never block the writer;
- `store_event_batch` writes a whole batch of asset events in one transaction per shard. Dagster hands batches
  to the storage only when `DAGSTER_EVENT_BATCH_SIZE` is set (definitions.py sets it); without it this class still
  gains from the first two;
- planned check evaluations of a long range are inserted with executemany, not one statement with a row per
  partition (which SQLite refuses beyond ~4,000 partitions: an 8-year hourly backfill failed on it).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import groupby
from typing import Any

from dagster import Field, StringSource
from dagster._config import UserConfigSchema
from dagster._core.events import ASSET_EVENTS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlalchemy_compat import db_result
from dagster._serdes import ConfigurableClassData, serialize_value
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config
from sqlalchemy import create_engine
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool

_SQLITE_BUSY_TIMEOUT_SECONDS = 30
_MAX_CACHED_ENGINES = 16


def _set_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class BatchingSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` with pooled connections, WAL, and one transaction per event batch."""

    def __init__(self, base_dir: str | None, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_lock = threading.Lock()
        self._inst_data = inst_data
        if base_dir is not None:
            super().__init__(base_dir, inst_data)

    @classmethod
    def config_type(cls) -> UserConfigSchema:
        # Optional, unlike the parent's: by default the shards live where Dagster's own SQLite event log keeps
        # them, so an existing instance switches to this class in place.
        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]):
        return cls(base_dir=config_value.get("base_dir") or None, inst_data=inst_data)

    def register_instance(self, instance) -> None:
        # Without a configured base_dir the shards go where Dagster's default SQLite event log puts them: under the
        # instance's own directory. That is $DAGSTER_HOME, or the temporary directory `dagster dev` and `dagster
        # asset materialize` make in the working directory when DAGSTER_HOME is unset (the repo's dagster.yaml is
        # then read from there), which only the instance knows, so opening waits for it.
        if not hasattr(self, "_base_dir"):
            super().__init__(os.path.join(instance.root_directory, "history", "runs", ""), self._inst_data)
        super().register_instance(instance)

    def _engine(self, shard: str) -> Engine:
        with self._engines_lock:
            engine = self._engines.get(shard)
            if engine is not None:
                self._engines.move_to_end(shard)
                return engine
            engine = create_engine(
                self.conn_string_for_shard(shard),
                poolclass=QueuePool,
                pool_size=1,
                max_overflow=4,
                # Connections are handed between threads (the progress watcher, the run); access is serialized.
                connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
            sqlalchemy_event.listen(engine, "connect", _set_pragmas)
            self._engines[shard] = engine
            while len(self._engines) > _MAX_CACHED_ENGINES:
                _, evicted = self._engines.popitem(last=False)
                evicted.dispose()
            return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def dispose(self) -> None:
        with self._engines_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()
        super().dispose()

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """Asset events go in one transaction per run shard plus one for the index shard; any other event in the
        batch (e.g. planned check evaluations riding with planned materializations) takes the per-event path,
        which keeps its exact semantics. Order is preserved."""
        for is_asset, group in groupby(events, key=_is_asset_event):
            group = list(group)
            if is_asset:
                self._store_asset_events(group)
            else:
                for entry in group:
                    self.store_event(entry)

    def _store_asset_check_evaluation_planned(self, event: EventLogEntry, event_id: int | None) -> None:
        """One row per planned partition, as Dagster writes them, but as an executemany with the event serialized
        once. Dagster's version builds a single multi-row INSERT, which for a range of more than ~4,000 partitions
        of an asset with checks exceeds SQLite's limit of 32,766 bound variables and fails the run."""
        planned = event.dagster_event.event_specific_data  # type: ignore[union-attr]
        keys = planned.partitions_subset.get_partition_keys() if planned.partitions_subset else [None]
        shared = {
            "asset_key": planned.asset_key.to_string(),
            "check_name": planned.check_name,
            "run_id": event.run_id,
            "execution_status": AssetCheckExecutionRecordStatus.PLANNED.value,
            "evaluation_event": serialize_value(event),
            "evaluation_event_timestamp": self._event_insert_timestamp(event),
            "evaluation_event_storage_id": event_id,
        }
        with self.index_transaction() as conn:
            conn.execute(AssetCheckExecutionsTable.insert(), [{**shared, "partition": key} for key in keys])

    def _store_asset_events(self, events: list[EventLogEntry]) -> None:
        # Serialize each event once; the same insert goes to its run shard and to the index shard.
        inserts = [(entry, self.prepare_insert_event(entry)) for entry in events]
        for run_id, run_inserts in groupby(inserts, key=lambda pair: pair[0].run_id):
            with self.run_connection(run_id) as conn:
                for _, statement in run_inserts:
                    conn.execute(statement)
        # Mirror into the cross-run index shard, as `store_event` does, in a single transaction.
        with self.index_transaction() as conn:
            event_ids = []
            for _, statement in inserts:
                with db_result(conn, statement) as result:
                    event_ids.append(result.inserted_primary_key[0])
            self._store_asset_event_tags(conn, events, event_ids)
            for entry, event_id in zip(events, event_ids, strict=True):
                self._store_asset_event(conn, entry, event_id)


def _is_asset_event(entry: EventLogEntry) -> bool:
    return entry.is_dagster_event and entry.dagster_event_type in ASSET_EVENTS


# Instance overrides (dagster.yaml form) that select this storage, e.g. for `dg.instance_for_test(overrides=...)`.
INSTANCE_OVERRIDES = {"event_log_storage": {"module": __name__, "class": BatchingSqliteEventLogStorage.__name__}}


class PooledPostgresEventLogStorage(PostgresEventLogStorage):
    """dagster-postgres' event log, holding its connections open.

    The stock class builds its engine with NullPool, so every event pays for a new TCP connection, Postgres
    authentication and a backend process (~5 connections per event, 25-55 ms per partition of a backfill here).
    A small pool per process keeps the schema, the SQL and every read path unchanged; `pool_pre_ping` replaces a
    connection the server dropped (a restart, a failover) instead of failing the run with it.
    """

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True, inst_data=None, token_provider=None):
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        self._engine.dispose()
        self._engine = create_pg_engine(
            self.postgres_url,
            self._token_provider,
            isolation_level="AUTOCOMMIT",
            poolclass=QueuePool,
            pool_size=2,
            max_overflow=8,
            pool_pre_ping=True,
            pool_recycle=3600,
        )

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]):
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )
