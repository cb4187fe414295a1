import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

from alphapulse_assets.features.assets import features
from alphapulse_assets.features.catalog import FEATURE_NAMES
from alphapulse_assets.features.store import current_feature_version, require_feature_version
from alphapulse_assets.market.assets import prices
from alphapulse_assets.market.resources import MarketSource
from alphapulse_assets.metadata import new_figure, png_markdown
from alphapulse_assets.news.resources import SentimentModel
from alphapulse_assets.partitions import HOURLY, partition_hour
from alphapulse_assets.storage.object_store import ObjectStore
from alphapulse_assets.storage.warehouse import Warehouse
from alphapulse_assets.training.data import load_labelled, single_row
from alphapulse_assets.training.metrics import evaluate_predictions, log_loss_gain_t
from alphapulse_assets.training.model import fit_xgboost
from alphapulse_assets.training.resources import MlflowTracking, ModelPolicy
from alphapulse_serving.contract import ScoringModel, sha256_hex


@dg.asset(partitions_def=HOURLY, group_name="training", kinds={"xgboost", "mlflow"}, deps=[features, prices])
def trained_model(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    object_store: ObjectStore,
    policy: ModelPolicy,
    mlflow: MlflowTracking,
    market: MarketSource,
    sentiment: SentimentModel,
) -> dg.MaterializeResult:
    """An XGBoost next-hour direction model fitted on the rolling window that ends before this hour's validation."""
    decision = partition_hour(context)
    windows = policy.windows(decision)
    # Training and validation rows must be of the version the online features will have, or the model cannot serve.
    feature_version = current_feature_version(sentiment)
    require_feature_version(
        warehouse,
        windows.train_start,
        windows.validation_end,
        feature_version,
        f"trained_model {decision:%Y-%m-%d %H:00}",
    )
    train = load_labelled(warehouse, market.symbols, windows.train_start, windows.train_end, policy.min_label_coverage)
    x = train.select(FEATURE_NAMES).to_numpy()
    y = train["label_up"].to_numpy()
    fitted = fit_xgboost(x, y, list(FEATURE_NAMES), seed=policy.seed)
    sha = sha256_hex(fitted.artifact)
    version = f"{decision:%Y%m%d%H}-{sha[:10]}"
    model_key = f"models/{version}/model.ubj"
    model_uri = object_store.put_bytes(model_key, fitted.artifact)

    run_id = mlflow.start_run(
        run_name=f"trained_model {decision:%Y-%m-%d %H:00}",
        params={
            **fitted.params,
            "num_boost_round": fitted.num_boost_round,
            **windows.as_dict(),
            "embargo_hours": policy.embargo_hours,
            "feature_version": feature_version,
        },
        tags={"alphapulse.version": version, "alphapulse.partition": decision.isoformat(), "alphapulse.sha256": sha},
    )
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "model.ubj"
        local.write_bytes(fitted.artifact)
        mlflow.log_artifact(run_id, str(local), "model")

    importance = fitted.booster.get_score(importance_type="gain")
    record = pl.DataFrame(
        {
            "ts": [decision],
            "model_version": [version],
            "model_uri": [model_uri],
            "sha256": [sha],
            "feature_names": [list(FEATURE_NAMES)],
            "feature_version": [feature_version],
            "train_start": [windows.train_start],
            "train_end": [windows.train_end],
            "validation_start": [windows.validation_start],
            "validation_end": [windows.validation_end],
            "n_train": [train.height],
            "train_base_rate": [float(y.mean())],
            "params": [json.dumps(fitted.params, sort_keys=True)],
            "mlflow_run_id": [run_id],
            "trained_at": [datetime.now(UTC)],
        }
    )
    warehouse.replace_window("trained_model", record, decision, context.partition_time_window.end)
    return dg.MaterializeResult(
        metadata={
            "model_version": version,
            "model_uri": dg.MetadataValue.url(model_uri),
            "sha256": sha,
            "n_train": train.height,
            "train_base_rate": float(y.mean()),
            "training_window": dg.MetadataValue.json(windows.as_dict()),
            "feature_version": feature_version,
            "mlflow_run_id": run_id,
            "mlflow_tracking_uri": mlflow.tracking_uri,
            "feature_importance_gain": dg.MetadataValue.json(
                dict(sorted(importance.items(), key=lambda kv: -kv[1])[:10])
            ),
        }
    )


