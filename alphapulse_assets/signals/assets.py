from datetime import datetime

import dagster as dg
import numpy as np
import polars as pl

from alphapulse_assets.features.assets import features
from alphapulse_assets.features.store import require_feature_version
from alphapulse_assets.metadata import partition_metadata, table_preview
from alphapulse_assets.partitions import HOURLY, SINGLE_RUN
from alphapulse_assets.promotion.assets import current_challenger, current_champion, promoted_model
from alphapulse_assets.retries import STORAGE_RETRY_POLICY, NotRetryable
from alphapulse_assets.storage.object_store import ObjectStore
from alphapulse_assets.storage.warehouse import WAREHOUSE_WRITERS, Warehouse
from alphapulse_assets.training.assets import score_frame
from alphapulse_serving.contract import ModelManifest, ScoringModel, signal_from_probability


def _scored(warehouse: Warehouse, manifest: ModelManifest, start: datetime, end: datetime, role: str) -> pl.DataFrame:
    """One model's P(up) and signal for every (hour, symbol) in [start, end), scored exactly as the API scores."""
    require_feature_version(warehouse, start, end, manifest.feature_version, f"{role} {manifest.version}")
    model = ScoringModel.load(manifest)
    rows = score_frame(model, warehouse.read_window("features", start, end))
    validation_end = datetime.fromisoformat(manifest.training_window["validation_end"])
    signals = np.array([signal_from_probability(p, model.signal_band) for p in rows["probability"].to_list()])
    return rows.select(
        "ts",
        "symbol",
        pl.col("probability").alias("probability_up"),
        pl.Series("signal", signals, dtype=pl.Int8),
        pl.lit(manifest.version).alias("model_version"),
        pl.lit(manifest.feature_version).alias("feature_version"),
        # Hours the model trained or was validated on: scores there are in-sample and say nothing about live skill.
        (pl.col("ts") < validation_end).alias("in_model_window"),
    )


@dg.asset(
    partitions_def=HOURLY,
    retry_policy=STORAGE_RETRY_POLICY,
    pool=WAREHOUSE_WRITERS,
    backfill_policy=SINGLE_RUN,
    group_name="signals",
    kinds={"xgboost", "duckdb"},
    deps=[features, promoted_model],
)
def predictions(
    context: dg.AssetExecutionContext, warehouse: Warehouse, object_store: ObjectStore
) -> dg.MaterializeResult:
    """The champion's P(up) and signal per symbol for each hour, scored exactly as the API scores."""
    start, end = context.partition_time_window
    champion = current_champion(object_store)
    if champion is None:
        raise NotRetryable("no promoted model yet: run retrain_job (or wait for the daily retrain) before predictions")
    frame = _scored(warehouse, champion, start, end, "champion")
    warehouse.replace_window("predictions", frame, start, end)
    counts = frame.group_by("signal").len().sort("signal")
    return dg.MaterializeResult(
        metadata=partition_metadata(
            context,
            light={
                "dagster/row_count": frame.height,
                "model_version": champion.version,
                "in_model_window_rows": int(frame["in_model_window"].sum()),
            },
            heavy={
                "signals": dg.MetadataValue.json({int(s): int(n) for s, n in counts.iter_rows()}),
                "preview": table_preview(frame.sort("ts", descending=True)),
            },
        )
    )


SHADOW_SCHEMA = {
    "ts": pl.Datetime("us", "UTC"),
    "symbol": pl.String,
    "probability_up": pl.Float64,
    "signal": pl.Int8,
    "model_version": pl.String,
    "feature_version": pl.String,
    "in_model_window": pl.Boolean,
    "champion_version": pl.String,
    "champion_probability_up": pl.Float64,
    "champion_signal": pl.Int8,
    "champion_in_model_window": pl.Boolean,
}


@dg.asset(
    partitions_def=HOURLY,
    retry_policy=STORAGE_RETRY_POLICY,
    pool=WAREHOUSE_WRITERS,
    backfill_policy=SINGLE_RUN,
    group_name="signals",
    kinds={"python", "duckdb"},
    deps=[features, predictions],
    # Declarative rather than a step of hourly_job: the shadow follows whatever hours the champion's predictions
    # land for (the hourly schedule, a backfill, a demo replay), and a broken challenger cannot fail the run that
    # serves. `eager()` only looks at the newest hour; the shadow is wanted for every hour predictions are made.
    automation_condition=dg.AutomationCondition.eager().without(dg.AutomationCondition.in_latest_time_window()),
)
def shadow_predictions(
    context: dg.AssetExecutionContext, warehouse: Warehouse, object_store: ObjectStore
) -> dg.MaterializeResult:
    """The challenger's P(up) and signal beside the champion's for the same hours; recorded, never served."""
    start, end = context.partition_time_window
    challenger = current_challenger(object_store)
    if challenger is None:
        frame = pl.DataFrame(schema=SHADOW_SCHEMA)
    else:
        champion = warehouse.read_window("predictions", start, end).select(
            "ts",
            "symbol",
            pl.col("model_version").alias("champion_version"),
            pl.col("probability_up").alias("champion_probability_up"),
            pl.col("signal").alias("champion_signal"),
            pl.col("in_model_window").alias("champion_in_model_window"),
        )
        frame = (
            _scored(warehouse, challenger, start, end, "challenger")
            .join(champion, on=["ts", "symbol"], how="left")
            .select(list(SHADOW_SCHEMA))
        )
    warehouse.replace_window("shadow_predictions", frame, start, end)
    agreement = (
        float((frame["signal"] == frame["champion_signal"]).mean())
        if frame.height and frame["champion_signal"].null_count() < frame.height
        else float("nan")
    )
    return dg.MaterializeResult(
        metadata=partition_metadata(
            context,
            light={
                "dagster/row_count": frame.height,
                "challenger_version": challenger.version if challenger else "none",
                "signal_agreement": agreement,
            },
            heavy={"preview": table_preview(frame.sort("ts", descending=True))},
        )
    )
