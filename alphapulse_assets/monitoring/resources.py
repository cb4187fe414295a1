"""How the loop watches the champion: drift windows and thresholds, live-performance rules, report cadence."""

from __future__ import annotations

from datetime import datetime

import dagster as dg

from alphapulse_assets.monitoring.drift import DriftThresholds


class DriftPolicy(dg.ConfigurableResource):
    """Settings of `drift_report` and of the sensors that act on it."""

    window_hours: int = 24  # recent hours compared with the champion's training reference
    alpha: float = 0.05  # false-alarm rate of one whole feature-drift report
    critical_share: float = 0.3  # share of drifted features that makes drift critical (a retrain is requested)
    performance_window_hours: int = 168  # live hours the champion is judged on
    min_live_hours: int = 48  # fewer live hours with known outcomes: no claim about live performance
    rollback_z: float = 2.33  # standard errors below its promise that make the champion's drift critical
    # An Evidently HTML report (~8 MB, ~10 s) at hours divisible by this, and whenever drift is critical; 0: never.
    evidently_every_hours: int = 24

    def thresholds(self) -> DriftThresholds:
        return DriftThresholds(alpha=self.alpha, critical_share=self.critical_share)

    def wants_evidently(self, hour: datetime, drift_critical: bool) -> bool:
        if self.evidently_every_hours <= 0:
            return False
        return drift_critical or (int(hour.timestamp()) // 3600) % self.evidently_every_hours == 0
