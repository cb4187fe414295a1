"""Drift report cost and calibration.

    uv run python bench/drift.py [--trials 20]
    uv run python bench/drift.py --pipeline [--days 60]

The first: our measure_drift against Evidently's DataDriftPreset on the same data, 70 features (the catalog's
size), a 90-day reference of two symbols (4,320 rows) and a 72-hour current window (144 rows), i.i.d. normal with
no shift: every flagged column is a false alarm.

The second: the hourly drift reports the loop writes, replayed on the pipeline's own features of the simulated
market (two symbols, a daily champion's 90-day training window as the reference, the default 24-hour window):
`--days` of the stationary market (every critical report is a false alarm) and a regime change
(ALPHAPULSE_SIM_REGIME_CHANGE, volatility and volume x3) at three seeded dates (hours until it is flagged).
Each twice: with effective rows from the lag-1 autocorrelation alone, as before issue #21, and measured on the
reference's own windows, as the asset does now.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from alphapulse_assets.features.simulated import simulated_features
from alphapulse_assets.monitoring import reference as drift_reference
from alphapulse_assets.monitoring.drift import Reference, measure_drift
from alphapulse_assets.monitoring.resources import DriftPolicy
from alphapulse_assets.training.dataset import training_windows

N_FEATURES, REFERENCE_ROWS, CURRENT_ROWS = 70, 90 * 24 * 2, 72 * 2


PIPELINE_SYMBOLS = ["BTCUSDT", "ETHUSDT"]
REGIME_CHANGES = ((7, datetime(2026, 11, 28, tzinfo=UTC)), (11, datetime(2025, 9, 10, tzinfo=UTC)),
                  (3, datetime(2026, 2, 3, 9, tzinfo=UTC)))  # fmt: skip


def champion_reference_window(hour: datetime) -> tuple[datetime, datetime]:
    windows = training_windows(hour.replace(hour=0) - timedelta(hours=1), 90, 30, 24)
    return windows.train_start, windows.train_end


def lag1_only_references(frame, names, symbols, start, end, window_hours):
    """The references as they were before issue #21: no window spread, effective rows from lag-1 alone."""
    columns = drift_reference.feature_columns(frame, names, symbols, start, end)
    return {name: Reference.of(values) for name, values in columns.items()}


# The detector before issue #21: effective rows from the lag-1 autocorrelation alone, every feature tested
# (the clock's too), a 72-hour window. Now: the reference's own windows, clock features left out, 24 hours.
RULES = {
    "before (lag-1, 72 h)": (72, lag1_only_references, list),
    "now (reference windows, 24 h)": (DriftPolicy().window_hours, drift_reference.feature_references,
                                      drift_reference.drift_features),
}  # fmt: skip


def replayed(seed: int, first: datetime, hours: int, regime_change: datetime | None = None) -> dict[str, pl.DataFrame]:
    features = simulated_features(
        PIPELINE_SYMBOLS, first - timedelta(days=125), first + timedelta(hours=hours), seed=seed,
        regime_change=regime_change,
    )  # fmt: skip
    span = [first + timedelta(hours=h) for h in range(hours)]
    out = {}
    for rule, (window, references, tested) in RULES.items():
        started = time.perf_counter()
        out[rule] = drift_reference.replay_drift(
            features, PIPELINE_SYMBOLS, span, champion_reference_window, window, references=references, tested=tested
        )
        print(f"  {rule}: {time.perf_counter() - started:.1f} s for {hours} reports")
    return out


def hours_after(change: datetime, when: datetime | None) -> str:
    return "never" if when is None else f"{(when - change) / timedelta(hours=1):.0f} h"


def pipeline(days: int) -> None:
    print(f"stationary simulated market, seed 7, {days} days of hourly reports ending 2026-12-01 23:00")
    first = datetime(2026, 12, 2, tzinfo=UTC) - timedelta(days=days)
    for rule, reports in replayed(7, first, days * 24).items():
        counts = dict(reports.group_by("status").len().iter_rows())
        critical = counts.get("critical", 0)
        print(
            f"    {rule}: {critical} critical ({critical / reports.height:.1%}), {counts.get('warning', 0)} warning, "
            f"{counts.get('ok', 0)} ok of {reports.height}"
        )
    for seed, change in REGIME_CHANGES:
        print(f"regime change at {change:%Y-%m-%d %H:00}, seed {seed}: reports from a day before to three days after")
        for rule, reports in replayed(seed, change - timedelta(hours=24), 96, change).items():
            before = reports.filter(pl.col("ts") < change)
            after = reports.filter(pl.col("ts") >= change)
            flagged = after.filter(pl.col("status") != "ok")["ts"].min()
            critical = after.filter(pl.col("status") == "critical")["ts"].min()
            print(
                f"    {rule}: flagged after {hours_after(change, flagged)}, critical after "
                f"{hours_after(change, critical)}; the day before: {(before['status'] != 'ok').sum()} of 24 flagged"
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--pipeline", action="store_true", help="replay reports on the simulated pipeline")
    parser.add_argument("--days", type=int, default=60)
    args = parser.parse_args()
    if args.pipeline:
        pipeline(args.days)
        return
    names = [f"f{i}" for i in range(N_FEATURES)]

    started = time.perf_counter()
    from alphapulse_assets.monitoring.evidently_report import evidently_drift_html

    evidently_drift_html(pl.DataFrame({"x": [0.0, 1.0]}), pl.DataFrame({"x": [0.0, 1.0]}), ["x"])
    print(f"evidently import + first tiny report: {time.perf_counter() - started:.1f} s")

    ours_seconds, evidently_seconds, ours_alarms, evidently_shares, page_bytes = [], [], 0, [], 0
    for seed in range(args.trials):
        rng = np.random.default_rng(seed)
        reference = pl.DataFrame(rng.normal(size=(REFERENCE_ROWS, N_FEATURES)), schema=names)
        current = pl.DataFrame(rng.normal(size=(CURRENT_ROWS, N_FEATURES)), schema=names)
        t = time.perf_counter()
        summary = measure_drift({n: reference[n].to_numpy() for n in names}, {n: current[n].to_numpy() for n in names})
        ours_seconds.append(time.perf_counter() - t)
        ours_alarms += summary.detected
        t = time.perf_counter()
        page, share = evidently_drift_html(reference, current, names, seed=seed)
        evidently_seconds.append(time.perf_counter() - t)
        evidently_shares.append(share)
        page_bytes = len(page.encode())

    print(f"trials: {args.trials} (no shift; {N_FEATURES} features, {REFERENCE_ROWS} vs {CURRENT_ROWS} rows)")
    print(f"measure_drift: median {np.median(ours_seconds) * 1000:.0f} ms, reports raising an alarm {ours_alarms}")
    print(
        f"evidently DataDriftPreset: median {np.median(evidently_seconds):.1f} s, page {page_bytes / 1e6:.1f} MB, "
        f"mean drifted-column share {np.mean(evidently_shares):.2f} "
        f"(reports with any drifted column: {sum(s > 0 for s in evidently_shares)})"
    )


if __name__ == "__main__":
    main()
