"""What a policy earned: the loop against buy-and-hold, the rules baseline and always deploying the newest model.

Pure polars and numpy. Every policy is traded with the same backtest code as a model's evaluation
(`position_returns`: a position held over the next hour, `ALPHAPULSE_COST_BPS` per unit of position change, each
symbol on its own, the portfolio the mean over symbols), on the same symbol-hours, so their figures compare.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from alphapulse_assets.training.metrics import position_returns, summarize_returns
from alphapulse_assets.training.sharpe import deflated_sharpe_ratio, sample_moments, trial_sharpe_variance

# Column prefix in the `loop_performance` table -> what a person reads.
POLICIES = {
    "loop": "the loop (what was served)",
    "buy_and_hold": "buy and hold",
    "baseline": "rules baseline",
    "naive": "newest model, always deployed",
}
FIGURES = ("sharpe", "sortino", "max_drawdown", "turnover", "hit_rate", "time_in_market", "total_return", "n_hours")


def with_policy_returns(frame: pl.DataFrame, cost_bps: float) -> pl.DataFrame:
    """`frame` (ts, symbol, next_return and a `<policy>_signal` per policy) with `<policy>_trade` and
    `<policy>_net` per symbol-hour.

    The first hour of each symbol trades from flat: callers pass one hour before the range they report and drop
    it, so a range's first trade costs what it cost when the hours ran on."""
    out = frame.sort("symbol", "ts")
    for name in POLICIES:
        rows = position_returns(
            out.select("ts", "symbol", "next_return", pl.col(f"{name}_signal").alias("position")), cost_bps
        )
        out = out.join(
            rows.select("ts", "symbol", pl.col("trade").alias(f"{name}_trade"), pl.col("net").alias(f"{name}_net")),
            on=["ts", "symbol"],
        )
    return out.sort("ts", "symbol")


def policy_figures(frame: pl.DataFrame, name: str) -> tuple[dict[str, float], pl.DataFrame]:
    """The figures of one policy over the rows of `frame` (from `with_policy_returns`) and its hourly portfolio
    returns (ts, net)."""
    rows = frame.select(
        "ts",
        "symbol",
        pl.col(f"{name}_signal").alias("position"),
        pl.col(f"{name}_trade").alias("trade"),
        (pl.col(f"{name}_signal") * pl.col("next_return")).alias("gross"),
        pl.col(f"{name}_net").alias("net"),
    ).with_columns((pl.col("gross") - pl.col("net")).alias("cost"))
    result = summarize_returns(rows)
    net = result.hourly["net"].to_numpy()
    figures = {
        "sharpe": result.sharpe,
        "sortino": result.sortino,
        "max_drawdown": result.max_drawdown,
        "turnover": result.turnover,
        "hit_rate": result.hit_rate,
        "time_in_market": result.exposure,
        "total_return": float(np.expm1(net.sum())) if len(net) else 0.0,
        "n_hours": float(len(net)),
    }
    return figures, result.hourly.select("ts", "net")


def system_dsr(hourly_net: np.ndarray, trial_sharpes: np.ndarray) -> tuple[float, int, float]:
    """Deflated Sharpe of the loop's hourly returns, paying for every trial that shaped what it served.

    `trial_sharpes` are the per-hour walk-forward Sharpe ratios of every tuning trial of every retrain that counts,
    a row per trial and a column per trading rule it was tried with (1-D: one rule each). Every finite entry is a
    trial; their spread within rules is the luck the selection could buy (`trial_sharpe_variance`). Returns (dsr,
    trials, their variance)."""
    matrix = np.asarray(trial_sharpes, dtype=float)
    n_trials = int(np.isfinite(matrix).sum())
    variance = trial_sharpe_variance(matrix) if matrix.size else 0.0
    sharpe, skewness, kurtosis = sample_moments(hourly_net)
    if not math.isfinite(sharpe):
        return float("nan"), n_trials, variance
    dsr = deflated_sharpe_ratio(sharpe, len(hourly_net), max(n_trials, 1), variance, skewness, kurtosis)
    return dsr, n_trials, variance


def paired_t(a: np.ndarray, b: np.ndarray) -> float:
    """t-statistic of the mean hourly difference a - b (same hours): is one policy better than the other, beyond
    what the noise of these hours allows? NaN with fewer than two hours; 0 when they never differ."""
    difference = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if difference.size < 2:
        return float("nan")
    spread = float(np.std(difference, ddof=1))
    if spread == 0:
        return math.copysign(math.inf, difference[0]) if difference[0] else 0.0
    return float(difference.mean() / (spread / math.sqrt(difference.size)))


def champion_segments(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per contiguous run of hours served by one champion (or none): from, to, hours, the loop's net
    return over them and the naive policy's."""
    hourly = (
        frame.group_by("ts")
        .agg(
            pl.col("champion_version").first(),
            pl.col("loop_net").mean(),
            pl.col("naive_net").mean(),
            pl.col("buy_and_hold_net").mean(),
        )
        .sort("ts")
        .with_columns(pl.col("champion_version").fill_null("none"))
        .with_columns(
            (pl.col("champion_version") != pl.col("champion_version").shift(1))
            .fill_null(True)
            .cum_sum()
            .alias("segment")
        )
    )
    return (
        hourly.group_by("segment", maintain_order=True)
        .agg(
            pl.col("champion_version").first(),
            pl.col("ts").min().alias("from"),
            pl.col("ts").max().alias("to"),
            pl.len().alias("hours"),
            (pl.col("loop_net").sum().exp() - 1).alias("loop_return"),
            (pl.col("naive_net").sum().exp() - 1).alias("naive_return"),
            (pl.col("buy_and_hold_net").sum().exp() - 1).alias("buy_and_hold_return"),
        )
        .drop("segment")
    )
