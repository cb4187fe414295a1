"""Indicator math over one symbol's complete hourly series. Pure numpy/TA-Lib and polars; no Dagster.

Two kinds of building blocks:
- Row-wise polars expressions (returns, candle shapes, ratios of the hour's own values). They look back by `shift`
  only, never by a rolling window, so evaluating them over a column that holds several symbols is exact.
- Window functions over numpy arrays of one symbol (NaN where the hour is missing). They run sequentially in C
  (TA-Lib), symbol by symbol and run of complete hours by run: the value at row t is a function of the rows <= t of
  its own run only. That makes point-in-time exact to the last bit, and a missing hour null every window holding it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import polars as pl
import talib

LN2 = math.log(2.0)
TWO_PI = 2.0 * math.pi

# --- row-wise polars expressions -----------------------------------------------------------------------------------
CLOSE, OPEN, HIGH, LOW = pl.col("close"), pl.col("open"), pl.col("high"), pl.col("low")
# Computed once per run in numpy (polars would recompute the log in every expression that uses it).
LOG_CLOSE = pl.col("log_close")
LOG_RANGE = (HIGH / LOW).log()
RANGE = HIGH - LOW
BODY_TOP = pl.max_horizontal(OPEN, CLOSE)
BODY_BOTTOM = pl.min_horizontal(OPEN, CLOSE)
MARKET_LOG_CLOSE = pl.col("market_log_close")


def log_return(hours: int, log_close: pl.Expr = LOG_CLOSE) -> pl.Expr:
    return log_close - log_close.shift(hours)


def ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """numerator / denominator, null (not infinite) where the denominator is 0."""
    return pl.when(denominator != 0).then(numerator / denominator)


# --- window functions over one symbol's arrays ---------------------------------------------------------------------
Series = Mapping[str, np.ndarray]
Window = Callable[[Series], np.ndarray]


def complete_runs(*columns: np.ndarray) -> list[tuple[int, int]]:
    """[begin, end) of each run of consecutive rows where every column is finite."""
    complete = np.logical_and.reduce([np.isfinite(c) for c in columns])
    if complete.all():
        return [(0, len(complete))]
    edges = np.flatnonzero(np.diff(np.concatenate(([0], complete.astype(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def by_run(fn: Callable[..., np.ndarray], *columns: np.ndarray, warmup: int) -> np.ndarray:
    """`fn` applied to each run of complete rows; NaN elsewhere and in runs no longer than `warmup`.

    TA-Lib carries a NaN forward forever (through its running sums and exponential smoothings), so every TA-Lib
    call goes through here: a missing hour restarts the computation, as at the start of a series.
    """
    runs = complete_runs(*columns)
    with np.errstate(invalid="ignore", divide="ignore"):
        if runs == [(0, len(columns[0]))] and len(columns[0]) > warmup:
            return np.asarray(fn(*columns), dtype=np.float64)
        out = np.full(len(columns[0]), np.nan)
        for begin, end in runs:
            if end - begin > warmup:
                out[begin:end] = fn(*(c[begin:end] for c in columns))
    return out


def first_difference(values: np.ndarray) -> np.ndarray:
    """x_t - x_(t-1), NaN for the first row."""
    out = np.empty_like(values)
    out[0] = np.nan
    np.subtract(values[1:], values[:-1], out=out[1:])
    return out


def constant_window(x: np.ndarray, hours: int) -> np.ndarray:
    """True where the last `hours` values are all equal. Decided exactly (max == min): running sums leave rounding
    residue, so a variance computed from them is a few ulps, not 0, for a constant window."""
    return talib.MAX(x, hours) == talib.MIN(x, hours)


def root_mean(squares: np.ndarray, hours: int) -> np.ndarray:
    """sqrt(mean of the last `hours` non-negative values); exactly 0 when they are all 0."""
    return by_run(
        lambda x: np.where(talib.MAX(x, hours) == 0.0, 0.0, np.sqrt(talib.SMA(x, hours))), squares, warmup=hours - 1
    )


def realised_vol(returns: np.ndarray, hours: int) -> np.ndarray:
    """Root mean square of the last `hours` hourly log returns (not demeaned, not annualised)."""
    return root_mean(returns**2, hours)


def parkinson_vol(series: Series, hours: int) -> np.ndarray:
    """Parkinson (1980) range estimator of volatility per hour: sqrt(mean(ln(H/L)²) / (4 ln 2))."""
    return root_mean(np.log(series["high"] / series["low"]) ** 2 / (4.0 * LN2), hours)


def garman_klass_vol(series: Series, hours: int) -> np.ndarray:
    """Garman–Klass (1980): sqrt(mean(0.5 ln(H/L)² - (2 ln 2 - 1) ln(C/O)²)). Each term is >= 0 because the open
    and close lie inside the high-low range (clipped at 0 against rounding)."""
    log_range = np.log(series["high"] / series["low"])
    log_body = np.log(series["close"] / series["open"])
    return root_mean(np.maximum(0.5 * log_range**2 - (2.0 * LN2 - 1.0) * log_body**2, 0.0), hours)


def moving_zscore(values: np.ndarray, hours: int) -> np.ndarray:
    """(x - mean) / sample standard deviation over the last `hours` values; NaN for a window with a missing hour
    and for a constant window (no spread: the z-score is undefined, not a ratio of rounding errors)."""

    def zscore(x: np.ndarray) -> np.ndarray:
        std = np.sqrt(talib.VAR(x, hours, 1.0) * (hours / (hours - 1.0)))
        return np.where(constant_window(x, hours), np.nan, (x - talib.SMA(x, hours)) / std)

    return by_run(zscore, values, warmup=hours - 1)


def moving_corr(x: np.ndarray, y: np.ndarray, hours: int) -> np.ndarray:
    """Pearson correlation over the last `hours` rows (TA-Lib CORREL); NaN where the window holds a missing hour
    or where either series is constant (TA-Lib answers 0 there, but the correlation is undefined)."""

    def corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.where(constant_window(a, hours) | constant_window(b, hours), np.nan, talib.CORREL(a, b, hours))

    return by_run(corr, x, y, warmup=hours - 1)


def moving_average_gap(close: np.ndarray, hours: int) -> np.ndarray:
    """ln(close / simple moving average of the close)."""
    return by_run(lambda c: np.log(c / talib.SMA(c, hours)), close, warmup=hours - 1)


def sum_ratio(numerator: np.ndarray, denominator: np.ndarray, hours: int) -> np.ndarray:
    """sum(numerator) / sum(denominator) over the last `hours` rows; NaN where the denominator's window is all 0."""
    return by_run(
        lambda a, b: np.where(talib.MAX(np.abs(b), hours) == 0.0, np.nan, talib.SUM(a, hours) / talib.SUM(b, hours)),
        numerator,
        denominator,
        warmup=hours - 1,
    )


