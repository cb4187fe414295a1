"""Retrains computed ahead of the replay's loop, in other processes, without changing what the loop decides.

A scheduled retrain's model and evaluation (`trained_model`, `model_evaluation`) depend on the data before its
decision hour and on one piece of the loop's state: which earlier retrain searched (`last_search`), whose
configuration a refit reuses. Nothing else the loop decides (champions, challengers, rollbacks) reaches them. So
they can be computed ahead, in parallel, while the loop itself stays sequential: promotions, rollbacks, predictions
and drift reports are made in time order by the driver, as before.

The plan assumes that only scheduled retrains happen. A drift-triggered retrain that searches changes which search
later retrains refit; so when the loop reaches a decision hour it checks the retrain made ahead against the state
in force at that hour, and recomputes it in the loop when they differ (`matches_loop`). The result equals a
sequential replay's, whatever the number of workers: `tests/test_replay.py` compares them.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import dagster as dg

from alphapulse_assets.partitions import partition_key
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


def _retrain(instance_ref, hour_key: str, tags: dict[str, str]) -> tuple[bool, str | None]:
    """In a worker process: `trained_model` and `model_evaluation` at one hour, as a run of `retrain_job` in the
    replay's instance, with the code location built from the same environment."""
    from alphapulse_assets.definitions import defs
    from alphapulse_assets.runner import run_job

    with dg.DagsterInstance.from_ref(instance_ref) as instance:
        outcome = run_job(
            defs,
            instance,
            "retrain_job",
            partition_key=hour_key,
            asset_selection=list(AHEAD_ASSETS),
            tags=tags | {AHEAD_TAG: hour_key},
            label=f"retrain ahead {hour_key}",
            progress=False,
        )
    return outcome.success, outcome.error


class RetrainsAhead:
    """`workers` processes computing the planned retrains in time order; a refit starts once its search is done."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        plan: list[PlannedRetrain],
        workers: int,
        tags: dict[str, str],
        say: Callable[[str], None],
    ):
        ref = instance.get_ref()
        if ref is None:
            raise ValueError(
                "retrains ahead need an instance other processes can open (DAGSTER_HOME), not an ephemeral one"
            )
        self._ref, self._plan, self._tags, self._say = ref, plan, tags, say
        # Spawned, not forked: a fork would copy the driver's open database connections and threads.
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
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
            future = self._pool.submit(_retrain, self._ref, partition_key(planned.hour), self._tags)
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
        self._pool.shutdown(wait=True, cancel_futures=True)
