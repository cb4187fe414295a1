"""Which feature-set version the warehouse holds for which hours, and the online snapshot the API reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import polars as pl

from alphapulse_assets.features.catalog import FEATURE_NAMES, feature_version, latest_rows
from alphapulse_assets.hours import hour_range
from alphapulse_assets.news.resources import SentimentModel
from alphapulse_assets.retries import NotRetryable
from alphapulse_assets.storage.object_store import ObjectStore
from alphapulse_assets.storage.warehouse import Warehouse
from alphapulse_contract.scoring import MAX_SMOOTHING_HOURS, SNAPSHOT_KEY

# One row per materialized hour: the version of the feature rows of that hour, written in the same transaction.
FEATURE_HOURS = "feature_hours"


def current_feature_version(sentiment: SentimentModel) -> str:
    """The version this code, with this sentiment configuration, computes."""
    return feature_version(sentiment.scorer_name, sentiment.half_life_hours, sentiment.headlines)


def feature_hours_frame(start: datetime, end: datetime, version: str, run_id: str) -> pl.DataFrame:
    return pl.DataFrame(hour_range(start, end)).with_columns(
        pl.lit(version).alias("feature_version"),
        pl.lit(datetime.now(UTC)).alias("materialized_at"),
        pl.lit(run_id).alias("run_id"),
    )


def require_feature_version(warehouse: Warehouse, start: datetime, end: datetime, expected: str, purpose: str) -> None:
    """Fail, naming the hours and the fix, unless every hour in [start, end) holds features of `expected`.

    A model trained on one definition of a feature and scored on another is wrong without any error; this is the
    guard against it.
    """
    span = f"[{start.isoformat()}, {end.isoformat()})"
    hours = int((end - start) / timedelta(hours=1))
    recorded = warehouse.read_window(FEATURE_HOURS, start, end) if warehouse.table_exists(FEATURE_HOURS) else None
    missing = hours - (0 if recorded is None else recorded.height)
    stale = (
        []
        if recorded is None
        else recorded.filter(pl.col("feature_version") != expected)
        .group_by("feature_version")
        .agg(pl.len().alias("hours"), pl.col("ts").min().alias("first"))
        .sort("first")
        .to_dicts()
    )
    if missing == 0 and not stale:
        return
    problems = []
    if missing:
        problems.append(f"{missing} of {hours} hours have no features (or none with a recorded version)")
    for row in stale:
        problems.append(f"{row['hours']} hours (from {row['first'].isoformat()}) hold version {row['feature_version']}")
    raise NotRetryable(
        description=(
            f"{purpose} needs features of version {expected} for every hour of {span}, but "
            + "; ".join(problems)
            + ": materialize (backfill) the features asset over that range with the current code first"
        ),
        metadata={"expected_feature_version": expected, "range": span},
    )


def rows_of_version(warehouse: Warehouse, start: datetime, end: datetime, version: str) -> pl.DataFrame:
    """The feature rows in [start, end) of hours materialized at `version` (hours of another version, or none, are
    left out: a model scores only features of its own definition)."""
    if not warehouse.table_exists("features") or not warehouse.table_exists(FEATURE_HOURS):
        return pl.DataFrame()
    hours = warehouse.read_window(FEATURE_HOURS, start, end).filter(pl.col("feature_version") == version)
    return warehouse.read_window("features", start, end).join(hours.select("ts"), on="ts", how="semi")


def publish_snapshot(warehouse: Warehouse, object_store: ObjectStore, frame: pl.DataFrame, version: str) -> str:
    """Write the newest row per symbol for the API, with the hours before it that a trading rule's moving mean
    may need (atomically: the store writes aside, then renames), unless the snapshot already holds a newer hour of
    the same version: a backfill of old history must not roll the online features back. `frame`'s rows are in the
    warehouse already."""
    newest = latest_rows(frame)
    newest_ts = newest["ts"].max()
    if object_store.exists(SNAPSHOT_KEY):
        current = json.loads(object_store.get_bytes(SNAPSHOT_KEY))
        current_ts = max(datetime.fromisoformat(row["ts"]) for row in current["rows"].values())
        if current_ts > newest_ts and current.get("feature_version") == version:
            return f"kept: snapshot already at {current_ts.isoformat()}"
    earlier = rows_of_version(
        warehouse, newest["ts"].min() - timedelta(hours=MAX_SMOOTHING_HOURS - 1), newest_ts, version
    )
    object_store.put_bytes(SNAPSHOT_KEY, snapshot_bytes(newest, version, earlier))
    return f"published: {newest_ts.isoformat()}"


def snapshot_bytes(rows: pl.DataFrame, version: str, earlier: pl.DataFrame | None = None) -> bytes:
    """The online snapshot document (the API's only view of the features): per symbol its newest row and, under
    `earlier`, newest first, its rows of the MAX_SMOOTHING_HOURS - 1 hours before it that `earlier` holds."""
    history: dict[str, list[dict]] = {}
    if earlier is not None and earlier.height:
        for row in earlier.sort("ts", descending=True).to_dicts():
            history.setdefault(row["symbol"], []).append(row)
    payload = {
        "feature_version": version,
        "feature_names": list(FEATURE_NAMES),
        "generated_at": datetime.now(UTC).isoformat(),
        "rows": {
            row["symbol"]: {
                "ts": row["ts"].isoformat(),
                "values": {n: row[n] for n in FEATURE_NAMES},
                "earlier": [
                    {"ts": old["ts"].isoformat(), "values": {n: old[n] for n in FEATURE_NAMES}}
                    for old in history.get(row["symbol"], [])
                    if row["ts"] - timedelta(hours=MAX_SMOOTHING_HOURS) < old["ts"] < row["ts"]
                ],
            }
            for row in rows.to_dicts()
        },
    }
    return json.dumps(payload, indent=1, allow_nan=False).encode()
