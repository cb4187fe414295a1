import json
import time
from datetime import UTC, datetime

import dagster as dg
import numpy as np
import polars as pl

from alphapulse_assets.features.assets import features
from alphapulse_assets.features.catalog import FEATURE_NAMES
from alphapulse_assets.features.store import current_feature_version
from alphapulse_assets.market.assets import prices
from alphapulse_assets.market.resources import MarketSource
from alphapulse_assets.metadata import date_axis, figure_png, new_figure, stored_plot, table_preview
from alphapulse_assets.news.resources import SentimentModel
from alphapulse_assets.partitions import HOURLY, partition_hour
from alphapulse_assets.retries import STORAGE_RETRY_POLICY, NotRetryable
from alphapulse_assets.storage.object_store import ObjectStore
from alphapulse_assets.storage.warehouse import WAREHOUSE_WRITERS, Warehouse
from alphapulse_assets.training.checks import EVALUATION_CHECK_SPECS, gate_check_result
from alphapulse_assets.training.data import last_search, load_window, single_row, training_rows, tune_or_fail
from alphapulse_assets.training.evaluation import ChosenModel, evaluate_model
from alphapulse_assets.training.gates import gates_table
from alphapulse_assets.training.metrics import HOURS_PER_YEAR
from alphapulse_assets.training.models import artifact_key, load_model
from alphapulse_assets.training.records import EvaluationRecord, TrainedModelRecord, dsr_trials
from alphapulse_assets.training.resources import MlflowTracking, ModelPolicy
from alphapulse_assets.training.tuning import (
    TrainingSet,
    TuningConfig,
    TuningResult,
    fit_final,
    score_configuration,
)
from alphapulse_contract.scoring import sha256_hex


