from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import polars as pl

from alphapulse_assets.features.assets import features
from alphapulse_assets.features.store import current_feature_version
from alphapulse_assets.market.resources import MarketSource
from alphapulse_assets.monitoring.drift import DriftSummary, FeatureDrift, compare_feature, measure_drift, render_html
from alphapulse_assets.monitoring.evidently_report import evidently_drift_html
from alphapulse_assets.monitoring.live import champion_live, promised, record
from alphapulse_assets.monitoring.performance import PerformanceDrift, performance_drift
from alphapulse_assets.monitoring.resources import DriftPolicy
from alphapulse_assets.news.resources import SentimentModel
from alphapulse_assets.partitions import HOURLY, partition_hour
from alphapulse_assets.promotion.assets import current_champion, promoted_model
from alphapulse_assets.retries import STORAGE_RETRY_POLICY, NotRetryable
from alphapulse_assets.signals.assets import predictions
from alphapulse_assets.storage.object_store import ObjectStore
from alphapulse_assets.storage.warehouse import WAREHOUSE_WRITERS, Warehouse
from alphapulse_assets.training.assets import score_frame
from alphapulse_assets.training.resources import ModelPolicy
from alphapulse_serving.contract import ModelManifest, ScoringModel


def _columns(frame: pl.DataFrame, names: list[str]) -> dict[str, np.ndarray]:
    """Each feature as a float array in time order per symbol (autocorrelation is estimated along it)."""
    ordered = frame.sort("symbol", "ts")
    return {n: ordered[n].cast(pl.Float64).fill_null(float("nan")).to_numpy() for n in names}


def _probabilities(model: ScoringModel, frame: pl.DataFrame) -> np.ndarray:
    if frame.is_empty():
        return np.array([], dtype=float)
    return score_frame(model, frame.sort("symbol", "ts"))["probability"].to_numpy()


def _feature_rows(hour: datetime, summary: DriftSummary, champion: ModelManifest) -> pl.DataFrame:
    measured_at = datetime.now(UTC)
    return pl.DataFrame(
        [
            {
                "ts": hour,
                "feature": f.feature,
                "level": f.level,
                "psi": f.psi,
                "ks": f.ks,
                "p_value": f.p_value,
                "effective_rows": f.effective_rows,
                "reference_mean": f.reference_mean,
                "current_mean": f.current_mean,
                "reference_null_share": f.reference_null_share,
                "current_null_share": f.current_null_share,
                "champion_version": champion.version,
                "measured_at": measured_at,
            }
            for f in summary.features
        ],
        schema={
            "ts": pl.Datetime("us", "UTC"),
            "feature": pl.String,
            "level": pl.String,
            "psi": pl.Float64,
            "ks": pl.Float64,
            "p_value": pl.Float64,
            "effective_rows": pl.Float64,
            "reference_mean": pl.Float64,
            "current_mean": pl.Float64,
            "reference_null_share": pl.Float64,
            "current_null_share": pl.Float64,
            "champion_version": pl.String,
            "measured_at": pl.Datetime("us", "UTC"),
        },
    )


def _summary_row(
    hour: datetime,
    champion: ModelManifest,
    summary: DriftSummary,
    prediction: FeatureDrift,
    performance: PerformanceDrift,
    evidently_uri: str | None,
) -> pl.DataFrame:
    accuracy, sharpe = performance.shortfall("accuracy"), performance.shortfall("sharpe")
    nan = float("nan")
    return pl.DataFrame(
        {
            "ts": [hour],
            "champion_version": [champion.version],
            "drift_status": [summary.status],
            "drift_reason": [summary.reason],
            "drifted_share": [summary.drifted_share],
            "max_psi": [summary.max_psi],
            "prediction_level": [prediction.level],
            "prediction_psi": [prediction.psi],
            "prediction_ks": [prediction.ks],
            "performance_status": [performance.status],
            "performance_reason": [performance.reason],
            "live_hours": [performance.live_hours],
            "live_accuracy": [accuracy.live if accuracy else nan],
            "promised_accuracy": [accuracy.promised if accuracy else nan],
            "accuracy_z": [accuracy.z if accuracy else nan],
            "live_sharpe": [sharpe.live if sharpe else nan],
            "promised_sharpe": [sharpe.promised if sharpe else nan],
            "sharpe_z": [sharpe.z if sharpe else nan],
            "evidently_report": [evidently_uri],
            "measured_at": [datetime.now(UTC)],
        },
        schema_overrides={"evidently_report": pl.String},
    )


def _band(shortfall) -> str:
    if shortfall is None:
        return "n/a"
    return f"{shortfall.live:.4f} [{shortfall.band_low:.4f}, {shortfall.band_high:.4f}]"


