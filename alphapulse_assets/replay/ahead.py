"""Retrains computed ahead of the replay's loop, in other processes, without changing what the loop decides.

A scheduled retrain's model and evaluation (`trained_model`, `model_evaluation`) depend on the data before its
decision hour and on one piece of the loop's state: which earlier retrain searched (`last_search`), whose
configuration a refit reuses. Nothing else the loop decides (champions, challengers, rollbacks) reaches them. So
they can be computed ahead, in parallel, while the loop itself stays sequential: promotions, rollbacks, predictions
and drift reports are made in time order by the driver, as before.

The plan assumes that only scheduled retrains happen. A drift-triggered retrain that searches changes which search
later retrains refit; so when the loop reaches a decision hour it checks the retrain made ahead against the state
in force at that hour, and recomputes it in the loop when they differ (`matches_loop`). The result equals a
sequential replay's, whatever the number of workers and wherever they run: `tests/test_replay.py` compares them.

Each retrain ahead is a run of `retrain_job` for one decision hour, executed either by worker processes beside the
replay (`WorkerProcesses`) or by the instance's run launcher through its run queue (`QueuedRuns`: a Kubernetes Job
per decision hour under the Helm chart).
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import dagster as dg
from dagster._core.storage.tags import PARTITION_NAME_TAG

from alphapulse_assets.instance import code_location
from alphapulse_assets.partitions import partition_key
from alphapulse_assets.retries import NotRetryable
from alphapulse_assets.runner import run_failure, run_job
from alphapulse_assets.storage.warehouse import Warehouse

AHEAD_TAG = "alphapulse/retrain_ahead"
AHEAD_ASSETS = (dg.AssetKey("trained_model"), dg.AssetKey("model_evaluation"))


@dataclass(frozen=True)
class PlannedRetrain:
    hour: datetime
    refits: datetime | None  # the search whose configuration it refits; None: it searches


def plan_retrains(
    hours: list[datetime], retune_every_hours: int, searches_before: list[datetime]
) -> list[PlannedRetrain]:
    """What `last_search` will decide at each scheduled hour if no other retrain happens between them: search when
    no search is less than `retune_every_hours` old (0: every retrain searches), else refit the newest search."""
    searches = sorted(searches_before)
    plan = []
    for hour in sorted(hours):
        recent = [s for s in searches if hour - timedelta(hours=retune_every_hours) < s < hour]
        if retune_every_hours > 0 and recent:
            plan.append(PlannedRetrain(hour, recent[-1]))
        else:
            plan.append(PlannedRetrain(hour, None))
            searches.append(hour)
    return plan


def matches_loop(warehouse: Warehouse, hour: datetime, expected_search: datetime) -> bool:
    """Whether a model and evaluation are recorded at `hour`, evaluated as one, and fitted with the configuration
    of `expected_search` (the search `last_search` names for this hour now, or the hour itself)."""
    if not (warehouse.table_exists("trained_model") and warehouse.table_exists("model_evaluation")):
        return False
    rows = warehouse.query(
        "select t.tuned_at from trained_model t join model_evaluation e on e.ts = t.ts "
        "and e.model_version = t.model_version where t.ts = ?",
        [hour],
    )
    return rows.height == 1 and rows["tuned_at"][0] == expected_search


RETRAIN_LAUNCHES = ("processes", "queue")


def _retrain(instance_ref, hour_key: str, tags: dict[str, str]) -> tuple[bool, str | None]:
    """In a worker process: `trained_model` and `model_evaluation` at one hour, as a run of `retrain_job` in the
    replay's instance, with the code location built from the same environment."""
    with dg.DagsterInstance.from_ref(instance_ref) as instance:
        outcome = run_job(
            code_location(),
            instance,
            "retrain_job",
            partition_key=hour_key,
            asset_selection=list(AHEAD_ASSETS),
            tags=tags | {AHEAD_TAG: hour_key},
            label=f"retrain ahead {hour_key}",
            progress=False,
        )
    return outcome.success, outcome.error


