from datetime import UTC, datetime, timedelta
from itertools import product

import numpy as np
import polars as pl
import pytest

from alphapulse_assets.promotion.gates import promotion_gates, summarize
from alphapulse_assets.training.dataset import next_hour_returns, training_windows
from alphapulse_assets.training.metrics import accuracy, backtest, log_loss, roc_auc


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
    result = backtest(frame, band=0.02, cost_bps=10)
    # positions +1, +1, -1, 0: trades 1, 0, 2, 1 units at 10 bp each
    assert result.hourly["gross"].to_list() == pytest.approx([0.01, 0.02, 0.01, 0.0])
    assert result.hourly["cost"].to_list() == pytest.approx([0.001, 0.0, 0.002, 0.001])
    assert result.turnover == pytest.approx(1.0)
    assert result.exposure == pytest.approx(0.75)
    flat = backtest(_frame([0.5] * 4, [0.01] * 4), band=0.02, cost_bps=10)
    assert flat.sharpe == 0.0 and flat.exposure == 0.0


def test_max_drawdown():
    result = backtest(_frame([0.9] * 4, [0.1, -0.2, -0.1, 0.3]), band=0.0, cost_bps=0)
    equity = np.exp(np.cumsum([0.1, -0.2, -0.1, 0.3]))
    assert result.max_drawdown == pytest.approx(1 - equity[2] / equity[0])


def test_windows_leave_an_embargo_and_end_before_the_decision_hour():
    decision = datetime(2025, 5, 10, 23, tzinfo=UTC)
    w = training_windows(decision, train_days=30, validation_days=5, embargo_hours=24)
    assert w.validation_end == decision
    assert w.validation_start - w.train_end == timedelta(hours=24)
    assert w.train_end - w.train_start == timedelta(days=30)


def test_labels_are_the_next_hour_and_missing_hours_are_null():
    start = datetime(2025, 1, 1, tzinfo=UTC)
    prices = pl.DataFrame(
        {"ts": [start + timedelta(hours=h) for h in (0, 1, 2, 4)], "symbol": "X", "close": [100.0, 110.0, 99.0, 50.0]}
    )
    labels = next_hour_returns(prices, ["X"], start, start + timedelta(hours=4))
    assert labels["next_return"].to_list()[:2] == pytest.approx([np.log(1.1), np.log(0.9)])
    assert labels["next_return"].to_list()[2:] == [None, None]  # hour 3 is missing


METRICS = {"n": 500.0, "log_loss": 0.68, "sharpe": 1.2, "log_loss_gain_t": 3.1}


def test_gate_without_champion():
    gates = promotion_gates(METRICS, {"log_loss": 0.693}, None, min_oos_rows=100, champion_log_loss_margin=0.0)
    assert [g.name for g in gates] == [
        "enough_oos_rows",
        "beats_baseline_log_loss",
        "log_loss_gain_significant",
        "positive_sharpe_after_costs",
    ]
    assert all(g.passed for g in gates)
    assert summarize(gates).startswith("promote")


def test_gate_refuses_a_challenger_that_does_not_beat_the_champion():
    champion = {"n": 500.0, "log_loss": 0.675, "sharpe": 2.0}
    gates = promotion_gates(METRICS, {"log_loss": 0.693}, champion, min_oos_rows=100, champion_log_loss_margin=0.0)
    failed = {g.name for g in gates if not g.passed}
    assert failed == {"beats_champion_log_loss", "beats_champion_sharpe"}
    assert "champion_comparison_out_of_sample" not in failed
    assert "beats_champion_sharpe (1.2 vs 2)" in summarize(gates)


def test_gate_refuses_no_skill_and_thin_evidence():
    weak = {"n": 40.0, "log_loss": 0.70, "sharpe": -0.5, "log_loss_gain_t": -1.0}
    gates = promotion_gates(weak, {"log_loss": 0.693}, None, min_oos_rows=100, champion_log_loss_margin=0.0)
    assert not any(g.passed for g in gates)


def test_gate_voids_a_comparison_where_the_champion_saw_the_window():
    """Retraining an old hour: the newer champion trained on the challenger's held-out rows."""
    champion = {"n": 500.0, "log_loss": 0.69, "sharpe": 0.1}
    gates = promotion_gates(METRICS, {"log_loss": 0.693}, champion, 100, 0.0, champion_overlap_hours=36.0)
    failed = [g for g in gates if not g.passed]
    assert [g.name for g in failed] == ["champion_comparison_out_of_sample"] and failed[0].value == 36.0


def test_a_lucky_gain_is_not_significant():
    """On noise a model can edge the baseline's log loss; the paired t-statistic tells it from a real gain."""
    from alphapulse_assets.training.metrics import log_loss_gain_t

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 480)
    base = np.full(480, 0.5)
    lucky = np.clip(0.5 + rng.normal(0, 0.02, 480), 0.01, 0.99)
    real = np.where(y == 1, 0.6, 0.4)
    assert abs(log_loss_gain_t(y, lucky, base)) < 2.0
    assert log_loss_gain_t(y, real, base) > 5.0
    gates = promotion_gates(METRICS | {"log_loss_gain_t": 1.3}, {"log_loss": 0.693}, None, 100, 0.0)
    assert [g.name for g in gates if not g.passed] == ["log_loss_gain_significant"]
