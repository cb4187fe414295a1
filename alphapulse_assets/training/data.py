"""Reading labelled training and evaluation rows from the warehouse."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from alphapulse_assets.retries import NotRetryable
from alphapulse_assets.storage.warehouse import Warehouse
from alphapulse_assets.training.dataset import labelled_rows


def load_labelled(
    warehouse: Warehouse,
    symbols: list[str],
    start: datetime,
    end: datetime,
    min_coverage: float,
    horizon_hours: int = 1,
    dead_band: float = 0.0,
) -> pl.DataFrame:
    """`labelled_rows` of the warehouse's features and prices; fails clearly when too few hours are there (rows
    whose returns are unknown count as missing)."""
    features = warehouse.read_window("features", start, end)
    prices = warehouse.read_window("prices", start, end + timedelta(hours=horizon_hours))
    frame = labelled_rows(features, prices, symbols, start, end, horizon_hours, dead_band)
    expected = int((end - start) / timedelta(hours=1)) * len(symbols)
    if expected == 0 or frame.height < min_coverage * expected:
        raise NotRetryable(
            description=(
                f"only {frame.height} of {expected} labelled (symbol, hour) rows in "
                f"[{start.isoformat()}, {end.isoformat()}): materialize prices, news, news_sentiment and features "
                f"for that range first (e.g. a backfill), or shorten ALPHAPULSE_TRAIN_DAYS / ALPHAPULSE_VALIDATION_DAYS"
            )
        )
    return frame


def single_row(warehouse: Warehouse, table: str, hour: datetime, what: str) -> dict:
    """The one row a model-side asset wrote for `hour`, or a clear failure naming what to run first."""
    if not warehouse.table_exists(table):
        raise NotRetryable(f"no {table} table yet: materialize {what} for partition {hour:%Y-%m-%d-%H:%M} first")
    rows = warehouse.read_window(table, hour, hour + timedelta(hours=1))
    if rows.height != 1:
        raise NotRetryable(
            f"expected one {table} row for {hour:%Y-%m-%d-%H:%M}, found {rows.height}: materialize {what} first"
        )
    return rows.row(0, named=True)
