"""The trading rule: one definition (`TradingRule`) applied alike by the API, the batch scorers and the backtest,
chosen inside the walk-forward folds for net Sharpe after costs, and paid for by the deflated Sharpe."""

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from alphapulse_assets.features.catalog import FEATURE_NAMES
from alphapulse_assets.thresholds import GateThresholds
from alphapulse_assets.training.dataset import training_windows
from alphapulse_assets.training.evaluation import EvaluationConfig
from alphapulse_assets.training.families import Trainer
from alphapulse_assets.training.metrics import (
    RuleBlock,
    backtest,
    rule_positions,
    rule_sharpes,
    smoothed_probability,
)
from alphapulse_assets.training.pipeline import train_and_evaluate
from alphapulse_assets.training.synthetic import FOLLOWER, LEADER, slow_signal_market
from alphapulse_assets.training.tuning import TuningConfig, rule_grid
from alphapulse_contract.predictors import ArtifactError
from alphapulse_contract.scoring import FIXED_RULE, ModelManifest, TradingRule

START = datetime(2025, 1, 1, tzinfo=UTC)


def _scored(seed: int, hours: int = 200, gaps: bool = True) -> pl.DataFrame:
    """Two symbols' probabilities and next-hour returns, with missing hours when `gaps`."""
    rng = np.random.default_rng(seed)
    frames = []
    for symbol in ("BTCUSDT", "ETHUSDT"):
        keep = rng.random(hours) > (0.15 if gaps else 0.0)
        ts = [START + timedelta(hours=h) for h in range(hours) if keep[h]]
        frames.append(
            pl.DataFrame(
                {
                    "ts": ts,
                    "symbol": symbol,
                    "probability": 0.5 + 0.05 * rng.standard_normal(len(ts)),
                    "next_return": 0.006 * rng.standard_normal(len(ts)),
                }
            )
        )
    return pl.concat(frames).cast({"ts": pl.Datetime("us", "UTC")}).sample(fraction=1.0, shuffle=True, seed=seed)


@pytest.mark.parametrize("smoothing_hours", [1, 3, 6, 24])
def test_the_batch_rule_gives_the_apis_answer_to_the_bit(smoothing_hours):
    """`rule_positions` (predictions, replay, evaluation) and `TradingRule.position` (the API, fed the hours the
    snapshot carries, newest first) agree exactly, gaps and all."""
    rule = TradingRule(0.01, smoothing_hours)
    positioned = rule_positions(_scored(smoothing_hours), rule)
    by_symbol = {s: rows for (s,), rows in positioned.partition_by("symbol", as_dict=True).items()}
    for row in positioned.iter_rows(named=True):
        history = by_symbol[row["symbol"]].filter(
            (pl.col("ts") <= row["ts"]) & (pl.col("ts") > row["ts"] - timedelta(hours=smoothing_hours))
        )
        newest_first = history.sort("ts", descending=True)["probability"].to_list()
        position, smoothed = rule.position(newest_first)
        assert smoothed == row["smoothed_probability"] and position == row["position"]


def test_smoothing_averages_only_the_symbols_own_recent_hours():
    symbols = np.array(["A", "A", "A", "B", "B"])
    hours = np.array([0, 1, 5, 1, 2])
    p = np.array([0.2, 0.4, 0.9, 0.6, 0.8])
    np.testing.assert_allclose(smoothed_probability(symbols, hours, p, 3), [0.2, 0.3, 0.9, 0.6, 0.7])


def test_the_fold_scan_scores_each_rule_as_the_backtest_does():
    frame = _scored(7, gaps=True)
    block = RuleBlock.of(frame)
    rules = rule_grid()
    sharpes = rule_sharpes([block], rules, cost_bps=5.0)
    for rule, sharpe in zip(rules, sharpes, strict=True):
        result = backtest(frame, rule, cost_bps=5.0)
        net = result.hourly["net"].to_numpy()
        expected = net.mean() / net.std(ddof=1) if net.std() > 0 else 0.0
        assert sharpe == pytest.approx(expected, rel=1e-9, abs=1e-12), rule


