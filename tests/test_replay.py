"""The replay: the whole loop over history, point in time, on markets with a known answer.

Each fixture replays a few days of the simulated market through `replay_job` (the launchpad's job; the CLI runs the
same), with the test settings of conftest.py: the loop's own rules, nothing replayed by hand. The range starts on
20 March so the first retrain's training window lies after the features' 191-hour warm-up from 1 March.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
import services
from services import environment, stop_group
from test_production import production

from alphapulse_assets.definitions import build_definitions
from alphapulse_assets.monitoring.sensors import drift_retrain_sensor, live_performance_sensor
from alphapulse_assets.partitions import partition_key
from alphapulse_assets.promotion.timeline import decision_timeline, in_force
from alphapulse_assets.replay.__main__ import main as replay_cli
from alphapulse_assets.replay.ahead import AHEAD_TAG, PlannedRetrain, matches_loop, plan_retrains
from alphapulse_assets.replay.driver import Replay, scheduled_decision_hours
from alphapulse_assets.retries import NotRetryable
from alphapulse_assets.runner import run_failure, run_job
from alphapulse_assets.schedules import daily_retrain_schedule, hourly_schedule
from alphapulse_assets.settings import Settings
from alphapulse_assets.storage.warehouse import DuckDBWarehouse
from alphapulse_assets.training.sharpe import probabilistic_sharpe_ratio, sample_moments

REPO = Path(__file__).resolve().parent.parent
START = datetime(2025, 3, 20, tzinfo=UTC)
END = datetime(2025, 3, 23, 23, tzinfo=UTC)
FLIP = datetime(2025, 3, 22, 6, tzinfo=UTC)
FLIP_END = datetime(2025, 3, 24, 23, tzinfo=UTC)


@dataclass
class Replayed:
    defs: dg.Definitions
    instance: dg.DagsterInstance
    settings: Settings
    env: dict[str, str]
    first_decisions: pl.DataFrame | None = None

    def table(self, name: str, order: str = "ts") -> pl.DataFrame:
        return self.defs.resources["warehouse"].query(f"SELECT * FROM {name} ORDER BY {order}")

    def performance(self) -> dict:
        event = self.instance.get_latest_materialization_event(dg.AssetKey("loop_performance"))
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def replay(replayed: Replayed, start: datetime, end: datetime, **options: int) -> None:
    config = {"start": partition_key(start), "end": partition_key(end), **options}
    # Only while it runs: the replay's op builds the code location from the environment, as a launched run does.
    with environment(**replayed.env):
        outcome = run_job(
            replayed.defs,
            replayed.instance,
            "replay_job",
            run_config={"ops": {"replay": {"config": config}}},
            progress=False,
        )
    assert outcome.success, outcome.error


@contextmanager
def replay_home(tmp_path_factory, name: str, **env: str) -> Iterator[Replayed]:
    env = {"ALPHAPULSE_HOME": str(tmp_path_factory.mktemp(name)), "ALPHAPULSE_EVIDENTLY_EVERY_HOURS": "0", **env}
    settings = Settings.from_env({**os.environ, **env})
    with dg.instance_for_test() as instance:
        yield Replayed(build_definitions(settings), instance, settings, env)


def report(name: str, figures: dict) -> None:
    keys = ("sharpe", "naive_sharpe", "baseline_sharpe", "buy_and_hold_sharpe", "loop_vs_naive_t", "dsr")
    print(f"\n{name}: " + ", ".join(f"{k} {figures[k]:.3f}" for k in keys))
    print(
        f"  retrains {figures['n_retrains']}, promotions {figures['n_promotions']}, rollbacks "
        f"{figures['n_rollbacks']}, drift alarms {figures['drift_alarms']}, drift retrains {figures['drift_retrains']}"
    )


@pytest.fixture(scope="module")
def lead_lag(tmp_path_factory):
    """The planted lead-lag market (news leads the next hour, correlation 0.7), replayed in two calls: the second
    resumes where the first stopped, as after a crash."""
    with replay_home(tmp_path_factory, "lead-lag") as replayed:
        replay(replayed, START, START + timedelta(days=1, hours=11))
        replayed.first_decisions = replayed.table("promotion_decisions")
        replay(replayed, START, END)
        yield replayed


def test_a_replay_retrains_at_every_scheduled_hour_in_time_order(lead_lag):
    decisions = lead_lag.table("promotion_decisions")
    scheduled = scheduled_decision_hours(START, END, 24)
    assert scheduled == [START + timedelta(hours=23 + 24 * day) for day in range(4)]
    challenges = decisions.filter(pl.col("kind") == "challenge")
    assert set(scheduled) <= set(challenges["ts"].to_list())
    assert decisions["ts"].to_list() == sorted(decisions["ts"].to_list())
    runs = [r for r in lead_lag.instance.get_runs() if "alphapulse/replay" in r.tags]
    assert sum(r.job_name == "retrain_job" for r in runs) == challenges.height
    assert {r.job_name for r in runs} >= {"data_job", "signals_job", "retrain_job", "loop_performance_job"}


def test_a_resumed_replay_keeps_what_was_decided_and_continues(lead_lag):
    first = lead_lag.first_decisions
    assert first.height >= 1 and first["ts"].max() <= START + timedelta(days=1, hours=11)
    decisions = lead_lag.table("promotion_decisions")
    kept = decisions.filter(pl.col("ts") <= first["ts"].max())
    assert kept.select("ts", "kind", "action", "champion_after", "decided_at").equals(
        first.select("ts", "kind", "action", "champion_after", "decided_at")
    )
    assert decisions.height > first.height


def test_on_a_planted_lead_lag_a_champion_serves_early_and_the_loop_earns_significantly(lead_lag):
    decisions = lead_lag.table("promotion_decisions")
    first_promotion = decisions.filter(pl.col("action") == "promote")["ts"].min()
    assert first_promotion is not None and first_promotion <= START + timedelta(days=1, hours=23)
    rows = lead_lag.table("loop_performance", "ts, symbol")
    hourly = rows.group_by("ts").agg(pl.col("net_return").mean()).sort("ts")["net_return"].to_numpy()
    sharpe, skew, kurtosis = sample_moments(hourly)
    assert probabilistic_sharpe_ratio(sharpe, len(hourly), skew, kurtosis) > 0.99
    figures = lead_lag.performance()
    report("planted lead-lag", figures)
    assert figures["sharpe"] > 0 and figures["dsr"] > 0.5
    assert figures["sharpe"] == pytest.approx(sharpe * math.sqrt(24 * 365), rel=1e-9)


def test_on_a_planted_lead_lag_the_gated_loop_is_at_least_as_good_as_always_deploying_the_newest_model(lead_lag):
    """Reported either way; asserted as "not significantly worse" on the same hours (a paired t of hourly returns)."""
    figures = lead_lag.performance()
    report("planted lead-lag: gated loop against the newest model", figures)
    assert figures["loop_vs_naive_t"] > -2.0


def test_no_prediction_comes_from_the_future(lead_lag):
    """Every served and shadow score comes from the model in force at its hour: decided before it, its validation
    window ended before it."""
    trained = lead_lag.table("trained_model").select(pl.col("ts").alias("decided"), "model_version", "validation_end")
    served = in_force(decision_timeline(lead_lag.defs.resources["warehouse"]), START, END + timedelta(hours=1))
    for table, role in (("predictions", "champion_version"), ("shadow_predictions", "challenger_version")):
        recorded = lead_lag.table(table)
        # Hours without a champion were answered by the rules baseline, as the API answers them: no model's rows.
        no_model = recorded.filter(pl.col("model_version").is_null())
        rows = recorded.filter(pl.col("model_version").is_not_null()).join(trained, on="model_version", how="left")
        assert rows.height > 0, table
        assert rows["decided"].null_count() == 0, table
        assert (rows["decided"] < rows["ts"]).all() and (rows["validation_end"] < rows["ts"]).all(), table
        assert not rows["in_model_window"].any(), table
        matched = recorded.join(served.select("ts", role), on="ts")
        assert matched["model_version"].eq_missing(matched[role]).all(), table
        if table == "predictions":
            assert set(no_model["source"]) <= {"baseline", "abstain"} and set(rows["source"]) == {"primary"}
        else:
            assert no_model.is_empty()
    first_decision = lead_lag.table("promotion_decisions")["ts"].min()
    before = lead_lag.table("predictions").filter(pl.col("ts") <= first_decision)
    assert before.height > 0 and before["model_version"].null_count() == before.height


def test_loop_performance_reports_every_served_hour_and_four_policies(lead_lag):
    figures = lead_lag.performance()
    for key in (
        "sharpe",
        "sortino",
        "max_drawdown",
        "turnover",
        "hit_rate",
        "time_in_market",
        "n_hours",
        "n_retrains",
        "n_promotions",
        "n_rollbacks",
        "drift_alarms",
        "drift_retrains",
        "dsr",
        "naive_sharpe",
        "baseline_sharpe",
        "buy_and_hold_sharpe",
        "policies",
        "equity_curve",
        "champion_segments",
    ):
        assert key in figures, key
    rows = lead_lag.table("loop_performance", "ts, symbol")
    # Every hour with a known outcome (the last hour's is not known yet), for each symbol.
    assert rows["ts"].min() == START and rows["ts"].max() == END - timedelta(hours=1)
    assert rows.height == figures["n_hours"] * len(lead_lag.settings.symbols)
    assert figures["n_retrains"] == lead_lag.table("trained_model").height
    assert "data:image/png;base64," in figures["equity_curve"]
    assert figures["policies"].count("\n") == 2 + 3  # header, rule, four policies
    # Without a champion the loop served what the API answers then, the rules baseline: the loop earned its returns.
    unserved = rows.filter(pl.col("champion_version").is_null())
    assert unserved.height > 0 and (unserved["served_signal"] == unserved["baseline_signal"]).all()
    assert (unserved["net_return"] == unserved["baseline_net_return"]).all()
    assert (rows["buy_and_hold_net_return"] == rows["next_return"]).sum() >= rows.height - 2


def test_rerunning_a_finished_replay_changes_nothing(lead_lag, capsys):
    decisions = lead_lag.table("promotion_decisions")
    predictions = lead_lag.table("predictions", "ts, symbol")
    figures = lead_lag.performance()
    replay(lead_lag, START, END)
    assert lead_lag.table("promotion_decisions").equals(decisions)
    assert (
        lead_lag.table("predictions", "ts, symbol")
        .drop("materialized_at", strict=False)
        .equals(predictions.drop("materialized_at", strict=False))
    )
    again = lead_lag.performance()
    for key in ("sharpe", "naive_sharpe", "dsr", "n_hours", "n_promotions"):
        assert again[key] == figures[key], key
    assert "nothing left to decide" in capsys.readouterr().out


@pytest.fixture(scope="module")
def random_walk(tmp_path_factory):
    with replay_home(tmp_path_factory, "random-walk", ALPHAPULSE_NEWS_SIGNAL="0") as replayed:
        replay(replayed, START, END)
        yield replayed


def test_on_a_random_walk_the_loop_earns_what_chance_allows(random_walk):
    figures = random_walk.performance()
    report("random walk", figures)
    hours = figures["n_hours"]
    # The hourly Sharpe of a strategy without skill times sqrt(hours) is about standard normal.
    z = figures["sharpe"] / math.sqrt(24 * 365) * math.sqrt(hours)
    assert abs(z) < 3.0
    assert figures["n_promotions"] <= 2
    assert not figures["dsr"] >= 0.5


@pytest.fixture(scope="module")
def regime_flip(tmp_path_factory):
    """The lead-lag market whose news signal turns over (and volatility triples) mid-range."""
    with replay_home(tmp_path_factory, "flip", ALPHAPULSE_SIM_REGIME_CHANGE=partition_key(FLIP)) as replayed:
        replay(replayed, START, FLIP_END)
        yield replayed


def test_after_a_regime_flip_the_loop_reacts_and_not_before(regime_flip):
    figures = regime_flip.performance()
    report("regime flip", figures)
    summaries = regime_flip.table("drift_summary")
    alarms = summaries.filter((pl.col("drift_status") == "critical") | (pl.col("performance_status") == "critical"))
    assert alarms.height > 0 and alarms["ts"].min() >= FLIP
    decisions = regime_flip.table("promotion_decisions")
    reactions = decisions.filter(pl.col("trigger").is_in(["drift_retrain_sensor", "live_performance_sensor"]))
    assert reactions.height > 0 and reactions["ts"].min() >= FLIP


# --- parity: the live loop and the replay serve the same --------------------------------------------------------

LIVE_HOURS = 8


def test_the_replay_serves_exactly_what_the_live_loop_served(lead_lag, tmp_path):
    """The loop run live (the daemon's schedule and sensor ticks, one hour at a time) over the first hours after
    the first retrain records exactly the predictions the replay recorded for them."""
    first_decision = START + timedelta(hours=23)
    with environment(ALPHAPULSE_HOME=str(tmp_path), ALPHAPULSE_EVIDENTLY_EVERY_HOURS="0"):
        defs = build_definitions(Settings.from_env())
    with dg.instance_for_test() as instance:
        data = run_job(defs, instance, "data_job", partition_range=("2025-03-01-00:00", partition_key(first_decision)))
        assert data.success, data.error
        repository = defs.get_repository_def()

        def tick(schedule, at: datetime) -> None:
            resolved = repository.get_schedule_def(schedule.name)
            with dg.build_schedule_context(
                instance=instance, scheduled_execution_time=at, repository_def=repository
            ) as context:
                requests = resolved.evaluate_tick(context).run_requests
            for request in requests:
                outcome = run_job(
                    defs, instance, resolved.job_name, partition_key=request.partition_key, tags=dict(request.tags)
                )
                assert outcome.success, outcome.error

        def sensors() -> None:
            for sensor, job in ((live_performance_sensor, "rollback_job"), (drift_retrain_sensor, "retrain_job")):
                with dg.build_sensor_context(instance=instance, definitions=defs) as context:
                    result = sensor.evaluate_tick(context)
                for request in result.run_requests:
                    outcome = run_job(
                        defs,
                        instance,
                        job,
                        partition_key=request.partition_key,
                        tags=dict(request.tags),
                        run_config=request.run_config or None,
                    )
                    assert outcome.success, outcome.error

        tick(daily_retrain_schedule, first_decision + timedelta(hours=1, minutes=30))
        for k in range(1, LIVE_HOURS + 1):
            tick(hourly_schedule, first_decision + timedelta(hours=k + 1, minutes=5))
            sensors()
        live = defs.resources["warehouse"].query("SELECT * FROM predictions ORDER BY ts, symbol")
    hours = [first_decision + timedelta(hours=k) for k in range(1, LIVE_HOURS + 1)]
    assert live["ts"].unique().sort().to_list() == hours
    replayed = lead_lag.table("predictions", "ts, symbol").filter(pl.col("ts").is_in(hours))
    columns = ["ts", "symbol", "probability_up", "smoothed_probability_up", "signal", "model_version"]
    columns += ["feature_version", "in_model_window"]
    assert replayed.select(columns).equals(live.select(columns))
    assert np.array_equal(replayed["probability_up"].to_numpy(), live["probability_up"].to_numpy())


def test_the_cli_refuses_a_malformed_range(tmp_path, capsys):
    with environment(ALPHAPULSE_HOME=str(tmp_path), DAGSTER_HOME=str(tmp_path / "dagster")):
        assert replay_cli(["2025-03-20", "2025-03-21-00:00"]) == 1
    assert "is not an hour as YYYY-MM-DD-HH:MM" in capsys.readouterr().err


# --- re-tuning on a slower cadence -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def retuned(tmp_path_factory):
    with replay_home(tmp_path_factory, "retune", ALPHAPULSE_RETUNE_EVERY_HOURS="72") as replayed:
        replay(replayed, START, START + timedelta(days=2, hours=23))
        yield replayed


def test_between_searches_a_retrain_refits_the_chosen_configuration_and_pays_for_its_search(retuned):
    models = retuned.table("trained_model")
    first, *later = models.iter_rows(named=True)
    assert first["tuned_at"] == first["ts"] and len(later) >= 2
    for row in later:
        assert row["tuned_at"] == first["ts"] and (row["family"], row["params"]) == (first["family"], first["params"])
        # Its deflated Sharpe counts the search that chose the configuration.
        assert (row["n_trials"], row["trial_sharpe_variance"]) == (first["n_trials"], first["trial_sharpe_variance"])
        assert row["sha256"] != first["sha256"], "refitted on its own, newer window"
    trials = retuned.table("tuning_trials")
    assert trials.filter(pl.col("ts") == first["ts"]).height == first["n_trials"]
    for row in later:
        refit = trials.filter(pl.col("ts") == row["ts"])
        assert refit["state"].to_list() == ["refit"] and refit["tuned_at"].to_list() == [first["ts"]]
    evaluations = retuned.table("model_evaluation")
    assert set(evaluations["n_trials"].to_list()) == {first["n_trials"]}
    figures = retuned.performance()
    completed = trials.filter(pl.col("state").is_in(["complete", "refit"])).height
    assert figures["dsr_trials"] == completed


# --- retrains computed ahead, in parallel, on the production stack ----------------------------------------------


def test_the_plan_of_retrains_ahead_searches_and_refits_as_last_search_decides():
    day = timedelta(hours=24)
    hours = [START + timedelta(hours=23) + k * day for k in range(5)]
    plan = plan_retrains(hours, 72, [])
    assert plan == [
        PlannedRetrain(hours[0], None),
        PlannedRetrain(hours[1], hours[0]),
        PlannedRetrain(hours[2], hours[0]),
        # 72 hours after a search is no longer "less than 72 hours old": a new search.
        PlannedRetrain(hours[3], None),
        PlannedRetrain(hours[4], hours[3]),
    ]
    # A search recorded before the replay counts; with no re-tuning cadence every retrain searches.
    assert plan_retrains(hours[:1], 72, [hours[0] - day])[0] == PlannedRetrain(hours[0], hours[0] - day)
    assert all(p.refits is None for p in plan_retrains(hours, 0, [hours[0] - day]))


def test_a_retrain_made_ahead_is_used_only_when_it_refits_the_search_the_loop_names(tmp_path, capsys):
    """A drift retrain that searched between two scheduled hours changes what the later one refits: the retrain
    made ahead, which refitted the older search, is then not used."""
    warehouse = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))
    env = {"ALPHAPULSE_HOME": str(tmp_path), "ALPHAPULSE_RETUNE_EVERY_HOURS": "72"}
    settings = Settings.from_env({**os.environ, **env})
    policy = build_definitions(settings).resources["policy"]
    search, drift, scheduled = START + timedelta(hours=23), START + timedelta(hours=30), START + timedelta(hours=47)

    def model(ts, tuned_at):
        version = f"{ts:%Y%m%d%H}-made"
        family = policy.model_families[0]
        return {"ts": ts, "tuned_at": tuned_at, "model_version": version, "family": family, "feature_version": "v"}

    rows = [model(search, search), model(scheduled, search)]
    warehouse.replace_window("trained_model", pl.DataFrame(rows), search, scheduled + timedelta(hours=1))
    evaluations = pl.DataFrame([{"ts": r["ts"], "model_version": r["model_version"]} for r in rows])
    warehouse.replace_window("model_evaluation", evaluations, search, scheduled + timedelta(hours=1))
    driver = Replay(None, None, warehouse, policy, START, END)
    assert matches_loop(warehouse, scheduled, search) and driver._as_the_loop_would(scheduled)
    assert not matches_loop(warehouse, scheduled, scheduled)

    # The loop's drift retrain at `drift` searched: the scheduled hour must refit that search instead.
    warehouse.replace_window("trained_model", pl.DataFrame([model(drift, drift)]), drift, drift + timedelta(hours=1))
    assert not driver._as_the_loop_would(scheduled)
    assert "retrained in the loop" in capsys.readouterr().out

    # An evaluation of another model at that hour is not this model's evaluation.
    other = pl.DataFrame([{"ts": search, "model_version": "another"}])
    warehouse.replace_window("model_evaluation", other, search, search + timedelta(hours=1))
    assert not matches_loop(warehouse, search, search)


VERDICT = {
    "trained_model": ("ts", "model_version", "sha256", "tuned_at", "family", "params", "n_trials"),
    "model_evaluation": ("ts", "model_version", "gates_passed", "psr", "dsr", "oos_sharpe"),
    "promotion_decisions": ("ts", "kind", "action", "champion_after", "challenger_version", "shadow_challenger_after"),
    "predictions": ("ts", "symbol", "probability_up", "signal", "model_version"),
    "shadow_predictions": ("ts", "symbol", "probability_up", "model_version"),
    "drift_summary": ("ts", "champion_version", "drift_status", "performance_status"),
}


@contextmanager
def on_production(retuned: Replayed, tmp_path, admin_url: str, s3_endpoint: str) -> Iterator[Replayed]:
    """`retuned`'s settings on a Postgres instance, a fresh Postgres warehouse and S3."""
    bucket = services.create_bucket(s3_endpoint)
    with production(tmp_path, admin_url, s3_endpoint, bucket, ALPHAPULSE_RETUNE_EVERY_HOURS="72") as (
        instance,
        settings,
        warehouse_url,
    ):
        env = {
            **retuned.env,
            "ALPHAPULSE_HOME": str(tmp_path),
            "ALPHAPULSE_WAREHOUSE_URL": warehouse_url,
            "ALPHAPULSE_OBJECT_STORE_URL": f"s3://{bucket}/alphapulse",
            "DAGSTER_HOME": str(tmp_path / "dagster"),
        }
        yield Replayed(build_definitions(settings), instance, settings, env)


def assert_decides_as(parallel: Replayed, alone: Replayed) -> list[dg.DagsterRun]:
    """Every model, evaluation, decision and served hour of `parallel` equals `alone`'s; the three scheduled
    retrains were made ahead, and the loop's own retrain runs only decided. Returns the runs made ahead."""
    for table, columns in VERDICT.items():
        order = "ts, symbol" if "symbol" in columns else "ts"
        assert parallel.table(table, order).select(columns).equals(alone.table(table, order).select(columns)), table
    runs = [r for r in parallel.instance.get_runs() if r.job_name == "retrain_job"]
    ahead = [r for r in runs if AHEAD_TAG in r.tags]
    assert len(ahead) == 3 and len({r.tags["dagster/partition"] for r in ahead}) == 3
    for run in ahead:
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert {key.path[-1] for key in run.asset_selection} == {"trained_model", "model_evaluation"}
    for run in (r for r in runs if AHEAD_TAG not in r.tags):
        assert {key.path[-1] for key in run.asset_selection} == {"promotion_decision", "promoted_model"}
        materialized = parallel.instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
        # promoted_model is materialized only where the champion changed.
        assert "promotion_decision" in {r.event_log_entry.dagster_event.asset_key.path[-1] for r in materialized}
    return ahead


def test_two_retrain_workers_on_the_production_stack_decide_exactly_as_the_loop_alone(
    retuned, tmp_path, postgres_admin_url, s3_endpoint
):
    """The `retuned` replay (DuckDB, local files, the loop retraining itself) again on a Postgres instance, a
    Postgres warehouse and S3, with two worker processes retraining ahead: every model, decision and served hour
    is the same."""
    with on_production(retuned, tmp_path, postgres_admin_url, s3_endpoint) as parallel:
        replay(parallel, START, START + timedelta(days=2, hours=23), retrain_workers=2)
        assert_decides_as(parallel, retuned)


def stop_automation(instance: dg.DagsterInstance) -> None:
    """Every schedule and sensor of the code location stopped, before the daemon first sees them: the test's
    daemon is there to launch queued runs, not to run the live loop on the test's home beside the replay."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    with WorkspaceProcessContext(instance, WorkspaceFileTarget([str(REPO / "workspace.yaml")])) as workspace:
        location = workspace.create_request_context().get_code_location("alphapulse")
        for repository in location.get_repositories().values():
            for sensor in repository.get_sensors():
                instance.stop_sensor(sensor.get_remote_origin_id(), sensor.selector_id, sensor)
            for schedule in repository.get_schedules():
                instance.stop_schedule(schedule.get_remote_origin_id(), schedule.selector_id, schedule)


def test_retrains_ahead_as_runs_the_daemon_launches_decide_exactly_as_the_loop_alone(
    retuned, tmp_path, postgres_admin_url, s3_endpoint
):
    """The `retuned` replay again on the production stack, this time as a user launches it there: `dagster job
    launch -j replay_job` with `retrain_launch: queue`, so that each retrain ahead is a run of its own, queued and
    launched by the daemon's run launcher (a Kubernetes Job each under the Helm chart; here a local process)."""
    with (
        on_production(retuned, tmp_path, postgres_admin_url, s3_endpoint) as parallel,
        environment(**parallel.env),
    ):
        instance = parallel.instance
        stop_automation(instance)
        processes = {"daemon": daemon_process(tmp_path)}
        try:
            config = {
                "start": partition_key(START),
                "end": partition_key(START + timedelta(days=2, hours=23)),
                "retrain_workers": 2,
                "retrain_launch": "queue",
            }
            launched = subprocess.run(
                [
                    *dagster_cli("job", "launch"),
                    "-w",
                    str(REPO / "workspace.yaml"),
                    "-j",
                    "replay_job",
                    "--config-json",
                    json.dumps({"ops": {"replay": {"config": config}}}),
                ],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert launched.returncode == 0, launched.stderr[-3000:]
            [replay_run] = instance.get_runs(dg.RunsFilter(job_name="replay_job"))
            wait_for_run(instance, replay_run.run_id, processes, timeout=1200)
        finally:
            stop_group(processes["daemon"])
        for run in assert_decides_as(parallel, retuned):
            # Launched by the run launcher from the replay's code location, like any run the daemon dequeues.
            assert run.remote_job_origin is not None and run.remote_job_origin.location_name == "alphapulse"
            # Enqueued by the replay, then handed to the launcher (RUN_STARTING): an in-process run has neither.
            kinds = {e.dagster_event.event_type for e in instance.all_logs(run.run_id) if e.dagster_event}
            assert {dg.DagsterEventType.RUN_ENQUEUED, dg.DagsterEventType.RUN_STARTING} <= kinds, kinds


def daemon_process(tmp_path) -> subprocess.Popen:
    log = (tmp_path / "daemon.log").open("wb")
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def dagster_cli(*command: str) -> list[str]:
    return [str(Path(sys.executable).parent / "dagster"), *command]


def wait_for_run(instance: dg.DagsterInstance, run_id: str, processes: dict, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, process in processes.items():
            assert process.poll() is None, f"{name} exited with {process.returncode}"
        run = instance.get_run_by_id(run_id)
        if run.is_finished:
            assert run.status == dg.DagsterRunStatus.SUCCESS, run_failure(instance, run_id)
            return
        time.sleep(2.0)
    raise AssertionError(f"replay run {run_id} not finished after {timeout:.0f}s")


def test_queued_retrains_are_refused_where_they_could_never_start(tmp_path):
    """Before anything is materialized: no run queue, a queue of one (the replay's own run holds it: the embedded
    instance), or a replay run in-process, which has no code location to launch retrain_job from."""
    jobs = build_definitions(Settings.from_env({**os.environ, "ALPHAPULSE_HOME": str(tmp_path)}))
    policy, warehouse = jobs.resources["policy"], DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))

    def start(instance: dg.DagsterInstance) -> None:
        Replay(jobs, instance, warehouse, policy, START, END, retrain_workers=2, retrain_launch="queue")

    queue = {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}
    refusals = {
        "launched from one: from the UI's launchpad or `dagster job launch": queue,
        "max_concurrent_runs 1: the replay's own run holds a slot": queue | {"config": {"max_concurrent_runs": 1}},
        "needs the instance's QueuedRunCoordinator": queue | {"class": "DefaultRunCoordinator"},
    }
    for message, coordinator in refusals.items():
        with (
            dg.instance_for_test(overrides={"run_coordinator": coordinator}) as instance,
            pytest.raises(NotRetryable, match=message),
        ):
            start(instance)
    with pytest.raises(NotRetryable, match="retrain_launch='pods'"):
        Replay(jobs, None, warehouse, policy, START, END, retrain_workers=2, retrain_launch="pods")
