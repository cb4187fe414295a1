"""Gates as Dagster asset checks: each recorded `Gate` becomes a check result with its value, threshold and
verdict, so the Checks tab shows what the warehouse's `gates` column says, built from the same list.

The evaluation checks on `model_evaluation` have ERROR severity (a failed one makes the model unpromotable) but
are not Dagster-blocking: a blocking check that fails fails its step, which would make every refused model a failed
run, page whoever watches the loop, and skip `promotion_decision`, which must still run after a refusal: it records
the refusal and judges the challenger in shadow against the champion. `promotion_decision` reads the gates as these
checks recorded them, and the block sits where a model is served: the blocking check `new_champion_passed_its_gates`
on `promotion_decision` (promotion/checks.py) reads the same records and stops `promoted_model` from serving a
champion whose checks failed.
"""

from __future__ import annotations

import math

import dagster as dg

from alphapulse_assets.partitions import HOURLY
from alphapulse_assets.training.gates import EVALUATION_GATES, Gate, gates_table

MODEL_EVALUATION = dg.AssetKey("model_evaluation")

EVALUATION_CHECK_SPECS = [
    dg.AssetCheckSpec(name, asset=MODEL_EVALUATION, description=description, partitions_def=HOURLY)
    for name, description in EVALUATION_GATES.items()
]


def _number(value: float | None) -> dg.MetadataValue:
    # Some gates count (hours, rows): every value is shown as a float, as the gates table does.
    return (
        dg.MetadataValue.float(float(value)) if value is not None and math.isfinite(value) else dg.MetadataValue.null()
    )


def verdict(passed: bool) -> str:
    return "passed" if passed else "failed"


def gate_check_result(gate: Gate, **metadata) -> dg.AssetCheckResult:
    """One gate as its check's result: ERROR severity, as every evaluation gate makes a model unpromotable."""
    return dg.AssetCheckResult(
        check_name=gate.name,
        passed=gate.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=gate.detail,
        metadata={
            "verdict": verdict(gate.passed),
            "value": _number(gate.value),
            "threshold": _number(gate.threshold),
            "detail": gate.detail,
            **metadata,
        },
    )


def gates_check_result(
    check_name: str, gates: list[Gate], not_applicable: str | None = None, **metadata
) -> dg.AssetCheckResult:
    """Several gates as one check (a comparison): passed when all did; `not_applicable` says why there was nothing
    to compare (the check then passes: nothing stood against the decision)."""
    if not_applicable is not None:
        return dg.AssetCheckResult(
            check_name=check_name,
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            description=not_applicable,
            metadata={"verdict": "not applicable", "reason": not_applicable, **metadata},
        )
    passed = all(g.passed for g in gates)
    return dg.AssetCheckResult(
        check_name=check_name,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "verdict": verdict(passed),
            "gates": dg.MetadataValue.md(gates_table(gates)),
            **{f"{g.name}.value": _number(g.value) for g in gates},
            **{f"{g.name}.threshold": _number(g.threshold) for g in gates},
            **metadata,
        },
    )