class WorkerProcesses:
    """Retrains ahead as runs executed in `workers` processes beside the replay's (on its machine, in its pod)."""

    def __init__(self, instance: dg.DagsterInstance, workers: int, tags: dict[str, str]):
        ref = instance.get_ref()
        if ref is None:
            raise NotRetryable(
                "retrains ahead need an instance other processes can open (DAGSTER_HOME), not an ephemeral one"
            )
        self._ref, self._tags = ref, tags
        # Spawned, not forked: a fork would copy the driver's open database connections and threads.
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, hour_key: str) -> Future:
        return self._pool.submit(_retrain, self._ref, hour_key, self._tags)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class QueuedRuns:
    """Retrains ahead as runs of `retrain_job` submitted to the instance's run queue: the daemon launches each with
    the instance's run launcher, as it launches any run (under the Helm chart's K8sRunLauncher, a Kubernetes Job per
    decision hour). The runs are created from the replay run's own code location, so they run the same code."""

    QUEUED_TOO_LONG_SECONDS = 300

    def __init__(
        self,
        instance: dg.DagsterInstance,
        replay_run: dg.DagsterRun | None,
        job: dg.JobDefinition,
        workers: int,
        tags: dict[str, str],
        say: Callable[[str], None],
    ):
        from dagster._core.origin import JobPythonOrigin
        from dagster._core.remote_origin import RemoteJobOrigin
        from dagster._core.run_coordinator import QueuedRunCoordinator

        coordinator = instance.run_coordinator
        if not isinstance(coordinator, QueuedRunCoordinator):
            raise NotRetryable(
                f"retrain_launch 'queue' needs the instance's QueuedRunCoordinator (dagster.yaml run_coordinator), "
                f"not {type(coordinator).__name__}"
            )
        limit = coordinator.get_run_queue_config().max_concurrent_runs
        if 0 <= limit < 2:
            raise NotRetryable(
                f"retrain_launch 'queue' with the instance's max_concurrent_runs {limit}: the replay's own run "
                f"holds a slot, so a queued retrain would never start (the embedded DuckDB instance admits one run; "
                f"use retrain_launch 'processes' there, or the Postgres stack)"
            )
        if replay_run is None or replay_run.remote_job_origin is None or replay_run.job_code_origin is None:
            raise NotRetryable(
                "retrain_launch 'queue' submits runs of retrain_job from replay_job's code location, so replay_job "
                "must be launched from one: from the UI's launchpad or `dagster job launch -j replay_job`, not run "
                "in-process (python -m alphapulse_assets.replay); use retrain_launch 'processes' there"
            )
        remote, code = replay_run.remote_job_origin, replay_run.job_code_origin
        self._remote = RemoteJobOrigin(repository_origin=remote.repository_origin, job_name=job.name)
        self._code = JobPythonOrigin(job.name, code.repository_origin)
        self._instance, self._job, self._tags, self._say = instance, job, tags, say
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="retrain-ahead")
        self._run_ids: list[str] = []
        self._stop = threading.Event()

    def submit(self, hour_key: str) -> Future:
        return self._threads.submit(self._launch_and_wait, hour_key)

    def _launch_and_wait(self, hour_key: str) -> tuple[bool, str | None]:
        run = self._instance.create_run_for_job(
            self._job,
            run_config={},
            status=dg.DagsterRunStatus.NOT_STARTED,
            tags=self._tags | {AHEAD_TAG: hour_key, PARTITION_NAME_TAG: hour_key},
            asset_selection=set(AHEAD_ASSETS),
            remote_job_origin=self._remote,
            job_code_origin=self._code,
        )
        self._run_ids.append(run.run_id)
        # The queued coordinator only enqueues; the daemon launches from the run's origins, with its own workspace.
        self._instance.submit_run(run.run_id, workspace=None)  # type: ignore[arg-type]
        queued_since, warned = time.monotonic(), False
        while not run.is_finished:
            if self._stop.wait(2.0):
                return False, "the replay stopped"
            run = self._instance.get_run_by_id(run.run_id)
            if (
                run.status == dg.DagsterRunStatus.QUEUED
                and not warned
                and time.monotonic() - queued_since > self.QUEUED_TOO_LONG_SECONDS
            ):
                warned = True
                self._say(
                    f"  retrain ahead {hour_key}: run {run.run_id} still queued after "
                    f"{self.QUEUED_TOO_LONG_SECONDS // 60} min; is dagster-daemon running, is the queue full?"
                )
        if run.status == dg.DagsterRunStatus.SUCCESS:
            return True, None
        return False, f"run {run.run_id} {run.status.value}: {run_failure(self._instance, run.run_id)}"

    def close(self) -> None:
        self._stop.set()
        for run_id in self._run_ids:
            run = self._instance.get_run_by_id(run_id)
            if run is not None and not run.is_finished:
                # Dequeued or not: the coordinator takes a queued run off the queue, else asks the launcher to stop it.
                self._instance.run_coordinator.cancel_run(run_id)
        self._threads.shutdown(wait=True, cancel_futures=True)


class RetrainsAhead:
    """The planned retrains in time order, at most `workers` at once; a refit starts once its search is done."""

    def __init__(
        self,
        launcher: WorkerProcesses | QueuedRuns,
        plan: list[PlannedRetrain],
        workers: int,
        say: Callable[[str], None],
    ):
        self._launcher, self._plan, self._say = launcher, plan, say
        self._slots = threading.Semaphore(workers)
        self._futures: dict[datetime, Future] = {}  # written by the feeder only
        self._submitted = {p.hour: threading.Event() for p in plan}
        self._stop = threading.Event()
        self._feeder = threading.Thread(target=self._feed, name="retrains-ahead", daemon=True)

    def start(self) -> RetrainsAhead:
        self._feeder.start()
        return self

    def _feed(self) -> None:
        for planned in self._plan:
            search = self._futures.get(planned.refits) if planned.refits is not None else None
            while search is not None and not search.done():  # its search first, whatever its outcome
                if self._stop.wait(0.5):
                    return
            while not self._slots.acquire(timeout=0.5):
                if self._stop.is_set():
                    return
            if self._stop.is_set():
                self._slots.release()
                return
            future = self._launcher.submit(partition_key(planned.hour))
            future.add_done_callback(lambda _: self._slots.release())
            self._futures[planned.hour] = future
            self._submitted[planned.hour].set()

    def wait(self, hour: datetime) -> bool:
        """Wait for the retrain planned at `hour`; False when none was planned there or it failed (the loop then
        retrains there itself, and fails with the run's own message if the failure is real)."""
        submitted = self._submitted.get(hour)
        if submitted is None:
            return False
        while not submitted.wait(timeout=1.0):
            if not self._feeder.is_alive():
                return False
        try:
            success, error = self._futures[hour].result()
        except Exception as exc:  # the worker process died
            success, error = False, f"{type(exc).__name__}: {exc}"
        if not success:
            self._say(f"  retrain ahead {partition_key(hour)} failed ({error}); the loop retrains there itself")
        return success

    def close(self) -> None:
        self._stop.set()
        for future in self._futures.values():
            future.cancel()
        self._feeder.join(timeout=5)
        self._launcher.close()
