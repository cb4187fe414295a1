"""What a drift report compares, laid out once for the Dagster asset, the benchmark and the calibration tests.

Features that are functions of the clock alone (hour of day, day of week) are left out: a window's calendar mix is
fixed by the window, so they cannot drift, and a 24-hour window is all weekday or all weekend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from alphapulse_assets.features.catalog import CATALOG, CLOCK
from alphapulse_assets.hours import hourly_grid
from alphapulse_assets.monitoring.drift import DriftThresholds, Reference, measure_drift

_CLOCK_ONLY = frozenset(f.name for f in CATALOG if f.sources == (CLOCK,))
HOUR = timedelta(hours=1)


def drift_features(names: Iterable[str]) -> list[str]:
    """The features a drift report tests: every one but those computed from the clock alone."""
    return [name for name in names if name not in _CLOCK_ONLY]


def feature_columns(
    frame: pl.DataFrame, names: list[str], symbols: list[str] | tuple[str, ...], start: datetime, end: datetime
) -> dict[str, np.ndarray]:
    """Each feature over the complete (symbol, hour) grid of [start, end), symbol-major, NaN where missing: in time
    order per symbol (autocorrelation is estimated along it) and reshapeable to (symbols, hours)."""
    if not names:
        return {}
    grid = hourly_grid(sorted(symbols), start, end).join(
        frame.select("ts", "symbol", *names), on=["ts", "symbol"], how="left"
    )
    # One conversion for all columns (column-major, so each column is contiguous): this runs every replayed hour.
    values = grid.select(pl.col(names).cast(pl.Float64).fill_null(float("nan"))).to_numpy(order="fortran")
    return {name: values[:, i] for i, name in enumerate(names)}


def feature_references(
    frame: pl.DataFrame,
    names: list[str],
    symbols: list[str] | tuple[str, ...],
    start: datetime,
    end: datetime,
    window_hours: int,
) -> dict[str, Reference]:
    """Each feature's reference over [start, end), with the spread of its own `window_hours`-hour windows."""
    columns = feature_columns(frame, names, symbols, start, end)
    return {name: Reference.of(values, window=(len(symbols), window_hours)) for name, values in columns.items()}


def replay_drift(
    features: pl.DataFrame,
    symbols: list[str] | tuple[str, ...],
    hours: list[datetime],
    training_window: Callable[[datetime], tuple[datetime, datetime]],
    window_hours: int,
    thresholds: DriftThresholds | None = None,
    references: Callable[..., dict[str, Reference]] = feature_references,
    tested: Callable[[Iterable[str]], list[str]] = drift_features,
) -> pl.DataFrame:
    """The drift report of each hour, as the hourly job would write it, from a feature frame alone: the reference
    is the training window `training_window(hour)` gives (a new one whenever it moves), the current window the
    `window_hours` hours ending with `hour`. One row per hour: ts, status, drifted_share, reason. `references` and
    `tested` stand in for how references are prepared and which features are tested, to compare rules."""
    thresholds = thresholds or DriftThresholds()
    names = tested(c for c in features.columns if c not in ("ts", "symbol"))
    prepared: dict[tuple[datetime, datetime], dict[str, Reference]] = {}
    rows = []
    for hour in hours:
        span = training_window(hour)
        if span not in prepared:
            prepared = {span: references(features, names, symbols, *span, window_hours)}
        first = hour + HOUR - timedelta(hours=window_hours)
        current = features.filter((pl.col("ts") >= first) & (pl.col("ts") <= hour))
        summary = measure_drift(
            prepared[span], feature_columns(current, names, symbols, first, hour + HOUR), thresholds
        )
        rows.append(
            {"ts": hour, "status": summary.status, "drifted_share": summary.drifted_share, "reason": summary.reason}
        )
    return pl.DataFrame(
        rows,
        schema={"ts": pl.Datetime("us", "UTC"), "status": pl.String, "drifted_share": pl.Float64, "reason": pl.String},
    )
