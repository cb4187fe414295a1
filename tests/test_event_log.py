"""The batching SQLite event log records exactly what Dagster's own does, for far less bookkeeping."""

import sqlite3
from pathlib import Path

import dagster as dg

from alphapulse_assets.definitions import build_definitions
from alphapulse_assets.runner import run_job
from alphapulse_assets.settings import Settings
from alphapulse_assets.storage.event_log import INSTANCE_OVERRIDES

RANGE = ("2025-03-01-00:00", "2025-03-02-23:00")  # 48 partitions
DATA = ("prices", "news", "news_sentiment", "features")


def record_run(tmp_path: Path, overrides: dict) -> dict:
    settings = Settings.from_env({**__import__("os").environ, "ALPHAPULSE_HOME": str(tmp_path / "home")})
    defs = build_definitions(settings)
    (tmp_path / "dagster").mkdir(parents=True)
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster"), overrides=overrides) as instance:
        outcome = run_job(defs, instance, "data_job", partition_range=RANGE)
        assert outcome.success, outcome.error
        summary = {
            "partitions": {a: sorted(instance.get_materialized_partitions(dg.AssetKey(a))) for a in DATA},
            "materializations": {
                a: len(instance.fetch_materializations(dg.AssetKey(a), limit=1000).records) for a in DATA
            },
            "planned": len(
                instance.get_records_for_run(
                    outcome.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, limit=1000
                ).records
            ),
            "checks": sorted(
                key.name
                for key in instance.event_log_storage.get_latest_asset_check_execution_by_key(
                    [dg.AssetCheckKey(dg.AssetKey("prices"), n) for n in ("prices_unique", "prices_complete")]
                )
            ),
            "row_count": instance.get_latest_materialization_event(dg.AssetKey("features"))
            .asset_materialization.metadata["range_row_count"]
            .value,
            "storage": type(instance.event_log_storage).__name__,
        }
        # The run's events in storage order: batching must not reorder or drop any.
        summary["sequence"] = [
            (r.event_log_entry.dagster_event_type, r.event_log_entry.step_key)
            for r in instance.get_records_for_run(outcome.run_id, limit=100_000).records
            if r.event_log_entry.dagster_event_type is not None
        ]
        return summary


def test_batched_storage_records_the_same_as_dagsters(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "20")  # several batches per step, and a remainder
    default = record_run(tmp_path / "default", {})
    fast = record_run(tmp_path / "fast", INSTANCE_OVERRIDES)
    assert default.pop("storage") == "SqliteEventLogStorage" and fast.pop("storage") == "BatchingSqliteEventLogStorage"
    assert fast == default
    assert all(len(p) == 48 for p in fast["partitions"].values())
    assert fast["planned"] == 48 * len(DATA) and fast["materializations"]["prices"] == 48


def test_shards_use_wal(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
    record_run(tmp_path, INSTANCE_OVERRIDES)
    index = tmp_path / "dagster" / "history" / "runs" / "index.db"
    assert index.exists(), "shards live where Dagster's default SQLite event log keeps them"
    assert sqlite3.connect(index).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_without_base_dir_the_shards_live_in_the_instances_own_directory(tmp_path, monkeypatch):
    """What `dagster dev` does in the repo root with DAGSTER_HOME unset: a temporary home in the working directory,
    configured by the repo's dagster.yaml (no base_dir in it). The shards go under that home, and a second instance
    opened on the same home (a run worker's) finds the first one's events."""
    from dagster._core.instance.ref import InstanceRef

    from alphapulse_assets.storage.event_log import BatchingSqliteEventLogStorage

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = tmp_path / ".tmp_dagster_home_x"
    home.mkdir()
    repo = Path(__file__).resolve().parents[1]
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home), config_dir=str(repo))) as instance:
        assert isinstance(instance.event_log_storage, BatchingSqliteEventLogStorage)
        run = instance.create_run_for_job(dg.GraphDefinition("g").to_job())
        instance.report_engine_event("hello", run)
    shards = home / "history" / "runs"
    assert (shards / "index.db").exists() and (shards / f"{run.run_id}.db").exists()
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home), config_dir=str(repo))) as again:
        records = again.get_records_for_run(run.run_id).records
        assert [r.event_log_entry.dagster_event.message for r in records] == ["hello"]


def test_long_ranges_of_an_asset_with_checks(tmp_path, monkeypatch):
    """Planned check evaluations for more than ~4,000 partitions exceed SQLite's bound-variable limit when written
    as one INSERT (as Dagster does); the batching storage writes them with executemany."""
    from datetime import UTC, datetime, timedelta

    from alphapulse_assets.partitions import HOURLY, SINGLE_RUN, partition_key

    @dg.asset(partitions_def=HOURLY, backfill_policy=SINGLE_RUN, check_specs=[dg.AssetCheckSpec("ok", asset="checked")])
    def checked() -> dg.MaterializeResult:
        return dg.MaterializeResult(check_results=[dg.AssetCheckResult(check_name="ok", passed=True)])

    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
    defs = dg.Definitions(assets=[checked], executor=dg.in_process_executor)
    start = datetime(2025, 3, 1, tzinfo=UTC)
    hours = 5_000
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster"), overrides=INSTANCE_OVERRIDES) as instance:
        job = defs.resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": partition_key(start),
                "dagster/asset_partition_range_end": partition_key(start + timedelta(hours=hours - 1)),
            },
        )
        assert result.success
        assert len(instance.get_materialized_partitions(dg.AssetKey("checked"))) == hours
        index = Path(tmp_path / "dagster" / "history" / "runs" / "index.db")
        planned = (
            sqlite3.connect(index)
            .execute("SELECT count(*) FROM asset_check_executions WHERE partition IS NOT NULL")
            .fetchone()[0]
        )
        assert planned == hours
