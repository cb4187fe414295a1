"""Reading labelled training and evaluation rows from the warehouse, and the searches run on them."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from alphapulse_assets.features.store import require_feature_version
from alphapulse_assets.market.resources import MarketSource
from alphapulse_assets.retries import NotRetryable
from alphapulse_assets.storage.warehouse import Warehouse
from alphapulse_assets.training.dataset import labelled_rows
from alphapulse_assets.training.resources import ModelPolicy
from alphapulse_assets.training.tuning import TrainingSet, TuningConfig, TuningResult, tune


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


def load_window(warehouse: Warehouse, market: MarketSource, policy: ModelPolicy, start, end) -> pl.DataFrame:
    """Labelled rows in [start, end) with the policy's horizon, dead band and coverage."""
    return load_labelled(
        warehouse, market.symbols, start, end, policy.min_label_coverage, policy.horizon_hours, policy.dead_band
    )


def training_rows(
    warehouse: Warehouse,
    market: MarketSource,
    policy: ModelPolicy,
    feature_version: str,
    decision: datetime,
    who: str,
) -> pl.DataFrame:
    """The labelled rows the model decided at `decision` is tuned and fitted on."""
    windows = policy.windows(decision)
    # Training and validation rows must be of the version the online features will have, or the model cannot serve.
    require_feature_version(
        warehouse, windows.train_start, windows.validation_end, feature_version, f"{who} {decision:%Y-%m-%d %H:00}"
    )
    # model_evaluation scores the validation window once the search is over: find out now, in seconds, that its
    # rows are there, not after minutes of tuning.
    load_window(warehouse, market, policy, windows.validation_start, windows.validation_end)
    return load_window(warehouse, market, policy, windows.train_start, windows.train_end)


def tune_or_fail(data: TrainingSet, config: TuningConfig, what: str) -> TuningResult:
    try:
        return tune(data, config)
    except ValueError as exc:  # folds that cannot be formed or trained: a data or configuration problem
        raise NotRetryable(f"{what}: {exc}") from exc


def last_search(warehouse: Warehouse, policy: ModelPolicy, decision: datetime, feature_version: str) -> dict | None:
    """The search whose configuration a retrain at `decision` refits: the newest retrain before it that searched,
    when it is less than `retune_every_hours` old and searched these families on features of this version; None
    when this retrain must search (point in time: only retrains decided before it count)."""
    if policy.retune_every_hours <= 0 or not warehouse.table_exists("trained_model"):
        return None
    since = decision - timedelta(hours=policy.retune_every_hours)
    rows = warehouse.query("select * from trained_model where ts < ? and ts > ? order by ts desc", [decision, since])
    if rows.is_empty() or "tuned_at" not in rows.columns:
        return None
    searched = rows.filter(pl.col("tuned_at") == pl.col("ts"))
    if searched.is_empty():
        return None
    row = searched.row(0, named=True)
    if row["feature_version"] != feature_version or row["family"] not in policy.model_families:
        return None
    return row
