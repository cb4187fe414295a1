"""The champion/challenger rules. Pure: metrics in, recorded comparisons and a decision out."""

from __future__ import annotations

from dataclasses import dataclass, replace

from alphapulse_assets.thresholds import Margins
from alphapulse_assets.training.gates import EVALUATION_GATES, Gate, summarize

PROMOTE = "promote"  # this hour's model becomes champion
PROMOTE_CHALLENGER = "promote_challenger"  # the shadowing challenger becomes champion on its live record
KEEP = "keep"  # the champion stays
ROLLBACK = "rollback"  # the champion failed live; the previous champion is restored
ROLLBACK_REFUSED = "rollback_refused"  # the champion failed live, but there is no servable previous champion
CHAMPION_CHANGES = (PROMOTE, PROMOTE_CHALLENGER, ROLLBACK)


# The gates a decision records beyond the candidate's evaluation gates (training/gates.py EVALUATION_GATES).
CHAMPION_COMPARISON_GATES = ("champion_comparison_out_of_sample", "beats_champion_log_loss", "beats_champion_sharpe")
SHADOW_GATES = ("shadow_hours", "shadow_beats_champion_log_loss", "shadow_beats_champion_sharpe")
ROLLBACK_GATES = ("previous_champion_exists", "previous_champion_servable")


def beats_champion(
    challenger: dict[str, float], champion: dict[str, float], margins: Margins, where: str, prefix: str = ""
) -> list[Gate]:
    """Lower log loss and higher Sharpe than the champion's, each by its margin, measured on the same rows."""
    return [
        Gate(
            f"{prefix}beats_champion_log_loss",
            challenger["log_loss"] < champion["log_loss"] - margins.log_loss,
            challenger["log_loss"],
            champion["log_loss"] - margins.log_loss,
            f"log loss below the champion's {where} (margin {margins.log_loss:g})",
        ),
        Gate(
            f"{prefix}beats_champion_sharpe",
            challenger["sharpe"] > champion["sharpe"] + margins.sharpe,
            challenger["sharpe"],
            champion["sharpe"] + margins.sharpe,
            f"Sharpe after costs above the champion's {where} (margin {margins.sharpe:g})",
        ),
    ]


def promotion_gates(
    evaluation: list[Gate],
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    margins: Margins,
    champion_overlap_hours: float = 0.0,
) -> list[Gate]:
    """The challenger's own evaluation gates (all must have passed, the no-skill baseline among them), then the
    comparisons with the champion.

    `champion` holds the current champion's metrics re-measured on the challenger's out-of-sample window (None: no
    champion yet); `champion_overlap_hours` is how far the champion's training reaches into that window (a
    champion trained later than the challenger, e.g. when an old hour is retrained). Any overlap flatters the
    champion, so the comparison is void and the challenger is refused.
    """
    gates = list(evaluation)
    if champion is not None:
        gates.append(
            Gate(
                "champion_comparison_out_of_sample",
                champion_overlap_hours <= 0,
                champion_overlap_hours,
                0.0,
                "hours of the held-out window the champion trained on (must be none)",
            )
        )
        gates += beats_champion(challenger, champion, margins, "on the same held-out window")
    return gates


def shadow_gates(
    challenger_live: dict[str, float],
    champion_live: dict[str, float],
    live_hours: float,
    min_hours: float,
    margins: Margins,
) -> list[Gate]:
    """The shadowing challenger against the champion on the live hours both predicted, outcomes known."""
    enough = Gate(
        "shadow_hours",
        live_hours >= min_hours,
        live_hours,
        min_hours,
        "live hours both models predicted, with known outcomes",
    )
    if not enough.passed:
        return [enough]
    return [enough, *beats_champion(challenger_live, champion_live, margins, "on the same live hours", "shadow_")]


@dataclass(frozen=True)
class Decision:
    action: str
    champion_after: str | None
    challenger_after: str | None  # the model recorded in shadow from now on
    summary: str

    @property
    def champion_changes(self) -> bool:
        return self.action in CHAMPION_CHANGES


