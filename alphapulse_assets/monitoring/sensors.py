from datetime import UTC, datetime, timedelta

import dagster as dg

from alphapulse_assets.alerts import FAILED_BLOCKING_CHECK, REPLAY_TAG, RUN_FAILURE, Alert, record_alert
from alphapulse_assets.jobs import retrain_job, rollback_job
from alphapulse_assets.monitoring.assets import drift_report
from alphapulse_assets.partitions import PARTITION_FORMAT, partition_key
from alphapulse_assets.storage.object_store import ObjectStore

TRIGGER_TAG = "alphapulse/trigger"
# Partition hours (the loop's own clock, not the wall clock: a backfill replays it faster) between two
# drift-triggered retrains. Drift that a retrain did not cure would otherwise request one every hour.
RETRAIN_COOLDOWN = timedelta(hours=12)


def _metadata(event: dg.EventLogEntry, key: str):
    materialization = event.asset_materialization
    entry = materialization.metadata.get(key) if materialization else None
    return getattr(entry, "value", None)


def _partition(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry) -> str | dg.SkipReason:
    """The hour of a drift report the live rules act on; a skip for one without a partition, or one a replay made
    (the replay applies the rules to its own hours)."""
    partition = asset_event.asset_materialization.partition if asset_event.asset_materialization else None
    if partition is None:
        return dg.SkipReason("a drift report without a partition")
    run = context.instance.get_run_by_id(asset_event.run_id)
    if run is not None and REPLAY_TAG in run.tags:
        return dg.SkipReason(f"the drift report at {partition} belongs to a replay, which applies this rule itself")
    return partition


def _hour(partition: str) -> datetime:
    return datetime.strptime(partition, PARTITION_FORMAT).replace(tzinfo=UTC)


ROLLED_BACK_TAG = "alphapulse/rolled_back"


def _rollback_ran(instance: dg.DagsterInstance, champion: str | None) -> bool:
    """Whether this champion's rollback was decided already (restored, or refused for want of a predecessor)."""
    if champion is None:
        return False
    runs = instance.get_run_records(
        dg.RunsFilter(
            job_name=rollback_job.name, tags={ROLLED_BACK_TAG: champion}, statuses=[dg.DagsterRunStatus.SUCCESS]
        ),
        limit=1,
    )
    return bool(runs)


def drift_retrain_request(
    instance: dg.DagsterInstance,
    partition: str,
    drift_status: str | None,
    performance_status: str | None,
    champion: str | None = None,
) -> dg.RunRequest | dg.SkipReason:
    """The drift rule: critical feature drift at `partition` requests a retrain there, unless the champion also
    failed live and its rollback has not been decided yet (it goes first), or a drift-triggered retrain ran within
    the cooldown. The sensor and the replay both decide with this function."""
    if drift_status != "critical":
        return dg.SkipReason(f"drift status at {partition}: {drift_status}")
    # Once the rollback was decided (a refused one keeps the failing champion), only a retrain can replace it.
    if performance_status == "critical" and not _rollback_ran(instance, champion):
        return dg.SkipReason(
            f"critical drift at {partition}, but the champion also failed live: the rollback goes first, and the "
            "restored champion is measured afresh"
        )
    hour = _hour(partition)
    # Whoever trained a model within the cooldown (the schedule, the demo, a replay, a person in the UI), its data
    # is as fresh as a drift retrain's would be: retraining would spend minutes of the cores to decide again.
    recent = [partition_key(hour - timedelta(hours=h)) for h in range(int(RETRAIN_COOLDOWN / timedelta(hours=1)))]
    trained = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("trained_model"), asset_partitions=recent), limit=1
    ).records
    if trained:
        return dg.SkipReason(
            f"critical drift at {partition}, but a model was trained at {trained[0].partition_key} (run "
            f"{trained[0].run_id}), less than {RETRAIN_COOLDOWN} of partitions earlier: its data is as fresh"
        )
    earlier = instance.get_run_records(
        dg.RunsFilter(job_name=retrain_job.name, tags={TRIGGER_TAG: "drift_retrain_sensor"}), limit=20
    )
    for run in earlier:
        ran_at = _hour(run.dagster_run.tags["dagster/partition"])
        if hour - RETRAIN_COOLDOWN < ran_at <= hour:
            return dg.SkipReason(
                f"critical drift at {partition}, but a drift-triggered retrain ran at {ran_at:%Y-%m-%d %H:00}, "
                f"less than {RETRAIN_COOLDOWN} of partitions earlier"
            )
    return dg.RunRequest(
        run_key=f"drift-retrain-{partition}", partition_key=partition, tags={TRIGGER_TAG: "drift_retrain_sensor"}
    )


