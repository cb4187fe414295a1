import json
from datetime import UTC, datetime, timedelta
from itertools import product

import numpy as np
import polars as pl
import pytest

from alphapulse_assets.promotion.gates import promotion_gates
from alphapulse_assets.thresholds import GateThresholds, Margins
from alphapulse_assets.training.dataset import direction_labels, forward_returns, training_windows
from alphapulse_assets.training.gates import Gate, evaluation_gates, summarize
from alphapulse_assets.training.metrics import (
    accuracy,
    backtest,
    information_coefficient,
    log_loss,
    log_loss_gain_t,
    rank_information_coefficient,
    roc_auc,
)
from alphapulse_contract.scoring import TradingRule


def test_auc_matches_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.round(rng.random(300), 1)  # many ties
    pairs = [(a, b) for a, b in product(np.where(y == 1)[0], np.where(y == 0)[0])]
    expected = np.mean([1.0 if p[a] > p[b] else 0.5 if p[a] == p[b] else 0.0 for a, b in pairs])
    assert roc_auc(y, p) == pytest.approx(expected)
    assert np.isnan(roc_auc(np.ones(5), np.random.random(5)))


def test_log_loss_and_accuracy():
    y = np.array([1, 0, 1, 0])
    assert log_loss(y, np.full(4, 0.5)) == pytest.approx(np.log(2))
    assert log_loss(y, y.astype(float)) < 1e-6
    assert accuracy(y, np.array([0.9, 0.1, 0.4, 0.6])) == 0.5


def _frame(probabilities, returns, symbol="BTCUSDT"):
    start = datetime(2025, 1, 1, tzinfo=UTC)
    return pl.DataFrame(
        {
            "ts": [start + timedelta(hours=i) for i in range(len(returns))],
            "symbol": symbol,
            "probability": probabilities,
            "next_return": returns,
        }
    )


def test_backtest_charges_costs_on_position_changes():
    frame = _frame([0.9, 0.9, 0.1, 0.5], [0.01, 0.02, -0.01, 0.03])
    result = backtest(frame, TradingRule(0.02), cost_bps=10)
    # positions +1, +1, -1, 0: trades 1, 0, 2, 1 units at 10 bp each
    assert result.hourly["gross"].to_list() == pytest.approx([0.01, 0.02, 0.01, 0.0])
    assert result.hourly["cost"].to_list() == pytest.approx([0.001, 0.0, 0.002, 0.001])
    assert result.turnover == pytest.approx(1.0)
    assert result.exposure == pytest.approx(0.75)
    flat = backtest(_frame([0.5] * 4, [0.01] * 4), TradingRule(0.02), cost_bps=10)
    assert flat.sharpe == 0.0 and flat.exposure == 0.0


def test_max_drawdown():
    result = backtest(_frame([0.9] * 4, [0.1, -0.2, -0.1, 0.3]), TradingRule(0.0), cost_bps=0)
    equity = np.exp(np.cumsum([0.1, -0.2, -0.1, 0.3]))
    assert result.max_drawdown == pytest.approx(1 - equity[2] / equity[0])


def test_windows_purge_the_label_horizon_and_embargo_before_the_out_of_sample_segment():
    decision = datetime(2025, 5, 10, 23, tzinfo=UTC)
    w = training_windows(decision, train_days=30, validation_days=5, embargo_hours=24)
    assert w.validation_end == decision  # the newest labelled row is decision - 1h: its label closes at `decision`
    assert w.validation_start - w.train_end == timedelta(hours=1 + 24)  # purge (horizon) + embargo
    assert w.train_end - w.train_start == timedelta(days=30)
    longer = training_windows(decision, train_days=30, validation_days=5, embargo_hours=24, horizon_hours=4)
    assert longer.validation_end == decision - timedelta(hours=3)
    assert longer.validation_start - longer.train_end == timedelta(hours=4 + 24)


def test_labels_span_the_horizon_and_missing_hours_are_null():
    start = datetime(2025, 1, 1, tzinfo=UTC)
    prices = pl.DataFrame(
        {"ts": [start + timedelta(hours=h) for h in (0, 1, 2, 4)], "symbol": "X", "close": [100.0, 110.0, 99.0, 50.0]}
    )
    labels = forward_returns(prices, ["X"], start, start + timedelta(hours=4), horizon_hours=2)
    assert labels["next_return"].to_list()[:2] == pytest.approx([np.log(1.1), np.log(0.9)])
    assert labels["next_return"].to_list()[2:] == [None, None]  # hour 3 is missing
    assert labels["forward_return"].to_list() == pytest.approx([np.log(0.99), None, np.log(50 / 99), None])


def test_dead_band_returns_are_not_labels():
    returns = pl.DataFrame({"r": [0.002, 0.0005, -0.0005, -0.002, 0.0, None]})

    def labels(dead_band: float) -> list:
        return returns.select(direction_labels(pl.col("r"), dead_band).alias("label"))["label"].to_list()

    assert labels(0.001) == [1, None, None, 0, None, None]
    assert labels(0.0) == [1, 1, 0, 0, None, None]


def test_information_coefficients_and_sortino():
    score = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    realised = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    assert rank_information_coefficient(score, realised) == pytest.approx(1.0)
    assert information_coefficient(score, realised) < 0.8  # Pearson feels the outlier, the rank IC does not
    assert np.isnan(information_coefficient(np.ones(5), realised))
    result = backtest(_frame([0.9] * 4, [0.01, -0.02, 0.03, -0.01]), TradingRule(0.0), cost_bps=0)
    net = np.array([0.01, -0.02, 0.03, -0.01])
    assert result.sortino == pytest.approx(net.mean() / np.sqrt(np.mean(np.minimum(net, 0) ** 2)) * np.sqrt(8760))


