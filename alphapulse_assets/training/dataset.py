"""Labels and chronological windows for training. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from alphapulse_assets.hours import hourly_grid


@dataclass(frozen=True)
class TrainingWindows:
    """Rows are feature hours `ts`; a row's label is the return of hour ts+1, known once hour ts+1 has closed.

    train: [train_start, train_end)  embargo: [train_end, validation_start)  validation: [validation_start, decision)
    """

    train_start: datetime
    train_end: datetime
    validation_start: datetime
    validation_end: datetime

    def as_dict(self) -> dict[str, str]:
        return {k: v.isoformat() for k, v in self.__dict__.items()}


def training_windows(
    decision_hour: datetime, train_days: int, validation_days: int, embargo_hours: int
) -> TrainingWindows:
    """Windows for a model trained when hour `decision_hour` has closed.

    The newest labelled row is decision_hour - 1h (its label needs the close of `decision_hour`). The embargo keeps
    training rows whose look-back windows overlap the validation rows out of training.
    """
    validation_end = decision_hour
    validation_start = validation_end - timedelta(days=validation_days)
    train_end = validation_start - timedelta(hours=embargo_hours)
    train_start = train_end - timedelta(days=train_days)
    return TrainingWindows(train_start, train_end, validation_start, validation_end)


def next_hour_returns(
    prices: pl.DataFrame, symbols: list[str] | tuple[str, ...], start: datetime, end: datetime
) -> pl.DataFrame:
    """`next_return` for rows ts in [start, end): log(close_{ts+1} / close_ts). Needs prices for [start, end + 1h).

    Missing hours give null labels; callers drop those rows and report how many.
    """
    grid = hourly_grid(symbols, start, end + timedelta(hours=1)).join(
        prices.select("ts", "symbol", pl.col("close").cast(pl.Float64)), on=["ts", "symbol"], how="left"
    )
    labelled = grid.with_columns(
        (pl.col("close").shift(-1).log() - pl.col("close").log()).over("symbol").alias("next_return")
    )
    return labelled.filter(pl.col("ts") < end).select("ts", "symbol", "next_return")


def labelled_frame(features: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """Features joined with their label; `label_up` is 1 when the next hour's return is positive."""
    return features.join(labels, on=["ts", "symbol"], how="inner").with_columns(
        (pl.col("next_return") > 0).cast(pl.Int8).alias("label_up")
    )
