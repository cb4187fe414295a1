"""Out-of-sample metrics, a cost-aware backtest of a trading rule, and the choice of that rule. Pure numpy/polars."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from alphapulse_assets.training.sharpe import sample_moments
from alphapulse_contract.scoring import TradingRule

HOURS_PER_YEAR = 24 * 365
_P_CLIP = 1e-7


def _row_losses(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), _P_CLIP, 1 - _P_CLIP)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(_row_losses(y, p)))


def accuracy(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((p > 0.5).astype(int) == y))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.flatnonzero(np.concatenate([[True], sorted_values[1:] != sorted_values[:-1]]))
    ends = np.concatenate([starts[1:], [len(values)]])
    ranks = np.empty(len(values))
    ranks[order] = np.repeat((starts + ends - 1) / 2.0 + 1.0, ends - starts)
    return ranks


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Mann-Whitney AUC with average ranks for ties; NaN when only one class is present."""
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(p)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def information_coefficient(score: np.ndarray, realised: np.ndarray) -> float:
    """Pearson correlation of a score with the realised return; NaN when either is constant."""
    score, realised = np.asarray(score, dtype=np.float64), np.asarray(realised, dtype=np.float64)
    if len(score) < 2 or np.std(score) == 0 or np.std(realised) == 0:
        return float("nan")
    return float(np.corrcoef(score, realised)[0, 1])


def rank_information_coefficient(score: np.ndarray, realised: np.ndarray) -> float:
    """Spearman correlation: the IC of the ranks, robust to a few extreme returns."""
    return information_coefficient(average_ranks(score), average_ranks(realised))


def log_loss_gain_t(y: np.ndarray, p_model: np.ndarray, p_base: np.ndarray) -> float:
    """Paired t-statistic of the per-row log-loss gain of a model over a baseline (positive: the model is better).

    Rows of different symbols in the same hour are correlated, so this overstates the evidence somewhat; it still
    tells a real gain from the luck of a few hundred rows, which the sign of the mean gain alone cannot.
    """
    gain = _row_losses(y, p_base) - _row_losses(y, p_model)
    if len(gain) < 2:
        return float("nan")
    spread = float(np.std(gain, ddof=1))
    return float(np.mean(gain) / (spread / math.sqrt(len(gain)))) if spread > 0 else 0.0


def signal_from_probability(p: np.ndarray, band: float) -> np.ndarray:
    """+1 long when P(up) > 0.5 + band, -1 short when < 0.5 - band, else 0 (flat)."""
    return np.where(p > 0.5 + band, 1, np.where(p < 0.5 - band, -1, 0)).astype(np.int8)


def smoothed_probability(
    symbols: np.ndarray, hours: np.ndarray, probability: np.ndarray, smoothing_hours: int
) -> np.ndarray:
    """`TradingRule`'s moving mean for many rows at once. Rows are sorted by symbol, then hour (integer hours since
    the epoch, one row per symbol-hour); each row gets the mean P(up) of its symbol's rows within the last
    `smoothing_hours` hours. Summed newest first, as `TradingRule.position` sums, so both give the same bits."""
    probability = np.asarray(probability, dtype=np.float64)
    if smoothing_hours == 1 or len(probability) == 0:
        return probability.copy()
    total, count = probability.copy(), np.ones(len(probability))
    for lag in range(1, smoothing_hours):
        earlier = np.zeros(len(probability), dtype=bool)
        earlier[lag:] = (symbols[lag:] == symbols[:-lag]) & (hours[lag:] - hours[:-lag] < smoothing_hours)
        if not earlier.any():
            break  # rows further back are further in time still
        total[lag:] += np.where(earlier[lag:], probability[:-lag], 0.0)
        count += earlier
    return total / count


