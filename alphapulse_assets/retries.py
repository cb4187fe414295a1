"""How runs meet a storage outage: every asset retries under one RetryPolicy; failures retrying cannot fix do not.

A Postgres failover or an S3 hiccup surfaces as `StorageUnavailable` (or a driver error) and the step is tried again
with exponential backoff and jitter, so a fleet of runs does not retry in lockstep. Every write the assets make
replaces whole windows in one transaction or puts whole objects, so a retried step rewrites exactly what it would
have written the first time. A missing upstream partition or a bad input is raised as `NotRetryable` and fails
at once.
"""

from __future__ import annotations

import dagster as dg

from alphapulse_contract.config import Setting, integer, number

STEP_RETRIES = Setting(
    "ALPHAPULSE_STEP_RETRIES",
    3,
    "Retries of a failed step (a storage outage), with exponential backoff and jitter.",
    integer(0, 100),
)
STEP_RETRY_DELAY_SECONDS = Setting(
    "ALPHAPULSE_STEP_RETRY_DELAY_SECONDS", 5.0, "The first retry's delay; each next one doubles it.", number(0, 3600)
)
# Read at import, like the partitions: the policy is part of each asset's definition.
STORAGE_RETRY_POLICY = dg.RetryPolicy(
    max_retries=STEP_RETRIES.read(),
    delay=STEP_RETRY_DELAY_SECONDS.read(),
    backoff=dg.Backoff.EXPONENTIAL,
    jitter=dg.Jitter.PLUS_MINUS,
)


class NotRetryable(dg.Failure):
    """A failure that trying again cannot fix (an upstream partition is missing, an input is malformed): the step
    fails at once whatever its RetryPolicy."""

    def __init__(self, description: str | None = None, metadata: dict | None = None):
        super().__init__(description, metadata, allow_retries=False)