def load_model(object_store: ObjectStore, record: dict, signal_band: float) -> ScoringModel:
    """A model from its `trained_model` row, its artifact checked against the recorded sha256."""
    key = f"models/{record['model_version']}/model.ubj"
    return ScoringModel.from_artifact(
        object_store.get_bytes(key),
        record["sha256"],
        list(record["feature_names"]),
        signal_band,
        record["model_version"],
    )


def score_frame(model: ScoringModel, frame: pl.DataFrame) -> pl.DataFrame:
    matrix = frame.select(model.feature_names).to_numpy().astype(np.float64)
    return frame.with_columns(pl.Series("probability", model.predict_proba(matrix)))


@dg.asset(partitions_def=HOURLY, group_name="training", kinds={"xgboost", "mlflow"}, deps=[trained_model])
def model_evaluation(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    object_store: ObjectStore,
    policy: ModelPolicy,
    mlflow: MlflowTracking,
    market: MarketSource,
) -> dg.MaterializeResult:
    """Out-of-sample metrics of this hour's model on its held-out window, beside a no-skill baseline."""
    decision = partition_hour(context)
    record = single_row(warehouse, "trained_model", decision, "trained_model")
    model = load_model(object_store, record, policy.signal_band)
    holdout = load_labelled(
        warehouse, market.symbols, record["validation_start"], record["validation_end"], policy.min_label_coverage
    )
    scored = score_frame(model, holdout)
    metrics, result = evaluate_predictions(scored, policy.signal_band, policy.cost_bps)
    # No skill: always predict the training base rate. Beating it is the least a model must do.
    baseline_scored = holdout.with_columns(pl.lit(record["train_base_rate"]).alias("probability"))
    baseline, baseline_result = evaluate_predictions(baseline_scored, policy.signal_band, policy.cost_bps)

    metrics["log_loss_gain_t"] = log_loss_gain_t(
        holdout["label_up"].to_numpy(), scored["probability"].to_numpy(), baseline_scored["probability"].to_numpy()
    )
    row = {"ts": decision, "model_version": record["model_version"], "n_oos": int(metrics["n"])}
    row |= {f"oos_{k}": v for k, v in metrics.items() if k != "n"}
    row |= {f"baseline_{k}": v for k, v in baseline.items() if k != "n"}
    row |= {"cost_bps": policy.cost_bps, "signal_band": policy.signal_band, "evaluated_at": datetime.now(UTC)}
    warehouse.replace_window("model_evaluation", pl.DataFrame([row]), decision, context.partition_time_window.end)
    mlflow.log_metrics(record["mlflow_run_id"], {f"oos_{k}": v for k, v in metrics.items()}, finish=True)

    return dg.MaterializeResult(
        metadata={
            "model_version": record["model_version"],
            "oos_accuracy": metrics["accuracy"],
            "oos_auc": metrics["auc"],
            "oos_log_loss": metrics["log_loss"],
            "oos_sharpe": metrics["sharpe"],
            "oos_max_drawdown": metrics["max_drawdown"],
            "oos_turnover": metrics["turnover"],
            "oos_hit_rate": metrics["hit_rate"],
            "n_oos": int(metrics["n"]),
            "oos_log_loss_gain_t": metrics["log_loss_gain_t"],
            "baseline_log_loss": baseline["log_loss"],
            "baseline_accuracy": baseline["accuracy"],
            "oos_window": f"{record['validation_start'].isoformat()} .. {record['validation_end'].isoformat()}",
            "cost_bps": policy.cost_bps,
            "equity_curve": _equity_plot(result.hourly, scored),
        }
    )


def _equity_plot(hourly: pl.DataFrame, scored: pl.DataFrame) -> dg.MetadataValue:
    figure, axis = new_figure()
    axis.plot(hourly["ts"].to_list(), np.exp(np.cumsum(hourly["net"].to_numpy())), label="signal, after costs")
    hold = scored.group_by("ts").agg(pl.col("next_return").mean()).sort("ts")
    axis.plot(hold["ts"].to_list(), np.exp(np.cumsum(hold["next_return"].to_numpy())), label="buy and hold", alpha=0.7)
    axis.set_ylabel("equity (start = 1)")
    axis.set_title("out-of-sample equity curve")
    axis.legend(loc="upper left")
    return png_markdown(figure, "equity curve")
