"""Probabilistic and deflated Sharpe ratios (Bailey & López de Prado, 2012 and 2014). Pure.

Every Sharpe ratio here is per observation (not annualised): the statistics are functions of the number of
observations, so annualising first would mix units. `deannualise` converts a quoted annual figure.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

EULER_MASCHERONI = 0.5772156649015329
_NORMAL = NormalDist()


def deannualise(annual_sharpe: float, periods_per_year: float) -> float:
    return annual_sharpe / math.sqrt(periods_per_year)


def sample_moments(returns: np.ndarray) -> tuple[float, float, float]:
    """Per-observation Sharpe ratio, skewness and kurtosis (not excess: 3 for a normal distribution)."""
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < 2:
        return float("nan"), float("nan"), float("nan")
    centred = r - r.mean()
    variance = float(np.mean(centred**2))
    if variance == 0.0:
        return 0.0, 0.0, 3.0
    sharpe = float(r.mean() / np.std(r, ddof=1))
    skewness = float(np.mean(centred**3) / variance**1.5)
    kurtosis = float(np.mean(centred**4) / variance**2)
    return sharpe, skewness, kurtosis


def probabilistic_sharpe_ratio(
    sharpe: float, n_obs: int, skewness: float, kurtosis: float, benchmark: float = 0.0
) -> float:
    """P(true Sharpe > benchmark) given an observed per-observation Sharpe over n_obs non-normal returns.

    NaN when the estimator's variance term is not positive (extreme skew with a large Sharpe): no claim is made.
    """
    if n_obs < 2 or not all(math.isfinite(v) for v in (sharpe, skewness, kurtosis, benchmark)):
        return float("nan")
    spread = 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if spread <= 0.0:
        return float("nan")
    return _NORMAL.cdf((sharpe - benchmark) * math.sqrt(n_obs - 1) / math.sqrt(spread))


def trial_sharpe_variance(sharpes) -> float:
    """The spread luck alone gives trials' Sharpe ratios. `sharpes` has a row per trial and a column per trading
    rule the trial was tried with (a 1-D array: one rule): the variance across trials within each rule, pooled over
    the rules. The spread between rules is left out: a moving mean that blurs a one-hour signal scores lower than
    one that keeps it for a reason, not by luck, and counting that as luck would raise the bar for real skill only.
    Non-finite entries (trials a rule could not score) are skipped."""
    matrix = np.asarray(sharpes, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    variances, weights = [], []
    for column in matrix.T:
        finite = column[np.isfinite(column)]
        if finite.size > 1:
            variances.append(float(np.var(finite, ddof=1)))
            weights.append(finite.size - 1)
    return float(np.average(variances, weights=weights)) if variances else 0.0


def expected_max_sharpe(n_trials: int, trials_sharpe_variance: float) -> float:
    """The Sharpe ratio the best of n_trials independent zero-skill trials reaches by luck alone."""
    if n_trials <= 1 or trials_sharpe_variance <= 0.0:
        return 0.0
    quantile = (1.0 - EULER_MASCHERONI) * _NORMAL.inv_cdf(1.0 - 1.0 / n_trials) + EULER_MASCHERONI * _NORMAL.inv_cdf(
        1.0 - 1.0 / (n_trials * math.e)
    )
    return math.sqrt(trials_sharpe_variance) * quantile


def deflated_sharpe_ratio(
    sharpe: float, n_obs: int, n_trials: int, trials_sharpe_variance: float, skewness: float, kurtosis: float
) -> float:
    """PSR against the Sharpe the best of `n_trials` trials would show by luck: the selection is paid for.

    `trials_sharpe_variance` is the variance of the trials' per-observation Sharpe ratios.
    """
    return probabilistic_sharpe_ratio(
        sharpe, n_obs, skewness, kurtosis, benchmark=expected_max_sharpe(n_trials, trials_sharpe_variance)
    )
