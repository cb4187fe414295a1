from datetime import datetime

import dagster as dg
import numpy as np
import polars as pl

from alphapulse_assets.features.assets import features
from alphapulse_assets.features.store import require_feature_version
from alphapulse_assets.metadata import partition_metadata, table_preview
from alphapulse_assets.partitions import HOURLY, SINGLE_RUN
from alphapulse_assets.promotion.assets import current_champion, promoted_model
from alphapulse_assets.storage.object_store import ObjectStore
from alphapulse_assets.storage.warehouse import Warehouse
from alphapulse_assets.training.assets import score_frame
from alphapulse_serving.contract import ScoringModel, signal_from_probability


@dg.asset(
    partitions_def=HOURLY,
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
        raise dg.Failure("no promoted model yet: run retrain_job (or wait for the daily retrain) before predictions")
    require_feature_version(
        warehouse, start, end, champion.feature_version, f"champion {champion.version} (predictions)"
    )
    model = ScoringModel.load(champion)
    rows = score_frame(model, warehouse.read_window("features", start, end))
    validation_end = datetime.fromisoformat(champion.training_window["validation_end"])
    signals = np.array([signal_from_probability(p, model.signal_band) for p in rows["probability"].to_list()])
    frame = rows.select(
        "ts",
        "symbol",
        pl.col("probability").alias("probability_up"),
        pl.Series("signal", signals, dtype=pl.Int8),
        pl.lit(champion.version).alias("model_version"),
        pl.lit(champion.feature_version).alias("feature_version"),
        # Hours the model trained or was validated on: scores there are in-sample and say nothing about live skill.
        (pl.col("ts") < validation_end).alias("in_model_window"),
    )
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
