"""The Evidently data-drift report (DataDriftPreset): a browsable HTML page a person opens from the UI.

Evidently's own per-column tests count every column at its default thresholds, with no correction for testing
seventy at once or for autocorrelated rows, so on a 72-hour window it flags many columns on noise alone. Its
drifted share is recorded beside ours for comparison; our sensors act on `measure_drift`, not on it.
"""

from __future__ import annotations

import polars as pl

# Evidently's runtime grows with the reference; a seeded sample of this size keeps a report to a few seconds.
MAX_REFERENCE_ROWS = 5000


def evidently_drift_html(
    reference: pl.DataFrame, current: pl.DataFrame, columns: list[str], seed: int = 0
) -> tuple[str, float]:
    """HTML of a DataDriftPreset report of `columns` and Evidently's drifted-column share."""
    from evidently import Report  # ~5 s to import: only hours that write a report pay for it
    from evidently.presets import DataDriftPreset

    if reference.height > MAX_REFERENCE_ROWS:
        reference = reference.sample(MAX_REFERENCE_ROWS, seed=seed)
    snapshot = Report([DataDriftPreset()]).run(
        current_data=current.select(columns).to_pandas(), reference_data=reference.select(columns).to_pandas()
    )
    share = next(
        float(metric["value"]["share"])
        for metric in snapshot.dict()["metrics"]
        if metric["metric_name"].startswith("DriftedColumnsCount")
    )
    return snapshot.get_html_str(as_iframe=False), share
