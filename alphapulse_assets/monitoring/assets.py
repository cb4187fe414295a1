from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl

from alphapulse_assets.features.assets import features
from alphapulse_assets.features.store import current_feature_version
from alphapulse_assets.monitoring.drift import measure_drift, render_html
from alphapulse_assets.news.resources import SentimentModel
from alphapulse_assets.partitions import HOURLY, partition_hour
from alphapulse_assets.promotion.assets import current_champion, promoted_model
from alphapulse_assets.storage.object_store import ObjectStore
from alphapulse_assets.storage.warehouse import Warehouse
from alphapulse_assets.training.resources import ModelPolicy


@dg.asset(partitions_def=HOURLY, group_name="monitoring", kinds={"html", "duckdb"}, deps=[features, promoted_model])
def drift_report(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    object_store: ObjectStore,
    policy: ModelPolicy,
    sentiment: SentimentModel,
) -> dg.MaterializeResult:
    """Recent features against the champion's training reference: PSI and KS per feature, with an HTML report."""
    hour = partition_hour(context)
    champion = current_champion(object_store)
    if champion is None:
        raise dg.Failure("no promoted model yet, so there is no training reference to compare with: run retrain_job")
    current_start = hour + timedelta(hours=1) - timedelta(hours=policy.drift_window_hours)
    window = champion.training_window
    reference = warehouse.read_window(
        "features", datetime.fromisoformat(window["train_start"]), datetime.fromisoformat(window["train_end"])
    )
    current = warehouse.read_window("features", current_start, hour + timedelta(hours=1))
    names = champion.feature_names
    summary = measure_drift(
        {n: reference[n].cast(pl.Float64).fill_null(float("nan")).to_numpy() for n in names},
        {n: current[n].cast(pl.Float64).fill_null(float("nan")).to_numpy() for n in names},
    )
    lines = [
        f"champion {champion.version}, feature version {champion.feature_version} "
        f"(features now {current_feature_version(sentiment)})",
        f"reference: training window {window['train_start']} .. {window['train_end']}, {reference.height} rows",
        f"current: {current_start.isoformat()} .. {(hour + timedelta(hours=1)).isoformat()}, {current.height} rows",
    ]
    report = render_html(summary, f"Feature drift at {hour:%Y-%m-%d %H:00} UTC", lines)
    report_uri = object_store.put_bytes(f"reports/drift/{hour:%Y%m%dT%H}.html", report.encode())

    rows = pl.DataFrame(
        [
            {
                "ts": hour,
                "feature": f.feature,
                "psi": f.psi,
                "ks": f.ks,
                "level": f.level,
                "reference_mean": f.reference_mean,
                "current_mean": f.current_mean,
                "status": summary.status,
                "champion_version": champion.version,
                "measured_at": datetime.now(UTC),
            }
            for f in summary.features
        ]
        or [
            {
                "ts": hour,
                "feature": None,
                "psi": None,
                "ks": None,
                "level": None,
                "reference_mean": None,
                "current_mean": None,
                "status": summary.status,
                "champion_version": champion.version,
                "measured_at": datetime.now(UTC),
            }
        ],
        schema_overrides={
            "feature": pl.String,
            "psi": pl.Float64,
            "ks": pl.Float64,
            "level": pl.String,
            "reference_mean": pl.Float64,
            "current_mean": pl.Float64,
        },
    )
    warehouse.replace_window("drift_report", rows, hour, hour + timedelta(hours=1))
    return dg.MaterializeResult(
        metadata={
            "drift_status": summary.status,
            "reason": summary.reason,
            "drifted_share": summary.drifted_share,
            "max_psi": summary.max_psi,
            "psi": dg.MetadataValue.json({f.feature: round(f.psi, 5) for f in summary.features}),
            "top_drifted": ", ".join(f"{f.feature} ({f.psi:.3f})" for f in summary.features[:5]) or "n/a",
            "report": dg.MetadataValue.url(report_uri),
            "champion_version": champion.version,
        }
    )
