"""Dagster's per-partition bookkeeping floor under each event-log configuration, on a no-op hourly asset.

    uv run python bench/event_log.py [--sizes 240,2400] [--postgres]

Each configuration runs in a fresh process (DAGSTER_EVENT_BATCH_SIZE is read per event, so it must not leak
between configurations) on a fresh instance: SQLite, or with --postgres a fresh database on the local PostgreSQL
(started the way the tests start it; ALPHAPULSE_TEST_POSTGRES_URL to use another server).
"""

import argparse
import contextlib
import os
import subprocess
import sys

CONFIGS = {
    "dagster SqliteEventLogStorage": ("default", "0"),
    "pooled engines + WAL (batching off)": ("fast", "0"),
    "pooled engines + WAL + batches of 1000": ("fast", "1000"),
}
POSTGRES_CONFIGS = {
    "dagster PostgresEventLogStorage": ("postgres", "0"),
    "dagster Postgres + batches of 1000": ("postgres", "1000"),
    "pooled Postgres + batches of 1000": ("pooled_postgres", "1000"),
}

CHILD = """
import os, sys, tempfile
from datetime import UTC, datetime, timedelta
os.environ.setdefault("ALPHAPULSE_HISTORY_START", "2025-01-01")
sys.path.insert(0, "bench")
import dagster as dg
import backfill
from alphapulse_assets.partitions import partition_key
from alphapulse_assets.runner import run_job
import yaml
from alphapulse_assets.instance import POSTGRES_INSTANCE_TEMPLATE
storage, n, url = sys.argv[1], int(sys.argv[2]), sys.argv[3]
os.environ["ALPHAPULSE_DAGSTER_PG_URL"] = url
start = datetime(2025, 1, 1, tzinfo=UTC)
keys = (partition_key(start), partition_key(start + timedelta(hours=n - 1)))
with tempfile.TemporaryDirectory() as tmp:
    overrides = {
        "fast": backfill.INSTANCE_OVERRIDES,
        "postgres": {"storage": {"postgres": {"postgres_url": url}}},
        # the production template's storages, exactly as deployed
        "pooled_postgres": {
            key: value
            for key, value in yaml.safe_load(POSTGRES_INSTANCE_TEMPLATE.read_text()).items()
            if key.endswith("_storage")
        },
    }.get(storage, {})
    with dg.instance_for_test(temp_dir=tmp, overrides=overrides) as instance:
        outcome = run_job(backfill.NOOP_DEFS, instance, "noop_job", partition_range=keys, out=open(os.devnull, "w"))
        assert outcome.success, outcome.error
        assert len(instance.get_materialized_partitions(dg.AssetKey("noop"))) == n
        print(outcome.seconds / n * 1000)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="240,2400")
    parser.add_argument("--postgres", action="store_true", help="measure the Postgres event logs instead")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    configs = POSTGRES_CONFIGS if args.postgres else CONFIGS
    admin_url = ""
    if args.postgres:
        sys.path.insert(0, "tests")
        import services

        admin_url = services.start_postgres()
    print("ms per partition of a no-op hourly single-run asset")
    print(f"{'configuration':<42}" + "".join(f"{n:>10}" for n in sizes))
    for name, (storage, batch) in configs.items():
        cells = []
        for n in sizes:
            env = dict(os.environ, DAGSTER_EVENT_BATCH_SIZE=batch)
            with services.fresh_database(admin_url) if args.postgres else contextlib.nullcontext("") as url:
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, storage, str(n), url],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
            cells.append(float(out.stdout.strip().splitlines()[-1]))
        print(f"{name:<42}" + "".join(f"{c:>10.1f}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
