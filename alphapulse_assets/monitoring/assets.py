from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import polars as pl

from alphapulse_assets.alerts import CRITICAL_DRIFT, Alert, in_replay, record_alert
from alphapulse_assets.features.assets import features
from alphapulse_assets.features.catalog import FEATURE_NAMES
from alphapulse_assets.features.store import current_feature_version
from alphapulse_assets.market.resources import MarketSource
from alphapulse_assets.metadata import partition_metadata, report_link, table_preview
from alphapulse_assets.monitoring.drift import (
    DriftSummary,
    FeatureDrift,
    Reference,
    compare_feature,
    measure_drift,
    render_html,
)
from alphapulse_assets.monitoring.evidently_report import evidently_drift_html
from alphapulse_assets.monitoring.reference import drift_features, feature_columns, feature_references
from alphapulse_assets.monitoring.resources import DriftPolicy
from alphapulse_assets.news.resources import SentimentModel
from alphapulse_assets.partitions import HOURLY, SINGLE_RUN
from alphapulse_assets.promotion.assets import manifest_of, promoted_model, scoring_model
from alphapulse_assets.promotion.live import LiveWindow, champion_live, promised, record
from alphapulse_assets.promotion.performance import PerformanceDrift, performance_drift
from alphapulse_assets.promotion.timeline import decision_timeline, in_force
from alphapulse_assets.retries import STORAGE_RETRY_POLICY
from alphapulse_assets.signals.assets import predictions
from alphapulse_assets.storage.object_store import ObjectStore
from alphapulse_assets.storage.warehouse import WAREHOUSE_WRITERS, Warehouse
from alphapulse_assets.training.models import score_frame
from alphapulse_assets.training.resources import ModelPolicy
from alphapulse_contract.scoring import ModelManifest, ScoringModel


def _probabilities(model: ScoringModel, frame: pl.DataFrame) -> np.ndarray:
    if frame.is_empty():
        return np.array([], dtype=float)
    return score_frame(model, frame.sort("symbol", "ts"))["probability"].to_numpy()


def _feature_rows(hour: datetime, summary: DriftSummary, ref: "_Reference | None") -> pl.DataFrame:
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
                "champion_version": ref.champion.version if ref and ref.champion else None,
                "reference_version": ref.version if ref else None,
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
            "reference_version": pl.String,
            "measured_at": pl.Datetime("us", "UTC"),
        },
    )


def _summary_row(hour: datetime, ref: "_Reference | None", report: "_HourReport") -> pl.DataFrame:
    summary, prediction, performance = report.summary, report.prediction, report.performance
    accuracy, sharpe = performance.shortfall("accuracy"), performance.shortfall("sharpe")
    nan = float("nan")
    return pl.DataFrame(
        {
            "ts": [hour],
            "champion_version": [ref.champion.version if ref and ref.champion else None],
            "reference_version": [ref.version if ref else None],
            "reference_kind": [ref.kind if ref else "none"],
            "drift_status": [summary.status],
            "drift_reason": [summary.reason],
            "drifted_share": [summary.drifted_share],
            "max_psi": [summary.max_psi],
            "missing_rows": [report.quality.missing_rows],
            "null_feature_share": [report.quality.null_feature_share],
            "prediction_level": [prediction.level if prediction else NO_CHAMPION],
            "prediction_psi": [prediction.psi if prediction else nan],
            "prediction_ks": [prediction.ks if prediction else nan],
            "performance_status": [performance.status],
            "performance_reason": [performance.reason],
            "live_hours": [performance.live_hours],
            "live_accuracy": [accuracy.live if accuracy else nan],
            "promised_accuracy": [accuracy.promised if accuracy else nan],
            "accuracy_z": [accuracy.z if accuracy else nan],
            "live_sharpe": [sharpe.live if sharpe else nan],
            "promised_sharpe": [sharpe.promised if sharpe else nan],
            "sharpe_z": [sharpe.z if sharpe else nan],
            "evidently_report": [report.evidently_uri],
            "measured_at": [datetime.now(UTC)],
        },
        schema_overrides={
            "evidently_report": pl.String,
            "champion_version": pl.String,
            "reference_version": pl.String,
            "missing_rows": pl.Int64,
        },
    )


def _band(shortfall) -> str:
    if shortfall is None:
        return "n/a"
    return f"{shortfall.live:.4f} [{shortfall.band_low:.4f}, {shortfall.band_high:.4f}]"


NO_CHAMPION, NO_REFERENCE = "no_champion", "no_reference"
CHAMPION, LAST_TRAINED = "champion", "last_trained"


