"""kill -9 in the middle of a range leaves no partial window; running the range again completes it exactly."""

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef

from alphapulse_assets.definitions import build_definitions
from alphapulse_assets.instance import write_instance_config
from alphapulse_assets.runner import run_job
from alphapulse_assets.settings import Settings
from alphapulse_assets.storage.warehouse import DuckDBWarehouse

REPO = Path(__file__).resolve().parent.parent
FIRST, LAST = "2025-03-01-00:00", "2025-03-15-23:00"
HOURS, SYMBOLS = 15 * 24, 2
TABLES = ("prices", "prices_rejected", "news", "news_sentiment", "features")
CHILD = """
import sys
import dagster as dg
from alphapulse_assets.definitions import build_definitions
from alphapulse_assets.runner import run_job
from alphapulse_assets.settings import Settings
outcome = run_job(build_definitions(Settings.from_env()), dg.DagsterInstance.get(), "data_job",
                  partition_range=(sys.argv[1], sys.argv[2]))
sys.exit(0 if outcome.success else 1)
"""


def started_steps(dagster_home: Path) -> list[str]:
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home))) as instance:
        runs = instance.get_run_records(limit=1)
        if not runs:
            return []
        records = instance.get_records_for_run(
            runs[0].dagster_run.run_id, of_type=dg.DagsterEventType.STEP_START, limit=100
        ).records
        return [r.event_log_entry.step_key for r in records]


def hours_per_table(warehouse: DuckDBWarehouse) -> dict[str, int]:
    return {t: warehouse.query(f"SELECT count(*) AS n FROM {t}")["n"][0] for t in TABLES if warehouse.table_exists(t)}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kill_in_step, delay", [("news_sentiment", 0.3), ("features", 0.8)])
def test_kill_9_mid_range_then_rerun(tmp_path, kill_in_step, delay):
    home, dagster_home = tmp_path / "home", tmp_path / "dagster"
    write_instance_config(dagster_home)
    env = dict(os.environ, ALPHAPULSE_HOME=str(home), DAGSTER_HOME=str(dagster_home))
    child = subprocess.Popen([sys.executable, "-c", CHILD, FIRST, LAST], env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 240
        while kill_in_step not in started_steps(dagster_home):
            assert child.poll() is None, "the run finished before it could be killed"
            assert time.monotonic() < deadline, f"{kill_in_step} never started"
            time.sleep(0.1)
        time.sleep(delay)
        child.kill()  # SIGKILL: no cleanup, no rollback handlers
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()

    warehouse = DuckDBWarehouse(path=str(home / "warehouse.duckdb"))
    after_kill = hours_per_table(warehouse)
    assert after_kill.get("prices") == HOURS * SYMBOLS, "prices committed before the kill"
    for table in ("news_sentiment", "features"):
        assert after_kill.get(table, 0) in (0, HOURS * SYMBOLS), f"partial window in {table}: {after_kill}"

    settings = Settings.from_env({**os.environ, "ALPHAPULSE_HOME": str(home)})
    with dg.instance_for_test() as instance:
        outcome = run_job(build_definitions(settings), instance, "data_job", partition_range=(FIRST, LAST))
        assert outcome.success, outcome.error
    complete = hours_per_table(warehouse)
    for table in ("prices", "news_sentiment", "features"):
        assert complete[table] == HOURS * SYMBOLS, complete
        dupes = warehouse.query(f"SELECT ts, symbol FROM {table} GROUP BY ALL HAVING count(*) > 1")
        assert dupes.is_empty(), f"duplicates in {table}"
    assert complete["news"] == after_kill["news"], "news was complete before the kill and is unchanged"