def test_smoothing_trades_less():
    frame = _scored(3, hours=500, gaps=False)
    turnovers = [backtest(frame, TradingRule(0.0, hours), 2.0).turnover for hours in (1, 6, 24)]
    assert turnovers[0] > 2 * turnovers[1] > 2 * turnovers[2] > 0


def test_the_grid_is_simplest_first_and_bounded():
    rules = rule_grid((0.02, 0.0), (6, 1))
    assert rules == (TradingRule(0.0, 1), TradingRule(0.02, 1), TradingRule(0.0, 6), TradingRule(0.02, 6))
    with pytest.raises(ValueError, match="at most 24 hours"):
        rule_grid((0.0,), (48,))
    with pytest.raises(ValueError, match="band"):
        TradingRule(0.6)


def test_the_manifest_carries_the_rule_and_older_manifests_mean_the_fixed_rule():
    manifest = ModelManifest(
        version="v", model_uri="file:///m", sha256="0" * 64, feature_names=["a"], feature_version="f",
        signal_band=0.03, smoothing_hours=12, symbols=["BTCUSDT"], training_window={}, metrics={}, trained_at="",
        promoted_at="", decision_partition="",
    )  # fmt: skip
    assert ModelManifest.from_json(manifest.to_json()).rule == TradingRule(0.03, 12)
    older = json.loads(manifest.to_json())
    del older["smoothing_hours"]
    older["signal_band"] = 0.02
    assert ModelManifest.from_json(json.dumps(older).encode()).rule == FIXED_RULE
    with pytest.raises(ArtifactError, match="trading rule"):
        ModelManifest.from_json(json.dumps(older | {"smoothing_hours": 0}).encode())
    assert TradingRule.of_record(None, None) == FIXED_RULE


def _slow_signal(seed: int, cost_bps: float):
    """The slow-edge market through the same steps as the assets: an XGBoost model (whose hourly estimates are
    noisy), its rule chosen in the folds, evaluated on 30 held-out days."""
    days, oos_days = 150, 30
    prices, features = slow_signal_market(START, days * 24, seed, strength=0.1)
    windows = training_windows(
        START + timedelta(hours=days * 24 - 1), days - oos_days - 2, oos_days, embargo_hours=24, horizon_hours=1
    )
    tuning = TuningConfig(
        families=("xgboost",), n_trials=6, n_folds=4, window="expanding", horizon_hours=1, embargo_hours=24,
        rules=rule_grid(), cost_bps=cost_bps, trainer=Trainer(seed=seed),
    )  # fmt: skip
    evaluation = EvaluationConfig(cost_bps, placebo_runs=3, placebo_block_hours=24, thresholds=GateThresholds())
    return train_and_evaluate(features, prices, [LEADER, FOLLOWER], list(FEATURE_NAMES), windows, tuning, evaluation)


@pytest.mark.timeout(600)
def test_a_small_real_edge_is_traded_so_that_costs_do_not_eat_it():
    """At 20 bp a trade, the edge is real (the fixed rule's gross Sharpe is positive) but the fixed rule, trading
    each hour's estimate, turns it into a loss. The rule chosen in the folds trades a fraction as much, never loses
    what the fixed rule pays in costs, and over the three markets does not lose."""
    cost_bps, chosen_net = 20.0, []
    for seed in (0, 1, 2):
        result = _slow_signal(seed, cost_bps)
        held_out = result.evaluation.scored
        fixed = backtest(held_out, FIXED_RULE, cost_bps)
        gross = backtest(held_out, FIXED_RULE, 0.0)
        chosen = result.evaluation.backtest
        assert gross.sharpe > 0 > fixed.sharpe, (seed, gross.sharpe, fixed.sharpe)
        assert result.tuning.rule != FIXED_RULE and chosen.turnover < fixed.turnover / 4, (seed, result.tuning.rule)
        assert chosen.hourly["net"].mean() > -fixed.hourly["cost"].mean(), seed
        # The evaluation traded the rule it recorded, and the deflation paid for every rule tried.
        assert (
            chosen.hourly["net"].to_list() == backtest(held_out, result.tuning.rule, cost_bps).hourly["net"].to_list()
        )
        assert result.tuning.n_strategies == 6 * len(rule_grid())
        chosen_net.append(chosen.hourly["net"].sum())
    assert sum(chosen_net) > 0, chosen_net
