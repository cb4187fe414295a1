"""The replay: the loop run over a range of history, hour by hour in time order, seeing nothing from the future.

It materializes what the schedules and sensors would have, with their own code: the data side (skipping hours
already there), the retrain at every scheduled decision hour (the daily schedule's own run request), the
champion's predictions, the challenger's shadow and a drift report for every hour, and after each drift report
the drift-retrain and rollback rules the sensors apply (`drift_retrain_request`, `rollback_request`), with the
daemon's one-run-per-run-key rule. Every run it makes lands in the Dagster instance, tagged with the replay's run
id, so the UI shows them like any other.

Hours between two decisions share one champion, so they are materialized as one range run. A rule that fires at
hour h inside a range changes the champion from h + 1 on: the runs from h + 1 are then made again with it (they
replace their hours), so a rule is never judged on reports of a champion that was no longer in force.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import dagster as dg
import polars as pl

from alphapulse_assets.alerts import REPLAY_TAG
from alphapulse_assets.features.catalog import HISTORY_HOURS, WARMUP_HOURS
from alphapulse_assets.jobs import DATA_ASSETS
from alphapulse_assets.monitoring.sensors import TRIGGER_TAG, drift_retrain_request, rollback_request
from alphapulse_assets.partitions import HOURLY, parse_partition_hour, partition_key
from alphapulse_assets.promotion.timeline import KIND_ORDER, decision_timeline
from alphapulse_assets.replay.ahead import (
    RETRAIN_LAUNCHES,
    QueuedRuns,
    RetrainsAhead,
    WorkerProcesses,
    matches_loop,
    plan_retrains,
)
from alphapulse_assets.retries import NotRetryable
from alphapulse_assets.runner import Jobs, job_definition, missing_span, run_job
from alphapulse_assets.schedules import daily_retrain_schedule
from alphapulse_assets.storage.warehouse import Warehouse
from alphapulse_assets.training.data import last_search
from alphapulse_assets.training.resources import ModelPolicy

RUN_KEY_TAG = "alphapulse/run_key"
DECISION_ASSETS = [dg.AssetKey("promotion_decision"), dg.AssetKey("promoted_model")]
HOUR = timedelta(hours=1)
DAILY = 24
LONGEST_LOOKBACK_HOURS = max(HISTORY_HOURS.values())


def scheduled_decision_hours(start: datetime, end: datetime, every_hours: int) -> list[datetime]:
    """Decision hours in [start, end]: the last hour of every `every_hours` block counted from 1970-01-01 00:00 UTC.
    Every 24 hours this is 23:00, the hour the daily schedule (00:30) decides at."""
    epoch_hours = int(start.timestamp()) // 3600
    first = start + timedelta(hours=(every_hours - 1 - epoch_hours) % every_hours)
    hours = []
    while first <= end:
        hours.append(first)
        first += timedelta(hours=every_hours)
    return hours


def history_needed(policy: ModelPolicy, decision: datetime) -> datetime:
    """The first hour of data a retrain at `decision` needs: its training window, and the longest lookback of its
    features before it (TA-Lib's smoothings equal what a longer history gives only after their full lookback)."""
    return policy.windows(decision).train_start - timedelta(hours=LONGEST_LOOKBACK_HOURS)


@dataclass
class ReplayReport:
    """What a replay did, for its caller and its metadata."""

    start: datetime
    end: datetime
    resumed_from: datetime
    runs: list[tuple[str, str, str]] = field(default_factory=list)  # (partition or range, job, why)
    data_hours: int = 0


class Replay:
    """One replay over [start, end] (inclusive hours), driving runs of the code location's jobs."""

    def __init__(
        self,
        jobs: Jobs,
        instance: dg.DagsterInstance,
        warehouse: Warehouse,
        policy: ModelPolicy,
        start: datetime,
        end: datetime,
        retrain_every_hours: int = DAILY,
        replay_id: str = "cli",
        say: Callable[[str], None] = print,
        retrain_workers: int = 0,
        retrain_launch: str = "processes",
        replay_run: dg.DagsterRun | None = None,
    ):
        if end < start:
            raise NotRetryable(f"the replay ends ({end:%Y-%m-%d-%H:%M}) before it starts ({start:%Y-%m-%d-%H:%M})")
        if retrain_every_hours < 1:
            raise NotRetryable(f"retrain_every_hours={retrain_every_hours}: expected a positive number of hours")
        if retrain_workers < 0:
            raise NotRetryable(f"retrain_workers={retrain_workers}: expected 0 (retrain in the loop) or more")
        if retrain_launch not in RETRAIN_LAUNCHES:
            raise NotRetryable(f"retrain_launch={retrain_launch!r}: expected one of {', '.join(RETRAIN_LAUNCHES)}")
        for name, hour in (("start", start), ("end", end)):
            if not HOURLY.has_partition_key(partition_key(hour)):
                raise NotRetryable(
                    f"{name} {partition_key(hour)} is not an hourly partition (from ALPHAPULSE_HISTORY_START "
                    f"{HOURLY.get_first_partition_key()} to the last closed hour {HOURLY.get_last_partition_key()})"
                )
        self.jobs, self.instance, self.warehouse, self.policy = jobs, instance, warehouse, policy
        self.start, self.end, self.every = start, end, retrain_every_hours
        self.tags = {REPLAY_TAG: replay_id}
        self.say = say
        self.decision_hours = scheduled_decision_hours(start, end, retrain_every_hours)
        self.retrain_workers = retrain_workers
        self._ahead: RetrainsAhead | None = None
        # Built now, so that a queue the retrains could never leave is refused before anything is materialized.
        self._launcher: WorkerProcesses | QueuedRuns | None = None
        if retrain_workers and retrain_launch == "queue":
            job = job_definition(jobs, "retrain_job")
            self._launcher = QueuedRuns(instance, replay_run, job, retrain_workers, self.tags, say)

    # --- runs ------------------------------------------------------------------------------------------------------

    def _run(self, report: ReplayReport, job: str, why: str, label: str, **kwargs) -> None:
        tags = {**self.tags, **kwargs.pop("tags", {})}
        outcome = run_job(self.jobs, self.instance, job, tags=tags, label=label, **kwargs)
        if not outcome.success:
            raise NotRetryable(f"replay: {label} failed (run {outcome.run_id}): {outcome.error}")
        where = kwargs.get("partition_key") or " .. ".join(kwargs["partition_range"])
        report.runs.append((where, job, why))

    def _request(
        self,
        report: ReplayReport,
        request: dg.RunRequest,
        job: str,
        why: str,
        asset_selection: list[dg.AssetKey] | None = None,
    ) -> bool:
        """Execute a sensor's or schedule's run request as the daemon would: once per run key, ever (`asset_selection`:
        the part of its job not made already)."""
        if request.run_key and self._ran(request.run_key):
            return False
        tags = dict(request.tags) | ({RUN_KEY_TAG: request.run_key} if request.run_key else {})
        self._run(
            report,
            job,
            why,
            f"{why} {request.partition_key}",
            partition_key=request.partition_key,
            tags=tags,
            run_config=request.run_config or None,
            asset_selection=asset_selection,
        )
        return True

    def _ran(self, run_key: str) -> bool:
        """Whether a run with this run key exists: launched by this or an earlier replay, or by the daemon."""
        for tag in (RUN_KEY_TAG, "dagster/run_key"):
            records = self.instance.get_run_records(dg.RunsFilter(tags={tag: run_key}), limit=5)
            if any(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records):
                return True
        return False

    def _scheduled_retrain(self, hour: datetime) -> dg.RunRequest:
        if self.every == DAILY:
            # The daily schedule's own request: its evaluation at 00:30 after this hour decides at this hour.
            repository = self.jobs.get_repository_def() if isinstance(self.jobs, dg.Definitions) else self.jobs
            schedule = repository.get_schedule_def(daily_retrain_schedule.name)
            # Closed after the tick, as the daemon closes it: what the context opened lazily (an instance from the
            # ref, resources) is released at each decision hour rather than when the context is collected.
            with dg.build_schedule_context(
                instance=self.instance,
                scheduled_execution_time=hour + timedelta(hours=1, minutes=30),
                repository_def=repository,
            ) as context:
                (request,) = schedule.evaluate_tick(context).run_requests
            return request
        key = partition_key(hour)
        return dg.RunRequest(
            run_key=f"retrain-every-{self.every}h-{key}",
            partition_key=key,
            tags={TRIGGER_TAG: f"retrain_every_{self.every}h"},
        )

    # --- the loop --------------------------------------------------------------------------------------------------

    def history_start(self) -> datetime:
        """The first hour the data side must hold (`history_needed` of the first retrain, within the partitions), so
        a replay into a fresh home trains on the features a long-running loop had."""
        first_decision = self.decision_hours[0] if self.decision_hours else self.start
        needed = history_needed(self.policy, first_decision)
        return max(
            min(needed, self.start),
            parse_partition_hour(HOURLY.get_first_partition_key(), "the first partition"),
        )

    def run(self) -> ReplayReport:
        timeline = decision_timeline(self.warehouse)
        last = timeline["ts"].max() if timeline.height else None
        resume = self.start if last is None or last < self.start else last + HOUR
        report = ReplayReport(self.start, self.end, resume)
        self.say(
            f"replay {partition_key(self.start)} .. {partition_key(self.end)}: {len(self.decision_hours)} scheduled "
            f"decision hours (every {self.every} h)"
        )
        if resume > self.start:
            self.say(
                f"  decisions are recorded up to {partition_key(last)}: the loop's timeline is kept as it is, and the "
                f"replay continues from {partition_key(min(resume, self.end + HOUR))}"
                + (" (nothing left to decide)" if resume > self.end else "")
                + ". To replay the past from scratch, use a fresh ALPHAPULSE_HOME."
            )
        self._warn_short_history()
        self._data(report)
        if resume > self.start:
            self._fill_served(report, self.start, min(resume, self.end + HOUR))
        self._start_ahead(resume)
        try:
            cursor = resume
            while cursor <= self.end:
                cursor = self._segment(report, cursor)
        finally:
            if self._ahead is not None:
                self._ahead.close()
            elif self._launcher is not None:
                self._launcher.close()
        return report

    def _start_ahead(self, resume: datetime) -> None:
        """With `retrain_workers`, the scheduled retrains' models and evaluations are computed ahead, in parallel
        (`replay/ahead.py`); the loop checks each against its own state when it reaches it."""
        hours = [h for h in self.decision_hours if h >= resume]
        if not self.retrain_workers or not hours:
            return
        searches, made = [], set()
        if self.warehouse.table_exists("trained_model"):
            rows = self.warehouse.query("select * from trained_model where ts <= ?", [self.end])
            if "tuned_at" in rows.columns:  # a home from before re-tuning has no searches to refit
                searched = rows.filter((pl.col("tuned_at") == pl.col("ts")) & (pl.col("ts") < hours[0]))
                searches = searched["ts"].to_list()
            made = set(rows["ts"])
        plan = [p for p in plan_retrains(hours, self.policy.retune_every_hours, searches) if p.hour not in made]
        if not plan:
            return
        launcher = self._launcher or WorkerProcesses(self.instance, self.retrain_workers, self.tags)
        where = "queued runs" if isinstance(launcher, QueuedRuns) else "worker processes"
        self.say(f"  {len(plan)} scheduled retrains computed ahead, {self.retrain_workers} at a time, as {where}")
        self._ahead = RetrainsAhead(launcher, plan, self.retrain_workers, self.say).start()

    def _warn_short_history(self) -> None:
        if not self.decision_hours:
            return
        train_start = self.policy.windows(self.decision_hours[0]).train_start
        first = parse_partition_hour(HOURLY.get_first_partition_key(), "the first partition")
        if train_start - timedelta(hours=WARMUP_HOURS) < first:
            self.say(
                f"  !! the first retrain trains from {partition_key(train_start)}, less than the features' warm-up "
                f"({WARMUP_HOURS} h) after ALPHAPULSE_HISTORY_START ({partition_key(first)}): its long-window features "
                "are null there, its reference for drift too. Start the replay later for a faithful loop."
            )
        elif train_start - timedelta(hours=LONGEST_LOOKBACK_HOURS) < first:
            self.say(
                f"  note: the first retrain trains from {partition_key(train_start)}, less than the features' longest "
                f"lookback ({LONGEST_LOOKBACK_HOURS} h) after ALPHAPULSE_HISTORY_START: its TA-Lib smoothings (RSI, "
                "ADX, NATR, MACD) differ slightly there from what a longer history gives."
            )

    def _data(self, report: ReplayReport) -> None:
        first = self.history_start()
        span = missing_span(self.instance, DATA_ASSETS, first, self.end)
        if span is None:
            self.say(f"  data: {partition_key(first)} .. {partition_key(self.end)} already materialized")
            return
        hours = int((span[1] - span[0]) / HOUR) + 1
        self.say(
            f"  data: {hours} hours, {partition_key(span[0])} .. {partition_key(span[1])} (the first retrain needs "
            f"{partition_key(first)} on)"
        )
        self._run(
            report,
            "data_job",
            "data",
            "data backfill",
            partition_range=(partition_key(span[0]), partition_key(span[1])),
            expected_materializations=hours * len(DATA_ASSETS),
        )
        report.data_hours = hours

    def _fill_served(self, report: ReplayReport, start: datetime, stop: datetime) -> None:
        """Hours before the point the replay resumes from: decided already; their predictions and shadow are made
        where missing (the decisions, and the drift reports that led to them, stay as recorded)."""
        done = self.instance.get_materialized_partitions(dg.AssetKey("predictions"))
        hour = start
        while hour < stop and partition_key(hour) in done:
            hour += HOUR
        if hour >= stop:
            return
        self._run(
            report,
            "signals_job",
            "signals",
            f"predictions {partition_key(hour)} .. {partition_key(stop - HOUR)}",
            partition_range=(partition_key(hour), partition_key(stop - HOUR)),
            asset_selection=[dg.AssetKey("predictions"), dg.AssetKey("shadow_predictions")],
        )

    def _segment(self, report: ReplayReport, cursor: datetime) -> datetime:
        """Hours from `cursor` to the next scheduled decision (or the end); returns where the next segment starts."""
        scheduled = next((h for h in self.decision_hours if h >= cursor), None)
        last = min(scheduled, self.end) if scheduled else self.end
        span = (partition_key(cursor), partition_key(last))
        # Drift reports run from the first hour, champion or not: before one, they compare the data with the last
        # trained model's window, as the hourly job does, and the drift rule reads them as the sensor would.
        self._run(
            report,
            "signals_job",
            "signals",
            f"hours {span[0]} .. {span[1]}",
            partition_range=span,
            asset_selection=[
                dg.AssetKey("predictions"),
                dg.AssetKey("shadow_predictions"),
                dg.AssetKey("drift_report"),
            ],
        )
        fired = self._apply_rules(report, cursor, last)
        if fired is not None:
            if fired == scheduled:
                self._retrain_at(report, fired)
            return fired + HOUR
        if scheduled is not None and scheduled <= self.end:
            self._retrain_at(report, scheduled)
        return last + HOUR

    def _retrain_at(self, report: ReplayReport, hour: datetime) -> None:
        decided = decision_timeline(self.warehouse).filter((pl.col("ts") == hour) & (pl.col("kind") == "challenge"))
        if decided.height:  # a drift-triggered retrain decided this hour already: the same run, the same model
            return
        request = self._scheduled_retrain(hour)
        made_ahead = self._ahead is not None and self._ahead.wait(hour) and self._as_the_loop_would(hour)
        selection = DECISION_ASSETS if made_ahead else None
        if self._request(report, request, "retrain_job", "scheduled retrain", asset_selection=selection):
            self._said_decision(hour, "scheduled retrain", ("challenge",))

    def _as_the_loop_would(self, hour: datetime) -> bool:
        """Whether the retrain made ahead at `hour` refitted the search the loop's own state names there."""
        rows = self.warehouse.query("select feature_version from trained_model where ts = ?", [hour])
        if rows.height != 1:
            return False
        searched = last_search(self.warehouse, self.policy, hour, rows["feature_version"][0])
        expected = searched["tuned_at"] if searched else hour
        if matches_loop(self.warehouse, hour, expected):
            return True
        self.say(
            f"  {partition_key(hour)}: the retrain made ahead does not refit the search the loop's state names "
            f"({partition_key(expected)}; a drift retrain searched since): retrained in the loop"
        )
        return False

    def _apply_rules(self, report: ReplayReport, first: datetime, last: datetime) -> datetime | None:
        """The sensors' rules on each hour's drift report, in time order; the hour of the first that acted."""
        summaries = self.warehouse.query(
            "select ts, champion_version, drift_status, performance_status, performance_reason from drift_summary "
            "where ts >= ? and ts <= ? order by ts",
            [first, last],
        )
        for row in summaries.iter_rows(named=True):
            partition = partition_key(row["ts"])
            # Both rules read the same report before either acts, as the two sensors do.
            rollback = rollback_request(
                partition, row["performance_status"], row["champion_version"], row["performance_reason"]
            )
            retrain = drift_retrain_request(
                self.instance, partition, row["drift_status"], row["performance_status"], row["champion_version"]
            )
            acted = isinstance(rollback, dg.RunRequest) and self._request(
                report, rollback, "rollback_job", "live_performance_sensor"
            )
            if isinstance(retrain, dg.RunRequest):
                acted = self._request(report, retrain, "retrain_job", "drift_retrain_sensor") or acted
            if acted:
                self._said_decision(row["ts"], "drift report")
                return row["ts"]
        return None

    def _said_decision(self, hour: datetime, why: str, kinds: tuple[str, ...] = ("rollback", "challenge")) -> None:
        rows = self.warehouse.query("select kind, summary from promotion_decisions where ts = ?", [hour])
        for kind, summary in sorted(rows.iter_rows(), key=lambda row: KIND_ORDER[row[0]]):
            if kind in kinds:
                self.say(f"  {partition_key(hour)} {kind} ({why}): {summary}")
