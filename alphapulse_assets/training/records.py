"""A trained model's record and its evaluation's, each built once and written everywhere from that one record.

The warehouse row (`trained_model`, `model_evaluation`), the MLflow run's params and metrics and the asset's
metadata are views of the same record, so a fact cannot say one thing in MLflow and another in the warehouse.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from datetime import datetime

from alphapulse_assets.training.dataset import TrainingWindows
from alphapulse_assets.training.metrics import HOURS_PER_YEAR
from alphapulse_contract.scoring import TradingRule


def dsr_trials(record: dict) -> int:
    """What a `trained_model` row's deflated Sharpe pays for: its search's trials, each tried with every trading
    rule (rows from before rules were chosen tried one)."""
    return int(record["n_trials"]) * int(record.get("n_rules") or 1)


@dataclass(frozen=True)
class TrainedModelRecord:
    """One row of `trained_model`: what was trained at `ts`, on what, chosen how, and where it is tracked."""

    ts: datetime
    model_version: str
    model_uri: str
    sha256: str
    model_format: str
    family: str
    params: dict
    feature_names: list[str]
    feature_version: str
    windows: TrainingWindows
    horizon_hours: int
    dead_band_bps: float
    n_train: int
    train_base_rate: float
    cv_log_loss: float
    cv_auc: float
    train_auc: float
    rule: TradingRule
    cv_sharpe_hourly: float
    n_rules: int
    tuned_at: datetime
    n_trials: int
    n_completed_trials: int
    trial_sharpe_variance: float | None
    fold_scores: list[dict]
    folds: list[dict]
    importance: dict[str, float]
    tuning_seconds: float
    trained_at: datetime
    # Known once the MLflow run exists (`tracked`).
    mlflow_run_id: str | None = None
    registered_model: str | None = None
    registered_version: str | None = None

    def tracked(self, run_id: str, registered_model: str, registered_version: str) -> TrainedModelRecord:
        return replace(
            self, mlflow_run_id=run_id, registered_model=registered_model, registered_version=registered_version
        )

    def row(self) -> dict:
        """The warehouse row, in the table's column order."""
        return {
            "ts": self.ts,
            "model_version": self.model_version,
            "model_uri": self.model_uri,
            "sha256": self.sha256,
            "model_format": self.model_format,
            "family": self.family,
            "params": json.dumps(self.params, sort_keys=True),
            "feature_names": list(self.feature_names),
            "feature_version": self.feature_version,
            **{name: getattr(self.windows, name) for name in TrainingWindows.__dataclass_fields__},
            "horizon_hours": self.horizon_hours,
            "dead_band_bps": self.dead_band_bps,
            "n_train": self.n_train,
            "train_base_rate": self.train_base_rate,
            "cv_log_loss": self.cv_log_loss,
            "cv_auc": self.cv_auc,
            "train_auc": self.train_auc,
            "signal_band": self.rule.band,
            "smoothing_hours": self.rule.smoothing_hours,
            "cv_sharpe_hourly": self.cv_sharpe_hourly,
            "n_rules": self.n_rules,
            "tuned_at": self.tuned_at,
            "n_trials": self.n_trials,
            "n_completed_trials": self.n_completed_trials,
            "trial_sharpe_variance": self.trial_sharpe_variance,
            "fold_scores": json.dumps(self.fold_scores),
            "folds": json.dumps(self.folds),
            "importance": json.dumps(self.importance, sort_keys=True),
            "mlflow_run_id": self.mlflow_run_id,
            "registered_model": self.registered_model,
            "registered_version": self.registered_version,
            "tuning_seconds": self.tuning_seconds,
            "trained_at": self.trained_at,
        }

    def mlflow_params(self) -> dict:
        """The run's params: the configuration chosen and what it was chosen on."""
        return {
            "family": self.family,
            **{f"model.{k}": v for k, v in self.params.items()},
            **self.windows.as_dict(),
            "horizon_hours": self.horizon_hours,
            "dead_band_bps": self.dead_band_bps,
            "tuned_at": self.tuned_at.isoformat(),
            "feature_version": self.feature_version,
            "signal_band": self.rule.band,
            "smoothing_hours": self.rule.smoothing_hours,
            "rules_tried": self.n_rules,
        }

    def mlflow_tags(self) -> dict:
        return {
            "alphapulse.version": self.model_version,
            "alphapulse.partition": self.ts.isoformat(),
            "alphapulse.sha256": self.sha256,
        }

    def mlflow_metrics(self) -> dict:
        return {
            "cv_log_loss": self.cv_log_loss,
            "cv_auc": self.cv_auc,
            "cv_sharpe_hourly": self.cv_sharpe_hourly,
            "n_trials": self.n_trials,
            "n_completed_trials": self.n_completed_trials,
            "tuning_seconds": self.tuning_seconds,
        }

    def metadata(self) -> dict:
        """The facts the asset page shows (the presentation tables are the asset's own)."""
        return {
            "model_version": self.model_version,
            "family": self.family,
            "sha256": self.sha256,
            "cv_log_loss": self.cv_log_loss,
            "cv_auc": self.cv_auc,
            "trading_rule": self.rule.describe(),
            "signal_band": self.rule.band,
            "smoothing_hours": self.rule.smoothing_hours,
            "cv_sharpe": float(self.cv_sharpe_hourly * math.sqrt(HOURS_PER_YEAR)),
            "n_train": self.n_train,
            "train_base_rate": self.train_base_rate,
            "n_trials": self.n_trials,
            "n_pruned_trials": self.n_trials - self.n_completed_trials,
            "dsr_trials": dsr_trials(self.row()),
            "feature_version": self.feature_version,
            "mlflow_run_id": self.mlflow_run_id,
            "registered_model": f"models:/{self.registered_model}/{self.registered_version}",
        }


