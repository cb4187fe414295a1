"""The evaluation must tell signal from noise, on markets the test generates, with the default gates.

A pure random walk must be reported as chance: out-of-sample accuracy inside the binomial 99% band around 50%, a
deflated Sharpe ratio below 0.5, and not a single model passing the gates. A market with a planted lead-lag (the
follower's next hour echoes the leader's last hour) must be found and pass every gate. Both go through the same
steps as the `trained_model` and `model_evaluation` assets: features from the catalog, purged walk-forward
tuning of all three families, a refit, scoring through the serialised artifact, the placebo twins and the gates.
"""

import math
from datetime import UTC, datetime, timedelta

import pytest

from alphapulse_assets.features.catalog import FEATURE_NAMES
from alphapulse_assets.thresholds import GateThresholds
from alphapulse_assets.training.dataset import training_windows
from alphapulse_assets.training.evaluation import EvaluationConfig
from alphapulse_assets.training.families import Trainer
from alphapulse_assets.training.pipeline import train_and_evaluate
from alphapulse_assets.training.synthetic import FOLLOWER, LEADER, lead_lag_market, random_walk_market
from alphapulse_assets.training.tuning import TuningConfig, rule_grid

START = datetime(2024, 1, 1, tzinfo=UTC)
SEED = 0


def run(market, days: int, oos_days: int, folds: int):
    prices, features = market(START, days * 24, SEED)
    decision = START + timedelta(hours=days * 24 - 1)
    windows = training_windows(decision, days - oos_days - 2, oos_days, embargo_hours=24, horizon_hours=1)
    tuning = TuningConfig(
        families=("xgboost", "catboost", "logistic"),
        n_trials=6,
        n_folds=folds,
        window="expanding",
        horizon_hours=1,
        embargo_hours=24,
        rules=rule_grid(),
        cost_bps=2.0,
        trainer=Trainer(seed=SEED),
    )
    evaluation = EvaluationConfig(cost_bps=2.0, placebo_runs=5, placebo_block_hours=24, thresholds=GateThresholds())
    return train_and_evaluate(features, prices, [LEADER, FOLLOWER], list(FEATURE_NAMES), windows, tuning, evaluation)


def binomial_band(n: int, z: float = 2.5758) -> tuple[float, float]:
    half = z * math.sqrt(0.25 / n)
    return 0.5 - half, 0.5 + half


@pytest.mark.timeout(600)
def test_a_random_walk_is_reported_as_chance():
    result = run(random_walk_market, days=90, oos_days=20, folds=4)
    report = result.evaluation
    low, high = binomial_band(int(report.metrics["n_directional"]))
    assert low <= report.metrics["accuracy"] <= high, report.metrics
    assert report.sharpe["dsr"] < 0.5, report.sharpe
    assert not report.gates_passed, report.summary
    # The tuner ran every trial it was asked for, and the deflation counted all of them, once per trading rule.
    assert result.tuning.n_trials == 18 and result.tuning.n_strategies == 18 * len(rule_grid())
    assert f"best of {18 * len(rule_grid())} trials" in next(
        g.detail for g in report.gates if g.name == "deflated_sharpe"
    )
    # The placebo twins, trained on permuted labels, sit at chance too.
    assert low <= report.placebo.accuracy <= high


@pytest.mark.timeout(600)
def test_a_planted_lead_lag_is_found_and_passes_every_gate():
    result = run(lead_lag_market, days=150, oos_days=30, folds=5)
    report = result.evaluation
    assert report.gates_passed, report.summary
    assert report.metrics["accuracy"] > binomial_band(int(report.metrics["n_directional"]))[1]
    assert report.sharpe["dsr"] > 0.95 and report.metrics["ic"] > 0.1
    # The leader's last-hour return is what the model leans on.
    importance = result.model.importance(list(FEATURE_NAMES))
    assert max(importance, key=importance.get) == "market_ret_1h"
