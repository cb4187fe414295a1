"""Quality rules for a window of candles. Pure: they return failures with the offending rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from alphapulse_assets.features.indicators import hourly_grid


@dataclass(frozen=True)
class RuleResult:
    name: str
    passed: bool
    description: str
    failures: pl.DataFrame

    @property
    def failure_count(self) -> int:
        return self.failures.height


def check_complete(frame: pl.DataFrame, symbols, start: datetime, end: datetime) -> RuleResult:
    missing = hourly_grid(symbols, start, end).join(frame.select("ts", "symbol"), on=["ts", "symbol"], how="anti")
    return RuleResult("prices_complete", missing.height == 0, "every symbol has a candle for every hour", missing)


def check_unique(frame: pl.DataFrame) -> RuleResult:
    dupes = frame.group_by("ts", "symbol").len().filter(pl.col("len") > 1)
    return RuleResult("prices_unique", dupes.height == 0, "one candle per (ts, symbol)", dupes)


def check_ohlc(frame: pl.DataFrame) -> RuleResult:
    bad = frame.filter(
        (pl.col("low") > pl.min_horizontal("open", "close"))
        | (pl.col("high") < pl.max_horizontal("open", "close"))
        | (pl.col("open") <= 0)
        | (pl.col("close") <= 0)
        | (pl.col("low") <= 0)
        | (pl.col("volume") < 0)
    ).select("ts", "symbol", "open", "high", "low", "close", "volume")
    return RuleResult(
        "prices_ohlc_valid", bad.height == 0, "positive prices, low <= open/close <= high, volume >= 0", bad
    )