# Counts, not rates: recorded once as n_oos and n_oos_directional.
_COUNTS = ("n", "n_directional")


@dataclass(frozen=True)
class EvaluationRecord:
    """One row of `model_evaluation`: a model on its final out-of-sample segment, against the baseline and the
    placebo, with the gates it passed or failed."""

    ts: datetime
    model_version: str
    family: str
    metrics: dict[str, float]  # out of sample, `evaluate_predictions`' keys
    log_loss_gain_t: float
    baseline: dict[str, float]
    sharpe: dict[str, float]  # psr, dsr and their inputs
    n_trials: int
    trial_sharpe_variance: float | None
    placebo_accuracy: float
    placebo_accuracy_band: float
    placebo_accuracies: list[float]
    placebo_log_loss: float
    gates: list[dict]
    gates_passed: bool
    summary: str
    cost_bps: float
    rule: TradingRule
    evaluated_at: datetime

    def row(self) -> dict:
        """The warehouse row, in the table's column order."""
        row = {"ts": self.ts, "model_version": self.model_version, "family": self.family}
        row |= {"n_oos": int(self.metrics["n"]), "n_oos_directional": int(self.metrics["n_directional"])}
        row |= self._oos() | {"oos_log_loss_gain_t": self.log_loss_gain_t}
        row |= {f"baseline_{k}": v for k, v in self.baseline.items() if k not in _COUNTS}
        row |= self.sharpe | {"n_trials": self.n_trials, "trial_sharpe_variance": self.trial_sharpe_variance}
        return row | {
            "placebo_accuracy": self.placebo_accuracy,
            "placebo_accuracy_band": self.placebo_accuracy_band,
            "placebo_accuracies": json.dumps(self.placebo_accuracies),
            "placebo_log_loss": self.placebo_log_loss,
            "gates": json.dumps(self.gates),
            "gates_passed": self.gates_passed,
            "summary": self.summary,
            "cost_bps": self.cost_bps,
            "signal_band": self.rule.band,
            "smoothing_hours": self.rule.smoothing_hours,
            "evaluated_at": self.evaluated_at,
        }

    def _oos(self) -> dict:
        return {f"oos_{k}": v for k, v in self.metrics.items() if k not in _COUNTS}

    def mlflow_metrics(self) -> dict:
        """The numbers of the row, and each gate as 0/1."""
        return (
            {"n_oos": float(self.metrics["n"]), "n_oos_directional": float(self.metrics["n_directional"])}
            | self._oos()
            | {"oos_log_loss_gain_t": self.log_loss_gain_t, "psr": self.sharpe["psr"], "dsr": self.sharpe["dsr"]}
            | {"placebo_accuracy": self.placebo_accuracy, "placebo_accuracy_band": self.placebo_accuracy_band}
            | {f"baseline_{k}": v for k, v in self.baseline.items()}
            | {f"gate.{g['name']}": float(g["passed"]) for g in self.gates}
            | {"gates_passed": float(self.gates_passed)}
        )

    def metadata(self) -> dict:
        """The facts the asset page shows (plots and the gates table are the asset's own)."""
        shown = ("accuracy", "auc", "log_loss", "ic", "rank_ic", "sharpe", "sortino", "max_drawdown", "turnover")
        return (
            {"model_version": self.model_version, "family": self.family}
            | {f"oos_{k}": self.metrics[k] for k in (*shown, "hit_rate")}
            | {"oos_log_loss_gain_t": self.log_loss_gain_t, "psr": self.sharpe["psr"], "dsr": self.sharpe["dsr"]}
            | {"n_trials": self.n_trials, "trading_rule": self.rule.describe(), "n_oos": int(self.metrics["n"])}
            | {"placebo_accuracy": self.placebo_accuracy, "placebo_accuracy_band": self.placebo_accuracy_band}
            | {"baseline_log_loss": self.baseline["log_loss"], "baseline_accuracy": self.baseline["accuracy"]}
            | {"gates_passed": self.gates_passed, "summary": self.summary, "cost_bps": self.cost_bps}
        )
