"""Extra tuning workers: runs that add trials to an hour's shared Optuna studies while `trained_model` tunes them.

Launch any number of `tuning_worker_job` runs for the hour `retrain_job` is training (from the UI, or a backfill
of one partition); with ALPHAPULSE_OPTUNA_STORAGE set they all draw from one trial budget per family, and
`trained_model` chooses from every worker's trials and counts all of them for the deflated Sharpe ratio.
"""

import dagster as dg

from alphapulse_assets.features.catalog import FEATURE_NAMES
from alphapulse_assets.features.store import current_feature_version
from alphapulse_assets.market.resources import MarketSource
from alphapulse_assets.news.resources import SentimentModel
from alphapulse_assets.partitions import HOURLY
from alphapulse_assets.retries import STORAGE_RETRY_POLICY, NotRetryable
from alphapulse_assets.storage.warehouse import Warehouse
from alphapulse_assets.training.data import training_rows, tune_or_fail
from alphapulse_assets.training.resources import ModelPolicy
from alphapulse_assets.training.tuning import TrainingSet


class TuningWorkerConfig(dg.Config):
    # Seeds this worker's samplers: give each concurrent worker its own number for proposals that repeat run to
    # run (given the same interleaving); by default the run id, which differs every run.
    worker_index: int | None = None


@dg.op(retry_policy=STORAGE_RETRY_POLICY, tags={"dagster/kind/optuna": ""})
def tune_shared_studies(
    context: dg.OpExecutionContext,
    config: TuningWorkerConfig,
    warehouse: Warehouse,
    policy: ModelPolicy,
    market: MarketSource,
    sentiment: SentimentModel,
) -> None:
    """Adds trials to this hour's shared studies until their budget is spent."""
    if policy.optuna_storage is None:
        raise NotRetryable(
            "tuning_worker_job needs ALPHAPULSE_OPTUNA_STORAGE (a PostgreSQL URL shared with the code location): "
            "without it trained_model tunes in its own process and never sees this worker's trials"
        )
    decision = context.partition_time_window.start
    train = training_rows(warehouse, market, policy, current_feature_version(sentiment), decision, "tuning worker")
    data = TrainingSet.from_frame(train, list(FEATURE_NAMES))
    stream = f"worker-{config.worker_index}" if config.worker_index is not None else context.run_id
    tuning = policy.tuning(decision, worker=context.run_id, sampler_stream=stream)
    result = tune_or_fail(data, tuning, f"tuning worker {decision:%H:00}")
    mine = [t for t in result.trials if t.worker == context.run_id]
    context.log.info(
        f"ran {len(mine)} of the studies' {result.n_trials} trials ({len(result.workers)} workers); best so far: "
        f"{result.best.family} trial {result.best.number}, cv log loss {result.best.cv_log_loss:.5f}"
    )
    context.add_output_metadata(
        {"trials_run": len(mine), "study_trials": result.n_trials, "workers": dg.MetadataValue.json(result.workers)}
    )


@dg.job(partitions_def=HOURLY, tags={"alphapulse/role": "tuning-worker"})
def tuning_worker_job():
    """Extra trials for the hour's shared Optuna studies (ALPHAPULSE_OPTUNA_STORAGE), alongside retrain_job."""
    tune_shared_studies()
