"""What the file-drop sensors share: a file's version, and one range run per new version over the hours it reaches."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import dagster as dg

from alphapulse_assets.partitions import HOURLY, last_closed_hour, partition_key, range_run_request


def file_fingerprint(path: Path) -> str:
    """Size and modification time: a file rewritten in place, or appended to, is a new version."""
    stat = path.stat()
    return f"{stat.st_mtime_ns}:{stat.st_size}"


class DropScan:
    """One sensor tick over a folder: which file versions are new, and the run each one requests.

    The cursor maps file name to the version last seen, so each version requests one run, once.
    """

    def __init__(self, cursor: str | None, trigger: str, file_tag: str):
        self.seen: dict[str, str] = json.loads(cursor) if cursor else {}
        self.trigger, self.file_tag = trigger, file_tag
        self.first, self.last = HOURLY.start, last_closed_hour()
        self.requests: list[dg.RunRequest] = []
        self.skipped: list[str] = []

    def is_new(self, name: str, version: str) -> bool:
        """True (and remembered) for a version the cursor has not seen."""
        if self.seen.get(name) == version:
            return False
        self.seen[name] = version
        return True

    def skip(self, name: str, why: str) -> None:
        self.skipped.append(f"{name} ({why})")

    def request(self, name: str, version: str, first_hour: datetime, last_hour: datetime) -> None:
        """Request the hours [first_hour, last_hour], clipped to the partitions that exist and have closed."""
        start, end = max(first_hour, self.first), min(last_hour, self.last)
        if start > end:
            self.skip(name, f"outside {partition_key(self.first)} .. {partition_key(self.last)}")
            return
        tags = {"alphapulse/trigger": self.trigger, self.file_tag: name}
        self.requests.append(range_run_request(f"{name}:{version}", start, end, tags))

    def result(self, context: dg.SensorEvaluationContext, what: str) -> dg.SensorResult:
        if self.skipped:
            context.log.info(f"{what} not requested: {', '.join(self.skipped)}")
        return dg.SensorResult(
            run_requests=self.requests,
            cursor=json.dumps(self.seen, sort_keys=True),
            skip_reason=None if self.requests else dg.SkipReason(f"no new or changed {what}"),
        )