@dataclass(frozen=True)
class _Reference:
    """What every report against one model compares with: computed once per run, whatever the number of hours.

    Usually the champion in force. Before any champion (or while none is in force) the data is still compared with
    the training window of the last model trained, so a user sees how the newest data relates to what the refused
    challengers learned on; prediction and live-performance drift need a champion and say so."""

    version: str
    kind: str  # CHAMPION or LAST_TRAINED
    champion: ModelManifest | None
    window: dict[str, datetime]
    frame: pl.DataFrame  # the training window's features
    names: list[str]  # the features tested (drift_features of the model's)
    features: dict[str, Reference]  # each feature's reference series, prepared for comparisons
    model: ScoringModel | None
    validation_probabilities: Reference | None  # the champion's P(up) on its own out-of-sample window

    @classmethod
    def of_champion(
        cls, warehouse: Warehouse, champion: ModelManifest, symbols: list[str], window_hours: int
    ) -> "_Reference":
        window = {k: datetime.fromisoformat(v) for k, v in champion.training_window.items()}
        model = scoring_model(champion)
        validation = warehouse.read_window("features", window["validation_start"], window["validation_end"])
        built = cls._build(
            warehouse, champion.version, CHAMPION, champion, window, champion.feature_names, symbols, window_hours
        )
        return replace(built, model=model, validation_probabilities=Reference.of(_probabilities(model, validation)))

    @classmethod
    def of_trained(cls, warehouse: Warehouse, trained: dict, symbols: list[str], window_hours: int) -> "_Reference":
        window = {k: trained[k] for k in ("train_start", "train_end", "validation_start", "validation_end")}
        names = list(trained["feature_names"])
        return cls._build(warehouse, trained["model_version"], LAST_TRAINED, None, window, names, symbols, window_hours)

    @classmethod
    def _build(cls, warehouse, version, kind, champion, window, feature_names, symbols, window_hours) -> "_Reference":
        start, end = window["train_start"], window["train_end"]
        frame = warehouse.read_window("features", start, end)
        names = drift_features(feature_names)
        prepared = feature_references(frame, names, symbols, start, end, window_hours)
        return cls(version, kind, champion, window, frame, names, prepared, None, None)


def _trained_models(warehouse: Warehouse, served: pl.DataFrame, end: datetime) -> pl.DataFrame:
    """Every model trained for a decision hour before `end`, oldest first: the references of hours without a
    champion (none needed when every hour has one; empty before the first retrain)."""
    if not served["champion_version"].null_count() or not warehouse.table_exists("trained_model"):
        return pl.DataFrame(schema={"ts": pl.Datetime("us", "UTC")})
    return warehouse.query(
        "SELECT ts, model_version, train_start, train_end, validation_start, validation_end, feature_names "
        "FROM trained_model WHERE ts < ? ORDER BY ts",
        [end],
    )


@dataclass(frozen=True)
class _Quality:
    """How complete the current window is, whatever it is compared with."""

    missing_rows: int  # (symbol, hour) rows of the window the features table lacks
    null_feature_share: float  # share of the tested feature cells that are null

    @classmethod
    def of(cls, current: pl.DataFrame, names: list[str], symbols: list[str], hours: int) -> "_Quality":
        expected = len(symbols) * hours
        cells = current.height * len(names)
        nulls = int(sum(current.select(pl.col(names).null_count()).row(0))) if cells else 0
        return cls(max(expected - current.height, 0), nulls / cells if cells else float("nan"))


@dataclass(frozen=True)
class _HourReport:
    summary: DriftSummary
    quality: _Quality
    prediction: FeatureDrift | None  # None without a champion
    performance: PerformanceDrift
    report_uri: str
    evidently_uri: str | None
    evidently_share: float
    # What a person opens from the UI: the same pages over HTTP when browsers can reach the store, else the URIs.
    report_link: dg.MetadataValue
    evidently_link: dg.MetadataValue | None


