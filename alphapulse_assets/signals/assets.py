from datetime import datetime, timedelta

import dagster as dg
import polars as pl

from alphapulse_assets.features.assets import features
from alphapulse_assets.features.store import require_feature_version, rows_of_version
from alphapulse_assets.metadata import partition_metadata, table_preview
from alphapulse_assets.partitions import HOURLY, SINGLE_RUN
from alphapulse_assets.promotion.assets import manifest_of, promoted_model, scoring_model
from alphapulse_assets.promotion.timeline import decision_timeline, in_force, segments
from alphapulse_assets.retries import STORAGE_RETRY_POLICY
from alphapulse_assets.storage.object_store import ObjectStore
from alphapulse_assets.storage.warehouse import WAREHOUSE_WRITERS, Warehouse
from alphapulse_assets.training.metrics import rule_positions
from alphapulse_assets.training.models import score_frame
from alphapulse_contract.baseline import RulesBaseline
from alphapulse_contract.scoring import ModelManifest, ScoringModel


def rule_signals(
    warehouse: Warehouse, model: ScoringModel, feature_version: str, features: pl.DataFrame, first: datetime
) -> pl.DataFrame:
    """`features` (hours from `first` on) scored by `model` and traded by its rule: probability,
    smoothed_probability and position per row. The rule's moving mean at the first hours takes the model's scores
    of the hours before `first` too (those of its feature version), as the API takes them from the snapshot's
    `earlier` rows, so a champion's first hours trade as the API traded them."""
    hours = model.rule.smoothing_hours
    earlier = (
        rows_of_version(warehouse, first - timedelta(hours=hours - 1), first, feature_version)
        if hours > 1
        else pl.DataFrame()
    )
    rows = pl.concat([earlier, features], how="diagonal_relaxed") if earlier.height else features
    return rule_positions(score_frame(model, rows), model.rule).filter(pl.col("ts") >= first)


def _scored(warehouse: Warehouse, features: pl.DataFrame, manifest: ModelManifest, first: datetime) -> pl.DataFrame:
    """One model's P(up), smoothed P(up) and signal for every (hour, symbol) row of `features` (hours from `first`
    on), scored and traded exactly as the API does."""
    rows = rule_signals(warehouse, scoring_model(manifest), manifest.feature_version, features, first)
    validation_end = datetime.fromisoformat(manifest.training_window["validation_end"])
    return rows.select(
        "ts",
        "symbol",
        pl.col("probability").alias("probability_up"),
        pl.col("smoothed_probability").alias("smoothed_probability_up"),
        pl.col("position").cast(pl.Int8).alias("signal"),
        pl.lit(manifest.version).alias("model_version"),
        pl.lit(manifest.feature_version).alias("feature_version"),
        # Hours the model trained or was validated on: scores there are in-sample and say nothing about live skill.
        (pl.col("ts") < validation_end).alias("in_model_window"),
        pl.lit(PRIMARY).alias("source"),
    )


# Who answered, as the API's response says it: the champion's model, the rules baseline, or nobody (flat).
PRIMARY, BASELINE, ABSTAIN = "primary", "baseline", "abstain"
PREDICTION_SCHEMA = {
    "ts": pl.Datetime("us", "UTC"),
    "symbol": pl.String,
    "probability_up": pl.Float64,
    # The mean P(up) over the trading rule's smoothing hours: what the signal thresholds.
    "smoothed_probability_up": pl.Float64,
    "signal": pl.Int8,
    "model_version": pl.String,
    "feature_version": pl.String,
    "in_model_window": pl.Boolean,
    "source": pl.String,
}


def baseline_predictions(features: pl.DataFrame) -> pl.DataFrame:
    """What the API answers without a champion, for every (hour, symbol) row of `features`: the rules baseline's
    P(up) and signal, or an abstention (flat, no probability) where its inputs are missing. The same function the
    API calls, row by row, so the record and the answers agree to the bit."""
    rule = RulesBaseline()
    probabilities, signals = [], []
    for values in features.select(rule.describe()["features"]).to_dicts():
        probability, _, _ = rule.score(values)
        probabilities.append(probability)
        signals.append(0 if probability is None else rule.signal(probability))
    return (
        features.select("ts", "symbol")
        .with_columns(
            pl.Series("probability_up", probabilities, dtype=pl.Float64),
            # The baseline trades each hour's own probability.
            pl.Series("smoothed_probability_up", probabilities, dtype=pl.Float64),
            pl.Series("signal", signals, dtype=pl.Int8),
            pl.lit(None, dtype=pl.String).alias("model_version"),
            pl.lit(None, dtype=pl.String).alias("feature_version"),
            pl.lit(False).alias("in_model_window"),
        )
        .with_columns(
            pl.when(pl.col("probability_up").is_null())
            .then(pl.lit(ABSTAIN))
            .otherwise(pl.lit(BASELINE))
            .alias("source")
        )
        .select(list(PREDICTION_SCHEMA))
        .cast(PREDICTION_SCHEMA)
    )