def moving_sum(values: np.ndarray, hours: int, exact_zero_when: np.ndarray | None = None) -> np.ndarray:
    """Sum of the last `hours` values. Where `exact_zero_when` (a non-negative series) is 0 over the whole window,
    the sum is exactly 0 (no rounding residue from values that left the window)."""
    if exact_zero_when is None:
        return by_run(lambda x: talib.SUM(x, hours), values, warmup=hours - 1)
    return by_run(
        lambda x, z: np.where(talib.MAX(z, hours) == 0.0, 0.0, talib.SUM(x, hours)),
        values,
        exact_zero_when,
        warmup=hours - 1,
    )


def price_position(series: Series, hours: int) -> np.ndarray:
    """Where the close sits in the window's range: 0 at the lowest low, 1 at the highest high (Alpha158 RSV);
    NaN for a window without range."""

    def position(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
        lowest = talib.MIN(low, hours)
        return (close - lowest) / (talib.MAX(high, hours) - lowest)

    return by_run(position, series["high"], series["low"], series["close"], warmup=hours - 1)


def trend_slope(returns: np.ndarray, hours: int) -> np.ndarray:
    """Least-squares slope of log close on the hour index over the last `hours` hours (log return per hour).

    For equally spaced x the OLS slope is a fixed weighting of the window's first differences,
    slope = 6 / (n(n²-1)) · Σ_{j=1}^{n-1} j(n-j) · r_j, so it is one convolution of the hourly returns: exact and
    NaN-propagating (a missing hour nulls the windows that hold it).
    """
    n = hours
    j = np.arange(1, n, dtype=np.float64)
    kernel = j * (n - j) * 6.0 / (n * (n * n - 1.0))  # symmetric, so convolution and correlation agree
    out = np.full_like(returns, np.nan)
    if len(returns) >= n - 1:
        out[n - 2 :] = np.convolve(returns, kernel, mode="valid")
    return out


def trend_r_squared(log_close: np.ndarray, slope: np.ndarray, hours: int) -> np.ndarray:
    """R² of the least-squares line with that `slope` (from trend_slope):
    R² = slope² · Sxx / Syy with Sxx = n(n²-1)/12 and Syy = (n-1) · var(log close).

    The variance of log prices within a window is tiny next to their square (ln 60,000 ≈ 11), so a running-sum
    variance would lose about 7 digits; polars' rolling variance keeps them. NaN for a flat window.
    """
    sxx = hours * (hours * hours - 1) / 12.0
    variance = by_run(lambda y: pl.Series(y).rolling_var(hours).to_numpy(), log_close, warmup=hours - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(variance > 0, slope**2 * sxx / (variance * (hours - 1)), np.nan)


def log_trade_size(volume: np.ndarray, trades: np.ndarray) -> np.ndarray:
    """ln(volume / trades); NaN for an hour without trades or volume (no average trade exists)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((volume > 0) & (trades > 0), np.log(volume / trades), np.nan)


def calendar(period_hours: int, fn: Callable[[np.ndarray], np.ndarray]) -> Window:
    """fn(2π · phase / period) for the phase of each hour in a cycle of `period_hours` (24: the hour of day;
    168: the hour of the week, Monday 00:00 UTC = 0, since 1970-01-01 was a Thursday)."""
    offset = 72 if period_hours == 168 else 0
    by_phase = np.asarray(fn(TWO_PI * np.arange(period_hours) / period_hours), dtype=np.float64)
    return lambda series: by_phase[(series["epoch_hour"] + offset) % period_hours]


def talib_by_run(indicator: Callable[..., np.ndarray], inputs: tuple[str, ...], warmup: int) -> Window:
    """A TA-Lib indicator on each run of consecutive complete hours: the first `warmup` hours after a missing one
    are null (TA-Lib's own lookback), exactly as at the start of a series. Inside a run the values are TA-Lib's."""
    return lambda series: by_run(indicator, *(series[name] for name in inputs), warmup=warmup)
