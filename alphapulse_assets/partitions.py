"""The one partitioning of the graph: hours, UTC, from ALPHAPULSE_HISTORY_START."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from alphapulse_assets.retries import NotRetryable
from alphapulse_contract.config import ConfigError, Parser, Setting

PARTITION_FORMAT = "%Y-%m-%d-%H:%M"


def parse_history_start(raw: str, name: str = "ALPHAPULSE_HISTORY_START") -> datetime:
    """Parse `YYYY-MM-DD` or `YYYY-MM-DD-HH:MM` (UTC) into an hour-aligned datetime."""
    text = raw.strip()
    for fmt in ("%Y-%m-%d-%H:%M", "%Y-%m-%d"):
        try:
            parsed = datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
        if parsed.minute != 0:
            raise ConfigError(f"{name}={raw!r}: partitions are hourly, so the minutes must be :00")
        return parsed
    raise ConfigError(f"{name}={raw!r}: expected YYYY-MM-DD or YYYY-MM-DD-HH:MM (UTC)")


HOUR = Parser(parse_history_start, "YYYY-MM-DD or YYYY-MM-DD-HH:MM (UTC)")
HISTORY_START = Setting(
    "ALPHAPULSE_HISTORY_START",
    datetime(2025, 1, 1, tzinfo=UTC),
    "The first hourly partition. The simulated market starts 2020-01-01, so an earlier start with it is refused.",
    HOUR,
)


def hourly_partitions(start: datetime) -> dg.HourlyPartitionsDefinition:
    return dg.HourlyPartitionsDefinition(start_date=start.strftime(PARTITION_FORMAT), timezone="UTC")


# Read at import: the partitioning is part of every asset's definition. `Settings` checks the same value with the
# rest of the configuration when the code location loads.
HOURLY = hourly_partitions(HISTORY_START.read())

# Data-side assets write a whole partition range in one run and one transaction. Dagster marks the
# `backfill_policy` parameter beta; the single-run policy is the documented way to do exactly this.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)
SINGLE_RUN = dg.BackfillPolicy.single_run()
# Gate checks are partitioned like the asset they check (training/checks.py): each hour's model has its own
# verdicts, and the blocking check on promotion_decision reads the ones of the model it is about to serve. Dagster
# marks partitioned check specs preview; uv.lock pins the version they were tested with.
warnings.filterwarnings(
    "ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning
)


def partition_key(hour: datetime) -> str:
    return hour.strftime(PARTITION_FORMAT)


def parse_partition_hour(value: str, name: str) -> datetime:
    """An hour given as a partition key (YYYY-MM-DD-HH:MM, UTC); a malformed one is a configuration error, named."""
    try:
        return datetime.strptime(value.strip(), PARTITION_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise NotRetryable(
            f"{name}: {value!r} is not an hour as YYYY-MM-DD-HH:MM (UTC), e.g. 2025-06-01-00:00"
        ) from None


def partition_hour(context: dg.AssetExecutionContext) -> datetime:
    """The start of a single-partition run's hour (model-side assets decide at one hour)."""
    return context.partition_time_window.start


def last_closed_hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


def range_run_request(run_key: str, first: datetime, last: datetime, tags: dict[str, str]) -> dg.RunRequest:
    """One run over the hours [first, last] (both inclusive), executed as a single-run range backfill."""
    return dg.RunRequest(
        run_key=run_key,
        tags={
            ASSET_PARTITION_RANGE_START_TAG: partition_key(first),
            ASSET_PARTITION_RANGE_END_TAG: partition_key(last),
            **tags,
        },
    )
