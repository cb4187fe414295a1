"""The champion/challenger rules and the sensors that close the loop, one rule at a time."""

import json
import os

import dagster as dg
import pytest

from alphapulse_assets.definitions import build_definitions
from alphapulse_assets.monitoring.sensors import (
    drift_retrain_sensor,
    live_performance_sensor,
    run_failure_alert_sensor,
)
from alphapulse_assets.promotion.gates import (
    CHAMPION_COMPARISON_GATES,
    KEEP,
    PROMOTE,
    PROMOTE_CHALLENGER,
    ROLLBACK,
    ROLLBACK_REFUSED,
    SHADOW_GATES,
    Margins,
    beats_champion,
    champion_change_problems,
    decide,
    shadow_gates,
)
from alphapulse_assets.runner import run_job
from alphapulse_assets.settings import Settings
from alphapulse_assets.storage.object_store import LocalObjectStore
from alphapulse_assets.thresholds import GateThresholds
from alphapulse_assets.training.gates import EVALUATION_GATES, Gate, evaluation_gates

MARGINS = Margins(log_loss=0.001, sharpe=0.2)
CHAMPION = {"log_loss": 0.680, "sharpe": 1.0}


def _gate(name: str, passed: bool) -> Gate:
    return Gate(name, passed, 1.0 if passed else 0.0, 1.0, name)


def test_margins_apply_to_log_loss_and_sharpe_on_the_same_rows():
    just_better = {"log_loss": 0.6795, "sharpe": 1.1}  # better, but by less than either margin
    assert not any(g.passed for g in beats_champion(just_better, CHAMPION, MARGINS, "here"))
    clearly = {"log_loss": 0.678, "sharpe": 1.3}
    gates = beats_champion(clearly, CHAMPION, MARGINS, "here")
    assert all(g.passed for g in gates) and [g.threshold for g in gates] == pytest.approx([0.679, 1.2])


def test_a_candidate_passing_every_gate_is_promoted_and_clears_the_shadow():
    verdict = decide("new", [_gate("a", True), _gate("b", True)], True, "champ", "shadowed", None)
    assert (verdict.action, verdict.champion_after, verdict.challenger_after) == (PROMOTE, "new", None)
    assert verdict.champion_changes


def test_a_candidate_that_passed_its_evaluation_but_not_the_champion_goes_to_shadow():
    gates = [_gate("evaluation", True), _gate("beats_champion_sharpe", False)]
    verdict = decide("new", gates, True, "champ", None, None)
    assert (verdict.action, verdict.champion_after, verdict.challenger_after) == (KEEP, "champ", "new")
    assert not verdict.champion_changes and "challenger is now new" in verdict.summary


def test_a_shadow_record_that_beats_the_champion_promotes_the_challenger():
    live = shadow_gates({"log_loss": 0.670, "sharpe": 2.0}, CHAMPION, 30, 24, MARGINS)
    assert [g.name for g in live] == ["shadow_hours", "shadow_beats_champion_log_loss", "shadow_beats_champion_sharpe"]
    verdict = decide("new", [_gate("evaluation", False)], False, "champ", "shadowed", live)
    assert (verdict.action, verdict.champion_after, verdict.challenger_after) == (PROMOTE_CHALLENGER, "shadowed", None)


def test_a_challenger_that_lost_in_shadow_is_dropped_and_one_without_enough_hours_keeps_shadowing():
    lost = shadow_gates({"log_loss": 0.690, "sharpe": 0.5}, CHAMPION, 30, 24, MARGINS)
    assert decide("new", [_gate("evaluation", False)], False, "champ", "shadowed", lost).challenger_after is None
    early = shadow_gates({"log_loss": 0.600, "sharpe": 9.0}, CHAMPION, 10, 24, MARGINS)
    assert [g.name for g in early] == ["shadow_hours"] and not early[0].passed  # too few hours: nothing claimed
    verdict = decide("new", [_gate("evaluation", False)], False, "champ", "shadowed", early)
    assert (verdict.action, verdict.challenger_after) == (KEEP, "shadowed")


def test_without_a_champion_a_failing_candidate_changes_nothing():
    verdict = decide("new", [_gate("evaluation", False)], False, None, None, None)
    assert (verdict.action, verdict.champion_after, verdict.challenger_after) == (KEEP, None, None)


@pytest.fixture
def defs(tmp_path):
    return build_definitions(Settings.from_env({**os.environ, "ALPHAPULSE_HOME": str(tmp_path)}))


def _report(instance, partition: str, **metadata) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key="drift_report", partition=partition, metadata=metadata)
    )


def test_the_evaluation_gates_are_the_checks_declared_for_them():
    gates = evaluation_gates(
        n_oos=500,
        train_validation_gap=0.1,
        fold_gains=[0.01, 0.02, -0.01],
        oos_log_loss=0.69,
        baseline_log_loss=0.693,
        log_loss_gain_t=2.0,
        oos_sharpe=1.0,
        psr=0.97,
        dsr=0.5,
        n_trials=10,
        oos_accuracy=0.53,
        placebo_accuracy=0.5,
        placebo_band=0.01,
        thresholds=GateThresholds(),
    )
    assert [g.name for g in gates] == list(EVALUATION_GATES)


def _all_passed(names) -> list[Gate]:
    return [_gate(name, True) for name in names]


