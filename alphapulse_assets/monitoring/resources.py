"""How the loop watches the champion: drift windows and thresholds, live-performance rules, report cadence."""

from __future__ import annotations

from datetime import datetime

import dagster as dg

from alphapulse_assets.monitoring.drift import DriftThresholds
from alphapulse_assets.settings import DEFAULTS


class DriftPolicy(dg.ConfigurableResource):
    """Settings of `drift_report` and of the sensors that act on it."""

    # What each means, and its bounds: the ALPHAPULSE_DRIFT_*, *_LIVE_*, ROLLBACK_Z settings (settings.py).
    window_hours: int = DEFAULTS.drift_window_hours
    alpha: float = DEFAULTS.drift_alpha
    critical_share: float = DEFAULTS.drift_critical_share
    performance_window_hours: int = DEFAULTS.performance_window_hours
    min_live_hours: int = DEFAULTS.min_live_hours
    rollback_z: float = DEFAULTS.rollback_z
    evidently_every_hours: int = DEFAULTS.evidently_every_hours

    def thresholds(self) -> DriftThresholds:
        return DriftThresholds(alpha=self.alpha, critical_share=self.critical_share)

    def wants_evidently(self, hour: datetime, drift_critical: bool) -> bool:
        if self.evidently_every_hours <= 0:
            return False
        return drift_critical or (int(hour.timestamp()) // 3600) % self.evidently_every_hours == 0
