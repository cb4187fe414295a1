from datetime import UTC, datetime, timedelta

import dagster as dg

from alphapulse_assets.jobs import retrain_job
from alphapulse_assets.monitoring.assets import drift_report

TRIGGER_TAG = "alphapulse/trigger"
RETRAIN_COOLDOWN = timedelta(hours=12)


@dg.asset_sensor(
    asset_key=drift_report.key,
    job=retrain_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
)
def drift_retrain_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    """Critical feature drift requests a retrain at that hour, at most once per cooldown period."""
    materialization = asset_event.asset_materialization
    status_entry = materialization.metadata.get("drift_status") if materialization else None
    status = getattr(status_entry, "value", None)
    if status != "critical":
        return dg.SkipReason(f"drift status at {materialization.partition if materialization else '?'}: {status}")
    recent = context.instance.get_run_records(
        dg.RunsFilter(
            job_name=retrain_job.name,
            tags={TRIGGER_TAG: "drift_retrain_sensor"},
            created_after=datetime.now(UTC) - RETRAIN_COOLDOWN,
        ),
        limit=1,
    )
    if recent:
        return dg.SkipReason(f"critical drift, but a drift-triggered retrain ran less than {RETRAIN_COOLDOWN} ago")
    partition = materialization.partition
    return dg.RunRequest(
        run_key=f"drift-retrain-{partition}", partition_key=partition, tags={TRIGGER_TAG: "drift_retrain_sensor"}
    )
