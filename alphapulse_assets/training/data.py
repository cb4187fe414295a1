"""Reading labelled training and evaluation rows from the warehouse."""

from __future__ import annotations

from datetime import datetime, timedelta

import dagster as dg
import polars as pl

from alphapulse_assets.storage.warehouse import Warehouse
from alphapulse_assets.training.dataset import forward_returns, labelled_frame


def load_labelled(
    warehouse: Warehouse,
    symbols: list[str],
    start: datetime,
    end: datetime,
    min_coverage: float,
    horizon_hours: int = 1,
    dead_band: float = 0.0,
) -> pl.DataFrame:
    """Feature rows in [start, end) with their returns and direction label; fails clearly when too few hours are
    there.

    Rows whose returns are unknown (a price the label needs is missing) are left out and counted in the error.
    Rows inside the dead band stay, with a null `label_up`: they are traded in a backtest but are not labels.
    """
    features = warehouse.read_window("features", start, end)
    prices = warehouse.read_window("prices", start, end + timedelta(hours=horizon_hours))
    returns = forward_returns(prices, symbols, start, end, horizon_hours)
    frame = labelled_frame(features, returns, dead_band).filter(
        pl.all_horizontal(pl.col(c).is_not_null() & pl.col(c).is_not_nan() for c in ("next_return", "forward_return"))
    )
    expected = int((end - start) / timedelta(hours=1)) * len(symbols)
    if expected == 0 or frame.height < min_coverage * expected:
        raise dg.Failure(
            description=(
                f"only {frame.height} of {expected} labelled (symbol, hour) rows in "
                f"[{start.isoformat()}, {end.isoformat()}): materialize prices, news, news_sentiment and features "
                f"for that range first (e.g. a backfill), or shorten ALPHAPULSE_TRAIN_DAYS / ALPHAPULSE_VALIDATION_DAYS"
            )
        )
    return frame.sort("ts", "symbol")


def single_row(warehouse: Warehouse, table: str, hour: datetime, what: str) -> dict:
    """The one row a model-side asset wrote for `hour`, or a clear failure naming what to run first."""
    if not warehouse.table_exists(table):
        raise dg.Failure(f"no {table} table yet: materialize {what} for partition {hour:%Y-%m-%d-%H:%M} first")
    rows = warehouse.read_window(table, hour, hour + timedelta(hours=1))
    if rows.height != 1:
        raise dg.Failure(
            f"expected one {table} row for {hour:%Y-%m-%d-%H:%M}, found {rows.height}: materialize {what} first"
        )
    return rows.row(0, named=True)
