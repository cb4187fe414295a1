"""What a model must clear: the evaluation gates' thresholds, and the margins a challenger must beat the champion by.

Pure, and below both training (which evaluates) and promotion (which compares), so neither imports the other for
them; the settings check ALPHAPULSE_GATES against the same names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GateThresholds:
    min_oos_rows: int = 100
    # Train AUC minus fold AUC, averaged over folds: beyond this the model memorises more than it learns. Boosted
    # trees' in-sample AUC is optimistic by construction (0.12-0.18 above the fold AUC on a real planted signal,
    # docs/training.md), so the bar sits above that and below what pure memorisation of noise reaches.
    max_train_validation_gap: float = 0.20
    # Folds where the model beats the fold's no-skill baseline, as a share of all folds.
    min_positive_fold_share: float = 0.6
    # No single fold may contribute more than this share of the summed log-loss gain.
    max_single_fold_share: float = 0.5
    # A log-loss gain over the baseline must be positive at one-sided 95% confidence (t >= 1.645).
    min_log_loss_gain_t: float = 1.645
    min_psr: float = 0.95
    min_dsr: float = 0.95


@dataclass(frozen=True)
class Margins:
    """How much better a challenger must be than the champion on the same rows."""

    log_loss: float  # ALPHAPULSE_PROMOTION_LOG_LOSS_MARGIN
    sharpe: float  # annualised, after costs: ALPHAPULSE_PROMOTION_SHARPE_MARGIN
