"""Feature definitions and their computation: pure polars, no Dagster.

Every feature at hour t uses only data up to the close of hour t (prices of hours <= t, news published before
t + 1h), and every window is a fixed number of hours on a complete hourly grid, so a missing hour yields nulls
rather than a window that silently reaches further back, and the value at t never depends on how a backfill was
chunked (only on the `LOOKBACK_HOURS` before it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import polars as pl

EPS = 1e-12


@dataclass(frozen=True)
class FeatureDef:
    name: str
    family: str
    lookback_hours: int
    formula: str


FEATURE_CATALOG: tuple[FeatureDef, ...] = (
    FeatureDef("ret_1h", "returns", 1, "log(close_t / close_{t-1})"),
    FeatureDef("ret_4h", "returns", 4, "log(close_t / close_{t-4})"),
    FeatureDef("ret_24h", "returns", 24, "log(close_t / close_{t-24})"),
    FeatureDef("vol_24h", "volatility", 24, "std of ret_1h over the last 24 hours"),
    FeatureDef("vol_ratio_6_24", "volatility", 24, "std(ret_1h, 6h) / std(ret_1h, 24h)"),
    FeatureDef("range_log", "volatility", 0, "log(high_t / low_t)"),
    FeatureDef(
        "rsi_sma_14", "oscillator", 14, "100 * mean(up moves, 14h) / (mean(up, 14h) + mean(down, 14h)) (Cutler RSI)"
    ),
    FeatureDef("volume_z_24", "volume", 24, "z-score of log(volume_t) against the last 24 hours"),
    FeatureDef("taker_buy_ratio", "microstructure", 0, "taker_buy_volume_t / volume_t"),
    FeatureDef("hour_sin", "calendar", 0, "sin(2*pi*hour_of_day/24)"),
    FeatureDef("hour_cos", "calendar", 0, "cos(2*pi*hour_of_day/24)"),
    FeatureDef("news_count_1h", "sentiment", 0, "headlines about the symbol or the market published in hour t"),
    FeatureDef("news_sent_mean_1h", "sentiment", 0, "mean headline sentiment of hour t (null: no headlines)"),
    FeatureDef("news_sent_mean_prev_1h", "sentiment", 1, "news_sent_mean_1h of hour t-1"),
    FeatureDef("news_sent_sum_6h", "sentiment", 6, "sum of headline sentiment over hours t-5..t"),
    FeatureDef(
        "news_sent_decayed",
        "sentiment",
        0,
        "news_sentiment.sentiment_decayed: mean headline sentiment weighted by 2^-(age/half-life) (null: none)",
    ),
    FeatureDef("news_intensity_decayed", "sentiment", 0, "news_sentiment.news_intensity_decayed: sum of those weights"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURE_CATALOG)
# The longest window plus one hour for the first difference, with room to spare for later families.
LOOKBACK_HOURS = 48
# Bump when the computation changes without the catalog text changing.
_IMPLEMENTATION_REVISION = 1


def feature_version() -> str:
    """A hash of the catalog definitions: a model is only ever served features of the version it trained on."""
    payload = json.dumps(
        {"revision": _IMPLEMENTATION_REVISION, "features": [asdict(f) for f in FEATURE_CATALOG]}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def hourly_grid(symbols: list[str] | tuple[str, ...], start: datetime, end: datetime) -> pl.DataFrame:
    hours = pl.datetime_range(start, end - timedelta(hours=1), "1h", time_zone="UTC", eager=True).alias("ts")
    return pl.DataFrame(hours).join(pl.DataFrame({"symbol": list(symbols)}), how="cross").sort("symbol", "ts")


def compute_features(
    prices: pl.DataFrame,
    sentiment: pl.DataFrame,
    symbols: list[str] | tuple[str, ...],
    start: datetime,
    end: datetime,
) -> pl.DataFrame:
    """Features for every (hour, symbol) in [start, end).

    `prices` and `sentiment` must cover [start - LOOKBACK_HOURS, end); hours absent from them are missing data and
    produce nulls in every feature whose window touches them.
    """
    grid = hourly_grid(symbols, start - timedelta(hours=LOOKBACK_HOURS), end)
    # Prices are exact decimals in the warehouse; features are where floats begin.
    numeric = [c for c in ("open", "high", "low", "close", "volume", "taker_buy_volume") if c in prices.columns]
    prices = prices.with_columns(pl.col(numeric).cast(pl.Float64))
    frame = grid.join(prices, on=["ts", "symbol"], how="left").join(
        sentiment.select("ts", "symbol", "item_count", "sentiment_mean", "sentiment_decayed", "news_intensity_decayed"),
        on=["ts", "symbol"],
        how="left",
    )
    log_close = pl.col("close").log()
    ret_1h = log_close.diff()
    price_move = pl.col("close").diff()
    up = price_move.clip(lower_bound=0).rolling_mean(14)
    down = (-price_move).clip(lower_bound=0).rolling_mean(14)
    log_volume = (pl.col("volume") + EPS).log()
    hour = pl.col("ts").dt.hour().cast(pl.Float64)
    sentiment_sum = (
        pl.when(pl.col("item_count") == 0).then(0.0).otherwise(pl.col("sentiment_mean") * pl.col("item_count"))
    )

    features = frame.with_columns(
        ret_1h.over("symbol").alias("ret_1h"),
        (log_close - log_close.shift(4)).over("symbol").alias("ret_4h"),
        (log_close - log_close.shift(24)).over("symbol").alias("ret_24h"),
        ret_1h.rolling_std(24).over("symbol").alias("vol_24h"),
        (ret_1h.rolling_std(6) / ret_1h.rolling_std(24)).over("symbol").alias("vol_ratio_6_24"),
        (pl.col("high") / pl.col("low")).log().alias("range_log"),
        pl.when((up + down) > 0).then(100.0 * up / (up + down)).otherwise(50.0).over("symbol").alias("rsi_sma_14"),
        ((log_volume - log_volume.rolling_mean(24)) / log_volume.rolling_std(24)).over("symbol").alias("volume_z_24"),
        (pl.col("taker_buy_volume") / pl.col("volume")).alias("taker_buy_ratio"),
        (2.0 * 3.141592653589793 * hour / 24.0).sin().alias("hour_sin"),
        (2.0 * 3.141592653589793 * hour / 24.0).cos().alias("hour_cos"),
        pl.col("item_count").cast(pl.Float64).alias("news_count_1h"),
        pl.col("sentiment_mean").alias("news_sent_mean_1h"),
        pl.col("sentiment_mean").shift(1).over("symbol").alias("news_sent_mean_prev_1h"),
        sentiment_sum.rolling_sum(6).over("symbol").alias("news_sent_sum_6h"),
        pl.col("sentiment_decayed").alias("news_sent_decayed"),
        pl.col("news_intensity_decayed").alias("news_intensity_decayed"),
    )
    # The RSI fallback of 50 only applies where the window exists; nulls in the window must stay null.
    features = features.with_columns(
        pl.when(up.over("symbol").is_null()).then(None).otherwise(pl.col("rsi_sma_14")).alias("rsi_sma_14")
    )
    return (
        features.filter(pl.col("ts") >= start)
        .select("ts", "symbol", *FEATURE_NAMES)
        .with_columns(pl.col(FEATURE_NAMES).cast(pl.Float64).fill_nan(None))
        .sort("ts", "symbol")
    )


def latest_rows(features: pl.DataFrame) -> pl.DataFrame:
    """The newest row per symbol: what the online snapshot serves."""
    return features.sort("ts").group_by("symbol", maintain_order=True).last().sort("symbol")
