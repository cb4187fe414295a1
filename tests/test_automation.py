from datetime import UTC, datetime

import dagster as dg
import pytest

from alphapulse_assets.definitions import build_definitions
from alphapulse_assets.monitoring.sensors import drift_retrain_sensor
from alphapulse_assets.runner import run_job
from alphapulse_assets.schedules import daily_retrain_schedule, hourly_schedule
from alphapulse_assets.settings import Settings


@pytest.fixture
def defs(tmp_path):
    return build_definitions(Settings.from_env({**__import__("os").environ, "ALPHAPULSE_HOME": str(tmp_path)}))


def test_daily_retrain_targets_the_last_hour_of_the_previous_day():
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2025, 3, 14, 0, 30, tzinfo=UTC))
    request = daily_retrain_schedule(context)
    assert request.partition_key == "2025-03-13-23:00"
    assert request.tags["alphapulse/trigger"] == "daily_retrain_schedule"


def test_hourly_schedule_materializes_the_hour_that_just_closed(defs):
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(2025, 3, 14, 10, 5, tzinfo=UTC)
        )
        schedule = defs.resolve_schedule_def(hourly_schedule.name)  # as the daemon sees it
        result = schedule.evaluate_tick(context)
        assert [r.partition_key for r in result.run_requests] == ["2025-03-14-09:00"]
    assert schedule.cron_schedule == "5 * * * *"


def _report(instance, partition: str, status: str) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key="drift_report", partition=partition, metadata={"drift_status": status})
    )


def test_drift_sensor_requests_a_retrain_only_on_critical_drift(defs):
    with dg.instance_for_test() as instance:
        _report(instance, "2025-03-13-10:00", "warning")
        context = dg.build_sensor_context(instance=instance, definitions=defs)
        quiet = drift_retrain_sensor.evaluate_tick(context)
        assert quiet.run_requests == [] and "warning" in quiet.skip_message

        _report(instance, "2025-03-13-11:00", "critical")
        context = dg.build_sensor_context(instance=instance, definitions=defs, cursor=context.cursor)
        fired = drift_retrain_sensor.evaluate_tick(context)
        assert [r.partition_key for r in fired.run_requests] == ["2025-03-13-11:00"]
        assert fired.run_requests[0].tags["alphapulse/trigger"] == "drift_retrain_sensor"


def test_drift_sensor_cools_down_after_a_drift_retrain(defs):
    with dg.instance_for_test() as instance:
        job = defs.resolve_job_def("retrain_job")
        instance.create_run_for_job(
            job, tags={"alphapulse/trigger": "drift_retrain_sensor", "dagster/partition": "2025-03-13-09:00"}
        )
        _report(instance, "2025-03-13-11:00", "critical")
        result = drift_retrain_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        assert result.run_requests == [] and "less than" in result.skip_message


@pytest.mark.parametrize("trained_at", ["2025-03-13-11:00", "2025-03-13-00:00"])
def test_drift_never_retrains_an_hour_any_trigger_has_just_trained(defs, trained_at):
    """The demo (or the schedule, a replay, a person) trained at the decision hour: critical drift reported at
    that hour, or within the cooldown after it, does not train it again."""
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="trained_model", partition=trained_at))
        _report(instance, "2025-03-13-11:00", "critical")
        result = drift_retrain_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        assert result.run_requests == [] and f"a model was trained at {trained_at}" in result.skip_message

    with dg.instance_for_test() as instance:  # a model trained longer ago than the cooldown does not hold it back
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key="trained_model", partition="2025-03-12-23:00")
        )
        _report(instance, "2025-03-13-11:00", "critical")
        result = drift_retrain_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        assert [r.partition_key for r in result.run_requests] == ["2025-03-13-11:00"]


@pytest.mark.parametrize(
    "bad_range, message",
    [
        (("2025-03-05-00:00", "2025-03-04-00:00"), "inverted"),
        (("2025-03-05-00:30", "2025-03-06-00:00"), "not an hourly partition"),
        (("2024-01-01-00:00", "2025-03-06-00:00"), "not an hourly partition"),
    ],
)
def test_bad_ranges_are_refused_before_anything_is_written(defs, tmp_path, bad_range, message):
    with dg.instance_for_test() as instance:
        with pytest.raises(ValueError, match=message):
            run_job(defs, instance, "data_job", partition_range=bad_range)
        assert instance.get_runs() == []
    assert not (tmp_path / "warehouse.duckdb").exists()


def test_freshness_check_flags_a_stale_source(defs):
    from alphapulse_assets.monitoring.checks import HOURLY_ASSETS, freshness_checks_sensor, hourly_freshness_checks

    assert defs.resolve_sensor_def(freshness_checks_sensor.name) is not None
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [*hourly_freshness_checks, *HOURLY_ASSETS],
            selection=dg.AssetSelection.checks(*hourly_freshness_checks),
            instance=instance,
            resources=defs.resources,
        )
        evaluations = result.get_asset_check_evaluations()
    # Nothing materialized: every hourly asset is stale, each with its own failed check.
    assert {e.asset_check_key.asset_key.to_user_string() for e in evaluations} == {
        "prices",
        "news",
        "news_sentiment",
        "features",
        "predictions",
        "drift_report",
    }
    assert not any(e.passed for e in evaluations)
