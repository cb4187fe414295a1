"""The feature catalog's cost against TA-Lib and the pandas-based `ta` library, and how it grows with the universe.

    uv run python bench/features.py [--years 8] [--universe 2,10,100] [--universe-years 1] [--repeat 5]

1. On `--years` of hourly bars for BTCUSDT and ETHUSDT (simulated; prices as exact decimals, as the warehouse
   holds them; news scored with Loughran–McDonald), side by side in one process:
   - TA-Lib's own time for each of the nine classic indicators, and their average: the reference;
   - the whole catalog (`compute_features`: every feature, from the warehouse-shaped inputs to the finished
     table), as time per feature, and its ratio to TA-Lib's average time per indicator;
   - the nine shared indicators as the catalog computes them, against the same nine from `ta` (pandas);
   - peak memory of one catalog computation, measured in a fresh child process (RSS high-water mark).
2. The catalog over `--universe-years` for 2, 10 and 100 simulated symbols: time per symbol-hour, which must not
   grow with the universe.
Times are the best of `--repeat` runs (`ta`: of 2 runs, it is slow), so the figures compare like with like.
"""

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import talib

from alphapulse_assets.features.catalog import CATALOG, FEATURES, HISTORY_HOURS, compute_features
from alphapulse_assets.news.sentiment import LoughranMcDonaldScorer, aggregate_sentiment
from alphapulse_assets.simulation import SimulatedWorld

START = datetime(2020, 2, 1, tzinfo=UTC)
CLASSIC = ("rsi_14", "natr_14", "willr_14", "cci_20", "mfi_14", "adx_14", "bb_pctb_20", "macd_hist_norm", "roc_24")


def inputs(symbols: list[str], years: float) -> tuple[pl.DataFrame, pl.DataFrame, datetime, datetime]:
    end = START + timedelta(hours=int(years * 365 * 24))
    first = START - timedelta(hours=max(HISTORY_HOURS.values()))
    world = SimulatedWorld(11, 0.3)
    prices = world.prices(symbols, first, end).with_columns(
        pl.col("open", "high", "low", "close", "volume", "quote_volume", "taker_buy_volume").cast(pl.Decimal(38, 8))
    )
    items = world.news(symbols, first, end)
    scored = items.with_columns(pl.Series("sentiment", LoughranMcDonaldScorer().score(items["headline"].to_list())))
    return prices, aggregate_sentiment(scored, symbols, first, end, 6.0), START, end


def best_of(repeat: int, fn) -> float:
    """Best wall time of `repeat` calls, with the garbage collector paused as `timeit` does (a collection of the
    inputs' Python objects would land on whichever call happens to trigger it)."""
    best = float("inf")
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeat):
            started = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - started)
    finally:
        gc.enable()
    return best


def talib_reference(bars: dict[str, np.ndarray]) -> dict:
    h, lo, c, v = bars["high"], bars["low"], bars["close"], bars["volume"]
    return {
        "rsi_14": lambda: talib.RSI(c, 14),
        "natr_14": lambda: talib.NATR(h, lo, c, 14),
        "willr_14": lambda: talib.WILLR(h, lo, c, 14),
        "cci_20": lambda: talib.CCI(h, lo, c, 20),
        "mfi_14": lambda: talib.MFI(h, lo, c, v, 14),
        "adx_14": lambda: talib.ADX(h, lo, c, 14),
        "bb_pctb_20": lambda: talib.BBANDS(c, 20, 2, 2),
        "macd_hist_norm": lambda: talib.MACD(c, 12, 26, 9)[2] / c,
        "roc_24": lambda: talib.ROC(c, 24),
    }


def ta_library(bars: dict[str, np.ndarray]) -> dict:
    import pandas as pd
    import ta

    h, lo, c, v = (pd.Series(bars[k]) for k in ("high", "low", "close", "volume"))
    return {
        "rsi_14": lambda: ta.momentum.RSIIndicator(c, 14).rsi(),
        "natr_14": lambda: ta.volatility.AverageTrueRange(h, lo, c, 14).average_true_range() / c * 100,
        "willr_14": lambda: ta.momentum.WilliamsRIndicator(h, lo, c, 14).williams_r(),
        "cci_20": lambda: ta.trend.CCIIndicator(h, lo, c, 20).cci(),
        "mfi_14": lambda: ta.volume.MFIIndicator(h, lo, c, v, 14).money_flow_index(),
        "adx_14": lambda: ta.trend.ADXIndicator(h, lo, c, 14).adx(),
        "bb_pctb_20": lambda: ta.volatility.BollingerBands(c, 20, 2).bollinger_pband(),
        "macd_hist_norm": lambda: ta.trend.MACD(c, 26, 12, 9).macd_diff() / c,
        "roc_24": lambda: ta.momentum.ROCIndicator(c, 24).roc(),
    }


def per_symbol_arrays(prices: pl.DataFrame) -> list[dict[str, np.ndarray]]:
    return [
        {k: frame[k].cast(pl.Float64).to_numpy() for k in ("open", "high", "low", "close", "volume", "trades")}
        for _, frame in prices.sort("symbol", "ts").group_by("symbol", maintain_order=True)
    ]


