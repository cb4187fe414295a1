"""Sentiment throughput, and the cost of a news backfill per partition against the no-op floor.

    uv run python bench/news.py [--headlines 20000] [--sizes 240,2400]

1. Headlines per second for each scorer (VADER, Loughran–McDonald), on the simulated wire's headlines, scored in
   one call as `news_sentiment` does.
2. `news` + `news_sentiment` as one single-run backfill over N hours, on the batching event log, for the simulated
   wire and for a JSONL drop folder holding the same headlines; ms per partition of one asset, and the ratio to a
   no-op hourly asset timed in the same run.
"""

import argparse
import json
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("ALPHAPULSE_HISTORY_START", "2025-01-01")

import dagster as dg  # noqa: E402
from backfill import NOOP_DEFS, START, timed  # noqa: E402

from alphapulse_assets.news.assets import news, news_sentiment  # noqa: E402
from alphapulse_assets.news.resources import JsonlDropFolder, SentimentModel, SimulatedNewswire  # noqa: E402
from alphapulse_assets.news.sentiment import SCORERS  # noqa: E402
from alphapulse_assets.simulation import SimulatedWorld  # noqa: E402
from alphapulse_assets.storage.event_log import INSTANCE_OVERRIDES  # noqa: E402
from alphapulse_assets.storage.warehouse import DuckDBWarehouse  # noqa: E402

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def wire(hours: int):
    return SimulatedWorld(7, 0.35).news(SYMBOLS, START, START + timedelta(hours=hours))


def scorer_throughput(n: int) -> None:
    headlines = wire(max(24, n // 2))["headline"].to_list()
    headlines = (headlines * (n // len(headlines) + 1))[:n]
    print(f"sentiment throughput, {n:,} headlines (simulated wire), one call each:")
    for name, cls in SCORERS.items():
        scorer = cls()
        started = time.perf_counter()
        scorer.score(headlines[:10])  # loads the lexicon
        loaded = time.perf_counter() - started
        started = time.perf_counter()
        scorer.score(headlines)
        elapsed = time.perf_counter() - started
        print(f"  {name:<18} {n / elapsed:>10,.0f} headlines/s   (lexicon load {loaded * 1000:.0f} ms)")


def news_defs(home: Path, newswire) -> dg.Definitions:
    assets = [news, news_sentiment]
    return dg.Definitions(
        assets=assets,
        jobs=[dg.define_asset_job("news_bench_job", selection=assets)],
        resources={
            "newswire": newswire,
            "warehouse": DuckDBWarehouse(path=str(home / "warehouse.duckdb")),
            "sentiment": SentimentModel(),
        },
        executor=dg.in_process_executor,
    )


def backfill_cost(sizes: list[int]) -> None:
    quiet = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    print("\nnews backfill, ms per partition of one asset (news + news_sentiment, batching event log):")
    print(f"{'N':>6} {'items':>7} {'no-op':>7} {'simulated':>10} {'ratio':>7} {'jsonl':>8} {'ratio':>7}")
    for n in sizes:
        floor = timed(NOOP_DEFS, "noop_job", n, quiet, INSTANCE_OVERRIDES) / n * 1000
        items = wire(n)
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            simulated = SimulatedNewswire(symbols=SYMBOLS, seed=7, news_signal_strength=0.35)
            sim_ms = timed(news_defs(home / "sim", simulated), "news_bench_job", n, quiet, INSTANCE_OVERRIDES)
            drop = home / "drop"
            drop.mkdir()
            with open(drop / "export.jsonl", "w") as out:
                for row in items.iter_rows(named=True):
                    record = {"url": row["url"], "title": row["headline"], "published": row["published_at"].isoformat()}
                    out.write(json.dumps(record) + "\n")
            folder = JsonlDropFolder(symbols=SYMBOLS, news_dir=str(drop))
            jsonl_ms = timed(news_defs(home / "jsonl", folder), "news_bench_job", n, quiet, INSTANCE_OVERRIDES)
        sim, jsonl = sim_ms / (2 * n) * 1000, jsonl_ms / (2 * n) * 1000
        print(
            f"{n:>6} {items.height:>7} {floor:>7.1f} {sim:>10.1f} {sim / floor:>6.2f}x {jsonl:>8.1f} "
            f"{jsonl / floor:>6.2f}x",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--headlines", type=int, default=20_000)
    parser.add_argument("--sizes", default="240,2400", help="comma-separated partition counts")
    args = parser.parse_args()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    scorer_throughput(args.headlines)
    backfill_cost([int(s) for s in args.sizes.split(",")])


if __name__ == "__main__":
    main()
