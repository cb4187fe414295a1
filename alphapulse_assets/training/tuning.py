"""Hyperparameter search over every model family with Optuna, scored on purged walk-forward folds. Pure: arrays
in, a record of every trial and the chosen configuration out.

Each family gets its own study (TPE sampler, median pruner on the running mean of fold log losses), seeded from
the run's seed, so the same inputs and seed always walk the same trials. The configuration with the lowest mean
fold log loss across all families wins; the final out-of-sample segment is never seen here. Every trial run,
pruned ones included, counts towards the deflated Sharpe ratio's number of trials.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from alphapulse_assets.training.cv import Fold, purged_walk_forward
from alphapulse_assets.training.families import TrainedModel, Trainer, family
from alphapulse_assets.training.metrics import backtest, log_loss, roc_auc
from alphapulse_assets.training.sharpe import sample_moments


@dataclass(frozen=True)
class TuningConfig:
    families: tuple[str, ...]
    n_trials: int  # per family
    n_folds: int
    window: str
    horizon_hours: int
    embargo_hours: int
    signal_band: float
    cost_bps: float
    trainer: Trainer


@dataclass(frozen=True)
class TrainingSet:
    """The cross-validation region: features, direction labels (-1 inside the dead band) and what the backtest
    needs. Rows are ordered by hour, then symbol."""

    x: np.ndarray
    label: np.ndarray
    hours: np.ndarray  # integer hours since the epoch
    frame: pl.DataFrame  # ts, symbol, next_return: for the fold backtests

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, feature_names: list[str]) -> TrainingSet:
        ordered = frame.sort("ts", "symbol")
        hours = (ordered["ts"].dt.epoch("s") // 3600).to_numpy()
        return cls(
            x=ordered.select(feature_names).to_numpy().astype(np.float64),
            label=ordered["label_up"].fill_null(-1).to_numpy().astype(np.int64),
            hours=hours,
            frame=ordered.select("ts", "symbol", "next_return"),
        )

    @property
    def labelled(self) -> np.ndarray:
        """Rows with a direction (outside the dead band): the rows models are fitted on."""
        return self.label >= 0

    @property
    def base_rate(self) -> float:
        """Share of up labels among the labelled rows: what the no-skill baseline predicts."""
        return float(self.label[self.labelled].mean())


@dataclass(frozen=True)
class FoldScore:
    fold: int
    val_log_loss: float
    val_auc: float
    train_log_loss: float
    train_auc: float
    baseline_log_loss: float  # the fold's training base rate, predicted for every test row
    n_train: int
    n_test: int

    @property
    def gain(self) -> float:
        """Log-loss improvement over the no-skill baseline on this fold (positive: the model is better)."""
        return self.baseline_log_loss - self.val_log_loss

    def as_dict(self) -> dict[str, float]:
        """The fold's record, gain included: what the gates read back (`ChosenModel.fold_scores`)."""
        return {**self.__dict__, "gain": self.gain}


