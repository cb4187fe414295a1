from datetime import timedelta

import dagster as dg
import polars as pl

from alphapulse_assets.metadata import partition_metadata, table_preview
from alphapulse_assets.news.items import FUTURE_TOLERANCE, merge_rejections, merge_sightings
from alphapulse_assets.news.resources import NewsSource, NoNewsSource, SentimentModel
from alphapulse_assets.news.sentiment import aggregate_sentiment, unknown_sentiment
from alphapulse_assets.partitions import HOURLY, SINGLE_RUN
from alphapulse_assets.retries import STORAGE_RETRY_POLICY
from alphapulse_assets.storage.warehouse import WAREHOUSE_WRITERS, Upsert, Warehouse

# How sightings of an item already landed combine with new ones. The first landing fixes the publication time and
# the wording, so an item never moves between hours once counted; later sightings add their source.
_LANDING_RULES = {
    "published_at": "keep",
    "headline": "keep",
    "summary": "keep",
    "url": "keep",
    "guid": "keep",
    "sources": "union",
    "first_seen_at": "min",
    "last_seen_at": "max",
}
_REJECTION_RULES = {"first_rejected_at": "min", "last_rejected_at": "max", "occurrences": "sum"}


@dg.asset(
    partitions_def=HOURLY,
    retry_policy=STORAGE_RETRY_POLICY,
    pool=WAREHOUSE_WRITERS,
    backfill_policy=SINGLE_RUN,
    group_name="news",
    kinds={"duckdb", "polars"},
    check_specs=[
        dg.AssetCheckSpec("news_unique_items", asset="news", blocking=True),
        dg.AssetCheckSpec(
            "news_has_items", asset="news", description="the window holds headlines (warns on an empty window)"
        ),
    ],
)
def news(context: dg.AssetExecutionContext, newswire: NewsSource, warehouse: Warehouse):
    """Headlines published in each hour, counted once across sources and tagged with the symbols they mention."""
    start, end = context.partition_time_window
    ledger = (
        warehouse.query(f"SELECT * FROM {newswire.ledger_table}")
        if newswire.ledger_table and warehouse.table_exists(newswire.ledger_table)
        else None
    )
    collection = newswire.collect(start, end, ledger)
    sightings = merge_sightings(collection.items)
    known = _known_item_ids(warehouse, sightings["item_id"].to_list())
    changes = {
        "news_items": Upsert(sightings, ("item_id",), _LANDING_RULES),
        "news_rejected": Upsert(merge_rejections(collection.rejected), ("rejection_id",), _REJECTION_RULES),
    }
    if newswire.ledger_table and collection.ledger is not None:
        changes[newswire.ledger_table] = Upsert(collection.ledger, (collection.ledger.columns[0],))
    # Landing, rejections and the source's memory (ETags, files read) commit together: a crash cannot record a
    # feed as read without its items.
    warehouse.upsert(changes)

    # Nothing has ever landed from an empty drop folder or a feed without items: an empty window, not an error.
    landed = (
        warehouse.read_window("news_items", start, end, time_column="published_at")
        if warehouse.table_exists("news_items")
        else sightings.clear()
    )
    tagger = newswire.tagger()
    items = landed.with_columns(
        pl.col("published_at").dt.truncate("1h").alias("ts"),
        tagger.tag(pl.concat_str("headline", pl.col("summary").fill_null(""), separator=" ")).alias("symbols"),
    ).select(
        "item_id", "ts", "published_at", "headline", "summary", "symbols", "sources", "url", "guid", "first_seen_at"
    )
    warehouse.replace_window("news", items, start, end)
    # Each headline is counted once in the whole table, not just in this window: an item in two hours would be
    # double-counted by every feature that sums over hours.
    counted_twice = warehouse.query(
        "SELECT item_id, count(*) AS hours, min(ts) AS first_hour, max(ts) AS last_hour FROM news "
        "GROUP BY item_id HAVING count(*) > 1 ORDER BY item_id LIMIT 20"
    )

    new_ids = sightings.filter(~pl.col("item_id").is_in(known))
    elsewhere = new_ids.filter((pl.col("published_at") < start) | (pl.col("published_at") >= end))
    late = items.filter(pl.col("first_seen_at") > pl.col("ts") + timedelta(hours=1) + FUTURE_TOLERANCE)
    reasons = collection.rejected.group_by("reason").len().sort("len", descending=True)
    hours = max((end - start) / timedelta(hours=1), 1)
    yield dg.AssetCheckResult(
        check_name="news_unique_items",
        passed=counted_twice.is_empty(),
        metadata={"items_in_several_rows": counted_twice.height, "sample": table_preview(counted_twice)},
    )
    yield dg.AssetCheckResult(
        check_name="news_has_items",
        passed=items.height > 0 or isinstance(newswire, NoNewsSource),
        severity=dg.AssetCheckSeverity.WARN,
        description=_emptiness(newswire, items.height, collection.report),
        metadata={"items": items.height, "hours": int(hours)},
    )
    yield dg.MaterializeResult(
        metadata=partition_metadata(
            context,
            light={
                "dagster/row_count": items.height,
                "market_wide_items": items.filter(pl.col("symbols").list.len() == 0).height,
                "multi_source_items": items.filter(pl.col("sources").list.len() > 1).height,
                "items_per_hour": round(items.height / hours, 3),
                "sightings_collected": collection.items.height,
                "new_items_landed": new_ids.height,
                "new_items_outside_window": elsewhere.height,
                "late_items": late.height,
                "rejected_this_run": collection.rejected.height,
            },
            heavy={
                "sources": table_preview(pl.DataFrame(collection.report), rows=50)
                if collection.report
                else dg.MetadataValue.md("no sources configured"),
                "rejection_reasons": dg.MetadataValue.json({r: int(n) for r, n in reasons.iter_rows()}),
                "rejected_sample": table_preview(
                    collection.rejected.select("source", "reason", "detail", "item"), rows=10
                ),
                "new_items_outside_window_hours": dg.MetadataValue.json(
                    sorted({t.isoformat() for t in elsewhere["published_at"].dt.truncate("1h").to_list()})[:50]
                ),
                "preview": table_preview(
                    items.select("published_at", "headline", "symbols", "sources").sort("published_at").tail(10)
                ),
            },
        )
    )