def catalog_against_libraries(years: float, repeat: int) -> dict:
    symbols = ["BTCUSDT", "ETHUSDT"]
    prices, sentiment, start, end = inputs(symbols, years)
    bars = per_symbol_arrays(prices)
    hours = int((end - start) / timedelta(hours=1))
    print(f"{years} years x {len(symbols)} symbols: {hours * len(symbols):,} symbol-hours, {len(CATALOG)} features")
    compute_features(prices, sentiment, symbols, start, end)  # warm caches and polars' thread pool once

    catalog = best_of(repeat, lambda: compute_features(prices, sentiment, symbols, start, end))
    rows = []
    for name in CLASSIC:
        reference = [talib_reference(b)[name] for b in bars]
        ours = FEATURES[name].array
        ta_fns = [ta_library(b)[name] for b in bars]
        rows.append(
            {
                "indicator": name,
                "talib_ms": 1e3 * best_of(repeat, lambda r=reference: [f() for f in r]),
                "catalog_ms": 1e3 * best_of(repeat, lambda f=ours: [f(b) for b in bars]),
                "ta_ms": 1e3 * best_of(2, lambda fs=ta_fns: [f() for f in fs]),
            }
        )
    table = pl.DataFrame(rows).with_columns((pl.col("ta_ms") / pl.col("catalog_ms")).alias("ta_over_catalog"))
    talib_mean = table["talib_ms"].mean()
    per_feature = 1e3 * catalog / len(CATALOG)
    return {
        "symbol_hours": hours * len(symbols),
        "features": len(CATALOG),
        "catalog_total_ms": 1e3 * catalog,
        "catalog_ms_per_feature": per_feature,
        "talib_mean_ms_per_indicator": talib_mean,
        "ratio_per_feature_to_talib": per_feature / talib_mean,
        "shared_catalog_ms": table["catalog_ms"].sum(),
        "shared_ta_ms": table["ta_ms"].sum(),
        "indicators": table,
    }


def peak_memory(years: float) -> dict:
    """Resident memory of a fresh process that loads the inputs (written here as Parquet, so generating them does not
    set the high-water mark) and then computes the catalog once: its peak (VmHWM) before and after."""
    prices, sentiment, start, end = inputs(["BTCUSDT", "ETHUSDT"], years)
    with tempfile.TemporaryDirectory() as tmp:
        prices.write_parquet(f"{tmp}/prices.parquet")
        sentiment.write_parquet(f"{tmp}/sentiment.parquet")
        child = subprocess.run(
            [sys.executable, __file__, "--measure-memory", tmp, start.isoformat(), end.isoformat()],
            check=True,
            capture_output=True,
            text=True,
        )
    return json.loads(child.stdout.strip().splitlines()[-1])


def resident_peak_mb() -> float:
    """This process's resident-set high-water mark. Not getrusage: its ru_maxrss survives exec, so a child started
    from a large parent would report the parent's size."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def measure_memory(folder: str, start: str, end: str) -> None:
    prices, sentiment = pl.read_parquet(f"{folder}/prices.parquet"), pl.read_parquet(f"{folder}/sentiment.parquet")
    before = resident_peak_mb()
    frame = compute_features(
        prices, sentiment, ["BTCUSDT", "ETHUSDT"], datetime.fromisoformat(start), datetime.fromisoformat(end)
    )
    report = {"before_mb": before, "peak_mb": resident_peak_mb(), "output_mb": frame.estimated_size() / 2**20}
    print(json.dumps(report))


def universe(sizes: list[int], years: float, repeat: int) -> pl.DataFrame:
    rows = []
    for size in sizes:
        names = ["BTCUSDT", *[f"SIM{i:03d}USDT" for i in range(size - 1)]]
        prices, sentiment, start, end = inputs(names, years)
        symbol_hours = int((end - start) / timedelta(hours=1)) * size
        compute_features(prices, sentiment, names, start, end)
        seconds = best_of(
            repeat, lambda n=names, p=prices, s=sentiment, a=start, b=end: compute_features(p, s, n, a, b)
        )
        rows.append({"symbols": size, "symbol_hours": symbol_hours, "seconds": seconds})
    frame = pl.DataFrame(rows).with_columns(
        (1e6 * pl.col("seconds") / pl.col("symbol_hours")).alias("us_per_symbol_hour")
    )
    return frame.with_columns((pl.col("us_per_symbol_hour") / pl.col("us_per_symbol_hour").first()).alias("vs_2"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--years", type=float, default=8)
    parser.add_argument("--universe", default="2,10,100")
    parser.add_argument("--universe-years", type=float, default=1)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--measure-memory", nargs=3, metavar=("FOLDER", "START", "END"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_memory:
        measure_memory(*args.measure_memory)
        return

    pl.Config.set_tbl_rows(20)
    pl.Config.set_float_precision(3)
    result = catalog_against_libraries(args.years, args.repeat)
    print(f"polars threads: {pl.thread_pool_size()}; TA-Lib and numpy: one thread")
    print(result["indicators"])
    print(
        f"whole catalog: {result['catalog_total_ms']:.1f} ms for {result['features']} features = "
        f"{result['catalog_ms_per_feature']:.2f} ms per feature; TA-Lib: {result['talib_mean_ms_per_indicator']:.2f} "
        f"ms per indicator; ratio {result['ratio_per_feature_to_talib']:.2f} (target <= 2)"
    )
    print(
        f"nine shared indicators: catalog {result['shared_catalog_ms']:.1f} ms, ta {result['shared_ta_ms']:.1f} ms: "
        f"{result['shared_ta_ms'] / result['shared_catalog_ms']:.0f}x (target >= 20)"
    )
    memory = peak_memory(args.years)
    print(
        f"peak memory ({args.years} years x 2 symbols): process RSS {memory['before_mb']:.0f} MB with the inputs "
        f"loaded, {memory['peak_mb']:.0f} MB at the peak of the computation "
        f"(+{memory['peak_mb'] - memory['before_mb']:.0f} MB); the feature table itself is {memory['output_mb']:.0f} MB"
    )
    sizes = [int(s) for s in args.universe.split(",")]
    print(f"universe, {args.universe_years} year(s):")
    print(universe(sizes, args.universe_years, max(1, args.repeat // 2)))


if __name__ == "__main__":
    main()
