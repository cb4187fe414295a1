"""Drift report cost and calibration: our measure_drift against Evidently's DataDriftPreset on the same data.

    uv run python bench/drift.py [--trials 20]

70 features (the catalog's size), a 90-day reference of two symbols (4,320 rows) and a 72-hour current window
(144 rows), i.i.d. normal with no shift: every flagged column is a false alarm.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl

from alphapulse_assets.monitoring.drift import measure_drift

N_FEATURES, REFERENCE_ROWS, CURRENT_ROWS = 70, 90 * 24 * 2, 72 * 2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
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
