"""Time single-run backfills: Dagster's bookkeeping floor, and the data side against it.

    uv run python bench/backfill.py [--sizes 24,240,2400]

For each size, on fresh SQLite instances (and a fresh warehouse for the data side):
- a no-op hourly single-run asset on Dagster's own SQLite event log: the floor as Dagster ships it;
- the same no-op on `BatchingSqliteEventLogStorage` (the embedded dagster.yaml's event log): the floor we run on;
- `data_job` (prices, news, news_sentiment, features) on that storage, per asset, and its ratio to that floor.
"""

import argparse
import os
import tempfile
from datetime import UTC, datetime, timedelta

os.environ.setdefault("ALPHAPULSE_HISTORY_START", "2025-01-01")

import dagster as dg  # noqa: E402

from alphapulse_assets.definitions import build_definitions  # noqa: E402
from alphapulse_assets.jobs import DATA_ASSETS  # noqa: E402
from alphapulse_assets.partitions import HOURLY, SINGLE_RUN, partition_key  # noqa: E402
from alphapulse_assets.runner import run_job  # noqa: E402
from alphapulse_assets.settings import Settings  # noqa: E402
from alphapulse_assets.storage.event_log import INSTANCE_OVERRIDES  # noqa: E402

START = datetime(2025, 1, 1, tzinfo=UTC)


@dg.asset(partitions_def=HOURLY, backfill_policy=SINGLE_RUN)
def noop(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Does nothing: the cost of an hourly single-run asset in Dagster itself."""
    return dg.MaterializeResult()


NOOP_DEFS = dg.Definitions(
    assets=[noop],
    jobs=[dg.define_asset_job("noop_job", selection=[noop])],
    executor=dg.in_process_executor,
)


def timed(defs, job: str, n: int, quiet, overrides: dict | None = None) -> float:
    with tempfile.TemporaryDirectory() as tmp, dg.instance_for_test(temp_dir=tmp, overrides=overrides) as instance:
        keys = (partition_key(START), partition_key(START + timedelta(hours=n - 1)))
        outcome = run_job(defs, instance, job, partition_range=keys, out=quiet)
        if not outcome.success:
            raise SystemExit(f"{job} over {n} partitions failed: {outcome.error}")
        return outcome.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="24,240,2400", help="comma-separated partition counts")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    quiet = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    print(f"DAGSTER_EVENT_BATCH_SIZE={os.environ.get('DAGSTER_EVENT_BATCH_SIZE')}; ms per partition of one asset")
    print(
        f"{'N':>6} {'no-op, dagster sqlite':>22} {'no-op, batching':>16} {'floor cut':>10} "
        f"{'data side, batching':>20} {'data / no-op':>13}"
    )
    for n in sizes:
        noop_default = timed(NOOP_DEFS, "noop_job", n, quiet) / n * 1000
        noop_fast = timed(NOOP_DEFS, "noop_job", n, quiet, INSTANCE_OVERRIDES) / n * 1000
        with tempfile.TemporaryDirectory() as home:
            defs = build_definitions(Settings.from_env({**os.environ, "ALPHAPULSE_HOME": home}))
            data = timed(defs, "data_job", n, quiet, INSTANCE_OVERRIDES) / (n * len(DATA_ASSETS)) * 1000
        print(
            f"{n:>6} {noop_default:>22.1f} {noop_fast:>16.1f} {noop_default / noop_fast:>9.1f}x "
            f"{data:>20.1f} {data / noop_fast:>12.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