def decide(
    candidate: str,
    candidate_gates: list[Gate],
    evaluation_passed: bool,
    champion: str | None,
    challenger: str | None,
    shadow: list[Gate] | None,
) -> Decision:
    """One decision hour: this hour's model (`candidate`) and the shadowing `challenger` against the champion.

    1. The candidate passes every gate: it is promoted.
    2. Otherwise a challenger whose live shadow record beats the champion is promoted.
    3. Otherwise the champion stays. A candidate that passed its own evaluation becomes the challenger in shadow;
       a challenger that lost its shadow comparison is dropped; one without enough live hours keeps shadowing.
    """
    if all(g.passed for g in candidate_gates):
        return Decision(PROMOTE, candidate, None, summarize(candidate_gates, verb="promote"))
    if shadow and all(g.passed for g in shadow):
        return Decision(
            PROMOTE_CHALLENGER,
            challenger,
            None,
            f"promote challenger {challenger} on its live shadow record: "
            + summarize(shadow, verb="passed")
            + f"; this hour's model {candidate} "
            + summarize(candidate_gates),
        )
    shadow_lost = bool(shadow) and shadow[0].passed  # enough live hours, and it did not beat the champion
    if evaluation_passed and champion is not None:
        next_challenger = candidate
    elif shadow_lost:
        next_challenger = None
    else:
        next_challenger = challenger
    summary = "keep champion: " + summarize(candidate_gates)
    if shadow:
        summary += f"; challenger {challenger} in shadow: " + (
            summarize(shadow, verb="passed") if all(g.passed for g in shadow) else summarize(shadow)
        )
    if next_challenger != challenger:
        summary += f"; challenger is now {next_challenger or 'none'}"
    return Decision(KEEP, champion, next_challenger, summary)


def as_recorded(evaluation: list[Gate], verdicts: dict[str, bool]) -> list[Gate]:
    """A candidate's evaluation gates as Dagster recorded their checks: a gate passes only if its check passed for
    this model too. The two agree (both are written from one list) unless the hour was evaluated before the checks
    existed, or one was altered; then the decision refuses rather than promote past a check that says no."""
    recorded = []
    for gate in evaluation:
        if gate.passed and verdicts.get(gate.name) is not True:
            said = "failed" if gate.name in verdicts else "has no record for this model"
            gate = replace(gate, passed=False, detail=f"{gate.detail}; its asset check {said}")
        recorded.append(gate)
    return recorded


def champion_change_problems(
    action: str, decision_gates: list[Gate], evaluation_verdicts: dict[str, bool] | None
) -> list[str]:
    """Why a decision must not change the champion: empty when it may. `decision_gates` are the gates the decision
    recorded; `evaluation_verdicts` the new champion's evaluation gates, by name, as its checks recorded them (None:
    no record). A decision that keeps the champion has nothing to answer for."""
    if action not in CHAMPION_CHANGES:
        return []
    failed = [g.name for g in decision_gates if not g.passed]
    if action == ROLLBACK:
        return [f"gate {name} failed" for name in failed if name in ROLLBACK_GATES] + [
            f"gate {name} was not decided" for name in ROLLBACK_GATES if name not in {g.name for g in decision_gates}
        ]
    # A promoted candidate answers for its own evaluation gates as the decision read them, too.
    required = SHADOW_GATES if action == PROMOTE_CHALLENGER else (*EVALUATION_GATES, *CHAMPION_COMPARISON_GATES)
    problems = [f"gate {name} failed" for name in failed if name in required]
    if action == PROMOTE_CHALLENGER and not any(g.name == "shadow_beats_champion_sharpe" for g in decision_gates):
        problems.append("no shadow comparison was decided")
    if evaluation_verdicts is None:
        return [*problems, "its evaluation checks have no record"]
    for name in EVALUATION_GATES:
        if name not in evaluation_verdicts:
            problems.append(f"evaluation check {name} has no record")
        elif not evaluation_verdicts[name]:
            problems.append(f"evaluation check {name} failed")
    return problems