@dg.asset(
    partitions_def=HOURLY,
    retry_policy=STORAGE_RETRY_POLICY,
    pool=WAREHOUSE_WRITERS,
    group_name="monitoring",
    kinds={"evidently", "html", "duckdb"},
    deps=[features, predictions, promoted_model],
)
def drift_report(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    object_store: ObjectStore,
    policy: ModelPolicy,
    drift: DriftPolicy,
    market: MarketSource,
    sentiment: SentimentModel,
) -> dg.MaterializeResult:
    """Feature, prediction and live-performance drift of the champion at this hour, with an Evidently report."""
    hour = partition_hour(context)
    champion = current_champion(object_store)
    if champion is None:
        raise NotRetryable("no promoted model yet, so there is no training reference to compare with: run retrain_job")
    end = hour + timedelta(hours=1)
    current_start = end - timedelta(hours=drift.window_hours)
    window = {k: datetime.fromisoformat(v) for k, v in champion.training_window.items()}
    reference = warehouse.read_window("features", window["train_start"], window["train_end"])
    current = warehouse.read_window("features", current_start, end)
    names = champion.feature_names
    summary = measure_drift(_columns(reference, names), _columns(current, names), drift.thresholds())

    # Prediction drift: the champion's P(up) now against its P(up) on its own out-of-sample window.
    model = ScoringModel.load(champion)
    validation = warehouse.read_window("features", window["validation_start"], window["validation_end"])
    prediction = compare_feature(
        "probability_up",
        _probabilities(model, validation),
        _probabilities(model, current),
        drift.alpha,
        drift.thresholds().min_effective_rows,
    )

    # Performance drift: the champion's own live predictions whose outcomes are known, against its promise.
    live_start = max(end - timedelta(hours=drift.performance_window_hours), window["validation_end"])
    live_rows = champion_live(warehouse, market.symbols, policy, champion.version, live_start, end)
    _, live = record(live_rows, policy)
    performance = performance_drift(live, promised(champion.metrics), drift.min_live_hours, drift.rollback_z)

    lines = [
        f"champion {champion.version}, feature version {champion.feature_version} "
        f"(features now {current_feature_version(sentiment)})",
        f"reference: training window {window['train_start']:%Y-%m-%d %H:00} .. {window['train_end']:%Y-%m-%d %H:00}"
        f", {reference.height} rows",
        f"current: {current_start:%Y-%m-%d %H:00} .. {end:%Y-%m-%d %H:00}, {current.height} rows",
        f"prediction drift: {prediction.level} (PSI {prediction.psi:.4f}, KS {prediction.ks:.4f})",
        f"live performance: {performance.reason}",
    ]
    report_uri = object_store.put_bytes(
        f"reports/drift/{hour:%Y%m%dT%H}.html",
        render_html(summary, f"Drift at {hour:%Y-%m-%d %H:00} UTC", lines).encode(),
    )
    evidently_uri, evidently_share = None, float("nan")
    if drift.wants_evidently(hour, summary.status == "critical") and reference.height and current.height:
        page, evidently_share = evidently_drift_html(reference, current, names, seed=policy.seed)
        evidently_uri = object_store.put_bytes(f"reports/drift/{hour:%Y%m%dT%H}-evidently.html", page.encode())

    warehouse.replace_windows(
        {
            "drift_report": _feature_rows(hour, summary, champion),
            "drift_summary": _summary_row(hour, champion, summary, prediction, performance, evidently_uri),
        },
        hour,
        end,
    )
    accuracy, sharpe = performance.shortfall("accuracy"), performance.shortfall("sharpe")
    return dg.MaterializeResult(
        metadata={
            "drift_status": summary.status,
            "reason": summary.reason,
            "drifted_share": summary.drifted_share,
            "max_psi": summary.max_psi,
            "top_drifted": ", ".join(f"{f.feature} (PSI {f.psi:.3f}, p {f.p_value:.1g})" for f in summary.top())
            or "none",
            "psi": dg.MetadataValue.json({f.feature: round(f.psi, 5) for f in summary.features}),
            "report": dg.MetadataValue.url(report_uri),
            "evidently_report": dg.MetadataValue.url(evidently_uri)
            if evidently_uri
            else f"not written this hour (every {drift.evidently_every_hours} h, or when drift is critical)",
            "evidently_drifted_share": evidently_share,
            "prediction_drift": prediction.level,
            "prediction_psi": prediction.psi,
            "performance_status": performance.status,
            "performance_reason": performance.reason,
            "live_hours": performance.live_hours,
            "live_accuracy": _band(accuracy),
            "promised_accuracy": accuracy.promised if accuracy else float("nan"),
            "accuracy_z": accuracy.z if accuracy else float("nan"),
            "live_sharpe": _band(sharpe),
            "promised_sharpe": sharpe.promised if sharpe else float("nan"),
            "sharpe_z": sharpe.z if sharpe else float("nan"),
            "champion_version": champion.version,
        }
    )
