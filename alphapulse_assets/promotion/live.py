"""Live records: what the champion and the shadowing challenger predicted, joined with outcomes once known.

Only hours after a model's validation window count (`in_model_window` false): earlier scores are in-sample.
An outcome is known when the prices its label needs are in the warehouse; later rows are left out, not guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from alphapulse_assets.promotion.performance import Record
from alphapulse_assets.storage.warehouse import Warehouse
from alphapulse_assets.training.dataset import labelled_rows
from alphapulse_assets.training.metrics import evaluate_predictions
from alphapulse_assets.training.resources import ModelPolicy
from alphapulse_contract.scoring import TradingRule


def _rows(warehouse: Warehouse, table: str, start: datetime, end: datetime) -> pl.DataFrame:
    return warehouse.read_window(table, start, end) if warehouse.table_exists(table) else pl.DataFrame()


def with_outcomes(
    warehouse: Warehouse,
    symbols: list[str],
    policy: ModelPolicy,
    frame: pl.DataFrame,
    start: datetime,
    end: datetime,
    prices: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """`frame` (ts, symbol, probability, ...) with next_return, forward_return and label_up where known. `prices`,
    when given, already holds [start, end + horizon) (read once for many windows)."""
    if frame.is_empty():
        return frame
    if prices is None:
        prices = warehouse.read_window("prices", start, end + timedelta(hours=policy.horizon_hours))
    return labelled_rows(frame, prices, symbols, start, end, policy.horizon_hours, policy.dead_band)


@dataclass(frozen=True)
class LiveWindow:
    """The predictions and prices of a span, read once: the live records of many hours' drift reports in one
    range run are cut from it instead of reading the warehouse twice an hour."""

    predictions: pl.DataFrame
    prices: pl.DataFrame

    @classmethod
    def read(cls, warehouse: Warehouse, policy: ModelPolicy, start: datetime, end: datetime) -> LiveWindow:
        return cls(
            _rows(warehouse, "predictions", start, end),
            warehouse.read_window("prices", start, end + timedelta(hours=policy.horizon_hours)),
        )


def champion_live(
    warehouse: Warehouse,
    symbols: list[str],
    policy: ModelPolicy,
    version: str,
    start: datetime,
    end: datetime,
    window: LiveWindow | None = None,
) -> pl.DataFrame:
    """The champion's recorded out-of-sample predictions in [start, end) whose outcomes are known (from `window`
    when given: it must span [start, end))."""
    if window is None:
        recorded = _rows(warehouse, "predictions", start, end)
        prices = None
    else:
        recorded = (
            window.predictions.filter((pl.col("ts") >= start) & (pl.col("ts") < end))
            if window.predictions.height
            else window.predictions
        )
        prices = window.prices
    if recorded.is_empty():
        return recorded
    mine = recorded.filter((pl.col("model_version") == version) & ~pl.col("in_model_window"))
    return with_outcomes(
        warehouse,
        symbols,
        policy,
        mine.select("ts", "symbol", pl.col("probability_up").alias("probability")),
        start,
        end,
        prices,
    )


def shadow_pairs(
    warehouse: Warehouse,
    symbols: list[str],
    policy: ModelPolicy,
    challenger: str,
    champion: str,
    start: datetime,
    end: datetime,
) -> pl.DataFrame:
    """Rows where the challenger (in shadow) and this champion both predicted out of sample, outcomes known:
    `probability` is the challenger's, `champion_probability` the champion's."""
    shadow = _rows(warehouse, "shadow_predictions", start, end)
    if shadow.is_empty():
        return shadow
    pairs = shadow.filter(
        (pl.col("model_version") == challenger)
        & (pl.col("champion_version") == champion)
        & ~pl.col("in_model_window")
        & ~pl.col("champion_in_model_window")
        & pl.col("champion_probability_up").is_not_null()
    ).select(
        "ts",
        "symbol",
        pl.col("probability_up").alias("probability"),
        pl.col("champion_probability_up").alias("champion_probability"),
    )
    return with_outcomes(warehouse, symbols, policy, pairs, start, end)


def record(
    frame: pl.DataFrame, rule: TradingRule, cost_bps: float, probability: str = "probability"
) -> tuple[dict, Record]:
    """Metrics of one model's column of `frame` (as evaluation computes them, with that model's trading rule) and
    its live `Record`."""
    if frame.is_empty():
        return {}, Record(float("nan"), 0.0, float("nan"), 0.0)
    scored = frame if probability == "probability" else frame.with_columns(pl.col(probability).alias("probability"))
    metrics, _ = evaluate_predictions(scored, rule, cost_bps)
    hours = float(frame["ts"].n_unique())
    return metrics, Record(metrics["accuracy"], metrics["n_directional"], metrics["sharpe"], hours)


def promised(metrics: dict[str, float | None]) -> Record:
    """What the champion's evaluation promised, from its manifest (out-of-sample accuracy and Sharpe)."""

    def value(key: str) -> float:
        found = metrics.get(key)
        return float(found) if found is not None else float("nan")

    return Record(value("oos_accuracy"), value("n_oos_directional"), value("oos_sharpe"), value("oos_hours"))
