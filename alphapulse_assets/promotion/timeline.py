"""The loop's decisions in time order: which champion and challenger were in force at any hour, point in time.

A decision at partition hour T is made after T has closed (the daily retrain at 00:30 decides at 23:00; a drift
retrain or a rollback acts on the drift report of T), so it governs the hours after T: the champion in force at
hour h is the champion after the last decision at an hour before h. At one hour, a rollback (the remedy the drift
report of that hour requests) is ordered before the retrain decided at the same hour (the schedule's hh:30 run).

Every model-side asset reads its champion and challenger here, never from "whatever is newest", so a backfill of
`predictions` over any range is what the API would have served then, and a decision reads the state its hour saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from alphapulse_assets.hours import hour_range
from alphapulse_assets.storage.warehouse import Warehouse

DECISIONS_TABLE = "promotion_decisions"
# Decision kinds in the order they are made within one hour.
KIND_ORDER = {"rollback": 0, "challenge": 1}

TIMELINE_SCHEMA = {
    "ts": pl.Datetime("us", "UTC"),
    "kind": pl.String,
    "kind_order": pl.Int32,
    "action": pl.String,
    "champion_after": pl.String,
    "challenger_after": pl.String,
}


@dataclass(frozen=True)
class LoopState:
    """The champion and the challenger in shadow, as some decision left them (None: none)."""

    champion: str | None = None
    challenger: str | None = None


def decision_timeline(warehouse: Warehouse) -> pl.DataFrame:
    """Every recorded decision in the order it was made: ts, kind, kind_order, action, champion_after,
    challenger_after."""
    if not warehouse.table_exists(DECISIONS_TABLE):
        return pl.DataFrame(schema=TIMELINE_SCHEMA)
    rows = warehouse.query(
        f"select ts, kind, action, champion_after, shadow_challenger_after as challenger_after from {DECISIONS_TABLE}"
    )
    return (
        rows.with_columns(pl.col("kind").replace_strict(KIND_ORDER, return_dtype=pl.Int32).alias("kind_order"))
        .select(list(TIMELINE_SCHEMA))
        .cast(TIMELINE_SCHEMA)
        .sort("ts", "kind_order")
    )


def _position(timeline: pl.DataFrame, hour: datetime, kind: str) -> pl.Expr:
    order = KIND_ORDER[kind]
    return (pl.col("ts") < hour) | ((pl.col("ts") == hour) & (pl.col("kind_order") < order))


def state_before(timeline: pl.DataFrame, hour: datetime, kind: str) -> LoopState:
    """The state a decision of `kind` at `hour` starts from: what the decision made just before it left."""
    earlier = timeline.filter(_position(timeline, hour, kind))
    if earlier.is_empty():
        return LoopState()
    last = earlier.row(-1, named=True)
    return LoopState(last["champion_after"], last["challenger_after"])


def decisions_after(timeline: pl.DataFrame, hour: datetime, kind: str) -> pl.DataFrame:
    """Decisions already recorded that come after a decision of `kind` at `hour` in the loop's order."""
    order = KIND_ORDER[kind]
    return timeline.filter((pl.col("ts") > hour) | ((pl.col("ts") == hour) & (pl.col("kind_order") > order)))


def out_of_order_message(what: str, hour: datetime, later: pl.DataFrame) -> str:
    first = later.row(0, named=True)
    return (
        f"{what} at {hour:%Y-%m-%d-%H:%M} would come before {later.height} decision(s) already recorded (the first: "
        f"{first['kind']} at {first['ts']:%Y-%m-%d-%H:%M}, {first['action']}). Each of those read the champion and "
        "challenger in force at its hour, which this one would change, so it is refused rather than rewriting "
        "history under them. Decide at a later hour, or replay the loop over the range into a fresh "
        "ALPHAPULSE_HOME (`python -m alphapulse_assets.replay START END`): a replay re-derives every decision in "
        "time order."
    )


def governing(events: pl.DataFrame, start: datetime, end: datetime) -> pl.DataFrame:
    """For every hour in [start, end): the other columns of the last of `events` (ts first, in the order they
    happened) at an hour before it; null where none came before. Something done at hour T (a decision, a trained
    model) is done after T closes, so it governs the hours after T."""
    effective = (
        events.group_by("ts", maintain_order=True)
        .last()
        .with_columns((pl.col("ts") + timedelta(hours=1)).alias("effective_from"))
        .drop("ts")
    )
    return (
        pl.DataFrame(hour_range(start, end))
        .join_asof(effective, left_on="ts", right_on="effective_from", strategy="backward")
        .drop("effective_from")
    )


def in_force(timeline: pl.DataFrame, start: datetime, end: datetime) -> pl.DataFrame:
    """For every hour in [start, end): the champion and challenger in force (ts, champion_version,
    challenger_version); null where there was none."""
    decisions = timeline.select(
        "ts", pl.col("champion_after").alias("champion_version"), pl.col("challenger_after").alias("challenger_version")
    )
    return governing(decisions, start, end)


def segments(served: pl.DataFrame, column: str) -> list[tuple[str, datetime, datetime]]:
    """Contiguous runs of hours served by one version: (version, first hour, end hour exclusive); hours with none
    are left out."""
    runs: list[tuple[str, datetime, datetime]] = []
    for ts, version in served.select("ts", column).iter_rows():
        if runs and runs[-1][0] == version and runs[-1][2] == ts:
            runs[-1] = (version, runs[-1][1], ts + timedelta(hours=1))
        elif version is not None:
            runs.append((version, ts, ts + timedelta(hours=1)))
    return runs