def _emptiness(newswire: NewsSource, items: int, report: list[dict]) -> str:
    if isinstance(newswire, NoNewsSource):
        return "ALPHAPULSE_NEWS_SOURCE=none: price-only, the news features are null by design"
    if items:
        return f"{items} headlines in the window"
    if not report:
        return "no headlines: the source had nothing new (an empty drop folder, or every file already read)"
    return "no headlines in this window from " + ", ".join(f"{r['source']} ({r['status']})" for r in report)


def _known_item_ids(warehouse: Warehouse, item_ids: list[str]) -> list[str]:
    if not item_ids or not warehouse.table_exists("news_items"):
        return []
    return warehouse.read_keys("news_items", "item_id", item_ids)["item_id"].to_list()


@dg.asset(
    partitions_def=HOURLY,
    retry_policy=STORAGE_RETRY_POLICY,
    pool=WAREHOUSE_WRITERS,
    backfill_policy=SINGLE_RUN,
    group_name="news",
    kinds={"duckdb", "polars"},
    deps=[news],
)
def news_sentiment(
    context: dg.AssetExecutionContext, warehouse: Warehouse, newswire: NewsSource, sentiment: SentimentModel
) -> dg.MaterializeResult:
    """Per symbol-hour headline count, sentiment mean/min/max and a decayed tone; market-wide news counts for all."""
    start, end = context.partition_time_window
    if not sentiment.headlines:
        unknown = unknown_sentiment(newswire.symbols, start, end)
        warehouse.replace_window("news_sentiment", unknown, start, end)
        return dg.MaterializeResult(
            metadata=partition_metadata(
                context,
                light={
                    "dagster/row_count": unknown.height,
                    "scorer": "none (ALPHAPULSE_NEWS_SOURCE=none: counts and sentiment are unknown, stored as null)",
                },
                heavy={},
            )
        )
    # The decayed tone of the window's first hour reaches back into earlier hours' news.
    items = warehouse.read_window("news", start - sentiment.lookback(), end)
    scorer = sentiment.scorer()
    scored = items.with_columns(pl.Series("sentiment", scorer.score(items["headline"].to_list()), dtype=pl.Float64))
    aggregated = aggregate_sentiment(scored, newswire.symbols, start, end, sentiment.half_life_hours)
    warehouse.replace_window("news_sentiment", aggregated, start, end)

    in_window = scored.filter(pl.col("ts") >= start)
    # Evenly spaced through the scores, so the sample shows the most negative, the most positive and the middle.
    ranked = in_window.sort("sentiment")
    sample = ranked.gather_every(max(1, ranked.height // 11)).head(12) if ranked.height else ranked
    sample = sample.select(
        "published_at",
        "headline",
        "symbols",
        pl.col("sentiment").round(4),
        pl.Series("evidence", [scorer.explain(h) for h in sample["headline"].to_list()], dtype=pl.String),
    )
    with_news = aggregated.filter(pl.col("item_count") > 0)
    return dg.MaterializeResult(
        metadata=partition_metadata(
            context,
            light={
                "dagster/row_count": aggregated.height,
                "scorer": scorer.name,
                "half_life_hours": sentiment.half_life_hours,
                "headlines_scored": in_window.height,
                "symbol_hours_with_news": with_news.height,
                "mean_sentiment": float(in_window["sentiment"].mean()) if in_window.height else None,
            },
            heavy={"scored_headlines_sample": table_preview(sample, rows=12)},
        )
    )