def rule_positions(frame: pl.DataFrame, rule: TradingRule) -> pl.DataFrame:
    """`frame` (ts, symbol, probability, ...) ordered by symbol, then time, with the rule's `smoothed_probability`
    and `position` per row."""
    ordered = frame.sort("symbol", "ts")
    smoothed = smoothed_probability(
        ordered["symbol"].to_numpy(),
        (ordered["ts"].dt.epoch("s") // 3600).to_numpy(),
        ordered["probability"].to_numpy(),
        rule.smoothing_hours,
    )
    return ordered.with_columns(
        pl.Series("smoothed_probability", smoothed),
        pl.Series("position", signal_from_probability(smoothed, rule.band)),
    )


@dataclass(frozen=True)
class Backtest:
    hourly: pl.DataFrame  # ts, gross, cost, net (portfolio, equal weight across symbols)
    sharpe: float  # annualised for 24 x 365 hours
    sortino: float  # annualised; downside deviation of net hourly returns below zero
    max_drawdown: float
    turnover: float  # mean absolute position change per symbol-hour
    hit_rate: float  # share of non-flat positions that made money before costs
    exposure: float  # share of symbol-hours with a position


def position_returns(frame: pl.DataFrame, cost_bps: float) -> pl.DataFrame:
    """Per symbol-hour returns of holding `position` over the next hour: `trade` (absolute position change, from flat
    at each symbol's first row), `gross`, `cost` (`cost_bps` per unit traded) and `net`. `frame` has ts, symbol,
    position and next_return; the result is ordered by symbol, then time."""
    return (
        frame.sort("symbol", "ts")
        .with_columns(
            (pl.col("position") - pl.col("position").shift(1, fill_value=0)).abs().over("symbol").alias("trade"),
        )
        .with_columns(
            (pl.col("position") * pl.col("next_return")).alias("gross"),
            (pl.col("trade") * cost_bps / 10_000.0).alias("cost"),
        )
        .with_columns((pl.col("gross") - pl.col("cost")).alias("net"))
    )


def summarize_returns(ordered: pl.DataFrame) -> Backtest:
    """Portfolio statistics of `position_returns` rows: each hour's return is the mean over symbols."""
    hourly = (
        ordered.group_by("ts")
        .agg(pl.col("gross").mean(), pl.col("cost").mean())
        .with_columns((pl.col("gross") - pl.col("cost")).alias("net"))
        .sort("ts")
    )
    net = hourly["net"].to_numpy()
    std = float(np.std(net, ddof=1)) if len(net) > 1 else 0.0
    sharpe = float(np.mean(net) / std * math.sqrt(HOURS_PER_YEAR)) if std > 0 else 0.0
    downside = float(np.sqrt(np.mean(np.minimum(net, 0.0) ** 2))) if len(net) else 0.0
    sortino = float(np.mean(net) / downside * math.sqrt(HOURS_PER_YEAR)) if downside > 0 else 0.0
    equity = np.exp(np.cumsum(net))
    peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    max_drawdown = float(np.max(1.0 - equity / peak)) if len(equity) else 0.0
    active = ordered.filter(pl.col("position") != 0)
    hit_rate = float((active["gross"] > 0).mean()) if active.height else float("nan")
    return Backtest(
        hourly=hourly,
        sharpe=sharpe,
        sortino=sortino,
        max_drawdown=max_drawdown,
        turnover=float(ordered["trade"].mean()) if ordered.height else 0.0,
        hit_rate=hit_rate,
        exposure=float((ordered["position"] != 0).mean()) if ordered.height else 0.0,
    )


def backtest(frame: pl.DataFrame, rule: TradingRule, cost_bps: float) -> Backtest:
    """Positions of `rule` on `probability`, each held over the next hour, paying `cost_bps` per unit of position
    change.

    `frame` has ts, symbol, probability, next_return. Each symbol is traded independently; the portfolio return
    of an hour is the mean over symbols.
    """
    return summarize_returns(position_returns(rule_positions(frame, rule), cost_bps))


@dataclass(frozen=True)
class RuleBlock:
    """One walk-forward test block, prepared once for scoring many rules: rows sorted by symbol, then hour."""

    symbols: np.ndarray
    hours: np.ndarray
    probability: np.ndarray
    next_return: np.ndarray
    first_of_symbol: np.ndarray  # the row starts its symbol's run: its trade is from flat
    hour_index: np.ndarray  # each row's hour as 0..n_hours-1, for the portfolio mean
    rows_per_hour: np.ndarray

    @classmethod
    def of(cls, frame: pl.DataFrame) -> RuleBlock:
        """From ts, symbol, probability, next_return."""
        ordered = frame.sort("symbol", "ts")
        symbols = ordered["symbol"].to_numpy()
        hours = (ordered["ts"].dt.epoch("s") // 3600).to_numpy()
        first = np.ones(len(symbols), dtype=bool)
        first[1:] = symbols[1:] != symbols[:-1]
        distinct, hour_index = np.unique(hours, return_inverse=True)
        return cls(
            symbols,
            hours,
            ordered["probability"].to_numpy().astype(np.float64),
            ordered["next_return"].to_numpy().astype(np.float64),
            first,
            hour_index,
            np.bincount(hour_index, minlength=len(distinct)).astype(np.float64),
        )

    def hourly_net(self, smoothed: np.ndarray, band: float, cost_bps: float) -> np.ndarray:
        """The portfolio's net return per hour (in time order), as `backtest` computes it."""
        position = signal_from_probability(smoothed, band).astype(np.float64)
        previous = np.concatenate([[0.0], position[:-1]])
        previous[self.first_of_symbol] = 0.0
        net = position * self.next_return - np.abs(position - previous) * cost_bps / 10_000.0
        return np.bincount(self.hour_index, weights=net, minlength=len(self.rows_per_hour)) / self.rows_per_hour


def rule_sharpes(blocks: list[RuleBlock], rules: tuple[TradingRule, ...], cost_bps: float) -> np.ndarray:
    """Per-hour net Sharpe of each rule over the walk-forward blocks (each block smoothed on its own: a fold's
    model scores only its own block), in `rules` order. A rule that never trades scores 0."""
    smoothed: dict[tuple[int, int], np.ndarray] = {}
    result = np.empty(len(rules))
    for i, rule in enumerate(rules):
        nets = []
        for b, block in enumerate(blocks):
            key = (b, rule.smoothing_hours)
            if key not in smoothed:
                smoothed[key] = smoothed_probability(
                    block.symbols, block.hours, block.probability, rule.smoothing_hours
                )
            nets.append(block.hourly_net(smoothed[key], rule.band, cost_bps))
        sharpe = sample_moments(np.concatenate(nets))[0] if nets else float("nan")
        result[i] = sharpe if math.isfinite(sharpe) else 0.0
    return result


def best_rule(sharpes: np.ndarray) -> int:
    """The index of the rule with the highest walk-forward net Sharpe; ties go to the earlier (simpler) rule."""
    return int(np.argmax(sharpes))


def evaluate_predictions(frame: pl.DataFrame, rule: TradingRule, cost_bps: float) -> tuple[dict[str, float], Backtest]:
    """Classification, ranking and trading metrics of `probability`, the trading ones under `rule`.

    Classification metrics (accuracy, AUC, log loss) are over rows with a direction (`label_up` not null: outside
    the dead band); IC, rank IC and the backtest are over every row, since the rule may trade every hour.
    """
    directional = frame.filter(pl.col("label_up").is_not_null())
    y = directional["label_up"].to_numpy()
    p = directional["probability"].to_numpy()
    result = backtest(frame, rule, cost_bps)
    score, realised = frame["probability"].to_numpy(), frame["forward_return"].to_numpy()
    metrics = {
        "accuracy": accuracy(y, p) if len(y) else float("nan"),
        "auc": roc_auc(y, p),
        "log_loss": log_loss(y, p) if len(y) else float("nan"),
        "ic": information_coefficient(score, realised),
        "rank_ic": rank_information_coefficient(score, realised),
        "sharpe": result.sharpe,
        "sortino": result.sortino,
        "max_drawdown": result.max_drawdown,
        "turnover": result.turnover,
        "hit_rate": result.hit_rate,
        "exposure": result.exposure,
        "n": float(frame.height),
        "n_directional": float(len(y)),
    }
    return metrics, result
