import json
import math
from datetime import UTC, datetime

import dagster as dg
import polars as pl

from alphapulse_assets.features.store import current_feature_version
from alphapulse_assets.market.resources import MarketSource
from alphapulse_assets.news.resources import SentimentModel
from alphapulse_assets.partitions import HOURLY, partition_hour
from alphapulse_assets.promotion.gates import promotion_gates
from alphapulse_assets.storage.object_store import ObjectStore
from alphapulse_assets.storage.warehouse import Warehouse
from alphapulse_assets.training.assets import (
    evaluation_gate_list,
    load_window,
    model_evaluation,
    score_frame,
    trained_model,
)
from alphapulse_assets.training.data import single_row
from alphapulse_assets.training.gates import gates_table, summarize
from alphapulse_assets.training.metrics import evaluate_predictions
from alphapulse_assets.training.resources import ModelPolicy
from alphapulse_serving.contract import MANIFEST_KEY, ModelManifest, ScoringModel


def current_champion(object_store: ObjectStore) -> ModelManifest | None:
    if not object_store.exists(MANIFEST_KEY):
        return None
    return ModelManifest.from_json(object_store.get_bytes(MANIFEST_KEY))


def _metrics_from_row(row: dict, prefix: str) -> dict[str, float]:
    return {k[len(prefix) :]: v for k, v in row.items() if k.startswith(prefix)} | {"n": float(row["n_oos"])}


@dg.asset(partitions_def=HOURLY, group_name="promotion", kinds={"python"}, deps=[model_evaluation])
def promotion_decision(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    object_store: ObjectStore,
    policy: ModelPolicy,
    market: MarketSource,
    sentiment: SentimentModel,
) -> dg.MaterializeResult:
    """Champion/challenger gate: promote only a challenger that passed every evaluation gate and beats the champion."""
    decision = partition_hour(context)
    trained = single_row(warehouse, "trained_model", decision, "trained_model")
    evaluation = single_row(warehouse, "model_evaluation", decision, "model_evaluation")
    challenger = _metrics_from_row(evaluation, "oos_")

    champion = current_champion(object_store)
    champion_metrics, champion_note, overlap_hours = None, "no champion yet", 0.0
    feature_version = current_feature_version(sentiment)
    if champion is not None and champion.feature_version != feature_version:
        champion_note = (
            f"champion {champion.version} uses feature version {champion.feature_version}, features are now "
            f"{feature_version}: it cannot be served any more, so only its evaluation gates apply"
        )
    elif champion is not None:
        # Re-measure the champion on exactly the challenger's held-out rows. A champion decided at an earlier hour
        # with the same windows stopped training a validation window + embargo before that hour, so these rows are
        # out of sample for both models; when they are not (an older hour retrained), the overlap gate voids it.
        holdout = load_window(warehouse, market, policy, trained["validation_start"], trained["validation_end"])
        scored = score_frame(ScoringModel.load(champion), holdout)
        champion_metrics, _ = evaluate_predictions(scored, policy.signal_band, policy.cost_bps)
        champion_train_end = datetime.fromisoformat(champion.training_window["train_end"])
        overlap_hours = max(0.0, (champion_train_end - trained["validation_start"]).total_seconds() / 3600)
        champion_note = f"champion {champion.version} re-scored on the challenger's held-out window"

    gates = promotion_gates(
        evaluation_gate_list(evaluation), challenger, champion_metrics, policy.champion_log_loss_margin, overlap_hours
    )
    promote = all(g.passed for g in gates)
    summary = summarize(gates, verb="promote") if promote else "keep champion: " + summarize(gates)
    row = pl.DataFrame(
        {
            "ts": [decision],
            "challenger_version": [trained["model_version"]],
            "champion_version": [champion.version if champion else None],
            "promote": [promote],
            "summary": [summary],
            "champion_note": [champion_note],
            "gates": [json.dumps([g.as_dict() for g in gates])],
            "decided_at": [datetime.now(UTC)],
        },
        schema_overrides={"champion_version": pl.String},
    )
    warehouse.replace_window("promotion_decision", row, decision, context.partition_time_window.end)
    context.log.info(summary)
    return dg.MaterializeResult(
        metadata={
            "promote": promote,
            "summary": summary,
            "challenger_version": trained["model_version"],
            "champion_version": champion.version if champion else "none",
            "champion_note": champion_note,
            "gates": dg.MetadataValue.md(gates_table(gates)),
        }
    )


@dg.asset(
    partitions_def=HOURLY,
    group_name="promotion",
    kinds={"python"},
    deps=[promotion_decision, trained_model],
    output_required=False,
)
def promoted_model(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    object_store: ObjectStore,
    policy: ModelPolicy,
    market: MarketSource,
):
    """The champion's manifest the API serves; materialized only at hours where a challenger was promoted."""
    decision = partition_hour(context)
    verdict = single_row(warehouse, "promotion_decision", decision, "promotion_decision")
    if not verdict["promote"]:
        context.log.info(f"not promoted, the champion stays: {verdict['summary']}")
        return
    trained = single_row(warehouse, "trained_model", decision, "trained_model")
    evaluation = single_row(warehouse, "model_evaluation", decision, "model_evaluation")
    manifest = ModelManifest(
        version=trained["model_version"],
        model_uri=trained["model_uri"],
        sha256=trained["sha256"],
        feature_names=list(trained["feature_names"]),
        feature_version=trained["feature_version"],
        signal_band=policy.signal_band,
        symbols=list(market.symbols),
        training_window={
            k: trained[k].isoformat() for k in ("train_start", "train_end", "validation_start", "validation_end")
        },
        # NaN (e.g. the hit rate of a baseline that never trades) has no JSON form: it is recorded as null.
        metrics={
            k: (float(v) if v is not None and math.isfinite(v) else None)
            for k, v in evaluation.items()
            if k.startswith(("oos_", "baseline_"))
        },
        trained_at=trained["trained_at"].isoformat(),
        promoted_at=datetime.now(UTC).isoformat(),
        decision_partition=decision.isoformat(),
        mlflow_run_id=trained["mlflow_run_id"],
        model_format=trained["model_format"],
        extra={
            "family": trained["family"],
            "registered_model": f"models:/{trained['registered_model']}/{trained['registered_version']}",
        },
    )
    # Load it exactly as the API will before pointing the API at it.
    ScoringModel.load(manifest)
    payload = manifest.to_json()
    object_store.put_bytes(f"models/{manifest.version}/manifest.json", payload)
    manifest_uri = object_store.put_bytes(MANIFEST_KEY, payload)
    record = pl.DataFrame(
        {
            "ts": [decision],
            "model_version": [manifest.version],
            "sha256": [manifest.sha256],
            "model_uri": [manifest.model_uri],
            "previous_version": [verdict["champion_version"]],
            "promoted_at": [datetime.fromisoformat(manifest.promoted_at)],
        },
        schema_overrides={"previous_version": pl.String},
    )
    warehouse.replace_window("promoted_model", record, decision, context.partition_time_window.end)
    yield dg.MaterializeResult(
        metadata={
            "model_version": manifest.version,
            "sha256": manifest.sha256,
            "model_uri": dg.MetadataValue.url(manifest.model_uri),
            "manifest_uri": dg.MetadataValue.url(manifest_uri),
            "previous_version": verdict["champion_version"] or "none",
            "feature_version": manifest.feature_version,
            "training_window": dg.MetadataValue.json(manifest.training_window),
            "oos_metrics": dg.MetadataValue.json({k: v for k, v in manifest.metrics.items() if k.startswith("oos_")}),
        }
    )
