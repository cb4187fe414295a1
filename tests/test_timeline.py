"""Which champion and challenger were in force at an hour: the decision timeline, point in time."""

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from alphapulse_assets.promotion.timeline import (
    KIND_ORDER,
    TIMELINE_SCHEMA,
    decisions_after,
    in_force,
    segments,
    state_before,
)
from alphapulse_assets.replay.driver import scheduled_decision_hours
from alphapulse_assets.replay.performance import paired_t, system_dsr

T0 = datetime(2025, 3, 10, 23, tzinfo=UTC)


def timeline(*rows) -> pl.DataFrame:
    """(hour offset from T0, kind, action, champion_after, challenger_after) rows, in the loop's order."""
    return pl.DataFrame(
        [
            {
                "ts": T0 + timedelta(hours=h),
                "kind": kind,
                "kind_order": KIND_ORDER[kind],
                "action": action,
                "champion_after": champion,
                "challenger_after": challenger,
            }
            for h, kind, action, champion, challenger in rows
        ],
        schema=TIMELINE_SCHEMA,
    ).sort("ts", "kind_order")


HISTORY = timeline(
    (0, "challenge", "promote", "A", None),
    (24, "challenge", "keep", "A", "B"),
    (30, "rollback", "rollback_refused", "A", "B"),
    (48, "rollback", "rollback", "Z", "B"),
    (48, "challenge", "promote", "C", None),
)


def test_a_decision_governs_the_hours_after_its_own():
    served = in_force(HISTORY, T0 - timedelta(hours=1), T0 + timedelta(hours=50))
    at = {ts: (champion, challenger) for ts, champion, challenger in served.iter_rows()}
    assert at[T0 - timedelta(hours=1)] == (None, None)
    assert at[T0] == (None, None), "the hour a champion is decided at is still served by the one before"
    assert at[T0 + timedelta(hours=1)] == ("A", None)
    assert at[T0 + timedelta(hours=24)] == ("A", None)
    assert at[T0 + timedelta(hours=25)] == ("A", "B")
    # Two decisions at one hour: the retrain's (made after the rollback) governs the next hours.
    assert at[T0 + timedelta(hours=48)] == ("A", "B")
    assert at[T0 + timedelta(hours=49)] == ("C", None)


def test_a_decision_starts_from_the_state_before_it_in_the_loops_order():
    assert state_before(HISTORY, T0, "challenge").champion is None
    assert state_before(HISTORY, T0 + timedelta(hours=24), "challenge").champion == "A"
    assert state_before(HISTORY, T0 + timedelta(hours=48), "rollback").challenger == "B"
    # The retrain at 48 starts from what the rollback at 48 left, not from its own earlier run.
    assert state_before(HISTORY, T0 + timedelta(hours=48), "challenge").champion == "Z"


def test_decisions_after_one_are_what_would_be_rewritten():
    assert decisions_after(HISTORY, T0 + timedelta(hours=48), "challenge").is_empty()
    later = decisions_after(HISTORY, T0 + timedelta(hours=48), "rollback")
    assert later["kind"].to_list() == ["challenge"]
    assert decisions_after(HISTORY, T0 + timedelta(hours=5), "challenge").height == 4


def test_segments_are_contiguous_runs_of_one_version():
    served = in_force(HISTORY, T0, T0 + timedelta(hours=52))
    runs = segments(served, "champion_version")
    assert [(v, int((b - a) / timedelta(hours=1))) for v, a, b in runs] == [("A", 48), ("C", 3)]
    assert runs[0][1] == T0 + timedelta(hours=1)


def test_the_daily_cadence_decides_at_23_utc():
    hours = scheduled_decision_hours(datetime(2025, 3, 20, 5, tzinfo=UTC), datetime(2025, 3, 22, 23, tzinfo=UTC), 24)
    assert hours == [datetime(2025, 3, d, 23, tzinfo=UTC) for d in (20, 21, 22)]
    weekly = scheduled_decision_hours(datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 31, tzinfo=UTC), 168)
    assert len(weekly) == 4 and all(h.hour == 23 and h.weekday() == 2 for h in weekly)


def test_paired_t_and_the_systems_deflated_sharpe():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.01, 2000)
    assert abs(paired_t(noise, np.zeros(2000))) < 3
    assert paired_t(noise, noise) == 0.0
    assert paired_t(np.full(5, 0.002), np.zeros(5)) == math.inf
    assert paired_t(noise + 0.001 + rng.normal(0, 0.001, 2000), noise) > 10
    skill = rng.normal(0.001, 0.01, 4000)
    few, _, _ = system_dsr(skill, rng.normal(0, 0.01, 10))
    many, trials, variance = system_dsr(skill, rng.normal(0, 0.05, 1000))
    assert trials == 1000 and variance == pytest.approx(0.0025, rel=0.15)
    assert few > many, "more trials with a wider spread deflate the same returns more"
