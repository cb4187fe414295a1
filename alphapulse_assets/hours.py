"""The hourly time axis every table shares. Pure polars: the simulator and the feature math use it too."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl


def hour_range(start: datetime, end: datetime) -> pl.Series:
    """Every hour start in [start, end), UTC, as the `ts` column."""
    return pl.datetime_range(start, end - timedelta(hours=1), "1h", time_zone="UTC", eager=True).alias("ts")


def hourly_grid(symbols: list[str] | tuple[str, ...], start: datetime, end: datetime) -> pl.DataFrame:
    """Every (symbol, hour) in [start, end), symbol-major: each symbol's hours form one contiguous block."""
    return (
        pl.DataFrame({"symbol": list(symbols)})
        .join(pl.DataFrame(hour_range(start, end)), how="cross")
        .sort("symbol", "ts")
    )
