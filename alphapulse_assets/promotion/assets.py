import functools
import json
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Literal

import dagster as dg
import polars as pl

from alphapulse_assets import alerts
from alphapulse_assets.alerts import Alert, in_replay, record_alert
from alphapulse_assets.features.store import current_feature_version
from alphapulse_assets.market.resources import MarketSource
from alphapulse_assets.news.resources import SentimentModel
from alphapulse_assets.partitions import HOURLY, partition_hour, partition_key
from alphapulse_assets.promotion.checks import (
    DECISION_CHECK_SPECS,
    champion_change_check,
    decision_check_results,
    evaluation_check_verdicts,
)
from alphapulse_assets.promotion.gates import (
    PROMOTE,
    PROMOTE_CHALLENGER,
    ROLLBACK,
    ROLLBACK_REFUSED,
    Decision,
    as_recorded,
    decide,
    promotion_gates,
    shadow_gates,
)
from alphapulse_assets.promotion.live import record, shadow_pairs
from alphapulse_assets.promotion.timeline import (
    DECISIONS_TABLE,
    KIND_ORDER,
    decision_timeline,
    decisions_after,
    out_of_order_message,
    state_before,
)
from alphapulse_assets.retries import STORAGE_RETRY_POLICY, NotRetryable
from alphapulse_assets.storage.object_store import ObjectStore
from alphapulse_assets.storage.warehouse import WAREHOUSE_WRITERS, Upsert, Warehouse
from alphapulse_assets.training.assets import model_evaluation, trained_model
from alphapulse_assets.training.data import load_window, single_row
from alphapulse_assets.training.gates import Gate, evaluation_gate_list, gates_table
from alphapulse_assets.training.metrics import evaluate_predictions
from alphapulse_assets.training.models import record_rule, score_frame
from alphapulse_assets.training.resources import MlflowTracking, ModelPolicy
from alphapulse_contract.scoring import MANIFEST_KEY, ModelManifest, ScoringModel, TradingRule
from alphapulse_contract.storage import read_uri

# The decisions a person is told of (alerts/ and the webhook), by the alert kind each raises.
ALERTED = {
    PROMOTE: alerts.PROMOTION,
    PROMOTE_CHALLENGER: alerts.PROMOTION,
    ROLLBACK: alerts.ROLLBACK,
    ROLLBACK_REFUSED: alerts.ROLLBACK_REFUSED,
}

# The newest challenger in shadow, for people and tools (the graph reads the challenger in force at an hour from
# the decision timeline). Absent when there is none.
CHALLENGER_KEY = "serving/challenger.json"


def _manifest_at(object_store: ObjectStore, key: str) -> ModelManifest | None:
    return ModelManifest.from_json(object_store.get_bytes(key)) if object_store.exists(key) else None


def current_champion(object_store: ObjectStore) -> ModelManifest | None:
    """The manifest the API serves now (the newest decision's champion)."""
    return _manifest_at(object_store, MANIFEST_KEY)


def current_challenger(object_store: ObjectStore) -> ModelManifest | None:
    return _manifest_at(object_store, CHALLENGER_KEY)


def manifest_key(version: str) -> str:
    return f"models/{version}/manifest.json"


def manifest_of(object_store: ObjectStore, version: str | None) -> ModelManifest | None:
    """A champion's or challenger's manifest by version (None for None); a version the timeline names must have one."""
    if version is None:
        return None
    manifest = _manifest_at(object_store, manifest_key(version))
    if manifest is None:
        raise NotRetryable(f"the decision timeline names model {version}, but {manifest_key(version)} is missing")
    return manifest


def scoring_model(manifest: ModelManifest) -> ScoringModel:
    """A manifest's model, read, verified and loaded once per process: the manifest pins the artifact's sha256, so
    every hour and run a champion scores in (a replay's year of them) can share one load."""
    return _verified_model(
        manifest.model_uri,
        manifest.sha256,
        tuple(manifest.feature_names),
        manifest.rule,
        manifest.version,
        manifest.model_format,
    )


@functools.lru_cache(maxsize=16)
def _verified_model(uri: str, sha256: str, feature_names: tuple[str, ...], rule: TradingRule, version: str, fmt: str):
    return ScoringModel.from_artifact(read_uri(uri), sha256, list(feature_names), rule, version, fmt)


def _metrics_from_row(row: dict, prefix: str) -> dict[str, float]:
    return {k[len(prefix) :]: v for k, v in row.items() if k.startswith(prefix)} | {"n": float(row["n_oos"])}


