"""docs/features.md, generated from the catalog: `make docs` (python -m alphapulse_assets.features.docs)."""

from __future__ import annotations

import sys
from pathlib import Path

from alphapulse_assets.features.catalog import (
    CATALOG,
    EXPONENTIAL_HISTORY_HOURS,
    FAMILIES,
    HISTORY_HOURS,
    MARKET_REFERENCE,
    WARMUP_HOURS,
)

PAGE = Path(__file__).resolve().parents[2] / "docs" / "features.md"

INTRODUCTION = f"""# Feature catalog

<!-- Generated from alphapulse_assets/features/catalog.py by `make docs`; a test fails when this page is stale. -->

{len(CATALOG)} features per symbol-hour, in {len(FAMILIES)} families. Each is declared once in
`alphapulse_assets/features/catalog.py` (name, formula, lookback, unit, family); that declaration computes it,
generates this page and fills the `features` asset's metadata. The warehouse table `features` has the columns
`ts` (the hour's start, UTC), `symbol`, then one column per feature, named as below.

## What every feature promises

- **Point in time.** The row for hour `t` uses only the bars of hours `<= t` and the news published before `t + 1h`:
  what is known when hour `t` closes. Perturbing any input after `t` changes nothing at or before `t` (tested).
- **Fixed windows, honest nulls.** Windows are a fixed number of hours on a complete hourly grid. A missing hour
  makes every value that reads it null: a window feature for the `lookback` hours after it, a return (which reads
  two closes) at the two hours whose endpoints it is. The first `warm-up` hours of data are null too. Undefined
  values (a zero range, a constant window, an hour without headlines for a mean) are null. Nothing is ever 0 for
  "unknown", forward-filled, NaN or infinite (tested feature by feature against the declared lookback and
  warm-up).
- **Chunk invariance.** A backfill chunked any way gives the same table, to 1e-9 (tested with single-hour and
  irregular chunks, with and without gaps).
- **TA-Lib exactness.** The classic indicators are TA-Lib's own functions, called on each run of complete hours;
  they equal TA-Lib on the whole series to 1e-6 after warm-up (tested on the pure function and through the asset).
  TA-Lib's exponential smoothings (RSI, NATR, ADX, MACD) formally depend on the whole past: they are computed from
  {EXPONENTIAL_HISTORY_HOURS} hours back, where the start's influence is below 1e-12. After a missing hour they
  restart, as TA-Lib does at the start of a series, and are null for TA-Lib's own lookback (their warm-up).
- **Versioned.** `feature_version` is a hash of every definition below, the TA-Lib C library's version, the
  cross-asset reference and the sentiment configuration (`ALPHAPULSE_SENTIMENT_SCORER`,
  `ALPHAPULSE_SENTIMENT_HALF_LIFE_HOURS`). Every materialization records it (metadata `feature_version`, table
  `feature_hours`), every model carries the version it trained on, training and `predictions` refuse hours of
  another version, and the API abstains rather than score online features of another version.

Reads per run: prices {HISTORY_HOURS["prices"]} hours and news sentiment {HISTORY_HOURS["news_sentiment"]} hours
before the first hour materialized. The longest warm-up is {WARMUP_HOURS} hours. The cross-asset reference is
{MARKET_REFERENCE}; without it in `ALPHAPULSE_SYMBOLS` the cross-asset features are null.

Columns: **lookback** = the value at `t` depends on hours `t - lookback .. t`; **warm-up** = hours of complete
data needed before the first value (after the start of data or a missing hour).
"""


def render_catalog() -> str:
    sections = [INTRODUCTION]
    for family in FAMILIES:
        rows = [f for f in CATALOG if f.family == family]
        sections.append(f"## {family} ({len(rows)})\n")
        sections.append("| feature | formula | unit | lookback (h) | warm-up (h) | reads |")
        sections.append("| --- | --- | --- | ---: | ---: | --- |")
        for f in rows:
            formula = f.formula.replace("|", "\\|")
            reads = ", ".join(f.sources)
            sections.append(f"| `{f.name}` | {formula} | {f.unit} | {f.lookback_hours} | {f.warmup_hours} | {reads} |")
        sections.append("")
    return "\n".join(sections)


def main() -> int:
    PAGE.write_text(render_catalog())
    print(f"wrote {PAGE} ({len(CATALOG)} features)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
