"""The whole judgement of one trained model on its final out-of-sample segment. Pure: frames in, a report out.

The `model_evaluation` asset runs this on warehouse rows; the honesty tests run it on markets they generate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from alphapulse_assets.thresholds import GateThresholds
from alphapulse_assets.training.families import Trainer
from alphapulse_assets.training.gates import Gate, evaluation_gates, summarize
from alphapulse_assets.training.metrics import Backtest, evaluate_predictions, log_loss_gain_t
from alphapulse_assets.training.placebo import PlaceboResult, run_placebo
from alphapulse_assets.training.sharpe import deflated_sharpe_ratio, probabilistic_sharpe_ratio, sample_moments
from alphapulse_contract.scoring import TradingRule


@dataclass(frozen=True)
class EvaluationConfig:
    cost_bps: float
    placebo_runs: int
    placebo_block_hours: int
    thresholds: GateThresholds


@dataclass(frozen=True)
class ChosenModel:
    """What tuning chose and what it measured on its folds: the inputs the gates need beyond the holdout."""

    family: str
    params: dict[str, Any]
    feature_names: list[str]
    train_base_rate: float
    fold_scores: list[dict[str, float]]  # per fold: train_auc, val_auc, gain (log loss vs the fold's baseline)
    rule: TradingRule  # chosen on the folds, with the configuration
    n_trials: int  # what the deflated Sharpe pays for: search trials x trading rules tried
    trial_sharpe_variance: float


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]  # oos_* without the prefix
    baseline: dict[str, float]
    log_loss_gain_t: float
    sharpe: dict[str, float]  # oos_sharpe_hourly, oos_skewness, oos_kurtosis, psr, dsr
    placebo: PlaceboResult
    gates: list[Gate]
    backtest: Backtest
    scored: pl.DataFrame

    @property
    def gates_passed(self) -> bool:
        return all(g.passed for g in self.gates)

    @property
    def summary(self) -> str:
        return summarize(self.gates, verb="eligible")


def sharpe_statistics(net: np.ndarray, n_trials: int, trial_sharpe_variance: float) -> dict[str, float]:
    """PSR and DSR of an hourly net-return series. A signal that never traded has no Sharpe to speak of: its true
    Sharpe is zero, not possibly positive, so both are 0 rather than the formula's 0.5."""
    sharpe, skewness, kurtosis = sample_moments(net)
    traded = len(net) > 1 and bool(np.any(net != 0))
    return {
        "oos_sharpe_hourly": sharpe,
        "oos_skewness": skewness,
        "oos_kurtosis": kurtosis,
        "psr": probabilistic_sharpe_ratio(sharpe, len(net), skewness, kurtosis) if traded else 0.0,
        "dsr": (
            deflated_sharpe_ratio(sharpe, len(net), n_trials, trial_sharpe_variance, skewness, kurtosis)
            if traded
            else 0.0
        ),
    }


def evaluate_model(
    probability: np.ndarray,
    holdout: pl.DataFrame,
    train: pl.DataFrame,
    chosen: ChosenModel,
    trainer: Trainer,
    config: EvaluationConfig,
) -> Evaluation:
    """Score `probability` (the loaded artifact's predictions for `holdout`'s rows) and decide every gate.

    `train` is the cross-validation region the model was fitted on: the placebo twins are refitted on it.
    """
    scored = holdout.with_columns(pl.Series("probability", probability))
    metrics, result = evaluate_predictions(scored, chosen.rule, config.cost_bps)
    # No skill: always predict the training base rate. Beating it is the least a model must do.
    baseline, _ = evaluate_predictions(
        holdout.with_columns(pl.lit(chosen.train_base_rate).alias("probability")), chosen.rule, config.cost_bps
    )
    directional = scored.filter(pl.col("label_up").is_not_null())
    gain_t = log_loss_gain_t(
        directional["label_up"].to_numpy(),
        directional["probability"].to_numpy(),
        np.full(directional.height, chosen.train_base_rate),
    )
    sharpe = sharpe_statistics(result.hourly["net"].to_numpy(), chosen.n_trials, chosen.trial_sharpe_variance)
    placebo = run_placebo(
        train,
        holdout,
        chosen.feature_names,
        chosen.family,
        chosen.params,
        trainer,
        config.placebo_runs,
        config.placebo_block_hours,
        chosen.rule,
        config.cost_bps,
    )
    gates = evaluation_gates(
        n_oos=int(metrics["n"]),
        train_validation_gap=float(np.mean([f["train_auc"] - f["val_auc"] for f in chosen.fold_scores])),
        fold_gains=[f["gain"] for f in chosen.fold_scores],
        oos_log_loss=metrics["log_loss"],
        baseline_log_loss=baseline["log_loss"],
        log_loss_gain_t=gain_t,
        oos_sharpe=metrics["sharpe"],
        psr=sharpe["psr"],
        dsr=sharpe["dsr"],
        n_trials=chosen.n_trials,
        oos_accuracy=metrics["accuracy"],
        placebo_accuracy=placebo.accuracy,
        placebo_band=placebo.accuracy_band,
        thresholds=config.thresholds,
    )
    return Evaluation(metrics, baseline, gain_t, sharpe, placebo, gates, result, scored)