def build_manifest(trained: dict, evaluation: dict, symbols: list[str]) -> ModelManifest:
    """A model's manifest from its `trained_model` and `model_evaluation` rows: what the API and the loop need."""
    oos_hours = (trained["validation_end"] - trained["validation_start"]) / timedelta(hours=1)
    rule = record_rule(trained)
    return ModelManifest(
        version=trained["model_version"],
        model_uri=trained["model_uri"],
        sha256=trained["sha256"],
        feature_names=list(trained["feature_names"]),
        feature_version=trained["feature_version"],
        signal_band=rule.band,
        smoothing_hours=rule.smoothing_hours,
        symbols=list(symbols),
        training_window={
            k: trained[k].isoformat() for k in ("train_start", "train_end", "validation_start", "validation_end")
        },
        # The evaluation's promise, with the sample sizes that say how precise it is (performance drift uses them).
        # NaN (e.g. the hit rate of a baseline that never trades) has no JSON form: it is recorded as null.
        metrics={
            k: (float(v) if v is not None and math.isfinite(v) else None)
            for k, v in evaluation.items()
            if k.startswith(("oos_", "baseline_"))
        }
        | {"n_oos": float(evaluation["n_oos"]), "n_oos_directional": float(evaluation["n_oos_directional"])}
        | {"oos_hours": oos_hours},
        trained_at=trained["trained_at"].isoformat(),
        promoted_at="",
        decision_partition="",
        mlflow_run_id=trained["mlflow_run_id"],
        model_format=trained["model_format"],
        extra={
            "family": trained["family"],
            "registered_model": f"models:/{trained['registered_model']}/{trained['registered_version']}",
        },
    )


class DecisionConfig(dg.Config):
    """`challenge` (the default): judge this hour's model and the shadowing challenger against the champion.
    `rollback`: restore the previous champion, as the live-performance sensor requests (or a person, from the UI)."""

    action: Literal["challenge", "rollback"] = "challenge"
    reason: str = ""


def _challenge(
    instance: dg.DagsterInstance,
    decision_hour: datetime,
    warehouse: Warehouse,
    object_store: ObjectStore,
    policy: ModelPolicy,
    market: MarketSource,
    feature_version: str,
    champion: ModelManifest | None,
    challenger: ModelManifest | None,
) -> tuple[Decision, list[Gate], dict]:
    trained = single_row(warehouse, "trained_model", decision_hour, "trained_model")
    evaluation = single_row(warehouse, "model_evaluation", decision_hour, "model_evaluation")
    candidate = trained["model_version"]
    notes = {"candidate_version": candidate}

    champion_metrics, overlap_hours = None, 0.0
    if champion is None:
        notes["champion_note"] = "no champion yet"
    elif champion.feature_version != feature_version:
        notes["champion_note"] = (
            f"champion {champion.version} uses feature version {champion.feature_version}, features are now "
            f"{feature_version}: it cannot be served any more, so only the evaluation gates apply"
        )
        champion = None
    else:
        # Re-measure the champion on exactly the candidate's held-out rows. A champion decided at an earlier hour
        # with the same windows stopped training a validation window + embargo before that hour, so these rows are
        # out of sample for both models; when they are not (an older hour retrained), the overlap gate voids it.
        holdout = load_window(warehouse, market, policy, trained["validation_start"], trained["validation_end"])
        scored = score_frame(scoring_model(champion), holdout)
        champion_metrics, _ = evaluate_predictions(scored, champion.rule, policy.cost_bps)
        champion_train_end = datetime.fromisoformat(champion.training_window["train_end"])
        overlap_hours = max(0.0, (champion_train_end - trained["validation_start"]).total_seconds() / 3600)
        notes["champion_note"] = f"champion {champion.version} re-scored on the candidate's held-out window"

    # The gates as their checks recorded them: the verdicts of record, not only the table's copy.
    verdicts = evaluation_check_verdicts(instance, partition_key(decision_hour), candidate)
    evaluation_gates = as_recorded(evaluation_gate_list(evaluation), verdicts)
    candidate_gates = promotion_gates(
        evaluation_gates, _metrics_from_row(evaluation, "oos_"), champion_metrics, policy.margins(), overlap_hours
    )

    shadow = None
    if challenger is not None and champion is not None and challenger.version != candidate:
        since = datetime.fromisoformat(challenger.training_window["validation_end"])
        pairs = shadow_pairs(
            warehouse, market.symbols, policy, challenger.version, champion.version, since, decision_hour
        )
        challenger_live, _ = record(pairs, challenger.rule, policy.cost_bps)
        champion_live, live = record(pairs, champion.rule, policy.cost_bps, "champion_probability")
        shadow = shadow_gates(challenger_live, champion_live, live.hours, policy.min_shadow_hours, policy.margins())
        notes["shadow_note"] = (
            f"challenger {challenger.version} and champion {champion.version} on {live.hours:.0f} live hours "
            f"({pairs.height} rows with known outcomes)"
        )
    verdict = decide(
        candidate,
        candidate_gates,
        all(g.passed for g in evaluation_gates),
        champion.version if champion else None,
        challenger.version if challenger else None,
        shadow,
    )

    # The challenger in shadow follows the decision: a new one gets its manifest (and the MLflow alias, below).
    if verdict.challenger_after == candidate:
        manifest = build_manifest(trained, evaluation, market.symbols)
        object_store.put_bytes(manifest_key(candidate), manifest.to_json())
        object_store.put_bytes(CHALLENGER_KEY, manifest.to_json())
    elif verdict.challenger_after is None and challenger is not None:
        object_store.delete(CHALLENGER_KEY)
    return verdict, candidate_gates + (shadow or []), notes