def _report_hour(
    hour: datetime,
    ref: _Reference | None,
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
    end = hour + timedelta(hours=1)
    names = ref.names if ref else drift_features(FEATURE_NAMES)
    quality = _Quality.of(current, names, market.symbols, int((end - current_start) / timedelta(hours=1)))
    current_line = (
        f"current: {current_start:%Y-%m-%d %H:00} .. {end:%Y-%m-%d %H:00}, {current.height} rows "
        f"({quality.missing_rows} (symbol, hour) rows missing, {quality.null_feature_share:.1%} of feature cells null)"
    )
    if ref is None:
        summary = DriftSummary(
            NO_REFERENCE,
            "no model has been trained yet, so there is no training window to compare with: run retrain_job",
            float("nan"),
            float("nan"),
            [],
        )
        lines = [current_line]
    else:
        summary = measure_drift(
            ref.features, feature_columns(current, names, market.symbols, current_start, end), drift.thresholds()
        )
        window = ref.window
        lines = [
            f"reference: the {'champion' if ref.champion else 'last trained model (no champion in force)'} "
            f"{ref.version}; its training window {window['train_start']:%Y-%m-%d %H:00} .. "
            f"{window['train_end']:%Y-%m-%d %H:00}, {ref.frame.height} rows; features now {features_now}",
            current_line,
        ]
    prediction, performance = (
        None,
        PerformanceDrift(
            NO_CHAMPION, "no champion in force: no model serves, so there is no live record to judge", 0.0, []
        ),
    )
    if ref is not None and ref.champion is not None:
        champion = ref.champion
        # Prediction drift: the champion's P(up) now against its P(up) on its own out-of-sample window.
        prediction = compare_feature(
            "probability_up",
            ref.validation_probabilities,
            _probabilities(ref.model, current),
            drift.alpha,
            drift.thresholds().min_effective_rows,
        )
        # Performance drift: the champion's own live predictions whose outcomes are known, against its promise.
        live_start = max(end - timedelta(hours=drift.performance_window_hours), ref.window["validation_end"])
        live_rows = champion_live(warehouse, market.symbols, policy, champion.version, live_start, end, live_window)
        _, live = record(live_rows, champion.rule, policy.cost_bps)
        performance = performance_drift(live, promised(champion.metrics), drift.min_live_hours, drift.rollback_z)
        lines.append(f"prediction drift: {prediction.level} (PSI {prediction.psi:.4f}, KS {prediction.ks:.4f})")
    lines.append(f"live performance: {performance.reason}")
    report_key = f"reports/drift/{hour:%Y%m%dT%H}.html"
    report_uri = object_store.put_bytes(
        report_key, render_html(summary, f"Drift at {hour:%Y-%m-%d %H:00} UTC", lines).encode()
    )
    evidently_uri, evidently_link, evidently_share = None, None, float("nan")
    if (
        ref is not None
        and with_evidently
        and drift.wants_evidently(hour, summary.status == "critical")
        and ref.frame.height
        and current.height
    ):
        page, evidently_share = evidently_drift_html(ref.frame, current, names, seed=policy.seed)
        evidently_key = f"reports/drift/{hour:%Y%m%dT%H}-evidently.html"
        evidently_uri = object_store.put_bytes(evidently_key, page.encode())
        evidently_link = report_link(object_store, evidently_key)
    return _HourReport(
        summary,
        quality,
        prediction,
        performance,
        report_uri,
        evidently_uri,
        evidently_share,
        report_link(object_store, report_key),
        evidently_link,
    )


def _hour_metadata(report: _HourReport, drift: DriftPolicy, ref: _Reference | None) -> dict:
    summary, performance, prediction = report.summary, report.performance, report.prediction
    accuracy, sharpe = performance.shortfall("accuracy"), performance.shortfall("sharpe")
    nulls = sorted(summary.features, key=lambda f: -f.current_null_share)[:5]
    return {
        "drift_status": summary.status,
        "reason": summary.reason,
        "reference": f"{ref.kind} {ref.version}" if ref else "none: no model has been trained yet",
        "drifted_share": summary.drifted_share,
        "max_psi": summary.max_psi,
        "top_drifted": ", ".join(f"{f.feature} (PSI {f.psi:.3f}, p {f.p_value:.1g})" for f in summary.top()) or "none",
        "psi": dg.MetadataValue.json({f.feature: round(f.psi, 5) for f in summary.features}),
        "missing_rows": report.quality.missing_rows,
        "null_feature_share": report.quality.null_feature_share,
        "most_null_features": ", ".join(f"{f.feature} ({f.current_null_share:.0%})" for f in nulls) or "none",
        "report": report.report_link,
        "evidently_report": report.evidently_link
        if report.evidently_link
        else f"not written this hour (every {drift.evidently_every_hours} h, or when drift is critical, against a "
        "model's reference; never in a range run)",
        "evidently_drifted_share": report.evidently_share,
        "prediction_drift": prediction.level if prediction else NO_CHAMPION,
        "prediction_psi": prediction.psi if prediction else float("nan"),
        "performance_status": performance.status,
        "performance_reason": performance.reason,
        "live_hours": performance.live_hours,
        "live_accuracy": _band(accuracy),
        "promised_accuracy": accuracy.promised if accuracy else float("nan"),
        "accuracy_z": accuracy.z if accuracy else float("nan"),
        "live_sharpe": _band(sharpe),
        "promised_sharpe": sharpe.promised if sharpe else float("nan"),
        "sharpe_z": sharpe.z if sharpe else float("nan"),
        "champion_version": ref.champion.version if ref and ref.champion else None,
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
    """Feature drift and data quality of each hour against the champion's training window (the last trained
    model's before any champion), with the champion's prediction and live-performance drift, and an HTML report."""
    start, end = context.partition_time_window
    served = in_force(decision_timeline(warehouse), start, end)
    trained = _trained_models(warehouse, served, end)
    current_all = warehouse.read_window("features", start - timedelta(hours=drift.window_hours - 1), end)
    # Every hour's live record lies in this span: read once, not twice an hour.
    live_window = LiveWindow.read(
        warehouse, policy, end - timedelta(hours=drift.performance_window_hours + served.height), end
    )
    features_now = current_feature_version(sentiment)
    # The Evidently page costs ~10 s: a single hour (the hourly schedule) writes it; a range (a backfill, a replay)
    # does not, and says so in each hour's metadata.
    single_hour = served.height == 1
    references: dict[tuple[str, str], _Reference] = {}
    feature_rows, summary_rows = [], []
    for hour, version in served.select("ts", "champion_version").iter_rows():
        ref = None
        if version is not None:
            key = (CHAMPION, version)
            if key not in references:
                champion = manifest_of(object_store, version)
                references[key] = _Reference.of_champion(warehouse, champion, market.symbols, drift.window_hours)
            ref = references[key]
        else:
            before = trained.filter(pl.col("ts") <= hour)
            if before.height:
                last = before.row(before.height - 1, named=True)
                key = (LAST_TRAINED, last["model_version"])
                if key not in references:
                    references[key] = _Reference.of_trained(warehouse, last, market.symbols, drift.window_hours)
                ref = references[key]
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
        feature_rows.append(_feature_rows(hour, report.summary, ref))
        summary_rows.append(_summary_row(hour, ref, report))
    summaries = pl.concat(summary_rows, how="vertical_relaxed")
    warehouse.replace_windows(
        {"drift_report": pl.concat(feature_rows, how="vertical_relaxed"), "drift_summary": summaries}, start, end
    )
    critical = summaries.filter(pl.col("drift_status") == "critical")
    if critical.height and not in_replay(context):
        newest = critical.row(critical.height - 1, named=True)
        record_alert(
            object_store,
            Alert(
                CRITICAL_DRIFT,
                f"critical feature drift in {critical.height} of {summaries.height} hours",
                {
                    "hours": f"{critical['ts'].min():%Y-%m-%d %H:00} .. {critical['ts'].max():%Y-%m-%d %H:00} UTC",
                    "champion": newest["champion_version"] or "none",
                    "reason": newest["drift_reason"],
                    "drifted_share": f"{newest['drifted_share']:.0%}",
                    "report": report_link(object_store, f"reports/drift/{newest['ts']:%Y%m%dT%H}.html").value,
                },
                run_id=context.run_id,
                partition=f"{newest['ts']:%Y-%m-%d-%H:00}",
            ),
        )
    if single_hour:
        return dg.MaterializeResult(metadata=_hour_metadata(report, drift, ref))
    statuses = summaries.group_by("drift_status").len().sort("drift_status")
    performance = summaries.group_by("performance_status").len().sort("performance_status")
    return dg.MaterializeResult(
        metadata=partition_metadata(
            context,
            light={
                "dagster/row_count": summaries.height,
                "critical_hours": int((summaries["drift_status"] == "critical").sum()),
                "performance_critical_hours": int((summaries["performance_status"] == "critical").sum()),
                "hours_without_champion": int(summaries["champion_version"].is_null().sum()),
            },
            heavy={
                "drift_status_hours": dg.MetadataValue.json(dict(statuses.iter_rows())),
                "performance_status_hours": dg.MetadataValue.json(dict(performance.iter_rows())),
                "references": ", ".join(f"{kind} {version}" for kind, version in references),
                "evidently_report": "not written in a range run (materialize one hour to get its page)",
                "preview": table_preview(
                    summaries.select(
                        "ts",
                        "reference_kind",
                        "reference_version",
                        "drift_status",
                        "drifted_share",
                        "missing_rows",
                        "performance_status",
                    ).sort("ts", descending=True)
                ),  # fmt: skip
            },
        )
    )