@dg.asset(
    partitions_def=HOURLY,
    retry_policy=STORAGE_RETRY_POLICY,
    pool=WAREHOUSE_WRITERS,
    group_name="training",
    kinds={"xgboost", "catboost", "optuna", "mlflow"},
    deps=[features, prices],
)
def trained_model(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    object_store: ObjectStore,
    policy: ModelPolicy,
    mlflow: MlflowTracking,
    market: MarketSource,
    sentiment: SentimentModel,
) -> dg.MaterializeResult:
    """The best of XGBoost, CatBoost and logistic regression, tuned by Optuna on purged walk-forward folds."""
    decision = partition_hour(context)
    windows = policy.windows(decision)
    feature_version = current_feature_version(sentiment)
    train = training_rows(warehouse, market, policy, feature_version, decision, "trained_model")
    data = TrainingSet.from_frame(train, list(FEATURE_NAMES))
    config = policy.tuning(decision, worker=context.run_id)
    what = f"trained_model {decision:%Y-%m-%d %H:00}"
    tuned = last_search(warehouse, policy, decision, feature_version)
    if tuned is None:
        result = tune_or_fail(data, config, what)
        search = {"tuned_at": decision, "n_trials": result.n_trials, "n_completed_trials": result.n_completed}
        search["trial_sharpe_variance"] = result.trial_sharpe_variance
    else:
        # Between two searches the configuration the last one chose is refitted on this window and scored on its
        # folds; its selection was paid for by that search's trials, so they are the ones the DSR counts.
        try:
            result = score_configuration(data, config, tuned["family"], json.loads(tuned["params"]))
        except ValueError as exc:
            raise NotRetryable(f"{what}: {exc}") from exc
        search = {k: tuned[k] for k in ("tuned_at", "n_trials", "n_completed_trials", "trial_sharpe_variance")}
    best, rule = result.best, result.rule
    refit_started = time.perf_counter()
    model = fit_final(data, best.family, best.params, config.trainer)
    refit_seconds = time.perf_counter() - refit_started
    artifact = model.artifact()
    sha = sha256_hex(artifact)
    version = f"{decision:%Y%m%d%H}-{sha[:10]}"
    model_uri = object_store.put_bytes(artifact_key(version, model.model_format), artifact)
    trained = TrainedModelRecord(
        ts=decision,
        model_version=version,
        model_uri=model_uri,
        sha256=sha,
        model_format=model.model_format,
        family=best.family,
        params=best.params,
        feature_names=list(FEATURE_NAMES),
        feature_version=feature_version,
        windows=windows,
        horizon_hours=policy.horizon_hours,
        dead_band_bps=policy.dead_band_bps,
        n_train=int(data.labelled.sum()),
        train_base_rate=data.base_rate,
        cv_log_loss=best.cv_log_loss,
        cv_auc=best.cv_auc,
        train_auc=best.train_auc,
        rule=rule,
        cv_sharpe_hourly=best.sharpe,
        n_rules=len(result.rules),
        tuned_at=search["tuned_at"],
        n_trials=search["n_trials"],
        n_completed_trials=search["n_completed_trials"],
        trial_sharpe_variance=search["trial_sharpe_variance"],
        fold_scores=[score.as_dict() for score in best.folds],
        folds=[_fold_layout(fold) for fold in result.folds],
        importance=model.importance(list(FEATURE_NAMES)),
        tuning_seconds=sum(result.seconds_by_family.values()),
        trained_at=datetime.now(UTC),
    )
    trained = trained.tracked(*_track(mlflow, trained, policy, config, result, artifact, train))
    trials = pl.DataFrame(
        [
            {
                "ts": decision,
                **t.as_row(),
                "params": json.dumps(t.params, sort_keys=True),
                "tuned_at": search["tuned_at"],
            }
            for t in result.trials
        ],
        schema_overrides={"worker": pl.String, "cv_rule": pl.Int64, "rule_sharpes_hourly": pl.List(pl.Float64)},
    )
    window_end = context.partition_time_window.end
    warehouse.replace_window("trained_model", pl.DataFrame([trained.row()]), decision, window_end)
    warehouse.replace_window("tuning_trials", trials, decision, window_end)
    return dg.MaterializeResult(
        metadata=trained.metadata()
        | {
            "model_uri": dg.MetadataValue.url(model_uri),
            "params": dg.MetadataValue.json(best.params),
            "rules": _rules_table(result),
            "configuration": "searched here"
            if tuned is None
            else f"the configuration searched at {tuned['tuned_at']:%Y-%m-%d %H:00}, refitted on this window "
            f"(ALPHAPULSE_RETUNE_EVERY_HOURS={policy.retune_every_hours})",
            "tuning_workers": dg.MetadataValue.json(
                {w: sum(t.worker == w for t in result.trials) for w in result.workers}
            ),
            "best_by_family": _best_by_family_table(result) if tuned is None else "refit: no search this hour",
            "folds": table_preview(pl.DataFrame(trained.folds), rows=len(trained.folds)),
            "tuning_seconds": dg.MetadataValue.json(
                {**{k: round(v, 2) for k, v in result.seconds_by_family.items()}, "refit": round(refit_seconds, 2)}
            ),
            "training_window": dg.MetadataValue.json(windows.as_dict()),
            "mlflow_tracking_uri": mlflow.tracking_uri,
        }
    )


def _track(
    mlflow: MlflowTracking,
    trained: TrainedModelRecord,
    policy: ModelPolicy,
    config: TuningConfig,
    result: TuningResult,
    artifact: bytes,
    train: pl.DataFrame,
) -> tuple[str, str, str]:
    """The MLflow run of a trained model, from its record, and the model registered in it: (run id, registered
    model, registered version). The run's setup (folds, budget, trainer) is the policy's, not the record's."""
    setup = {
        "embargo_hours": policy.embargo_hours,
        "cv_folds": policy.cv_folds,
        "cv_window": policy.cv_window,
        "trials_per_family": policy.tuning_trials,
        "families": ",".join(policy.model_families),
        "seed": config.trainer.seed,
        "threads": config.trainer.threads,
        "device": config.trainer.device,
    }
    run_id = mlflow.start_run(
        run_name=f"trained_model {trained.ts:%Y-%m-%d %H:00}",
        params=trained.mlflow_params() | setup,
        tags=trained.mlflow_tags(),
    )
    for score in result.best.folds:
        mlflow.log_metrics(
            run_id,
            {
                "cv_val_log_loss": score.val_log_loss,
                "cv_val_auc": score.val_auc,
                "cv_train_auc": score.train_auc,
                "cv_baseline_log_loss": score.baseline_log_loss,
            },
            step=score.fold,
        )
    mlflow.log_metrics(run_id, trained.mlflow_metrics())
    mlflow.log_json(run_id, [t.as_row() | {"params": t.params} for t in result.trials], "tuning/trials.json")
    mlflow.log_json(run_id, trained.folds, "tuning/folds.json")
    description = {
        "version": trained.model_version,
        "sha256": trained.sha256,
        "model_format": trained.model_format,
        "family": trained.family,
        "feature_names": trained.feature_names,
        "feature_version": trained.feature_version,
    }
    example = train.select(FEATURE_NAMES).row(train.height - 1, named=True)  # the newest training row
    return run_id, *mlflow.log_model(run_id, artifact, description, trained.family, example)