def latest_decision(warehouse: Warehouse, hour: datetime) -> dict:
    """The last decision made at `hour` in the loop's order (the retrain's, if a rollback shares the hour)."""
    rows = (
        warehouse.query(f"select * from {DECISIONS_TABLE} where ts = ?", [hour])
        if warehouse.table_exists(DECISIONS_TABLE)
        else pl.DataFrame()
    )
    if rows.is_empty():
        raise NotRetryable(f"no promotion decision at {hour:%Y-%m-%d-%H:%M}: materialize promotion_decision first")
    return max(rows.iter_rows(named=True), key=lambda row: KIND_ORDER[row["kind"]])


def _fallback_of(warehouse: Warehouse, version: str, before: datetime) -> str | None:
    """The champion to restore if `version` fails live: the one it replaced when it was last made champion, at or
    before the hour `before`."""
    if not warehouse.table_exists("promoted_model"):
        return None
    rows = warehouse.query(
        "select fallback_version from promoted_model where model_version = ? and ts <= ? "
        "order by ts desc, promoted_at desc limit 1",
        [version, before],
    )
    return rows.item(0, 0) if rows.height else None


def _rollback(
    decision_hour: datetime,
    warehouse: Warehouse,
    object_store: ObjectStore,
    feature_version: str,
    reason: str,
    champion: ModelManifest | None,
    challenger: ModelManifest | None,
) -> tuple[Decision, list[Gate], dict]:
    if champion is None:
        raise NotRetryable("rollback requested, but there is no champion to roll back")
    challenger_version = challenger.version if challenger else None
    fallback = _fallback_of(warehouse, champion.version, decision_hour)
    previous = _manifest_at(object_store, manifest_key(fallback)) if fallback else None
    gates = [
        Gate("previous_champion_exists", previous is not None, 1.0 if previous else 0.0, 1.0, "a champion to restore"),
    ]
    if previous is not None:
        gates.append(
            Gate(
                "previous_champion_servable",
                previous.feature_version == feature_version,
                1.0 if previous.feature_version == feature_version else 0.0,
                1.0,
                f"its feature version {previous.feature_version} is the current {feature_version}",
            )
        )
    notes = {"candidate_version": fallback, "champion_note": reason or "rollback requested"}
    if all(g.passed for g in gates):
        summary = f"rollback: champion {champion.version} failed live ({reason}); {fallback} restored"
        return Decision(ROLLBACK, fallback, challenger_version, summary), gates, notes
    summary = (
        f"rollback refused: champion {champion.version} failed live ({reason}), but "
        + ("there is no previous champion" if previous is None else f"{fallback} cannot serve today's features")
        + "; it stays until a retrain replaces it"
    )
    return Decision(ROLLBACK_REFUSED, champion.version, challenger_version, summary), gates, notes


