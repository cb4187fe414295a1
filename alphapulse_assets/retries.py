"""How runs meet a storage outage: every asset retries under one RetryPolicy; failures retrying cannot fix do not.

A Postgres failover or an S3 hiccup surfaces as `StorageUnavailable` (or a driver error) and the step is tried again
with exponential backoff and jitter, so a fleet of runs does not retry in lockstep. Every write the assets make
replaces whole windows in one transaction or puts whole objects, so a retried step rewrites exactly what it would
have written the first time. A missing upstream partition or a bad input is raised as `NotRetryable` and fails
at once.
"""

from __future__ import annotations

import os

import dagster as dg


def _retry_setting(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a number") from None
    if value < 0:
        raise ValueError(f"{name}={raw!r}: must not be negative")
    return value


# Read at import, like the partitions: the policy is part of each asset's definition.
STORAGE_RETRY_POLICY = dg.RetryPolicy(
    max_retries=int(_retry_setting("ALPHAPULSE_STEP_RETRIES", 3)),
    delay=_retry_setting("ALPHAPULSE_STEP_RETRY_DELAY_SECONDS", 5.0),
    backoff=dg.Backoff.EXPONENTIAL,
    jitter=dg.Jitter.PLUS_MINUS,
)


class NotRetryable(dg.Failure):
    """A failure that trying again cannot fix (an upstream partition is missing, an input is malformed): the step
    fails at once whatever its RetryPolicy."""

    def __init__(self, description: str | None = None, metadata: dict | None = None):
        super().__init__(description, metadata, allow_retries=False)