def scored_in_force(
    warehouse: Warehouse, object_store: ObjectStore, start: datetime, end: datetime, role: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each hour in [start, end) scored by the `role` ("champion" or "challenger") in force at that hour, and the
    hours' assignment (`in_force`). Hours with none in force get no rows: never a score from a later model."""
    served = in_force(decision_timeline(warehouse), start, end)
    column = f"{role}_version"
    runs = segments(served, column)
    features = warehouse.read_window("features", start, end) if runs else pl.DataFrame()
    frames = [pl.DataFrame(schema=PREDICTION_SCHEMA)]
    for version, first, stop in runs:
        manifest = manifest_of(object_store, version)
        require_feature_version(warehouse, first, stop, manifest.feature_version, f"{role} {version}")
        rows = features.filter((pl.col("ts") >= first) & (pl.col("ts") < stop))
        frames.append(_scored(warehouse, rows, manifest, first))
    return pl.concat(frames, how="vertical_relaxed").sort("ts", "symbol"), served


def _served_by(served: pl.DataFrame, column: str) -> dict:
    """Hours per version in force (and without one), for metadata."""
    counts = served.group_by(column).len().sort(column, nulls_last=True)
    return {(version or "none"): int(n) for version, n in counts.iter_rows()}


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
    """What the API served per symbol-hour: the P(up) and signal of the champion in force at that hour, scored exactly
    as the API does, or the rules baseline's (abstaining where it cannot answer) in hours without one."""
    start, end = context.partition_time_window
    frame, served = scored_in_force(warehouse, object_store, start, end, "champion")
    unserved = served.filter(pl.col("champion_version").is_null()).select("ts")
    without = unserved.height
    if without:
        rows = warehouse.read_window("features", start, end).join(unserved, on="ts", how="semi")
        frame = pl.concat([frame, baseline_predictions(rows)], how="vertical_relaxed").sort("ts", "symbol")
        first = served.filter(pl.col("champion_version").is_not_null())["ts"].min()
        context.log.warning(
            f"{without} of {served.height} hours had no champion in force (no promotion decided before them"
            + (f"; the first champion serves from {first:%Y-%m-%d-%H:%M}" if first else "")
            + "): the rules baseline answered them, as the API does"
        )
    warehouse.replace_window("predictions", frame, start, end)
    counts = frame.group_by("signal").len().sort("signal")
    sources = frame.group_by("source").len().sort("source")
    versions = frame["model_version"].drop_nulls().unique().sort().to_list()
    return dg.MaterializeResult(
        metadata=partition_metadata(
            context,
            light={
                "dagster/row_count": frame.height,
                "model_version": ", ".join(versions) if versions else "none",
                "hours_without_champion": without,
                "in_model_window_rows": int(frame["in_model_window"].sum()),
            },
            heavy={
                "hours_by_champion": dg.MetadataValue.json(_served_by(served, "champion_version")),
                "rows_by_source": dg.MetadataValue.json(dict(sources.iter_rows())),
                "signals": dg.MetadataValue.json({int(s): int(n) for s, n in counts.iter_rows()}),
                "preview": table_preview(frame.sort("ts", descending=True)),
            },
        )
    )


SHADOW_SCHEMA = {
    **{column: dtype for column, dtype in PREDICTION_SCHEMA.items() if column != "source"},
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
    shadow, served = scored_in_force(warehouse, object_store, start, end, "challenger")
    champion = (
        warehouse.read_window("predictions", start, end)
        if warehouse.table_exists("predictions")
        else pl.DataFrame(schema=PREDICTION_SCHEMA)
    ).select(
        "ts",
        "symbol",
        pl.col("model_version").alias("champion_version"),
        pl.col("probability_up").alias("champion_probability_up"),
        pl.col("signal").alias("champion_signal"),
        pl.col("in_model_window").alias("champion_in_model_window"),
    )
    frame = shadow.join(champion, on=["ts", "symbol"], how="left").select(list(SHADOW_SCHEMA)).cast(SHADOW_SCHEMA)
    warehouse.replace_window("shadow_predictions", frame, start, end)
    challengers = frame["model_version"].unique().sort().to_list()
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
                "challenger_version": ", ".join(challengers) if challengers else "none",
                "signal_agreement": agreement,
            },
            heavy={
                "hours_by_challenger": dg.MetadataValue.json(_served_by(served, "challenger_version")),
                "preview": table_preview(frame.sort("ts", descending=True)),
            },
        )
    )