def _alert(context, object_store: ObjectStore, action: str, decision: dict) -> None:
    """A person is told of a champion that changed, or of a failing one that could not be rolled back (never of a
    replay's decisions)."""
    if in_replay(context):
        return
    before, after = decision["champion_version"] or "none", decision["champion_after"] or "none"
    record_alert(
        object_store,
        Alert(
            ALERTED[action],
            f"{action.replace('_', ' ')}: {before} -> {after}",
            {
                "summary": decision["summary"],
                # A rollback's reason (the live-performance sensor's, or a person's) is its decision's note.
                "reason": decision["champion_note"] if decision["kind"] == "rollback" else None,
                "trigger": decision["trigger"],
            },
            run_id=context.run_id,
            partition=context.partition_key,
        ),
    )


@dg.asset(
    partitions_def=HOURLY,
    retry_policy=STORAGE_RETRY_POLICY,
    pool=WAREHOUSE_WRITERS,
    group_name="promotion",
    kinds={"python", "mlflow"},
    deps=[model_evaluation],
    check_specs=DECISION_CHECK_SPECS,
)
def promotion_decision(
    context: dg.AssetExecutionContext,
    config: DecisionConfig,
    warehouse: Warehouse,
    object_store: ObjectStore,
    policy: ModelPolicy,
    market: MarketSource,
    sentiment: SentimentModel,
    mlflow: MlflowTracking,
) -> dg.MaterializeResult:
    """Champion/challenger rules: promote, keep (the challenger goes to shadow), or roll back a failing champion."""
    decision_hour = partition_hour(context)
    feature_version = current_feature_version(sentiment)
    timeline = decision_timeline(warehouse)
    later = decisions_after(timeline, decision_hour, config.action)
    if not later.is_empty():
        raise NotRetryable(out_of_order_message(f"a {config.action} decision", decision_hour, later))
    # The champion and challenger in force when this hour's decision is made, whatever was decided since.
    state = state_before(timeline, decision_hour, config.action)
    champion_before = manifest_of(object_store, state.champion)
    challenger_before = manifest_of(object_store, state.challenger)
    if config.action == "rollback":
        verdict, gates, notes = _rollback(
            decision_hour, warehouse, object_store, feature_version, config.reason, champion_before, challenger_before
        )
    else:
        verdict, gates, notes = _challenge(
            context.instance,
            decision_hour,
            warehouse,
            object_store,
            policy,
            market,
            feature_version,
            champion_before,
            challenger_before,
        )

    challenger_after = current_challenger(object_store)
    mlflow.set_alias("challenger", challenger_after.extra.get("registered_model") if challenger_after else None)

    row = pl.DataFrame(
        {
            "ts": [decision_hour],
            "kind": [config.action],
            "action": [verdict.action],
            "challenger_version": [notes["candidate_version"]],
            "champion_version": [champion_before.version if champion_before else None],
            "champion_after": [verdict.champion_after],
            "shadow_challenger_before": [challenger_before.version if challenger_before else None],
            "shadow_challenger_after": [verdict.challenger_after],
            "promote": [verdict.champion_changes],
            "summary": [verdict.summary],
            "champion_note": [notes.get("champion_note", "")],
            "shadow_note": [notes.get("shadow_note", "no challenger in shadow")],
            "gates": [json.dumps([g.as_dict() for g in gates])],
            "trigger": [context.run.tags.get("alphapulse/trigger", "manual")],
            "decided_at": [datetime.now(UTC)],
        },
        schema_overrides={
            k: pl.String
            for k in ("challenger_version", "champion_version", "champion_after")
            + ("shadow_challenger_before", "shadow_challenger_after")
        },
    )
    # Keyed by hour and kind: a rollback and a retrain decided at the same hour are two decisions, both kept.
    warehouse.upsert({DECISIONS_TABLE: Upsert(row, key=("ts", "kind"))})
    context.log.info(verdict.summary)
    if verdict.action == ROLLBACK_REFUSED:  # nothing is served: the decision is the news
        _alert(context, object_store, verdict.action, row.row(0, named=True))
    return dg.MaterializeResult(
        metadata={
            "action": verdict.action,
            "promote": verdict.champion_changes,
            "summary": verdict.summary,
            "challenger_version": notes["candidate_version"] or "none",
            "champion_version": champion_before.version if champion_before else "none",
            "champion_after": verdict.champion_after or "none",
            "shadow_challenger": verdict.challenger_after or "none",
            "champion_note": notes.get("champion_note", ""),
            "shadow_note": notes.get("shadow_note", "no challenger in shadow"),
            "gates": dg.MetadataValue.md(gates_table(gates)),
        },
        check_results=decision_check_results(config.action, gates, notes),
    )