def _gates(**overrides):
    values = {
        "n_oos": 500,
        "train_validation_gap": 0.05,
        "fold_gains": [0.01, 0.012, 0.008, 0.011, 0.009],
        "oos_log_loss": 0.68,
        "baseline_log_loss": 0.693,
        "log_loss_gain_t": 3.1,
        "oos_sharpe": 1.2,
        "psr": 0.99,
        "dsr": 0.97,
        "n_trials": 90,
        "oos_accuracy": 0.56,
        "placebo_accuracy": 0.50,
        "placebo_band": 0.02,
        "thresholds": GateThresholds(),
    }
    return evaluation_gates(**(values | overrides))


def test_every_evaluation_gate_passes_on_a_clear_signal_and_is_recorded_with_its_numbers():
    gates = _gates()
    assert [g.name for g in gates] == [
        "enough_oos_rows",
        "train_validation_gap",
        "folds_beat_baseline",
        "no_single_fold_carries",
        "beats_baseline_log_loss",
        "log_loss_gain_significant",
        "positive_sharpe_after_costs",
        "probabilistic_sharpe",
        "deflated_sharpe",
        "beats_placebo",
    ]
    assert all(g.passed for g in gates)
    assert all(g.value is not None and g.threshold is not None for g in gates)
    assert summarize(gates).startswith("promote")


@pytest.mark.parametrize(
    ("override", "failing"),
    [
        ({"n_oos": 40}, "enough_oos_rows"),
        ({"train_validation_gap": 0.3}, "train_validation_gap"),
        ({"fold_gains": [0.01, -0.01, -0.002, 0.01, -0.001]}, "folds_beat_baseline"),
        ({"fold_gains": [0.001, 0.001, 0.05, 0.002, 0.001]}, "no_single_fold_carries"),
        ({"oos_log_loss": 0.70, "log_loss_gain_t": 3.1}, "beats_baseline_log_loss"),
        ({"log_loss_gain_t": 1.3}, "log_loss_gain_significant"),
        ({"oos_sharpe": -0.5}, "positive_sharpe_after_costs"),
        ({"psr": 0.9}, "probabilistic_sharpe"),
        ({"dsr": 0.6}, "deflated_sharpe"),
        ({"oos_accuracy": 0.515}, "beats_placebo"),
        ({"placebo_band": float("nan")}, "beats_placebo"),
    ],
)
def test_each_gate_fails_on_its_own_weakness(override, failing):
    assert [g.name for g in _gates(**override) if not g.passed] == [failing]


def test_one_fold_carrying_everything_is_not_stability():
    """Four folds at the baseline and one big win: the mean looks good, the gate sees where it came from."""
    gates = {g.name: g for g in _gates(fold_gains=[0.0001, 0.0001, 0.0001, 0.05, 0.0001])}
    assert not gates["no_single_fold_carries"].passed and gates["no_single_fold_carries"].value > 0.99


METRICS = {"n": 500.0, "log_loss": 0.68, "sharpe": 1.2}
NO_MARGIN = Margins(log_loss=0.0, sharpe=0.0)


def test_promotion_needs_every_evaluation_gate_then_beats_the_champion():
    evaluation = _gates()
    gates = promotion_gates(evaluation, METRICS, None, NO_MARGIN)
    assert gates == evaluation and all(g.passed for g in gates)
    failing = _gates(dsr=0.5)
    assert [g.name for g in promotion_gates(failing, METRICS, None, NO_MARGIN) if not g.passed] == ["deflated_sharpe"]


def test_gate_refuses_a_challenger_that_does_not_beat_the_champion():
    champion = {"n": 500.0, "log_loss": 0.675, "sharpe": 2.0}
    gates = promotion_gates(_gates(), METRICS, champion, NO_MARGIN)
    failed = {g.name for g in gates if not g.passed}
    assert failed == {"beats_champion_log_loss", "beats_champion_sharpe"}
    assert "beats_champion_sharpe (1.2 vs 2)" in summarize(gates)


def test_gate_voids_a_comparison_where_the_champion_saw_the_window():
    """Retraining an old hour: the newer champion trained on the challenger's held-out rows."""
    champion = {"n": 500.0, "log_loss": 0.69, "sharpe": 0.1}
    gates = promotion_gates(_gates(), METRICS, champion, NO_MARGIN, champion_overlap_hours=36.0)
    failed = [g for g in gates if not g.passed]
    assert [g.name for g in failed] == ["champion_comparison_out_of_sample"] and failed[0].value == 36.0


def test_gates_survive_their_json_record():
    gates = _gates(placebo_band=float("nan"))
    restored = [Gate.from_dict(json.loads(json.dumps(g.as_dict()))) for g in gates]
    assert [(g.name, g.passed, g.detail) for g in restored] == [(g.name, g.passed, g.detail) for g in gates]
    assert np.isnan(restored[-1].threshold)


def test_a_lucky_gain_is_not_significant():
    """On noise a model can edge the baseline's log loss; the paired t-statistic tells it from a real gain."""
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 480)
    base = np.full(480, 0.5)
    lucky = np.clip(0.5 + rng.normal(0, 0.02, 480), 0.01, 0.99)
    real = np.where(y == 1, 0.6, 0.4)
    assert abs(log_loss_gain_t(y, lucky, base)) < 2.0
    assert log_loss_gain_t(y, real, base) > 5.0
