import dagster as dg
import polars as pl

from alphapulse_assets.market.checks import check_complete, check_ohlc, check_unique
from alphapulse_assets.market.resources import MarketSource
from alphapulse_assets.metadata import new_figure, partition_metadata, png_markdown, table_preview
from alphapulse_assets.partitions import HOURLY, SINGLE_RUN
from alphapulse_assets.storage.warehouse import Warehouse

_CHECKS = ("prices_complete", "prices_unique", "prices_ohlc_valid")


@dg.asset(
    partitions_def=HOURLY,
    backfill_policy=SINGLE_RUN,
    group_name="market",
    kinds={"duckdb", "polars"},
    check_specs=[dg.AssetCheckSpec(name, asset="prices", blocking=True) for name in _CHECKS],
)
def prices(context: dg.AssetExecutionContext, market: MarketSource, warehouse: Warehouse) -> dg.MaterializeResult:
    """Hourly OHLCV candles per symbol from the configured market source."""
    start, end = context.partition_time_window
    frame = market.fetch_prices(start, end)
    rules = [check_complete(frame, market.symbols, start, end), check_unique(frame), check_ohlc(frame)]
    failed = [r for r in rules if not r.passed]
    if failed:
        # Blocking: nothing is written, so downstream never reads a window that failed its checks.
        raise dg.Failure(
            description="; ".join(f"{r.name}: {r.failure_count} rows violate '{r.description}'" for r in failed),
            metadata={r.name: table_preview(r.failures) for r in failed},
        )
    warehouse.replace_window("prices", frame, start, end)
    return dg.MaterializeResult(
        metadata=partition_metadata(
            context,
            light={
                "dagster/row_count": frame.height,
                "window": f"{start.isoformat()} .. {end.isoformat()}",
                "symbols": ", ".join(market.symbols),
            },
            heavy={
                "last_close": dg.MetadataValue.json(
                    {row["symbol"]: row["close"] for row in frame.sort("ts").group_by("symbol").last().to_dicts()}
                ),
                "close": _close_plot(frame),
                "preview": table_preview(frame.sort("ts", "symbol", descending=[True, False])),
            },
        ),
        check_results=[
            dg.AssetCheckResult(
                check_name=r.name, passed=r.passed, metadata={"description": r.description, "failures": 0}
            )
            for r in rules
        ],
    )


def _close_plot(frame: pl.DataFrame) -> dg.MetadataValue:
    figure, axis = new_figure()
    for symbol, rows in frame.sort("ts").group_by("symbol", maintain_order=True):
        closes = rows["close"].to_numpy()
        axis.plot(rows["ts"].to_list(), closes / closes[0], label=symbol[0], linewidth=1)
    axis.set_ylabel("close / first close")
    axis.legend(loc="upper left")
    return png_markdown(figure, "normalised close")
