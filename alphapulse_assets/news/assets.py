from datetime import timedelta

import dagster as dg
import polars as pl

from alphapulse_assets.metadata import partition_metadata, table_preview
from alphapulse_assets.news.resources import NewsSource
from alphapulse_assets.news.sentiment import VaderScorer, aggregate_sentiment
from alphapulse_assets.partitions import HOURLY, SINGLE_RUN
from alphapulse_assets.storage.warehouse import Warehouse


@dg.asset(partitions_def=HOURLY, backfill_policy=SINGLE_RUN, group_name="news", kinds={"duckdb", "polars"})
def news(context: dg.AssetExecutionContext, newswire: NewsSource, warehouse: Warehouse) -> dg.MaterializeResult:
    """Headlines published in each hour, tagged with the symbols they mention (none: market-wide)."""
    start, end = context.partition_time_window
    items = newswire.fetch_news(start, end)
    dupes = items.filter(pl.col("item_id").is_duplicated())
    if dupes.height:
        raise dg.Failure(f"{dupes.height} headlines share an item_id", metadata={"duplicates": table_preview(dupes)})
    warehouse.replace_window("news", items, start, end)
    market_wide = items.filter(pl.col("symbols").list.len() == 0).height
    return dg.MaterializeResult(
        metadata=partition_metadata(
            context,
            light={
                "dagster/row_count": items.height,
                "market_wide_items": market_wide,
                "items_per_hour": round(items.height / max((end - start) / timedelta(hours=1), 1), 3),
            },
            heavy={"preview": table_preview(items.select("published_at", "headline", "symbols", "source").tail(10))},
        )
    )


@dg.asset(partitions_def=HOURLY, backfill_policy=SINGLE_RUN, group_name="news", kinds={"duckdb", "polars"}, deps=[news])
def news_sentiment(
    context: dg.AssetExecutionContext, warehouse: Warehouse, newswire: NewsSource
) -> dg.MaterializeResult:
    """Per symbol-hour headline count and VADER sentiment (mean, min, max); market-wide news counts for all."""
    start, end = context.partition_time_window
    items = warehouse.read_window("news", start, end)
    scorer = VaderScorer()
    scored = items.with_columns(pl.Series("sentiment", scorer.score(items["headline"].to_list()), dtype=pl.Float64))
    aggregated = aggregate_sentiment(scored, newswire.symbols, start, end)
    warehouse.replace_window("news_sentiment", aggregated, start, end)
    sample = (
        scored.sort("sentiment").gather_every(max(1, scored.height // 10)).select("headline", "sentiment", "symbols")
    )
    with_news = aggregated.filter(pl.col("item_count") > 0)
    return dg.MaterializeResult(
        metadata=partition_metadata(
            context,
            light={
                "dagster/row_count": aggregated.height,
                "scorer": scorer.name,
                "headlines_scored": scored.height,
                "symbol_hours_with_news": with_news.height,
                "mean_sentiment": float(scored["sentiment"].mean()) if scored.height else None,
            },
            heavy={"scored_headlines_sample": table_preview(sample, rows=12)},
        )
    )
