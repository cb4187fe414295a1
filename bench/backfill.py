"""Time a single-run backfill of the data-side assets against a no-op hourly asset over the same partitions.

    uv run python bench/backfill.py [--sizes 24,240,2400]

Each size runs on a fresh SQLite Dagster instance and a fresh warehouse; the no-op asset runs on its own fresh
instance too. Dagster writes events per partition even for single-run backfills, so the no-op is the floor any
hourly asset pays; the ratio says how much of our cost is that floor.
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

START = datetime(2025, 1, 1, tzinfo=UTC)


@dg.asset(partitions_def=HOURLY, backfill_policy=SINGLE_RUN)
def noop(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Does nothing: the cost of an hourly single-run asset in Dagster itself."""
    return dg.MaterializeResult()


NOOP_DEFS = dg.Definitions(
    assets=[noop],
    jobs=[dg.define_asset_job("noop_job", selection=[noop], partitions_def=HOURLY)],
    executor=dg.in_process_executor,
)


def timed(defs, job: str, n: int, quiet) -> float:
    with tempfile.TemporaryDirectory() as tmp, dg.instance_for_test(temp_dir=tmp) as instance:
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
    print(
        f"{'N':>6} {'data_job s':>11} {'ms/asset-partition':>19} {'no-op s':>8} {'no-op ms/partition':>19} {'ratio':>6}"
    )
    for n in sizes:
        with tempfile.TemporaryDirectory() as home:
            defs = build_definitions(Settings.from_env({**os.environ, "ALPHAPULSE_HOME": home}))
            data_seconds = timed(defs, "data_job", n, quiet)
        noop_seconds = timed(NOOP_DEFS, "noop_job", n, quiet)
        per_asset_partition = data_seconds / (n * len(DATA_ASSETS)) * 1000
        per_noop = noop_seconds / n * 1000
        print(
            f"{n:>6} {data_seconds:>11.2f} {per_asset_partition:>19.1f} {noop_seconds:>8.2f} {per_noop:>19.1f} "
            f"{per_asset_partition / per_noop:>6.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
