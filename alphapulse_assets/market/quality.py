"""Quality rules for candles. Pure polars.

Row-level problems (a row that would poison features) send the row to quarantine with its reason; window-level
findings (gaps, extreme moves) are reported by the asset checks, because a missing hour or a crash is data.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from alphapulse_assets.hours import hourly_grid
from alphapulse_assets.market.binance_archive import REJECTED_SCHEMA

_PRICES = ("open", "high", "low", "close")
_VOLUMES = ("volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume")


def ohlc_inconsistent() -> pl.Expr:
    """Low above min(open, close) or high below max(open, close)."""
    return (pl.col("low") > pl.min_horizontal("open", "close")) | (pl.col("high") < pl.max_horizontal("open", "close"))


def _reason() -> pl.Expr:
    """The first rule a row breaks, or null."""
    non_positive = pl.any_horizontal([pl.col(c) <= 0 for c in _PRICES])
    negative_volume = pl.any_horizontal([pl.col(c) < 0 for c in _VOLUMES]) | (pl.col("trades") < 0)
    return (
        pl.when(non_positive)
        .then(pl.lit("non-positive price"))
        .when(negative_volume)
        .then(pl.lit("negative volume or trade count"))
        .when(pl.col("low") > pl.min_horizontal("open", "close"))
        .then(pl.lit("OHLC inconsistent: low above min(open, close)"))
        .when(pl.col("high") < pl.max_horizontal("open", "close"))
        .then(pl.lit("OHLC inconsistent: high below max(open, close)"))
        .otherwise(None)
    )


def quarantine(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split candles into accepted rows and rejected rows (REJECTED_SCHEMA) with reasons.

    Duplicates of (ts, symbol): identical copies keep one row and quarantine the others; conflicting copies are all
    quarantined, since nothing says which one is right.
    """
    flagged = frame.with_columns(_reason().alias("reason"))
    key = ["ts", "symbol"]
    provenance = ("source", "line", "raw")
    value_columns = [c for c in frame.columns if c not in (*key, *provenance)]
    stored_columns = [c for c in frame.columns if c not in ("line", "raw")]
    flagged = flagged.with_columns(
        pl.len().over(key).alias("_copies"),
        pl.struct(value_columns).n_unique().over(key).alias("_variants"),
        pl.int_range(pl.len()).over(key).alias("_copy"),
    ).with_columns(
        pl.when(pl.col("reason").is_not_null())
        .then(pl.col("reason"))
        .when((pl.col("_copies") > 1) & (pl.col("_variants") > 1))
        .then(pl.lit("conflicting duplicates of (ts, symbol)"))
        .when((pl.col("_copies") > 1) & (pl.col("_copy") > 0))
        .then(pl.lit("duplicate of an identical row"))
        .otherwise(pl.col("reason"))
        .alias("reason")
    )
    accepted = flagged.filter(pl.col("reason").is_null()).select(stored_columns).sort("ts", "symbol")
    bad = flagged.filter(pl.col("reason").is_not_null())
    rejected = bad.select(
        "ts",
        "symbol",
        "source",
        pl.col("line") if "line" in frame.columns else pl.lit(None, dtype=pl.Int64).alias("line"),
        # The text the source sent when we have it; otherwise the values as parsed.
        pl.col("raw")
        if "raw" in frame.columns
        else pl.concat_str([pl.col(c).cast(pl.String) for c in value_columns], separator=",").alias("raw"),
        "reason",
    ).cast(REJECTED_SCHEMA)
    return accepted, rejected


def missing_hours(frame: pl.DataFrame, symbols, start: datetime, end: datetime) -> pl.DataFrame:
    """(symbol, first, last, hours) for each run of consecutive missing hours."""
    missing = hourly_grid(symbols, start, end).join(frame.select("ts", "symbol"), on=["ts", "symbol"], how="anti")
    if missing.is_empty():
        return pl.DataFrame(
            schema={"symbol": pl.String, "first": missing["ts"].dtype, "last": missing["ts"].dtype, "hours": pl.UInt32}
        )
    runs = missing.sort("symbol", "ts").with_columns(
        ((pl.col("ts").diff().over("symbol") != pl.duration(hours=1)).fill_null(True)).cum_sum().alias("_run")
    )
    return (
        runs.group_by("symbol", "_run")
        .agg(pl.col("ts").min().alias("first"), pl.col("ts").max().alias("last"), pl.len().alias("hours"))
        .drop("_run")
        .sort("symbol", "first")
    )


def extreme_moves(frame: pl.DataFrame, z_threshold: float) -> pl.DataFrame:
    """Hours whose log return has a robust z-score (median / 1.4826·MAD over the frame) above `z_threshold`."""
    returns = frame.sort("symbol", "ts").with_columns(
        pl.col("close").cast(pl.Float64).log().diff().over("symbol").alias("log_return")
    )
    scored = returns.with_columns(
        ((pl.col("log_return") - pl.col("log_return").median().over("symbol")).abs()).alias("_dev")
    ).with_columns((pl.col("_dev") / (1.4826 * pl.col("_dev").median().over("symbol"))).alias("robust_z"))
    return scored.filter(pl.col("robust_z") > z_threshold).select("ts", "symbol", "log_return", "robust_z")


def out_of_order(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows a source sent before an earlier hour of the same symbol (by `line` within each `source`).

    They are still good data, and are stored sorted; the count says something about the source.
    """
    if "line" not in frame.columns or frame.is_empty():
        return frame.clear().select("ts", "symbol", "source")
    ordered = frame.filter(pl.col("line").is_not_null()).sort("source", "symbol", "line")
    previous = pl.col("ts").cum_max().shift(1).over("source", "symbol")
    return ordered.filter(pl.col("ts") < previous).select("ts", "symbol", "source", "line")
