"""Performance drift: is the champion, live, still as good as its evaluation promised? Pure.

Both figures are estimates: the promise was measured on a finite out-of-sample window and the live record is
shorter still. A shortfall therefore counts only when it is large against the standard error of the difference,
and the report gives the live figure's confidence band so a person can see how much it can be trusted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from alphapulse_assets.training.metrics import HOURS_PER_YEAR

_NORMAL = NormalDist()


def accuracy_standard_error(accuracy: float, n: float) -> float:
    """Binomial standard error of a hit rate over n independent calls."""
    if n <= 0 or not math.isfinite(accuracy):
        return float("nan")
    return math.sqrt(max(accuracy * (1.0 - accuracy), 1e-12) / n)


def sharpe_standard_error(annual_sharpe: float, hours: float) -> float:
    """Standard error of an annualised Sharpe ratio estimated from `hours` hourly returns (Lo, 2002, i.i.d.)."""
    if hours < 2 or not math.isfinite(annual_sharpe):
        return float("nan")
    hourly = annual_sharpe / math.sqrt(HOURS_PER_YEAR)
    return math.sqrt((1.0 + 0.5 * hourly**2) / hours) * math.sqrt(HOURS_PER_YEAR)


@dataclass(frozen=True)
class Record:
    """Accuracy over directional calls and signal Sharpe (annualised, after costs) over hours."""

    accuracy: float
    n_directional: float
    sharpe: float
    hours: float

    def standard_errors(self) -> dict[str, float]:
        return {
            "accuracy": accuracy_standard_error(self.accuracy, self.n_directional),
            "sharpe": sharpe_standard_error(self.sharpe, self.hours),
        }


@dataclass(frozen=True)
class Shortfall:
    metric: str
    live: float
    promised: float
    band_low: float  # the live figure's confidence band
    band_high: float
    z: float  # (live - promised) / standard error of the difference; negative is worse than promised

    def as_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v) for k, v in vars(self).items()}


@dataclass(frozen=True)
class PerformanceDrift:
    status: str  # ok | warning | critical | insufficient_data
    reason: str
    live_hours: float
    shortfalls: list[Shortfall]

    def shortfall(self, metric: str) -> Shortfall | None:
        return next((s for s in self.shortfalls if s.metric == metric), None)


def performance_drift(
    live: Record,
    promised: Record,
    min_live_hours: float,
    critical_z: float,
    warning_z: float = 1.645,
    confidence: float = 0.95,
) -> PerformanceDrift:
    """Compare the live record with the promise, metric by metric.

    critical: accuracy or Sharpe is below the promise by more than `critical_z` standard errors of the difference
    (the rollback threshold); warning: by more than `warning_z`; ok otherwise. Fewer than `min_live_hours` of live
    predictions with known outcomes: insufficient_data, and nothing is claimed.
    """
    if live.hours < min_live_hours or live.n_directional < 1:
        return PerformanceDrift(
            "insufficient_data",
            f"{live.hours:.0f} live hours with known outcomes; {min_live_hours:.0f} are needed before the live "
            "record can be compared with the promise",
            live.hours,
            [],
        )
    band_z = _NORMAL.inv_cdf(0.5 + confidence / 2.0)
    live_se, promised_se = live.standard_errors(), promised.standard_errors()
    shortfalls = []
    for metric in ("accuracy", "sharpe"):
        observed, expected = getattr(live, metric), getattr(promised, metric)
        # A promise measured without a recorded sample size is taken at face value (no uncertainty of its own).
        promised_variance = promised_se[metric] ** 2 if math.isfinite(promised_se[metric]) else 0.0
        spread = math.sqrt(live_se[metric] ** 2 + promised_variance)
        z = (observed - expected) / spread if spread > 0 else 0.0
        shortfalls.append(
            Shortfall(
                metric, observed, expected, observed - band_z * live_se[metric], observed + band_z * live_se[metric], z
            )
        )
    worst = min(shortfalls, key=lambda s: s.z)
    described = "; ".join(
        f"{s.metric} {s.live:.3f} live [{s.band_low:.3f}, {s.band_high:.3f}] vs {s.promised:.3f} promised "
        f"(z {s.z:+.2f})"
        for s in shortfalls
    )
    if worst.z <= -critical_z:
        status = "critical"
    elif worst.z <= -warning_z:
        status = "warning"
    else:
        status = "ok"
    return PerformanceDrift(status, f"{status}: {described}", live.hours, shortfalls)
