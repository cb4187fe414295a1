"""The checks on `promotion_decision`: what the decision compared (the champion on the candidate's held-out
window, the challenger's live shadow record), and the blocking check that stands between a decision and the
manifest the API serves."""

from __future__ import annotations

import json

import dagster as dg
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from alphapulse_assets.partitions import HOURLY, partition_key
from alphapulse_assets.promotion.gates import (
    CHAMPION_COMPARISON_GATES,
    PROMOTE,
    PROMOTE_CHALLENGER,
    SHADOW_GATES,
    champion_change_problems,
)
from alphapulse_assets.storage.warehouse import Warehouse
from alphapulse_assets.training.checks import MODEL_EVALUATION, gates_check_result, verdict
from alphapulse_assets.training.gates import EVALUATION_GATES, Gate

PROMOTION_DECISION = dg.AssetKey("promotion_decision")
EVALUATED = {AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED}
CHAMPION_COMPARISON, SHADOW_RECORD = "champion_comparison", "shadow_record"

DECISION_CHECK_SPECS = [
    dg.AssetCheckSpec(
        CHAMPION_COMPARISON,
        asset=PROMOTION_DECISION,
        description="This hour's model against the champion, re-scored on the same held-out rows.",
        partitions_def=HOURLY,
    ),
    dg.AssetCheckSpec(
        SHADOW_RECORD,
        asset=PROMOTION_DECISION,
        description="The challenger in shadow against the champion on the live hours both predicted.",
        partitions_def=HOURLY,
    ),
]


def decision_check_results(kind: str, gates: list[Gate], notes: dict) -> list[dg.AssetCheckResult]:
    """The comparison checks of one decision, from the gates it recorded."""
    comparison = [g for g in gates if g.name in CHAMPION_COMPARISON_GATES]
    shadow = [g for g in gates if g.name in SHADOW_GATES]
    rollback = "a rollback decision compares no candidate" if kind == "rollback" else None
    return [
        gates_check_result(
            CHAMPION_COMPARISON,
            comparison,
            not_applicable=rollback or (None if comparison else notes.get("champion_note", "no champion")),
            candidate_version=notes.get("candidate_version") or "none",
        ),
        gates_check_result(
            SHADOW_RECORD,
            shadow,
            not_applicable=rollback or (None if shadow else notes.get("shadow_note", "no challenger in shadow")),
        ),
    ]


def latest_check_evaluation(
    instance: dg.DagsterInstance, key: dg.AssetCheckKey, hour_key: str
) -> dg.AssetCheckEvaluation | None:
    """A check's latest evaluation at one partition: passed or failed, not merely planned by a run that never got
    that far (a retrain whose training failed)."""
    records = instance.event_log_storage.get_asset_check_execution_history(
        key, limit=1, status=EVALUATED, partition_filter=PartitionKeyFilter(key=hour_key)
    )
    return records[0].event.dagster_event.event_specific_data if records else None


def evaluation_check_verdicts(instance: dg.DagsterInstance, hour_key: str, model_version: str) -> dict[str, bool]:
    """The evaluation checks Dagster recorded for `model_version` at its hour, by gate: passed or not. A gate
    whose latest evaluation is of another model (the hour was retrained since) is absent."""
    verdicts = {}
    for name in EVALUATION_GATES:
        evaluation = latest_check_evaluation(instance, dg.AssetCheckKey(MODEL_EVALUATION, name), hour_key)
        version = evaluation.metadata.get("model_version") if evaluation else None
        if version is not None and version.value == model_version:
            verdicts[name] = evaluation.passed
    return verdicts


def _decided_hour(warehouse: Warehouse, model_version: str) -> str | None:
    rows = warehouse.query("select ts from trained_model where model_version = ? order by ts desc", [model_version])
    return partition_key(rows.item(0, 0)) if rows.height else None


def champion_change_check(instance: dg.DagsterInstance, warehouse: Warehouse, decision: dict) -> dg.AssetCheckResult:
    """Whether the decision `promoted_model` is about to serve changes the champion only past passed gates."""
    action, new_champion = decision["action"], decision["champion_after"]
    verdicts = None
    if action in (PROMOTE, PROMOTE_CHALLENGER):
        hour = _decided_hour(warehouse, new_champion)
        verdicts = evaluation_check_verdicts(instance, hour, new_champion) if hour else None
    gates = [Gate.from_dict(g) for g in json.loads(decision["gates"])]
    problems = champion_change_problems(action, gates, verdicts)
    passed = not problems
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=None if passed else f"{action} of {new_champion} stopped: " + "; ".join(problems),
        metadata={
            "verdict": verdict(passed),
            "action": action,
            "champion_before": decision["champion_version"] or "none",
            "champion_after": new_champion or "none",
            "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"),
        },
    )
