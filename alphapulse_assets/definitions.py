"""The AlphaPulse code location: every asset, check, job, schedule, sensor and resource, assembled once.

Resources are built from `Settings.from_env()`, so a malformed environment fails here, at load, with the name of
the variable, before any run can write anything.
"""

import os

import dagster as dg

from alphapulse_assets.alerts import AlertWebhook, alert_delivery_sensor
from alphapulse_assets.features.assets import features
from alphapulse_assets.features.sensors import news_drop_sensor
from alphapulse_assets.jobs import (
    data_job,
    hourly_job,
    news_job,
    retrain_job,
    rollback_job,
    signals_job,
)
from alphapulse_assets.market.assets import prices
from alphapulse_assets.market.resources import (
    BinanceArchiveMarket,
    BinanceRestMarket,
    MarketSource,
    PriceQuality,
    SimulatedMarket,
)
from alphapulse_assets.market.sensors import archive_file_sensor
from alphapulse_assets.monitoring.assets import drift_report
from alphapulse_assets.monitoring.checks import freshness_checks_sensor, hourly_freshness_checks
from alphapulse_assets.monitoring.resources import DriftPolicy
from alphapulse_assets.monitoring.sensors import drift_retrain_sensor, live_performance_sensor, run_failure_alert_sensor
from alphapulse_assets.news.assets import news, news_sentiment
from alphapulse_assets.news.resources import (
    JsonlDropFolder,
    NewsSource,
    NoNewsSource,
    RssNewsSource,
    SentimentModel,
    SimulatedNewswire,
)
from alphapulse_assets.promotion.assets import new_champion_passed_its_gates, promoted_model, promotion_decision
from alphapulse_assets.replay.assets import loop_performance, loop_performance_job
from alphapulse_assets.replay.jobs import replay_job
from alphapulse_assets.schedules import daily_retrain_schedule, hourly_schedule
from alphapulse_assets.settings import Settings
from alphapulse_assets.signals.assets import predictions, shadow_predictions
from alphapulse_assets.storage.object_store import object_store_from_url
from alphapulse_assets.storage.postgres import PostgresWarehouse
from alphapulse_assets.storage.warehouse import DuckDBWarehouse, Warehouse
from alphapulse_assets.training.assets import model_evaluation, trained_model
from alphapulse_assets.training.jobs import tuning_worker_job
from alphapulse_assets.training.resources import MlflowTracking, ModelPolicy

# Let Dagster hand asset events to the event log in batches (one transaction per batch with the storage in
# dagster.yaml). Set here so it applies in every process that executes our runs, including run workers the daemon
# launches for UI backfills; an explicit DAGSTER_EVENT_BATCH_SIZE (0 disables) wins.
os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "1000")


def build_market(settings: Settings) -> MarketSource:
    symbols = list(settings.symbols)
    if settings.market_source == "binance_archive":
        return BinanceArchiveMarket(symbols=symbols, archive_dir=str(settings.archive_dir))
    if settings.market_source == "binance_rest":
        return BinanceRestMarket(symbols=symbols, base_url=settings.binance_url)
    return SimulatedMarket(
        symbols=symbols,
        seed=settings.seed,
        news_signal_strength=settings.news_signal_strength,
        regime_change=settings.sim_regime_change.isoformat() if settings.sim_regime_change else None,
        regime_vol_multiplier=settings.sim_regime_vol,
    )


def build_newswire(settings: Settings) -> NewsSource:
    common = {
        "symbols": list(settings.symbols),
        "aliases": {s: list(a) for s, a in (settings.symbol_aliases or {}).items()},
    }
    if settings.news_source == "rss":
        return RssNewsSource(
            **common,
            feed_urls=list(settings.rss_urls),
            timeout_seconds=settings.rss_timeout_seconds,
            max_feed_bytes=settings.rss_max_bytes,
        )
    if settings.news_source == "jsonl":
        return JsonlDropFolder(**common, news_dir=str(settings.news_dir))
    if settings.news_source == "none":
        return NoNewsSource(**common)
    return SimulatedNewswire(**common, seed=settings.seed, news_signal_strength=settings.news_signal_strength)


