from datetime import timedelta

import dagster as dg

from alphapulse_assets.jobs import hourly_job, retrain_job
from alphapulse_assets.partitions import partition_key

hourly_schedule = dg.build_schedule_from_partitioned_job(
    hourly_job,
    name="hourly_schedule",
    minute_of_hour=5,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Five minutes past each hour, materialize the hour that just closed.",
)


@dg.schedule(
    job=retrain_job,
    cron_schedule="30 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def daily_retrain_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """At 00:30 UTC, retrain on everything up to the last hour of the previous day (materialized at 00:05)."""
    scheduled = context.scheduled_execution_time
    decision = scheduled.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    key = partition_key(decision)
    return dg.RunRequest(
        run_key=f"daily-retrain-{key}", partition_key=key, tags={"alphapulse/trigger": "daily_retrain_schedule"}
    )
