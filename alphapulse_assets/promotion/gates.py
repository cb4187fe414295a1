"""The champion/challenger comparison. Pure: metrics in, a list of recorded comparisons out."""

from __future__ import annotations

from alphapulse_assets.training.gates import Gate


def promotion_gates(
    evaluation: list[Gate],
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    champion_log_loss_margin: float,
    champion_overlap_hours: float = 0.0,
) -> list[Gate]:
    """The challenger's own evaluation gates (all must have passed), then the comparisons with the champion.

    `champion` holds the current champion's metrics re-measured on the challenger's out-of-sample window (None: no
    champion yet); `champion_overlap_hours` is how far the champion's training reaches into that window (a
    champion trained later than the challenger, e.g. when an old hour is retrained). Any overlap flatters the
    champion, so the comparison is void and the challenger is refused.
    """
    gates = list(evaluation)
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
