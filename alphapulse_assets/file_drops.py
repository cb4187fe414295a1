"""What the file-drop sensors share: a file's version, a first look that loads nothing, and merged range runs."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg

from alphapulse_assets.partitions import HOURLY, last_closed_hour, partition_key, range_run_request


def file_fingerprint(path: Path) -> str:
    """Size and modification time: a file rewritten in place, or appended to, is a new version."""
    stat = path.stat()
    return f"{stat.st_mtime_ns}:{stat.st_size}"


class DropScan:
    """One sensor tick over a folder: which file versions are new, and the runs they request.

    The cursor holds the folder and, per file name, the version last seen, so each version is acted on once. The
    first tick over a folder (no cursor yet, or a cursor kept for another folder) takes the files already there as
    the starting point and requests nothing: pointing AlphaPulse at years of archive must not queue years of
    backfill behind the user's back. Loading what is already there is the user's call, as one single-run backfill
    (`make demo`, or a data_job backfill in the UI); setting the sensor's cursor to `{}` in the UI asks the next
    tick to load every file present. The files new in one tick are requested together, one run per stretch of
    hours they reach (stretches that touch are merged), so 24 new monthly files of 5 symbols make one run, not 120.
    """

    def __init__(self, cursor: str | None, folder: str, trigger: str, file_tag: str):
        state = json.loads(cursor) if cursor else None
        if isinstance(state, dict) and "folder" not in state:
            state = {"folder": folder, "seen": state}  # `{}` set by hand, or a cursor from before folders were kept
        self.baseline = state is None or state["folder"] != folder
        self.folder = folder
        self.seen: dict[str, str] = {} if self.baseline else dict(state["seen"])
        self.trigger, self.file_tag = trigger, file_tag
        self.first, self.last = HOURLY.start, last_closed_hour()
        self.wanted: list[tuple[datetime, datetime, str, str]] = []
        self.skipped: list[str] = []

    def is_new(self, name: str, version: str) -> bool:
        """True for a version the cursor has not seen; every version is remembered. On the first tick over a folder
        nothing is new."""
        if self.seen.get(name) == version:
            return False
        self.seen[name] = version
        return not self.baseline

    def skip(self, name: str, why: str) -> None:
        self.skipped.append(f"{name} ({why})")

    def request(self, name: str, version: str, first_hour: datetime, last_hour: datetime) -> None:
        """Ask for the hours [first_hour, last_hour], clipped to the partitions that exist and have closed."""
        start, end = max(first_hour, self.first), min(last_hour, self.last)
        if start > end:
            self.skip(name, f"outside {partition_key(self.first)} .. {partition_key(self.last)}")
            return
        self.wanted.append((start, end, name, version))

    def run_requests(self) -> list[dg.RunRequest]:
        requests = []
        for first, last, files in _merged(self.wanted):
            names = sorted(name for name, _ in files)
            label = ", ".join(names) if len(names) <= 3 else f"{names[0]} .. {names[-1]} ({len(names)} files)"
            key = hashlib.sha256(json.dumps(sorted(files)).encode()).hexdigest()[:16]
            tags = {"alphapulse/trigger": self.trigger, self.file_tag: label}
            requests.append(
                range_run_request(f"{partition_key(first)}..{partition_key(last)}:{key}", first, last, tags)
            )
        return requests

    def result(self, context: dg.SensorEvaluationContext, what: str) -> dg.SensorResult:
        if self.skipped:
            context.log.info(f"{what} not requested: {', '.join(self.skipped)}")
        cursor = json.dumps({"folder": self.folder, "seen": self.seen}, sort_keys=True)
        if self.baseline:
            why = (
                f"first look at {self.folder}: its {len(self.seen)} {what} are the starting point and request no "
                "runs. Load them with one backfill (make demo, or a data_job backfill in the UI), or set this "
                "sensor's cursor to {} to have the next tick request them"
            )
            return dg.SensorResult(cursor=cursor, skip_reason=dg.SkipReason(why))
        requests = self.run_requests()
        return dg.SensorResult(
            run_requests=requests,
            cursor=cursor,
            skip_reason=None if requests else dg.SkipReason(f"no new or changed {what}"),
        )


def _merged(wanted: list[tuple[datetime, datetime, str, str]]) -> list[tuple[datetime, datetime, list[tuple]]]:
    """Stretches of hours, each the union of the requested spans that overlap or touch, with the files behind it."""
    stretches: list[tuple[datetime, datetime, list[tuple]]] = []
    for first, last, name, version in sorted(wanted):
        if stretches and first <= stretches[-1][1] + timedelta(hours=1):
            start, end, files = stretches[-1]
            stretches[-1] = (start, max(end, last), [*files, (name, version)])
        else:
            stretches.append((first, last, [(name, version)]))
    return stretches
