import warnings

import dagster as dg

# Jobs select assets by key, so the sensors and schedules that name a job import no asset module.
DATA_ASSETS = [dg.AssetKey(name) for name in ("prices", "news", "news_sentiment", "features")]
MODEL_ASSETS = [
    dg.AssetKey(name) for name in ("trained_model", "model_evaluation", "promotion_decision", "promoted_model")
]

data_job = dg.define_asset_job(
    "data_job",
    selection=dg.AssetSelection.assets(*DATA_ASSETS),
    description="Prices, news, sentiment and features for a range of hours (backfills: one run per range).",
)
news_job = dg.define_asset_job(
    "news_job",
    selection=dg.AssetSelection.assets("news", "news_sentiment", "features"),
    description="Re-land news for a range of hours (a dropped JSONL export) and recompute sentiment and features.",
)
# hourly_job mixes single-run data assets with per-hour model-side assets. It runs one hour at a time (the hourly
# schedule), and range backfills go through data_job, so Dagster's note that it would fall back to one run per
# partition for ranges is expected.
warnings.filterwarnings("ignore", message="Asset job hourly_job materializes assets with varying BackfillPolicies")
hourly_job = dg.define_asset_job(
    "hourly_job",
    selection=dg.AssetSelection.assets(*DATA_ASSETS, "drift_report", "predictions"),
    description="The just-closed hour: data side, the champion's predictions and a drift report.",
)
retrain_job = dg.define_asset_job(
    "retrain_job",
    selection=dg.AssetSelection.assets(*MODEL_ASSETS),
    description=(
        "Train a model at this hour, evaluate it out of sample, and decide: promote it, promote the challenger in "
        "shadow on its live record, or keep the champion."
    ),
)
rollback_job = dg.define_asset_job(
    "rollback_job",
    selection=dg.AssetSelection.assets("promotion_decision", "promoted_model"),
    description="Restore the previous champion at this hour (the live-performance sensor's remedy), as a decision.",
    config={"ops": {"promotion_decision": {"config": {"action": "rollback", "reason": "requested from the UI"}}}},
)
signals_job = dg.define_asset_job(
    "signals_job",
    selection=dg.AssetSelection.assets("predictions", "shadow_predictions", "drift_report"),
    description=(
        "The model side of a range of hours: the champion's predictions, the challenger's shadow and a drift report "
        "per hour, each from the models in force at that hour (backfills; the replay)."
    ),
)