def _fold_layout(fold) -> dict:
    """A fold's boundaries as timestamps, for people."""
    layout = fold.as_dict()
    for key in ("test_start", "test_end"):
        layout[key] = datetime.fromtimestamp(layout[key] * 3600, UTC).isoformat()
    return layout


def _rules_table(result: TuningResult) -> dg.MetadataValue:
    """Each trading rule's annualised walk-forward net Sharpe for the chosen configuration."""
    rows = [
        {
            "band": rule.band,
            "smoothing_hours": rule.smoothing_hours,
            "cv_net_sharpe": float(sharpe) * np.sqrt(HOURS_PER_YEAR),
            "chosen": i == result.best.rule_index,
        }
        for i, (rule, sharpe) in enumerate(zip(result.rules, result.best.rule_sharpes, strict=True))
    ]
    return table_preview(pl.DataFrame(rows).sort("cv_net_sharpe", descending=True), rows=len(rows))


def _best_by_family_table(result: TuningResult) -> dg.MetadataValue:
    rows = [
        {
            "family": name,
            "trial": trial.number,
            "cv_log_loss": trial.cv_log_loss,
            "cv_auc": trial.cv_auc,
            "train_auc": trial.train_auc,
            "trials": sum(t.family == name for t in result.trials),
            "pruned": sum(t.family == name and t.state == "pruned" for t in result.trials),
            "seconds": result.seconds_by_family[name],
            "chosen": trial is result.best,
        }
        for name, trial in result.best_by_family().items()
    ]
    return table_preview(pl.DataFrame(rows), rows=len(rows))