def rollback_request(
    partition: str, performance_status: str | None, champion: str | None, reason: str | None
) -> dg.RunRequest | dg.SkipReason:
    """The rollback rule: a champion failing live at `partition` is rolled back, once per champion (the run key
    names it). The sensor and the replay both decide with this function."""
    if performance_status != "critical":
        return dg.SkipReason(f"live performance of {champion} at {partition}: {performance_status}")
    reason = reason or "live performance critical"
    return dg.RunRequest(
        run_key=f"rollback-{champion}",
        partition_key=partition,
        run_config={"ops": {"promotion_decision": {"config": {"action": "rollback", "reason": reason}}}},
        tags={TRIGGER_TAG: "live_performance_sensor", ROLLED_BACK_TAG: str(champion)},
    )


@dg.asset_sensor(
    asset_key=drift_report.key,
    job=retrain_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
)
def drift_retrain_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    """Critical feature drift requests a retrain at that hour, at most once per cooldown of partition hours."""
    partition = _partition(context, asset_event)
    if isinstance(partition, dg.SkipReason):
        return partition
    return drift_retrain_request(
        context.instance,
        partition,
        _metadata(asset_event, "drift_status"),
        _metadata(asset_event, "performance_status"),
        _metadata(asset_event, "champion_version"),
    )


@dg.asset_sensor(
    asset_key=drift_report.key,
    job=rollback_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
)
def live_performance_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    """A champion whose live accuracy or Sharpe fell below its promise by more than the rollback threshold is
    rolled back to the previous champion (once per champion: the run key names it)."""
    partition = _partition(context, asset_event)
    if isinstance(partition, dg.SkipReason):
        return partition
    return rollback_request(
        partition,
        _metadata(asset_event, "performance_status"),
        _metadata(asset_event, "champion_version"),
        _metadata(asset_event, "performance_reason"),
    )


@dg.run_failure_sensor(default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=30)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, object_store: ObjectStore) -> None:
    """Every failed run leaves an alert (JSON in the object store, under alerts/, and on the webhook when one is
    set) naming the job, the partition, the trigger and the error, for whoever watches the loop; a run stopped by
    a failed blocking check names the check and why it failed."""
    run = context.dagster_run
    failure = context.failure_event
    start, end = run.tags.get("dagster/asset_partition_range_start"), run.tags.get("dagster/asset_partition_range_end")
    blocked = failed_blocking_checks(context.instance, run.run_id)
    alert = Alert(
        FAILED_BLOCKING_CHECK if blocked else RUN_FAILURE,
        f"blocking check {', '.join(blocked)} failed in {run.job_name}" if blocked else f"run of {run.job_name} failed",
        {
            "job": run.job_name,
            "partition_range": f"{start} .. {end}" if start else None,
            "trigger": run.tags.get(TRIGGER_TAG, run.tags.get("dagster/schedule_name", "manual")),
            **{f"check {name}": why for name, why in blocked.items()},
            "error": failure.message if failure else None,
        },
        run_id=run.run_id,
        partition=run.tags.get("dagster/partition"),
    )
    key = record_alert(object_store, alert)
    context.log.error(f"run {run.run_id} of {run.job_name} failed; alert written to {object_store.uri(key)}")


def failed_blocking_checks(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """The blocking checks that failed with ERROR severity in a run (they stop what is downstream), by
    `asset:check`, with what each said."""
    events = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    failed = {}
    for entry in events:
        evaluation = entry.dagster_event.event_specific_data
        if not evaluation.passed and evaluation.blocking and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            failed[f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"] = evaluation.description or ""
    return failed
