import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl

from alphapulse_assets.features.indicators import (
    FEATURE_CATALOG,
    FEATURE_NAMES,
    LOOKBACK_HOURS,
    compute_features,
    feature_version,
    latest_rows,
)
from alphapulse_assets.market.assets import prices
from alphapulse_assets.market.resources import MarketSource
from alphapulse_assets.metadata import partition_metadata, table_preview
from alphapulse_assets.news.assets import news_sentiment
from alphapulse_assets.partitions import HOURLY, SINGLE_RUN
from alphapulse_assets.storage.object_store import ObjectStore
from alphapulse_assets.storage.warehouse import Warehouse
from alphapulse_serving.contract import SNAPSHOT_KEY


@dg.asset(
    partitions_def=HOURLY,
    backfill_policy=SINGLE_RUN,
    group_name="features",
    kinds={"duckdb", "polars"},
    deps=[prices, news_sentiment],
)
def features(
    context: dg.AssetExecutionContext, warehouse: Warehouse, object_store: ObjectStore, market: MarketSource
) -> dg.MaterializeResult:
    """Stationary point-in-time features per symbol-hour; also publishes the newest hour as the online snapshot."""
    start, end = context.partition_time_window
    history_start = start - timedelta(hours=LOOKBACK_HOURS)
    price_rows = warehouse.read_window("prices", history_start, end)
    sentiment_rows = warehouse.read_window("news_sentiment", history_start, end)
    frame = compute_features(price_rows, sentiment_rows, market.symbols, start, end)
    warehouse.replace_window("features", frame, start, end)

    version = feature_version()
    published = _publish_snapshot(object_store, frame, version)
    nulls = {name: int(frame[name].null_count()) for name in FEATURE_NAMES}
    return dg.MaterializeResult(
        metadata=partition_metadata(
            context,
            light={
                "dagster/row_count": frame.height,
                "feature_version": version,
                "feature_count": len(FEATURE_NAMES),
                "rows_with_any_null": int(
                    frame.select(pl.any_horizontal(pl.col(FEATURE_NAMES).is_null())).sum().item()
                ),
                "online_snapshot": published,
            },
            heavy={
                "null_counts": dg.MetadataValue.json(nulls),
                "catalog": dg.MetadataValue.md(
                    "\n".join(
                        ["| feature | family | lookback (h) | formula |", "| --- | --- | --- | --- |"]
                        + [f"| {f.name} | {f.family} | {f.lookback_hours} | {f.formula} |" for f in FEATURE_CATALOG]
                    )
                ),
                "preview": table_preview(frame.sort("ts", descending=True)),
            },
        )
    )


def _publish_snapshot(object_store: ObjectStore, frame: pl.DataFrame, version: str) -> str:
    """Write the newest row per symbol for the API, unless the snapshot already holds a newer hour (a backfill
    of old history must not roll the online features back)."""
    newest = latest_rows(frame)
    newest_ts = newest["ts"].max()
    if object_store.exists(SNAPSHOT_KEY):
        current = json.loads(object_store.get_bytes(SNAPSHOT_KEY))
        current_ts = max(datetime.fromisoformat(row["ts"]) for row in current["rows"].values())
        if current_ts > newest_ts and current.get("feature_version") == version:
            return f"kept: snapshot already at {current_ts.isoformat()}"
    payload = {
        "feature_version": version,
        "feature_names": list(FEATURE_NAMES),
        "generated_at": datetime.now(UTC).isoformat(),
        "rows": {
            row["symbol"]: {"ts": row["ts"].isoformat(), "values": {n: row[n] for n in FEATURE_NAMES}}
            for row in newest.to_dicts()
        },
    }
    object_store.put_bytes(SNAPSHOT_KEY, json.dumps(payload, indent=1, allow_nan=False).encode())
    return f"published: {newest_ts.isoformat()}"