def build_warehouse(settings: Settings) -> Warehouse:
    if settings.warehouse_url:
        return PostgresWarehouse(url=settings.warehouse_url)
    return DuckDBWarehouse(path=str(settings.warehouse_path))


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "warehouse": build_warehouse(settings),
        "object_store": object_store_from_url(settings.object_store_location, public_url=settings.reports_url),
        "market": build_market(settings),
        "newswire": build_newswire(settings),
        "sentiment": SentimentModel(
            scorer_name=settings.sentiment_scorer,
            half_life_hours=settings.sentiment_half_life_hours,
            headlines=settings.news_source != "none",
        ),
        "policy": ModelPolicy(
            train_days=settings.train_days,
            validation_days=settings.validation_days,
            embargo_hours=settings.embargo_hours,
            cost_bps=settings.cost_bps,
            seed=settings.seed,
            horizon_hours=settings.label_horizon_hours,
            dead_band_bps=settings.label_dead_band_bps,
            cv_folds=settings.cv_folds,
            cv_window=settings.cv_window,
            tuning_trials=settings.tuning_trials,
            retune_every_hours=settings.retune_every_hours,
            model_families=list(settings.model_families),
            signal_bands=list(settings.signal_bands),
            smoothing_hours=list(settings.smoothing_hours),
            placebo_runs=settings.placebo_runs,
            device=settings.training_device,
            threads=settings.training_threads,
            gate_thresholds=dict(settings.gates or {}),
            promotion_log_loss_margin=settings.promotion_log_loss_margin,
            promotion_sharpe_margin=settings.promotion_sharpe_margin,
            min_shadow_hours=settings.min_shadow_hours,
            optuna_storage=settings.optuna_storage,
        ),
        "drift": DriftPolicy(
            window_hours=settings.drift_window_hours,
            alpha=settings.drift_alpha,
            critical_share=settings.drift_critical_share,
            performance_window_hours=settings.performance_window_hours,
            min_live_hours=settings.min_live_hours,
            rollback_z=settings.rollback_z,
            evidently_every_hours=settings.evidently_every_hours,
        ),
        "price_quality": PriceQuality(extreme_move_z=settings.extreme_move_z),
        "mlflow": MlflowTracking(
            tracking_uri=settings.mlflow_tracking_uri,
            artifact_root=settings.mlflow_artifact_root
            or (
                None
                if settings.mlflow_tracking_uri.startswith(("http://", "https://"))
                else str(settings.home / "mlartifacts")
            ),
            registered_model_name=settings.mlflow_model_name,
        ),
        "alert_webhook": AlertWebhook(url=settings.alert_webhook_url, ui_url=settings.ui_url),
    }


ALL_ASSETS = [
    prices,
    news,
    news_sentiment,
    features,
    trained_model,
    model_evaluation,
    promotion_decision,
    promoted_model,
    drift_report,
    predictions,
    shadow_predictions,
    loop_performance,
]

# Evaluates shadow_predictions' AutomationCondition: the challenger's shadow follows the champion's predictions.
shadow_automation_sensor = dg.AutomationConditionSensorDefinition(
    "shadow_automation_sensor",
    target=dg.AssetSelection.assets(shadow_predictions),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)


def build_definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=ALL_ASSETS,
        jobs=[
            data_job,
            hourly_job,
            retrain_job,
            rollback_job,
            news_job,
            signals_job,
            tuning_worker_job,
            replay_job,
            loop_performance_job,
        ],
        schedules=[hourly_schedule, daily_retrain_schedule],
        asset_checks=[*hourly_freshness_checks, new_champion_passed_its_gates],
        sensors=[
            drift_retrain_sensor,
            live_performance_sensor,
            run_failure_alert_sensor,
            alert_delivery_sensor,
            shadow_automation_sensor,
            archive_file_sensor,
            news_drop_sensor,
            freshness_checks_sensor,
        ],
        resources=build_resources(settings),
        # Steps share one DuckDB file that admits one writer process; in-process execution also spares each step
        # a fresh interpreter importing the whole stack.
        executor=dg.in_process_executor,
    )


defs = build_definitions(Settings.from_env())
