"""The champion/challenger gate. Pure: metrics in, a list of recorded comparisons out."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def promotion_gates(
    challenger: dict[str, float],
    baseline: dict[str, float],
    champion: dict[str, float] | None,
    min_oos_rows: int,
    champion_log_loss_margin: float,
    champion_overlap_hours: float = 0.0,
    min_log_loss_gain_t: float = 1.645,
) -> list[Gate]:
    """Every comparison the decision rests on, all measured out of sample on the challenger's held-out window.

    `champion` holds the current champion's metrics re-measured on that same window (None: no champion yet);
    `champion_overlap_hours` is how far the champion's training reaches into that window (a champion trained
    later than the challenger, e.g. when an old hour is retrained). Any overlap flatters the champion, so the
    comparison is void and the challenger is refused.
    """
    gates = [
        Gate(
            "enough_oos_rows",
            challenger["n"] >= min_oos_rows,
            challenger["n"],
            float(min_oos_rows),
            "held-out rows the comparison rests on",
        ),
        Gate(
            "beats_baseline_log_loss",
            challenger["log_loss"] < baseline["log_loss"],
            challenger["log_loss"],
            baseline["log_loss"],
            "log loss below the no-skill predictor (training base rate)",
        ),
        Gate(
            "log_loss_gain_significant",
            challenger.get("log_loss_gain_t", float("nan")) >= min_log_loss_gain_t,
            challenger.get("log_loss_gain_t", float("nan")),
            min_log_loss_gain_t,
            "paired t-statistic of the per-row log-loss gain over the baseline (a real gain, not a few lucky rows)",
        ),
        Gate(
            "positive_sharpe_after_costs",
            challenger["sharpe"] > 0.0,
            challenger["sharpe"],
            0.0,
            "annualised Sharpe of the signal after costs",
        ),
    ]
    if champion is not None:
        gates += [
            Gate(
                "champion_comparison_out_of_sample",
                champion_overlap_hours <= 0,
                champion_overlap_hours,
                0.0,
                "hours of the held-out window the champion trained on (must be none)",
            ),
            Gate(
                "beats_champion_log_loss",
                challenger["log_loss"] < champion["log_loss"] - champion_log_loss_margin,
                challenger["log_loss"],
                champion["log_loss"] - champion_log_loss_margin,
                f"log loss below the champion's on the same window (margin {champion_log_loss_margin})",
            ),
            Gate(
                "beats_champion_sharpe",
                challenger["sharpe"] > champion["sharpe"],
                challenger["sharpe"],
                champion["sharpe"],
                "Sharpe after costs above the champion's on the same window",
            ),
        ]
    return gates


def summarize(gates: list[Gate]) -> str:
    failed = [g for g in gates if not g.passed]
    if not failed:
        return "promote: " + ", ".join(g.name for g in gates)
    return "keep champion: failed " + "; ".join(f"{g.name} ({_fmt(g.value)} vs {_fmt(g.threshold)})" for g in failed)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4g}"