@dataclass
class TrialRecord:
    family: str
    number: int
    state: str  # complete | pruned
    params: dict[str, Any]
    folds: list[FoldScore] = field(default_factory=list)
    net_returns: np.ndarray | None = None  # walk-forward hourly net returns over every fold (complete trials)
    seconds: float = 0.0

    @property
    def cv_log_loss(self) -> float:
        return float(np.mean([f.val_log_loss for f in self.folds])) if self.folds else float("nan")

    @property
    def cv_auc(self) -> float:
        return float(np.mean([f.val_auc for f in self.folds])) if self.folds else float("nan")

    @property
    def train_auc(self) -> float:
        return float(np.mean([f.train_auc for f in self.folds])) if self.folds else float("nan")

    @property
    def sharpe(self) -> float:
        """Per-hour Sharpe of the walk-forward signal after costs (not annualised)."""
        return sample_moments(self.net_returns)[0] if self.net_returns is not None else float("nan")

    def as_row(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "trial": self.number,
            "state": self.state,
            "cv_log_loss": self.cv_log_loss,
            "cv_auc": self.cv_auc,
            "train_auc": self.train_auc,
            "cv_sharpe_hourly": self.sharpe,
            "folds_scored": len(self.folds),
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class TuningResult:
    trials: list[TrialRecord]
    best: TrialRecord
    folds: list[Fold]
    seconds_by_family: dict[str, float]
    prepare_seconds: float

    @property
    def n_trials(self) -> int:
        return len(self.trials)

    @property
    def n_completed(self) -> int:
        return sum(t.state == "complete" for t in self.trials)

    @property
    def trial_sharpe_variance(self) -> float:
        """Variance of the completed trials' per-hour walk-forward Sharpe ratios: the spread luck alone has."""
        sharpes = [t.sharpe for t in self.trials if t.state == "complete" and math.isfinite(t.sharpe)]
        return float(np.var(sharpes, ddof=1)) if len(sharpes) > 1 else 0.0

    def best_by_family(self) -> dict[str, TrialRecord]:
        best: dict[str, TrialRecord] = {}
        for trial in self.trials:
            if trial.state == "complete" and (
                trial.family not in best or trial.cv_log_loss < best[trial.family].cv_log_loss
            ):
                best[trial.family] = trial
        return best


def family_seed(seed: int, family_name: str) -> int:
    """Each family's sampler gets its own stream, fixed by the run's seed and the family's name."""
    return (seed * 1_000_003 + zlib.crc32(family_name.encode())) % (2**31)


def make_folds(data: TrainingSet, config: TuningConfig) -> list[Fold]:
    folds = purged_walk_forward(data.hours, config.horizon_hours, config.n_folds, config.embargo_hours, config.window)
    for fold in folds:
        labels = data.label[fold.train]
        classes = set(np.unique(labels[labels >= 0]).tolist())
        if classes != {0, 1}:
            raise ValueError(
                f"fold {fold.number}: its training rows hold labels {sorted(classes)}, both directions are needed "
                "(widen the training window or narrow the dead band)"
            )
    return folds


def _fold_arrays(data: TrainingSet, fold: Fold) -> tuple[np.ndarray, np.ndarray]:
    return fold.train[data.labelled[fold.train]], fold.test


def tune(data: TrainingSet, config: TuningConfig) -> TuningResult:
    """Run every family's study on the same folds and return every trial with the winner."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folds = make_folds(data, config)
    trials: list[TrialRecord] = []
    seconds_by_family: dict[str, float] = {}
    prepare_seconds = 0.0
    for name in config.families:
        model_family = family(name)
        started = time.perf_counter()
        prepared = []
        for fold in folds:
            train, _ = _fold_arrays(data, fold)
            prepared.append(model_family.prepare(data.x[train], data.label[train]))
        prepare_seconds += time.perf_counter() - started

        def objective(trial, model_family=model_family, prepared=prepared, name=name):
            trial_started = time.perf_counter()
            params = model_family.search_space(trial)
            record = TrialRecord(name, trial.number, "complete", params)
            trials.append(record)
            net = []
            for step, (fold, fold_data) in enumerate(zip(folds, prepared, strict=True)):
                model = model_family.fit(fold_data, params, config.trainer)
                score, fold_net = score_fold(data, fold, model, config)
                record.folds.append(score)
                net.append(fold_net)
                trial.report(record.cv_log_loss, step)
                if trial.should_prune():
                    record.state = "pruned"
                    record.seconds = time.perf_counter() - trial_started
                    raise optuna.TrialPruned()
            record.net_returns = np.concatenate(net)
            record.seconds = time.perf_counter() - trial_started
            return record.cv_log_loss

        study = optuna.create_study(
            direction="minimize",
            study_name=name,
            sampler=optuna.samplers.TPESampler(seed=family_seed(config.trainer.seed, name)),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
        )
        study.optimize(objective, n_trials=config.n_trials)
        seconds_by_family[name] = time.perf_counter() - started
    completed = [t for t in trials if t.state == "complete"]
    best = min(completed, key=lambda t: (t.cv_log_loss, t.family, t.number))
    return TuningResult(trials, best, folds, seconds_by_family, prepare_seconds)


def score_fold(
    data: TrainingSet, fold: Fold, model: TrainedModel, config: TuningConfig
) -> tuple[FoldScore, np.ndarray]:
    """Train and test log loss and AUC of one fold's model, and the hourly net returns of its signal on the test
    block."""
    train, test = _fold_arrays(data, fold)
    p_test = model.predict_proba(data.x[test])
    p_train = model.predict_proba(data.x[train])
    y_train = data.label[train]
    labelled = data.label[test] >= 0
    y_test, p_labelled = data.label[test][labelled], p_test[labelled]
    base_rate = float(y_train.mean())
    score = FoldScore(
        fold=fold.number,
        val_log_loss=log_loss(y_test, p_labelled),
        val_auc=roc_auc(y_test, p_labelled),
        train_log_loss=log_loss(y_train, p_train),
        train_auc=roc_auc(y_train, p_train),
        baseline_log_loss=log_loss(y_test, np.full(len(y_test), base_rate)),
        n_train=len(train),
        n_test=len(test),
    )
    scored = data.frame[test].with_columns(pl.Series("probability", p_test))
    result = backtest(scored, config.signal_band, config.cost_bps)
    return score, result.hourly["net"].to_numpy()


def fit_final(data: TrainingSet, family_name: str, params: dict[str, Any], trainer: Trainer) -> TrainedModel:
    """The chosen configuration fitted on every labelled row of the cross-validation region."""
    model_family = family(family_name)
    labelled = data.labelled
    return model_family.fit(model_family.prepare(data.x[labelled], data.label[labelled]), params, trainer)