@dg.asset_check(
    asset=promotion_decision,
    name="new_champion_passed_its_gates",
    blocking=True,
    partitions_def=HOURLY,
    description=(
        "A new champion passed every gate its decision rests on: this hour's model its evaluation checks and the "
        "champion comparison, a promoted challenger its evaluation checks and its shadow record, a restored "
        "champion the rollback's. Blocks promoted_model otherwise."
    ),
)
def new_champion_passed_its_gates(context: dg.AssetCheckExecutionContext, warehouse: Warehouse):
    # promoted_model serves the hour's latest decision, so that is the one this check answers for.
    decision = latest_decision(warehouse, context.partition_time_window.start)
    return champion_change_check(context.instance, warehouse, decision)


@dg.asset(
    partitions_def=HOURLY,
    retry_policy=STORAGE_RETRY_POLICY,
    pool=WAREHOUSE_WRITERS,
    group_name="promotion",
    kinds={"python", "mlflow"},
    deps=[promotion_decision, trained_model],
    output_required=False,
)
def promoted_model(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    object_store: ObjectStore,
    policy: ModelPolicy,
    market: MarketSource,
    mlflow: MlflowTracking,
):
    """The champion's manifest the API serves; materialized only at hours where the champion changed."""
    decision_hour = partition_hour(context)
    verdict = latest_decision(warehouse, decision_hour)
    later = decisions_after(decision_timeline(warehouse), decision_hour, verdict["kind"])
    if not later.is_empty():
        # The API serves the newest decision's champion; an older decision must not replace it.
        raise NotRetryable(out_of_order_message("promoted_model", decision_hour, later))
    if not verdict["promote"]:
        context.log.info(f"the champion stays: {verdict['summary']}")
        return
    replaced = verdict["champion_version"]
    if verdict["action"] == PROMOTE:
        trained = single_row(warehouse, "trained_model", decision_hour, "trained_model")
        evaluation = single_row(warehouse, "model_evaluation", decision_hour, "model_evaluation")
        chosen = build_manifest(trained, evaluation, market.symbols)
        fallback = replaced
    else:
        chosen = _manifest_at(object_store, manifest_key(verdict["champion_after"]))
        if chosen is None:
            raise NotRetryable(
                f"no manifest for {verdict['champion_after']} at {manifest_key(verdict['champion_after'])}"
            )
        # A promoted challenger falls back to the champion it replaces; a restored champion to its own fallback.
        fallback = (
            replaced
            if verdict["action"] == PROMOTE_CHALLENGER
            else _fallback_of(warehouse, chosen.version, decision_hour)
        )
    manifest = replace(chosen, promoted_at=datetime.now(UTC).isoformat(), decision_partition=decision_hour.isoformat())
    # Load it exactly as the API will before pointing the API at it.
    ScoringModel.load(manifest)
    payload = manifest.to_json()
    object_store.put_bytes(manifest_key(manifest.version), payload)
    manifest_uri = object_store.put_bytes(MANIFEST_KEY, payload)
    mlflow.set_alias("champion", manifest.extra.get("registered_model"))
    record_row = pl.DataFrame(
        {
            "ts": [decision_hour],
            "model_version": [manifest.version],
            "action": [verdict["action"]],
            "sha256": [manifest.sha256],
            "model_uri": [manifest.model_uri],
            "previous_version": [replaced],
            "fallback_version": [fallback],
            "promoted_at": [datetime.fromisoformat(manifest.promoted_at)],
        },
        schema_overrides={"previous_version": pl.String, "fallback_version": pl.String},
    )
    warehouse.upsert({"promoted_model": Upsert(record_row, key=("ts", "action"))})
    # Told once the manifest is served: a decision the blocking check stopped never reaches this line.
    _alert(context, object_store, verdict["action"], verdict)
    yield dg.MaterializeResult(
        metadata={
            "model_version": manifest.version,
            "action": verdict["action"],
            "sha256": manifest.sha256,
            "model_uri": dg.MetadataValue.url(manifest.model_uri),
            "manifest_uri": dg.MetadataValue.url(manifest_uri),
            "previous_version": replaced or "none",
            "fallback_version": fallback or "none",
            "feature_version": manifest.feature_version,
            "training_window": dg.MetadataValue.json(manifest.training_window),
            "oos_metrics": dg.MetadataValue.json({k: v for k, v in manifest.metrics.items() if k.startswith("oos_")}),
        }
    )
