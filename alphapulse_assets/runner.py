"""Running jobs in-process against a Dagster instance, with a progress line a person can watch.

`make demo`, the benchmark and the tests use this to materialize ranges; the runs land in the instance, so the
UI shows them exactly as if the daemon had launched them.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from dagster._utils.interrupts import check_captured_interrupt

from alphapulse_assets.partitions import partition_key


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    success: bool
    seconds: float
    materializations: int
    error: str | None


_WATCHED = (
    dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
    dg.DagsterEventType.STEP_START,
    dg.DagsterEventType.ASSET_MATERIALIZATION,
)


def _progress(instance: dg.DagsterInstance, run_id: str, label: str, total: int, stop: threading.Event, out) -> None:
    started = time.monotonic()
    counts = {kind: 0 for kind in _WATCHED}
    steps: list[str] = []
    cursor = None
    while not stop.wait(5.0):
        # Read only the events since the last poll: a long backfill writes tens of thousands.
        batch = instance.get_records_for_run(run_id, cursor=cursor, of_type=set(_WATCHED), limit=100_000)
        cursor = batch.cursor if batch.records else cursor
        for record in batch.records:
            entry = record.event_log_entry
            counts[entry.dagster_event_type] += 1
            if entry.dagster_event_type == dg.DagsterEventType.STEP_START:
                steps.append(entry.step_key)
        elapsed = f"{time.monotonic() - started:.0f}s so far"
        if not steps:
            # Dagster records one "planned" event per asset partition before the first step starts.
            planned = counts[dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED]
            line = f"planning the run, {planned}/{total} asset partitions registered"
        else:
            done = counts[dg.DagsterEventType.ASSET_MATERIALIZATION]
            of_total = f"/{total}" if total else ""
            line = f"step {len(steps)} ({steps[-1]}), {done}{of_total} asset partitions materialized"
        print(f"  .. {label}: {line}, {elapsed}", file=out, flush=True)


Jobs = dg.Definitions | dg.RepositoryDefinition
# Set once this process was interrupted (Ctrl-C, SIGTERM) while a run executed: the run in flight ends canceled,
# and no further run starts (`run_job` raises KeyboardInterrupt).
_STOP = threading.Event()


def _watch_interrupts(done: threading.Event) -> None:
    """While a run executes in this process, Dagster holds SIGINT and SIGTERM. One that lands in a step ends the
    step as interrupted; one that lands in Dagster's own bookkeeping is only noted, raised at the next step, and
    forgotten when the run ends (the last step, or a run that drives others, as the replay does). Seen here, it
    is a stop request all the same."""
    while not done.wait(0.1):
        if check_captured_interrupt():
            _STOP.set()


# How an interrupted step's error is named in its failure event (a nested run's interrupt reaches its caller's
# step as a KeyboardInterrupt).
_INTERRUPTS = ("DagsterExecutionInterruptedError", "KeyboardInterrupt")


def job_definition(defs: Jobs, job_name: str) -> dg.JobDefinition:
    """A job with its resources bound, from the definitions or, inside a run (the replay), from its repository."""
    return defs.resolve_job_def(job_name) if isinstance(defs, dg.Definitions) else defs.get_job(job_name)


def _check_range(defs: Jobs, job_name: str, first: str, last: str) -> None:
    """An empty, inverted or unknown range is refused before a run exists, so nothing is written."""
    partitions = job_definition(defs, job_name).partitions_def
    if partitions is None:
        raise ValueError(f"{job_name} is not partitioned")
    # Membership and order without listing every key: a year of hours is ~9,000 keys, listed in ~0.1 s a call.
    for key in (first, last):
        # has_partition_key accepts any time inside the range ("00:30" too); an hour's key must also round-trip.
        if not partitions.has_partition_key(key) or key != partitions.get_partition_key_for_timestamp(
            partitions.start_time_for_partition_key(key).timestamp()
        ):
            raise ValueError(
                f"{key!r} is not an hourly partition of {job_name} (format YYYY-MM-DD-HH:00, UTC, from "
                f"ALPHAPULSE_HISTORY_START to the last closed hour)"
            )
    if partitions.start_time_for_partition_key(first) > partitions.start_time_for_partition_key(last):
        raise ValueError(f"inverted partition range {first} .. {last}: the first hour comes after the last")


def run_job(
    defs: Jobs,
    instance: dg.DagsterInstance,
    job_name: str,
    *,
    partition_key: str | None = None,
    partition_range: tuple[str, str] | None = None,
    tags: dict[str, str] | None = None,
    run_config: dict | None = None,
    asset_selection: list[dg.AssetKey] | None = None,
    label: str | None = None,
    log_level: str = "WARNING",
    expected_materializations: int = 0,
    progress: bool = True,
    out=sys.stdout,
) -> RunOutcome:
    """Execute `job_name` (or `asset_selection` of it) for one partition, an inclusive range of partitions, or (an
    unpartitioned job) neither, printing progress every 5 s (unless `progress` is off: a run that drives other runs,
    which print their own)."""
    if partition_key is not None and partition_range is not None:
        raise ValueError("give one of partition_key or partition_range, not both")
    if _STOP.is_set():
        raise KeyboardInterrupt
    run_tags = dict(tags or {})
    if partition_range is not None:
        _check_range(defs, job_name, *partition_range)
        run_tags |= {
            ASSET_PARTITION_RANGE_START_TAG: partition_range[0],
            ASSET_PARTITION_RANGE_END_TAG: partition_range[1],
        }
    run_id = str(uuid.uuid4())
    stop = threading.Event()
    watcher = threading.Thread(
        target=_progress, args=(instance, run_id, label or job_name, expected_materializations, stop, out), daemon=True
    )
    interrupts = threading.Thread(target=_watch_interrupts, args=(stop,), daemon=True)
    started = time.monotonic()
    interrupts.start()
    if progress:
        watcher.start()
    try:
        result = job_definition(defs, job_name).execute_in_process(
            run_config={**(run_config or {}), "loggers": {"console": {"config": {"log_level": log_level}}}},
            asset_selection=asset_selection,
            instance=instance,
            partition_key=partition_key,
            tags=run_tags,
            run_id=run_id,
            raise_on_error=False,
        )
    finally:
        stop.set()
        interrupts.join()
        if progress:
            watcher.join()
    error = None
    if not result.success:
        failures = [e for e in result.all_events if e.is_step_failure]
        interrupted = any(
            e.step_failure_data.error and e.step_failure_data.error.cls_name in _INTERRUPTS for e in failures
        )
        if interrupted or _STOP.is_set():
            # Ctrl-C or SIGTERM reached this process mid-step (Dagster's own handlers catch both while a step runs
            # and end the run as failed): a person stopped it, so the instance says canceled, and the interrupt
            # goes on to the caller.
            instance.report_run_canceled(
                instance.get_run_by_id(run_id), message="interrupted (Ctrl-C or SIGTERM) while running in-process"
            )
            raise KeyboardInterrupt
        error = _step_failures(failures) or "run failed"
    if _STOP.is_set():  # the run finished before the stop reached it: it stands, and nothing further starts
        raise KeyboardInterrupt
    materialized = sum(1 for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION)
    return RunOutcome(run_id, result.success, time.monotonic() - started, materialized, error)


def first_missing_hour(instance: dg.DagsterInstance, assets, start: datetime, end: datetime) -> datetime | None:
    """The earliest hour in [start, end] some of `assets` lacks; None when all are there."""
    span = missing_span(instance, assets, start, end)
    return span[0] if span else None


def missing_span(
    instance: dg.DagsterInstance, assets, start: datetime, end: datetime
) -> tuple[datetime, datetime] | None:
    """The earliest and the latest hour in [start, end] some of `assets` lacks; None when all are there."""
    hours = [start + timedelta(hours=k) for k in range(int((end - start) / timedelta(hours=1)) + 1)]
    missing = set()
    for key in assets:
        done = instance.get_materialized_partitions(key)
        missing |= {hour for hour in hours if partition_key(hour) not in done}
    return (min(missing), max(missing)) if missing else None


def run_failure(instance: dg.DagsterInstance, run_id: str) -> str:
    """Why a run launched elsewhere failed: its steps' errors, else the run's own failure message."""
    steps = _step_failures(
        [e.dagster_event for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)]
    )
    if steps:
        return steps
    failures = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    return "; ".join(e.dagster_event.message or "run failed" for e in failures) or "run failed"


def _step_failures(events: list[dg.DagsterEvent]) -> str:
    return "; ".join(f"{e.step_key}: {_failure_message(e.step_failure_data.error)}" for e in events)


def _failure_message(error) -> str:
    """The step's error with its causes: after retries Dagster reports "Exceeded max_retries of 3", and what
    failed each attempt (the warehouse is unreachable, say) is in the cause."""
    messages = []
    while error is not None:
        messages.append(error.message.strip())
        error = error.cause
    return " <- ".join(messages) or "failed"
