"""Probabilistic and deflated Sharpe ratios against the published worked example and their defining properties."""

import math

import numpy as np
import pytest

from alphapulse_assets.training.evaluation import sharpe_statistics
from alphapulse_assets.training.sharpe import (
    deannualise,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    sample_moments,
    trial_sharpe_variance,
)


def test_deflated_sharpe_matches_the_worked_example():
    """Annualised SR 2.5 over 1,250 daily returns (250 a year), 100 trials whose annualised SRs vary by 0.5,
    skewness -3 and kurtosis 10: DSR ~ 0.9004 (Bailey & López de Prado)."""
    sharpe = deannualise(2.5, 250)
    variance = 0.5 / 250  # a variance of annualised ratios, in per-day units
    dsr = deflated_sharpe_ratio(sharpe, 1250, 100, variance, skewness=-3.0, kurtosis=10.0)
    assert dsr == pytest.approx(0.9004, abs=5e-4)
    # The benchmark it deflates against: the best of 100 lucky trials, ~0.1132 a day (~1.79 a year).
    assert expected_max_sharpe(100, variance) == pytest.approx(0.1132, abs=5e-4)


def test_psr_is_a_probability_that_grows_with_evidence_and_falls_with_fat_left_tails():
    assert probabilistic_sharpe_ratio(0.0, 1000, 0.0, 3.0) == pytest.approx(0.5)
    short, long = (probabilistic_sharpe_ratio(0.05, n, 0.0, 3.0) for n in (100, 2000))
    assert 0.5 < short < long < 1.0
    assert probabilistic_sharpe_ratio(0.1, 500, -3.0, 10.0) < probabilistic_sharpe_ratio(0.1, 500, 0.0, 3.0)
    assert math.isnan(probabilistic_sharpe_ratio(0.1, 1, 0.0, 3.0))


def test_more_trials_deflate_more():
    values = [deflated_sharpe_ratio(0.1, 1000, n, 0.001, 0.0, 3.0) for n in (1, 10, 100, 1000)]
    assert values[0] == pytest.approx(probabilistic_sharpe_ratio(0.1, 1000, 0.0, 3.0))
    assert values == sorted(values, reverse=True)
    assert expected_max_sharpe(50, 0.0) == 0.0  # trials that all agree carry no luck to deflate


def test_sample_moments_of_a_normal_sample():
    rng = np.random.default_rng(0)
    sharpe, skewness, kurtosis = sample_moments(rng.normal(0.1, 1.0, 200_000))
    assert sharpe == pytest.approx(0.1, abs=0.01)
    assert skewness == pytest.approx(0.0, abs=0.02) and kurtosis == pytest.approx(3.0, abs=0.05)


def test_a_signal_that_never_trades_claims_no_skill():
    stats = sharpe_statistics(np.zeros(500), n_trials=30, trial_sharpe_variance=0.001)
    assert stats["psr"] == 0.0 and stats["dsr"] == 0.0


def test_the_trials_luck_is_their_spread_within_each_rule_not_between_rules():
    rng = np.random.default_rng(4)
    luck = rng.normal(0.0, 0.02, (40, 3))
    # Three rules that differ for a reason (a constant offset each) over the same 40 lucky trials.
    structured = luck + np.array([0.5, 0.2, 0.0])
    assert trial_sharpe_variance(structured) == pytest.approx(trial_sharpe_variance(luck))
    assert trial_sharpe_variance(structured) == pytest.approx(0.02**2, rel=0.3)
    assert np.var(structured, ddof=1) > 50 * trial_sharpe_variance(structured)
    # One rule: the plain variance; unscored entries are skipped; too few trials: no spread.
    assert trial_sharpe_variance(luck[:, 0]) == pytest.approx(np.var(luck[:, 0], ddof=1))
    assert trial_sharpe_variance(np.array([0.1, np.nan, 0.3])) == pytest.approx(0.02)
    assert trial_sharpe_variance(np.array([[0.1, 0.2]])) == 0.0
