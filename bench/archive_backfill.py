"""An 8-year hourly backfill of `prices` from Binance archive files, as one single run.

    uv run python bench/archive_backfill.py [--years 8]

Writes monthly `SYMBOL-1h-YYYY-MM.zip` files (with .CHECKSUM) for BTCUSDT and ETHUSDT in the Binance public-data
format (ms timestamps before 2025, µs after), then times `prices` over every hour on a fresh instance with the
embedded dagster.yaml's event log. Prints partitions, wall time and ms per partition.
"""

import argparse
import hashlib
import io
import os
import tempfile
import time
import zipfile
from datetime import UTC, datetime, timedelta

import numpy as np

START = datetime(2017, 9, 1, tzinfo=UTC)
os.environ["ALPHAPULSE_HISTORY_START"] = START.strftime("%Y-%m-%d")

import dagster as dg  # noqa: E402

from alphapulse_assets.market.assets import prices  # noqa: E402
from alphapulse_assets.market.resources import BinanceArchiveMarket, PriceQuality  # noqa: E402
from alphapulse_assets.partitions import partition_key  # noqa: E402
from alphapulse_assets.runner import run_job  # noqa: E402
from alphapulse_assets.storage.event_log import INSTANCE_OVERRIDES  # noqa: E402
from alphapulse_assets.storage.object_store import LocalObjectStore  # noqa: E402
from alphapulse_assets.storage.warehouse import DuckDBWarehouse  # noqa: E402

MICROSECONDS_FROM = datetime(2025, 1, 1, tzinfo=UTC)


def write_months(directory: str, symbol: str, start: datetime, end: datetime, seed: int) -> int:
    rng = np.random.default_rng(seed)
    price, rows, month = 4000.0, 0, start
    while month < end:
        following = datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)
        lines = []
        hour = month
        while hour < min(following, end):
            step = float(np.exp(rng.normal(0, 0.01)))
            open_, close = price, price * step
            high, low = max(open_, close) * 1.002, min(open_, close) * 0.998
            price = close
            scale = 1_000_000 if hour >= MICROSECONDS_FROM else 1000
            stamp = int(hour.timestamp()) * scale
            lines.append(
                f"{stamp},{open_:.8f},{high:.8f},{low:.8f},{close:.8f},{rng.uniform(10, 900):.8f},"
                f"{stamp + 3600 * scale - 1},{rng.uniform(1e4, 9e6):.8f},{int(rng.integers(10, 9000))},"
                f"{rng.uniform(1, 400):.8f},{rng.uniform(1e3, 4e6):.8f},0\n"
            )
            hour += timedelta(hours=1)
        name = f"{symbol}-1h-{month:%Y-%m}.zip"
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
            bundle.writestr(name.replace(".zip", ".csv"), "".join(lines))
        data = buffer.getvalue()
        with open(os.path.join(directory, name), "wb") as handle:
            handle.write(data)
        with open(os.path.join(directory, name + ".CHECKSUM"), "w") as handle:
            handle.write(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
        rows += len(lines)
        month = following
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--years", type=int, default=8)
    years = parser.parse_args().years
    end = START.replace(year=START.year + years)
    with tempfile.TemporaryDirectory() as archive, tempfile.TemporaryDirectory() as work:
        began = time.monotonic()
        rows = sum(write_months(archive, s, START, end, seed) for seed, s in enumerate(("BTCUSDT", "ETHUSDT")))
        print(f"wrote {rows} klines in {len(os.listdir(archive)) // 2} zip files in {time.monotonic() - began:.1f}s")
        warehouse = DuckDBWarehouse(path=os.path.join(work, "warehouse.duckdb"))
        defs = dg.Definitions(
            assets=[prices],
            jobs=[dg.define_asset_job("prices_job", selection=[prices])],
            resources={
                "market": BinanceArchiveMarket(symbols=["BTCUSDT", "ETHUSDT"], archive_dir=archive),
                "warehouse": warehouse,
                "price_quality": PriceQuality(),
                "object_store": LocalObjectStore(root=os.path.join(work, "objects")),
            },
            executor=dg.in_process_executor,
        )
        n = int((end - START) / timedelta(hours=1))
        os.makedirs(os.path.join(work, "dagster"))
        with dg.instance_for_test(temp_dir=os.path.join(work, "dagster"), overrides=INSTANCE_OVERRIDES) as instance:
            outcome = run_job(
                defs,
                instance,
                "prices_job",
                partition_range=(partition_key(START), partition_key(end - timedelta(hours=1))),
                label="8-year prices backfill",
                expected_materializations=n,
            )
            if not outcome.success:
                raise SystemExit(outcome.error)
            materialized = len(instance.get_materialized_partitions(dg.AssetKey("prices")))
        stored = warehouse.query("SELECT count(*) AS n FROM prices")["n"][0]
        print(
            f"{n} hourly partitions, {stored} rows stored, {materialized} partitions materialized: "
            f"{outcome.seconds:.0f}s, {outcome.seconds / n * 1000:.2f} ms per partition"
        )


if __name__ == "__main__":
    main()
