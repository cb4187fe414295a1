from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import polars as pl

from alphapulse_assets.features.assets import features
from alphapulse_assets.features.store import current_feature_version
from alphapulse_assets.market.resources import MarketSource
from alphapulse_assets.metadata import partition_metadata, table_preview
from alphapulse_assets.monitoring.drift import (
    DriftSummary,
    FeatureDrift,
    Reference,
    compare_feature,
    measure_drift,
    render_html,
)
from alphapulse_assets.monitoring.evidently_report import evidently_drift_html
from alphapulse_assets.monitoring.live import LiveWindow, champion_live, promised, record
from alphapulse_assets.monitoring.performance import PerformanceDrift, performance_drift
from alphapulse_assets.monitoring.reference import drift_features, feature_columns, feature_references
from alphapulse_assets.monitoring.resources import DriftPolicy
from alphapulse_assets.news.resources import SentimentModel
from alphapulse_assets.partitions import HOURLY, SINGLE_RUN
from alphapulse_assets.promotion.assets import manifest_of, promoted_model, scoring_model
from alphapulse_assets.promotion.timeline import decision_timeline, in_force
from alphapulse_assets.retries import STORAGE_RETRY_POLICY, NotRetryable
from alphapulse_assets.signals.assets import predictions
from alphapulse_assets.storage.object_store import ObjectStore
from alphapulse_assets.storage.warehouse import WAREHOUSE_WRITERS, Warehouse
from alphapulse_assets.training.assets import score_frame
from alphapulse_assets.training.resources import ModelPolicy
from alphapulse_serving.contract import ModelManifest, ScoringModel


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


@dataclass(frozen=True)
class _Reference:
    """What every report of one champion compares with: computed once per run, whatever the number of hours."""

    champion: ModelManifest
    window: dict[str, datetime]
    frame: pl.DataFrame  # the training window's features
    names: list[str]  # the features tested (drift_features of the champion's)
    features: dict[str, Reference]  # each feature's reference series, prepared for comparisons
    model: ScoringModel
    validation_probabilities: Reference  # the champion's P(up) on its own out-of-sample window

    @classmethod
    def of(cls, warehouse: Warehouse, champion: ModelManifest, symbols: list[str], window_hours: int) -> "_Reference":
        window = {k: datetime.fromisoformat(v) for k, v in champion.training_window.items()}
        start, end = window["train_start"], window["train_end"]
        reference = warehouse.read_window("features", start, end)
        model = scoring_model(champion)
        validation = warehouse.read_window("features", window["validation_start"], window["validation_end"])
        names = drift_features(champion.feature_names)
        return cls(
            champion,
            window,
            reference,
            names,
            feature_references(reference, names, symbols, start, end, window_hours),
            model,
            Reference.of(_probabilities(model, validation)),
        )


@dataclass(frozen=True)
class _HourReport:
    summary: DriftSummary
    prediction: FeatureDrift
    performance: PerformanceDrift
    report_uri: str
    evidently_uri: str | None
    evidently_share: float


def _report_hour(
    hour: datetime,
    ref: _Reference,
    current: pl.DataFrame,
    current_start: datetime,
    warehouse: Warehouse,
    object_store: ObjectStore,
    policy: ModelPolicy,
    drift: DriftPolicy,
    market: MarketSource,
    features_now: str,
    with_evidently: bool,
    live_window: LiveWindow,
) -> _HourReport:
    champion, window, names = ref.champion, ref.window, ref.names
    end = hour + timedelta(hours=1)
    summary = measure_drift(
        ref.features, feature_columns(current, names, market.symbols, current_start, end), drift.thresholds()
    )

    # Prediction drift: the champion's P(up) now against its P(up) on its own out-of-sample window.
    prediction = compare_feature(
        "probability_up",
        ref.validation_probabilities,
        _probabilities(ref.model, current),
        drift.alpha,
        drift.thresholds().min_effective_rows,
    )

    # Performance drift: the champion's own live predictions whose outcomes are known, against its promise.
    live_start = max(end - timedelta(hours=drift.performance_window_hours), window["validation_end"])
    live_rows = champion_live(warehouse, market.symbols, policy, champion.version, live_start, end, live_window)
    _, live = record(live_rows, policy)
    performance = performance_drift(live, promised(champion.metrics), drift.min_live_hours, drift.rollback_z)

    lines = [
        f"champion {champion.version}, feature version {champion.feature_version} (features now {features_now})",
        f"reference: training window {window['train_start']:%Y-%m-%d %H:00} .. {window['train_end']:%Y-%m-%d %H:00}"
        f", {ref.frame.height} rows",
        f"current: {current_start:%Y-%m-%d %H:00} .. {end:%Y-%m-%d %H:00}, {current.height} rows",
        f"prediction drift: {prediction.level} (PSI {prediction.psi:.4f}, KS {prediction.ks:.4f})",
        f"live performance: {performance.reason}",
    ]
    report_uri = object_store.put_bytes(
        f"reports/drift/{hour:%Y%m%dT%H}.html",
        render_html(summary, f"Drift at {hour:%Y-%m-%d %H:00} UTC", lines).encode(),
    )
    evidently_uri, evidently_share = None, float("nan")
    if (
        with_evidently
        and drift.wants_evidently(hour, summary.status == "critical")
        and ref.frame.height
        and current.height
    ):
        page, evidently_share = evidently_drift_html(ref.frame, current, names, seed=policy.seed)
        evidently_uri = object_store.put_bytes(f"reports/drift/{hour:%Y%m%dT%H}-evidently.html", page.encode())
    return _HourReport(summary, prediction, performance, report_uri, evidently_uri, evidently_share)


