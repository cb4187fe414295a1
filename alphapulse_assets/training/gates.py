"""The gates every trained model must pass before it can be promoted. Pure: numbers in, recorded gates out."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

from alphapulse_assets.thresholds import GateThresholds


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, payload: dict) -> Gate:
        return cls(
            name=payload["name"],
            passed=bool(payload["passed"]),
            value=float("nan") if payload["value"] is None else float(payload["value"]),
            threshold=float("nan") if payload["threshold"] is None else float(payload["threshold"]),
            detail=payload["detail"],
        )


# Every gate `evaluation_gates` decides, in its order, with what it guards (the UI's description of its asset check).
# All of them make a model unpromotable when they fail.
EVALUATION_GATES: dict[str, str] = {
    "enough_oos_rows": "Enough out-of-sample rows for the evaluation to mean something.",
    "train_validation_gap": "Training AUC not far above fold AUC: the model learns, it does not memorise.",
    "folds_beat_baseline": "Most walk-forward folds beat their no-skill baseline's log loss.",
    "no_single_fold_carries": "No single fold carries most of the log-loss gain.",
    "beats_baseline_log_loss": "Out-of-sample log loss below the no-skill predictor's.",
    "log_loss_gain_significant": "The log-loss gain over the baseline is significant (one-sided 95%).",
    "positive_sharpe_after_costs": "Out-of-sample Sharpe of the trading rule, after costs, above zero.",
    "probabilistic_sharpe": "Probability that the true Sharpe is above zero (PSR).",
    "deflated_sharpe": "PSR against the best Sharpe the search's trials and rules reach by luck (DSR).",
    "beats_placebo": "Accuracy above the block-permuted-label placebo's by more than its noise.",
}


def finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def evaluation_gates(
    *,
    n_oos: int,
    train_validation_gap: float,
    fold_gains: list[float],
    oos_log_loss: float,
    baseline_log_loss: float,
    log_loss_gain_t: float,
    oos_sharpe: float,
    psr: float,
    dsr: float,
    n_trials: int,
    oos_accuracy: float,
    placebo_accuracy: float,
    placebo_band: float,
    thresholds: GateThresholds,
) -> list[Gate]:
    """Every gate, with the numbers it was decided on. A NaN (not enough data to measure) fails its gate."""
    positive = sum(g > 0 for g in fold_gains)
    positive_share = positive / len(fold_gains) if fold_gains else float("nan")
    total_gain = sum(g for g in fold_gains if g > 0)
    largest_share = max(fold_gains) / total_gain if total_gain > 0 else float("nan")
    placebo_margin = oos_accuracy - placebo_accuracy
    return [
        Gate(
            "enough_oos_rows",
            n_oos >= thresholds.min_oos_rows,
            float(n_oos),
            float(thresholds.min_oos_rows),
            "rows of the final out-of-sample segment the evaluation rests on",
        ),
        Gate(
            "train_validation_gap",
            finite(train_validation_gap) and train_validation_gap <= thresholds.max_train_validation_gap,
            train_validation_gap,
            thresholds.max_train_validation_gap,
            "training AUC minus fold AUC, mean over the walk-forward folds (overfitting)",
        ),
        Gate(
            "folds_beat_baseline",
            finite(positive_share) and positive_share >= thresholds.min_positive_fold_share,
            positive_share,
            thresholds.min_positive_fold_share,
            f"share of folds whose log loss beats the fold's no-skill baseline ({positive} of {len(fold_gains)})",
        ),
        Gate(
            "no_single_fold_carries",
            finite(largest_share) and largest_share <= thresholds.max_single_fold_share,
            largest_share,
            thresholds.max_single_fold_share,
            "largest single fold's share of the summed log-loss gain over the baseline (fold stability)",
        ),
        Gate(
            "beats_baseline_log_loss",
            finite(oos_log_loss) and oos_log_loss < baseline_log_loss,
            oos_log_loss,
            baseline_log_loss,
            "out-of-sample log loss below the no-skill predictor (training base rate)",
        ),
        Gate(
            "log_loss_gain_significant",
            finite(log_loss_gain_t) and log_loss_gain_t >= thresholds.min_log_loss_gain_t,
            log_loss_gain_t,
            thresholds.min_log_loss_gain_t,
            "paired t-statistic of the per-row log-loss gain over the baseline (a real gain, not a few lucky rows)",
        ),
        Gate(
            "positive_sharpe_after_costs",
            finite(oos_sharpe) and oos_sharpe > 0.0,
            oos_sharpe,
            0.0,
            "annualised out-of-sample Sharpe of the signal after costs",
        ),
        Gate(
            "probabilistic_sharpe",
            finite(psr) and psr >= thresholds.min_psr,
            psr,
            thresholds.min_psr,
            "P(true Sharpe > 0) given the out-of-sample Sharpe, its length, skew and kurtosis",
        ),
        Gate(
            "deflated_sharpe",
            finite(dsr) and dsr >= thresholds.min_dsr,
            dsr,
            thresholds.min_dsr,
            f"PSR against the Sharpe the best of {n_trials} trials (configurations x trading rules) reaches by luck",
        ),
        Gate(
            "beats_placebo",
            finite(placebo_band) and placebo_margin > placebo_band,
            placebo_margin,
            placebo_band,
            f"accuracy above the block-permuted-label placebo's mean ({placebo_accuracy:.4f}), by more than two "
            "placebo standard deviations",
        ),
    ]


def summarize(gates: list[Gate], verb: str = "promote") -> str:
    failed = [g for g in gates if not g.passed]
    if not failed:
        return f"{verb}: passed " + ", ".join(g.name for g in gates)
    return "failed " + "; ".join(f"{g.name} ({_fmt(g.value)} vs {_fmt(g.threshold)})" for g in failed)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4g}"


def gates_table(gates: list[Gate]) -> str:
    """A markdown table for the UI."""
    lines = ["| gate | passed | value | threshold | what |", "| --- | --- | --- | --- | --- |"]
    lines += [
        f"| {g.name} | {'yes' if g.passed else '**no**'} | {_fmt(g.value)} | {_fmt(g.threshold)} | {g.detail} |"
        for g in gates
    ]
    return "\n".join(lines)


def evaluation_gate_list(evaluation: dict) -> list[Gate]:
    return [Gate.from_dict(g) for g in json.loads(evaluation["gates"])]
