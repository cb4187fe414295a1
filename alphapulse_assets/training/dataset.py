"""Labels and the chronological layout of one training. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from alphapulse_assets.hours import hourly_grid

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class TrainingWindows:
    """Rows are feature hours `ts`; a row's label is the return over hours (ts, ts + horizon], known once hour
    ts + horizon has closed.

    train: [train_start, train_end), cross-validated and tuned, then the final model is fitted on all of it;
    purge and embargo: [train_end, validation_start), rows whose labels reach the out-of-sample segment, and
    `embargo_hours` more; validation: [validation_start, validation_end), the final out-of-sample segment, never
    seen by tuning and scored once.
    """

    train_start: datetime
    train_end: datetime
    validation_start: datetime
    validation_end: datetime

    def as_dict(self) -> dict[str, str]:
        return {k: v.isoformat() for k, v in self.__dict__.items()}


def training_windows(
    decision_hour: datetime, train_days: int, validation_days: int, embargo_hours: int, horizon_hours: int = 1
) -> TrainingWindows:
    """Windows for a model trained when hour `decision_hour` has closed.

    The newest labelled row is decision_hour - horizon: its label needs the close of `decision_hour`. Training
    rows stop `horizon + embargo` hours before the out-of-sample segment, the same purge and embargo as each fold.
    """
    validation_end = decision_hour - (horizon_hours - 1) * HOUR
    validation_start = validation_end - timedelta(days=validation_days)
    train_end = validation_start - (horizon_hours + embargo_hours) * HOUR
    train_start = train_end - timedelta(days=train_days)
    return TrainingWindows(train_start, train_end, validation_start, validation_end)


def forward_returns(
    prices: pl.DataFrame, symbols: list[str] | tuple[str, ...], start: datetime, end: datetime, horizon_hours: int
) -> pl.DataFrame:
    """For rows ts in [start, end): `next_return` = log(close_{ts+1} / close_ts), the return a position taken at ts
    earns over the next hour, and `forward_return` = log(close_{ts+horizon} / close_ts), the label's return.

    Needs prices for [start, end + horizon). A missing close gives null returns; callers count and drop those rows.
    """
    grid = hourly_grid(symbols, start, end + horizon_hours * HOUR).join(
        prices.select("ts", "symbol", pl.col("close").cast(pl.Float64)), on=["ts", "symbol"], how="left"
    )
    log_close = pl.col("close").log()
    labelled = grid.with_columns(
        (log_close.shift(-1) - log_close).over("symbol").alias("next_return"),
        (log_close.shift(-horizon_hours) - log_close).over("symbol").alias("forward_return"),
    )
    return labelled.filter(pl.col("ts") < end).select("ts", "symbol", "next_return", "forward_return")


def direction_labels(forward_return: pl.Expr, dead_band: float) -> pl.Expr:
    """1 when the forward return is above +dead_band, 0 when below -dead_band, null inside the band.

    Returns inside the band are too small to call a direction (and to trade after costs); they are not labels.
    """
    return (
        pl.when(forward_return > dead_band)
        .then(pl.lit(1, pl.Int8))
        .when(forward_return < -dead_band)
        .then(pl.lit(0, pl.Int8))
        .otherwise(pl.lit(None, pl.Int8))
    )


def labelled_frame(features: pl.DataFrame, labels: pl.DataFrame, dead_band: float = 0.0) -> pl.DataFrame:
    """Features joined with their returns; `label_up` per `direction_labels` (null inside the dead band)."""
    return features.join(labels, on=["ts", "symbol"], how="inner").with_columns(
        direction_labels(pl.col("forward_return"), dead_band).alias("label_up")
    )


def labelled_rows(
    features: pl.DataFrame,
    prices: pl.DataFrame,
    symbols: list[str] | tuple[str, ...],
    start: datetime,
    end: datetime,
    horizon_hours: int,
    dead_band: float,
) -> pl.DataFrame:
    """Feature rows in [start, end) whose returns are known, with their label, ordered by hour then symbol.

    Rows whose returns are unknown (a price the label needs is missing) are left out; rows inside the dead band
    stay, with a null `label_up`: they are traded in a backtest but are not labels.
    """
    returns = forward_returns(prices, symbols, start, end, horizon_hours)
    known = pl.all_horizontal(
        pl.col(c).is_not_null() & pl.col(c).is_not_nan() for c in ("next_return", "forward_return")
    )
    return labelled_frame(features, returns, dead_band).filter(known).sort("ts", "symbol")