def test_a_champion_changes_only_past_every_gate_its_decision_rests_on():
    passed_checks = dict.fromkeys(EVALUATION_GATES, True)
    promoted = _all_passed([*EVALUATION_GATES, *CHAMPION_COMPARISON_GATES]) + [_gate("shadow_hours", False)]
    # A challenger losing in shadow does not stand against this hour's model.
    assert champion_change_problems(PROMOTE, promoted, passed_checks) == []
    lost = [*promoted[:-2], _gate("beats_champion_sharpe", False)]
    assert champion_change_problems(PROMOTE, lost, passed_checks) == ["gate beats_champion_sharpe failed"]
    # The checks of record disagree with the gates the decision read: stopped, with the check named.
    failed_check = passed_checks | {"deflated_sharpe": False}
    assert champion_change_problems(PROMOTE, promoted, failed_check) == ["evaluation check deflated_sharpe failed"]
    missing = {k: v for k, v in passed_checks.items() if k != "beats_placebo"}
    assert champion_change_problems(PROMOTE, promoted, missing) == ["evaluation check beats_placebo has no record"]
    assert champion_change_problems(PROMOTE, promoted, None) == ["its evaluation checks have no record"]

    shadow = [_gate("enough_oos_rows", False), *_all_passed(SHADOW_GATES)]
    assert champion_change_problems(PROMOTE_CHALLENGER, shadow, passed_checks) == []
    assert champion_change_problems(PROMOTE_CHALLENGER, shadow[:2], passed_checks) == [
        "no shadow comparison was decided"
    ]
    assert champion_change_problems(ROLLBACK, _all_passed(["previous_champion_exists"]), None) == [
        "gate previous_champion_servable was not decided"
    ]
    # Decisions that keep the champion answer for nothing.
    assert champion_change_problems(KEEP, [_gate("enough_oos_rows", False)], None) == []
    assert champion_change_problems(ROLLBACK_REFUSED, [_gate("previous_champion_exists", False)], None) == []


def test_live_performance_sensor_rolls_back_a_failing_champion_once(defs):
    with dg.instance_for_test() as instance:
        _report(instance, "2025-03-13-10:00", performance_status="ok", champion_version="A")
        quiet = live_performance_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        assert quiet.run_requests == [] and "ok" in quiet.skip_message
        _report(
            instance,
            "2025-03-13-11:00",
            performance_status="critical",
            champion_version="A",
            performance_reason="critical: accuracy 0.41 live vs 0.56 promised (z -3.1)",
        )
        fired = live_performance_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        (request,) = fired.run_requests
        assert request.run_key == "rollback-A" and request.partition_key == "2025-03-13-11:00"
        config = request.run_config["ops"]["promotion_decision"]["config"]
        assert config["action"] == "rollback" and "z -3.1" in config["reason"]


def test_drift_sensor_leaves_a_failing_champion_to_the_rollback(defs):
    with dg.instance_for_test() as instance:
        _report(instance, "2025-03-13-11:00", drift_status="critical", performance_status="critical")
        result = drift_retrain_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        assert result.run_requests == [] and "rollback goes first" in result.skip_message


def test_a_failed_run_leaves_an_alert(defs, tmp_path):
    with dg.instance_for_test() as instance:
        outcome = run_job(defs, instance, "retrain_job", partition_key="2025-03-03-00:00")  # no data: fails
        assert not outcome.success
        run = instance.get_run_by_id(outcome.run_id)
        failure = instance.all_logs(outcome.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)[0].dagster_event
        context = dg.build_run_status_sensor_context(
            sensor_name=run_failure_alert_sensor.name,
            dagster_instance=instance,
            dagster_run=run,
            dagster_event=failure,
        ).for_run_failure()
        run_failure_alert_sensor(context, object_store=defs.resources["object_store"])
    (alert_file,) = (tmp_path / "objects" / "alerts").iterdir()
    alert = json.loads(alert_file.read_text())
    assert alert["kind"] == "run_failure" and alert["title"] == "run of retrain_job failed"
    assert alert["details"]["job"] == "retrain_job" and alert["partition"] == "2025-03-03-00:00"
    assert alert["run_id"] == outcome.run_id and alert["details"]["trigger"] == "manual"
    assert alert["details"]["error"]


def test_a_run_stopped_by_a_failed_blocking_check_alerts_with_the_check_and_its_finding(tmp_path):
    """The alert names the blocking check (asset:check) and what it found, not only "the run failed"."""

    @dg.asset
    def decided() -> None:
        """A stand-in for promotion_decision."""

    @dg.asset_check(asset=decided, blocking=True)
    def guard() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=False, description="promote of v1 stopped: evaluation check dsr failed")

    @dg.asset(deps=[decided])
    def served() -> None:
        """A stand-in for promoted_model: never reached."""

    store = LocalObjectStore(root=str(tmp_path))
    with dg.instance_for_test() as instance:
        result = dg.materialize([decided, served, guard], instance=instance, raise_on_error=False)
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        failure = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)[0].dagster_event
        context = dg.build_run_status_sensor_context(
            sensor_name=run_failure_alert_sensor.name, dagster_instance=instance, dagster_run=run, dagster_event=failure
        ).for_run_failure()
        run_failure_alert_sensor(context, object_store=store)
    (key,) = store.list_keys("alerts/")
    alert = json.loads(store.get_bytes(key))
    assert alert["kind"] == "failed_blocking_check" and "decided:guard" in alert["title"]
    assert alert["details"]["check decided:guard"] == "promote of v1 stopped: evaluation check dsr failed"