def _hour_metadata(report: _HourReport, drift: DriftPolicy, champion: ModelManifest) -> dict:
    summary, performance = report.summary, report.performance
    accuracy, sharpe = performance.shortfall("accuracy"), performance.shortfall("sharpe")
    return {
        "drift_status": summary.status,
        "reason": summary.reason,
        "drifted_share": summary.drifted_share,
        "max_psi": summary.max_psi,
        "top_drifted": ", ".join(f"{f.feature} (PSI {f.psi:.3f}, p {f.p_value:.1g})" for f in summary.top()) or "none",
        "psi": dg.MetadataValue.json({f.feature: round(f.psi, 5) for f in summary.features}),
        "report": dg.MetadataValue.url(report.report_uri),
        "evidently_report": dg.MetadataValue.url(report.evidently_uri)
        if report.evidently_uri
        else f"not written this hour (every {drift.evidently_every_hours} h, or when drift is critical; "
        "never in a range run)",
        "evidently_drifted_share": report.evidently_share,
        "prediction_drift": report.prediction.level,
        "prediction_psi": report.prediction.psi,
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


@dg.asset(
    partitions_def=HOURLY,
    retry_policy=STORAGE_RETRY_POLICY,
    pool=WAREHOUSE_WRITERS,
    backfill_policy=SINGLE_RUN,
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
    """Feature, prediction and live-performance drift of the champion in force at each hour, with an HTML report."""
    start, end = context.partition_time_window
    served = in_force(decision_timeline(warehouse), start, end)
    missing = served.filter(pl.col("champion_version").is_null())["ts"]
    if missing.len():
        raise NotRetryable(
            f"no champion was in force at {missing.len()} of {served.height} hours (the first: "
            f"{missing.min():%Y-%m-%d-%H:%M}), so there is no training reference to compare with: a champion serves "
            "from the hour after its promotion was decided (run retrain_job at an earlier hour)"
        )
    current_all = warehouse.read_window("features", start - timedelta(hours=drift.window_hours - 1), end)
    # Every hour's live record lies in this span: read once, not twice an hour.
    live_window = LiveWindow.read(
        warehouse, policy, end - timedelta(hours=drift.performance_window_hours + served.height), end
    )
    features_now = current_feature_version(sentiment)
    # The Evidently page costs ~10 s: a single hour (the hourly schedule) writes it; a range (a backfill, a replay)
    # does not, and says so in each hour's metadata.
    single_hour = served.height == 1
    references: dict[str, _Reference] = {}
    feature_rows, summary_rows = [], []
    for hour, version in served.select("ts", "champion_version").iter_rows():
        if version not in references:
            references[version] = _Reference.of(
                warehouse, manifest_of(object_store, version), market.symbols, drift.window_hours
            )
        ref = references[version]
        current_start = hour + timedelta(hours=1) - timedelta(hours=drift.window_hours)
        current = current_all.filter((pl.col("ts") >= current_start) & (pl.col("ts") <= hour))
        report = _report_hour(
            hour,
            ref,
            current,
            current_start,
            warehouse,
            object_store,
            policy,
            drift,
            market,
            features_now,
            single_hour,
            live_window,
        )
        feature_rows.append(_feature_rows(hour, report.summary, ref.champion))
        summary_rows.append(
            _summary_row(
                hour, ref.champion, report.summary, report.prediction, report.performance, report.evidently_uri
            )
        )
    summaries = pl.concat(summary_rows, how="vertical_relaxed")
    warehouse.replace_windows(
        {"drift_report": pl.concat(feature_rows, how="vertical_relaxed"), "drift_summary": summaries}, start, end
    )
    if single_hour:
        return dg.MaterializeResult(metadata=_hour_metadata(report, drift, ref.champion))
    statuses = summaries.group_by("drift_status").len().sort("drift_status")
    performance = summaries.group_by("performance_status").len().sort("performance_status")
    return dg.MaterializeResult(
        metadata=partition_metadata(
            context,
            light={
                "dagster/row_count": summaries.height,
                "critical_hours": int((summaries["drift_status"] == "critical").sum()),
                "performance_critical_hours": int((summaries["performance_status"] == "critical").sum()),
            },
            heavy={
                "drift_status_hours": dg.MetadataValue.json(dict(statuses.iter_rows())),
                "performance_status_hours": dg.MetadataValue.json(dict(performance.iter_rows())),
                "champions": ", ".join(references),
                "evidently_report": "not written in a range run (materialize one hour to get its page)",
                "preview": table_preview(
                    summaries.select(
                        "ts", "champion_version", "drift_status", "drifted_share", "performance_status"
                    ).sort("ts", descending=True)
                ),
            },
        )
    )
