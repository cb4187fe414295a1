from datetime import timedelta

import dagster as dg
import polars as pl

from alphapulse_assets.market.binance_archive import REJECTED_SCHEMA
from alphapulse_assets.market.quality import (
    extreme_moves,
    missing_hours,
    ohlc_inconsistent,
    out_of_order,
    quarantine,
)
from alphapulse_assets.market.resources import MarketSource, PriceQuality
from alphapulse_assets.metadata import date_axis, figure_png, new_figure, partition_metadata, stored_plot, table_preview
from alphapulse_assets.partitions import HOURLY, SINGLE_RUN
from alphapulse_assets.retries import STORAGE_RETRY_POLICY, NotRetryable
from alphapulse_assets.storage.object_store import ObjectStore
from alphapulse_assets.storage.warehouse import WAREHOUSE_WRITERS, Warehouse

_BLOCKING = ("prices_unique", "prices_ohlc_valid")
_WARNING = ("prices_complete", "prices_no_rejected_rows", "prices_no_extreme_moves", "prices_source_in_order")
_MOVE_HISTORY = timedelta(days=7)


@dg.asset(
    partitions_def=HOURLY,
    retry_policy=STORAGE_RETRY_POLICY,
    pool=WAREHOUSE_WRITERS,
    backfill_policy=SINGLE_RUN,
    group_name="market",
    kinds={"duckdb", "polars"},
    check_specs=[dg.AssetCheckSpec(n, asset="prices", blocking=True) for n in _BLOCKING]
    + [dg.AssetCheckSpec(n, asset="prices") for n in _WARNING],
)
def prices(
    context: dg.AssetExecutionContext,
    market: MarketSource,
    warehouse: Warehouse,
    price_quality: PriceQuality,
    object_store: ObjectStore,
) -> dg.MaterializeResult:
    """Hourly OHLCV candles per symbol as exact decimals; unreadable or inconsistent rows go to prices_rejected."""
    start, end = context.partition_time_window
    batch = market.fetch_prices(start, end)
    unordered = out_of_order(batch.prices)
    accepted, quarantined = quarantine(batch.prices)
    rejected = pl.concat([batch.rejected, quarantined]).cast(REJECTED_SCHEMA).sort("ts", "symbol", "source")

    duplicates = accepted.filter(pl.struct("ts", "symbol").is_duplicated())
    inconsistent = accepted.filter(ohlc_inconsistent())
    if duplicates.height or inconsistent.height:
        # Quarantine guarantees neither can happen; if one does, nothing is written.
        raise NotRetryable(
            f"{duplicates.height} duplicate and {inconsistent.height} OHLC-inconsistent rows survived quarantine",
            metadata={"duplicates": table_preview(duplicates), "inconsistent": table_preview(inconsistent)},
        )
    gaps = missing_hours(accepted, market.symbols, start, end)
    history = (
        warehouse.read_window("prices", start - _MOVE_HISTORY, start).select(accepted.columns)
        if warehouse.table_exists("prices")
        else accepted.clear()
    )
    moves = extreme_moves(pl.concat([history, accepted]), price_quality.extreme_move_z).filter(pl.col("ts") >= start)
    warehouse.replace_windows({"prices": accepted, "prices_rejected": rejected}, start, end)

    reasons = rejected.group_by("reason").len().sort("len", descending=True)
    checks = [
        dg.AssetCheckResult(check_name="prices_unique", passed=True, metadata={"duplicate_rows": 0}),
        dg.AssetCheckResult(check_name="prices_ohlc_valid", passed=True, metadata={"inconsistent_rows": 0}),
        dg.AssetCheckResult(
            check_name="prices_complete",
            passed=gaps.is_empty(),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"missing_hours": int(gaps["hours"].sum() or 0), "gaps": table_preview(gaps, rows=20)},
        ),
        dg.AssetCheckResult(
            check_name="prices_no_rejected_rows",
            passed=rejected.is_empty(),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "rejected_rows": rejected.height,
                "reasons": dg.MetadataValue.json({r: int(n) for r, n in reasons.iter_rows()}),
                "sample": table_preview(rejected.select("ts", "symbol", "source", "line", "reason"), rows=10),
            },
        ),
        dg.AssetCheckResult(
            check_name="prices_source_in_order",
            passed=unordered.is_empty(),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"out_of_order_rows": unordered.height, "rows": table_preview(unordered, rows=10)},
        ),
        dg.AssetCheckResult(
            check_name="prices_no_extreme_moves",
            passed=moves.is_empty(),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "threshold_robust_z": price_quality.extreme_move_z,
                "flagged_hours": moves.height,
                "flagged": table_preview(moves.sort("robust_z", descending=True), rows=10),
            },
        ),
    ]
    return dg.MaterializeResult(
        metadata=partition_metadata(
            context,
            light={
                "dagster/row_count": accepted.height,
                "rejected_rows": rejected.height,
                "missing_hours": int(gaps["hours"].sum() or 0),
                "window": f"{start.isoformat()} .. {end.isoformat()}",
                "symbols": ", ".join(market.symbols),
            },
            heavy={
                "last_close": dg.MetadataValue.json(
                    {r["symbol"]: str(r["close"]) for r in accepted.sort("ts").group_by("symbol").last().to_dicts()}
                ),
                "close": stored_plot(
                    object_store, f"plots/prices/{start:%Y%m%dT%H}-{end:%Y%m%dT%H}.png", _close_plot(accepted), "close"
                ),
                "preview": table_preview(accepted.sort("ts", "symbol", descending=[True, False])),
            },
        ),
        check_results=checks,
    )


def _close_plot(frame: pl.DataFrame) -> bytes:
    figure, axis = new_figure()
    for symbol, rows in frame.sort("ts").group_by("symbol", maintain_order=True):
        closes = rows["close"].cast(pl.Float64).to_numpy()
        axis.plot(rows["ts"].to_list(), closes / closes[0], label=symbol[0], linewidth=1)
    date_axis(axis)
    axis.set_ylabel("close / first close")
    axis.legend(loc="upper left")
    return figure_png(figure)
