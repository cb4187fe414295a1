"""Training and evaluation end to end on frames in memory: the same steps the `trained_model` and
`model_evaluation` assets take on warehouse rows, for the honesty tests and the training benchmark."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from alphapulse_assets.training.dataset import TrainingWindows, labelled_rows
from alphapulse_assets.training.evaluation import ChosenModel, Evaluation, EvaluationConfig, evaluate_model
from alphapulse_assets.training.families import TrainedModel
from alphapulse_assets.training.tuning import TrainingSet, TuningConfig, TuningResult, fit_final, tune
from alphapulse_contract.predictors import load_predictor


@dataclass(frozen=True)
class PipelineResult:
    tuning: TuningResult
    model: TrainedModel
    evaluation: Evaluation
    seconds: dict[str, float] = field(default_factory=dict)


def train_and_evaluate(
    features: pl.DataFrame,
    prices: pl.DataFrame,
    symbols: list[str],
    feature_names: list[str],
    windows: TrainingWindows,
    tuning: TuningConfig,
    evaluation: EvaluationConfig,
    dead_band: float = 0.0,
) -> PipelineResult:
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    train = labelled_rows(
        features, prices, symbols, windows.train_start, windows.train_end, tuning.horizon_hours, dead_band
    )
    holdout = labelled_rows(
        features, prices, symbols, windows.validation_start, windows.validation_end, tuning.horizon_hours, dead_band
    )
    data = TrainingSet.from_frame(train, feature_names)
    seconds["load"] = time.perf_counter() - started
    result = tune(data, tuning)
    seconds |= {f"tune_{name}": s for name, s in result.seconds_by_family.items()}
    started = time.perf_counter()
    best = result.best
    model = fit_final(data, best.family, best.params, tuning.trainer)
    # Scored through the serialised artifact, as the asset and the API score.
    predictor = load_predictor(model.model_format, model.artifact())
    probability = predictor.predict_proba(holdout.select(feature_names).to_numpy().astype(np.float64))
    seconds["refit"] = time.perf_counter() - started
    chosen = ChosenModel(
        family=best.family,
        params=best.params,
        feature_names=feature_names,
        train_base_rate=data.base_rate,
        fold_scores=[s.as_dict() for s in best.folds],
        rule=result.rule,
        n_trials=result.n_strategies,
        trial_sharpe_variance=result.trial_sharpe_variance,
    )
    started = time.perf_counter()
    report = evaluate_model(probability, holdout, train, chosen, tuning.trainer, evaluation)
    seconds["evaluate"] = time.perf_counter() - started
    return PipelineResult(result, model, report, seconds)