@dg.asset(
    partitions_def=HOURLY,
    retry_policy=STORAGE_RETRY_POLICY,
    pool=WAREHOUSE_WRITERS,
    group_name="training",
    kinds={"python", "mlflow"},
    deps=[trained_model],
    check_specs=EVALUATION_CHECK_SPECS,
)
def model_evaluation(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    object_store: ObjectStore,
    policy: ModelPolicy,
    mlflow: MlflowTracking,
    market: MarketSource,
) -> dg.MaterializeResult:
    """This hour's model on its final out-of-sample segment: backtest, deflated Sharpe, placebo twin and gates."""
    decision = partition_hour(context)
    record = single_row(warehouse, "trained_model", decision, "trained_model")
    model = load_model(object_store, record)
    holdout = load_window(warehouse, market, policy, record["validation_start"], record["validation_end"])
    train = load_window(warehouse, market, policy, record["train_start"], record["train_end"])
    chosen = ChosenModel(
        family=record["family"],
        params=json.loads(record["params"]),
        feature_names=list(record["feature_names"]),
        train_base_rate=record["train_base_rate"],
        fold_scores=json.loads(record["fold_scores"]),
        rule=model.rule,
        n_trials=dsr_trials(record),
        trial_sharpe_variance=record["trial_sharpe_variance"],
    )
    # Scored through the artifact as the API loads it, not the in-memory model tuning produced.
    probability = model.predict_proba(holdout.select(model.feature_names).to_numpy().astype(np.float64))
    report = evaluate_model(probability, holdout, train, chosen, policy.trainer(), policy.evaluation())
    metrics, baseline, gates, placebo = report.metrics, report.baseline, report.gates, report.placebo

    evaluation = EvaluationRecord(
        ts=decision,
        model_version=record["model_version"],
        family=record["family"],
        metrics=metrics,
        log_loss_gain_t=report.log_loss_gain_t,
        baseline=baseline,
        sharpe=report.sharpe,
        n_trials=chosen.n_trials,
        trial_sharpe_variance=record["trial_sharpe_variance"],
        placebo_accuracy=placebo.accuracy,
        placebo_accuracy_band=placebo.accuracy_band,
        placebo_accuracies=placebo.accuracies,
        placebo_log_loss=float(np.mean(placebo.log_losses)),
        gates=[g.as_dict() for g in gates],
        gates_passed=report.gates_passed,
        summary=report.summary,
        cost_bps=policy.cost_bps,
        rule=model.rule,
        evaluated_at=datetime.now(UTC),
    )
    window_end = context.partition_time_window.end
    warehouse.replace_window("model_evaluation", pl.DataFrame([evaluation.row()]), decision, window_end)

    importance = json.loads(record["importance"])
    equity_png = _equity_plot(report.backtest.hourly, report.scored)
    importance_png = _importance_plot(importance, record["family"])
    plots = f"plots/model_evaluation/{record['model_version']}"
    equity_md = stored_plot(object_store, f"{plots}/equity_curve.png", equity_png, "out-of-sample equity curve")
    importance_md = stored_plot(object_store, f"{plots}/feature_importance.png", importance_png, "feature importance")
    run_id = record["mlflow_run_id"]
    mlflow.log_metrics(run_id, evaluation.mlflow_metrics())
    mlflow.log_json(run_id, evaluation.gates, "evaluation/gates.json")
    mlflow.log_bytes(run_id, equity_png, "plots/equity_curve.png")
    mlflow.log_bytes(run_id, importance_png, "plots/feature_importance.png")
    mlflow.tag_model_version(
        record["registered_model"],
        record["registered_version"],
        {"gates_passed": str(evaluation.gates_passed).lower(), "alphapulse.version": record["model_version"]},
    )
    mlflow.finish(run_id)
    context.log.info(evaluation.summary)

    return dg.MaterializeResult(
        metadata=evaluation.metadata()
        | {
            "gates": dg.MetadataValue.md(gates_table(gates)),
            "oos_window": f"{record['validation_start'].isoformat()} .. {record['validation_end'].isoformat()}",
            "equity_curve": equity_md,
            "feature_importance": importance_md,
            "registered_model": f"models:/{record['registered_model']}/{record['registered_version']}",
        },
        check_results=[gate_check_result(g, model_version=record["model_version"]) for g in gates],
    )


def _equity_plot(hourly: pl.DataFrame, scored: pl.DataFrame) -> bytes:
    figure, axis = new_figure()
    axis.plot(hourly["ts"].to_list(), np.exp(np.cumsum(hourly["net"].to_numpy())), label="signal, after costs")
    hold = scored.group_by("ts").agg(pl.col("next_return").mean()).sort("ts")
    axis.plot(hold["ts"].to_list(), np.exp(np.cumsum(hold["next_return"].to_numpy())), label="buy and hold", alpha=0.7)
    date_axis(axis)
    axis.set_ylabel("equity (start = 1)")
    axis.set_title(f"out-of-sample equity curve ({HOURS_PER_YEAR} h a year)")
    axis.legend(loc="upper left")
    return figure_png(figure)


def _importance_plot(importance: dict[str, float], family_name: str) -> bytes:
    top = sorted(importance.items(), key=lambda kv: -kv[1])[:20][::-1]
    figure, axis = new_figure(height=5.0)
    axis.barh([name for name, _ in top], [share for _, share in top])
    axis.set_xlabel("share of importance")
    axis.set_title(f"top {len(top)} features ({family_name})")
    return figure_png(figure)
