from datetime import timedelta

import dagster as dg
import numpy as np
import polars as pl

from alphapulse_assets.features.catalog import (
    CATALOG,
    FEATURE_NAMES,
    HISTORY_HOURS,
    PRICES,
    SENTIMENT,
    compute_features,
)
from alphapulse_assets.features.store import (
    FEATURE_HOURS,
    current_feature_version,
    feature_hours_frame,
    publish_snapshot,
)
from alphapulse_assets.market.assets import prices
from alphapulse_assets.market.resources import MarketSource
from alphapulse_assets.metadata import figure_png, new_figure, partition_metadata, stored_plot, table_preview
from alphapulse_assets.news.assets import news_sentiment
from alphapulse_assets.news.resources import SentimentModel
from alphapulse_assets.partitions import HOURLY, SINGLE_RUN
from alphapulse_assets.retries import STORAGE_RETRY_POLICY
from alphapulse_assets.storage.object_store import ObjectStore
from alphapulse_assets.storage.warehouse import WAREHOUSE_WRITERS, Warehouse

# Summary statistics and correlations need a sample: a single-hour run describes the trailing week instead.
SUMMARY_MIN_HOURS = 168
# Pairwise correlations cost O(features² · rows); an evenly spaced subsample of a long backfill shows the same picture.
HEATMAP_MAX_ROWS = 5000


@dg.asset(
    partitions_def=HOURLY,
    retry_policy=STORAGE_RETRY_POLICY,
    pool=WAREHOUSE_WRITERS,
    backfill_policy=SINGLE_RUN,
    group_name="features",
    kinds={"duckdb", "polars"},
    deps=[prices, news_sentiment],
)
def features(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    object_store: ObjectStore,
    market: MarketSource,
    sentiment: SentimentModel,
) -> dg.MaterializeResult:
    """Stationary point-in-time features per symbol-hour from the catalog; publishes the newest hour online."""
    start, end = context.partition_time_window
    price_rows = warehouse.read_window("prices", start - timedelta(hours=HISTORY_HOURS[PRICES]), end)
    sentiment_rows = warehouse.read_window("news_sentiment", start - timedelta(hours=HISTORY_HOURS[SENTIMENT]), end)
    frame = compute_features(price_rows, sentiment_rows, market.symbols, start, end)
    version = current_feature_version(sentiment)
    warehouse.replace_windows(
        {"features": frame, FEATURE_HOURS: feature_hours_frame(start, end, version, context.run.run_id)},
        start,
        end,
        exact_columns=True,
    )
    published = publish_snapshot(warehouse, object_store, frame, version)

    nulls = frame.select(pl.col(FEATURE_NAMES).null_count()).row(0, named=True)
    sample = frame
    if end - start < timedelta(hours=SUMMARY_MIN_HOURS):
        sample = warehouse.read_window("features", end - timedelta(hours=SUMMARY_MIN_HOURS), end)
    sample_span = f"{sample['ts'].min().isoformat()} .. {sample['ts'].max().isoformat()} ({sample.height} rows)"
    return dg.MaterializeResult(
        metadata=partition_metadata(
            context,
            light={
                "dagster/row_count": frame.height,
                "feature_version": version,
                "feature_count": len(FEATURE_NAMES),
                "null_cells": int(sum(nulls.values())),
                "rows_with_any_null": _rows_with_any_null(frame),
                "online_snapshot": published,
            },
            heavy={
                "null_counts": dg.MetadataValue.json({n: int(c) for n, c in nulls.items()}),
                "summary_sample": sample_span,
                "summary": dg.MetadataValue.md(_summary_markdown(feature_summary(sample), nulls)),
                "correlation_heatmap": stored_plot(
                    object_store,
                    f"plots/features/{start:%Y%m%dT%H}-{end:%Y%m%dT%H}-correlations.png",
                    _correlation_heatmap(sample),
                    "feature correlation heatmap",
                ),
                "preview": table_preview(frame.sort("ts", "symbol", descending=[True, False])),
            },
        )
    )


def _rows_with_any_null(frame: pl.DataFrame) -> int:
    return int(frame.select(pl.any_horizontal(pl.col(FEATURE_NAMES).is_null()).sum()).item())


def feature_summary(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per catalog feature: its family, unit and distribution in `frame`."""
    values = frame.select(FEATURE_NAMES)
    stats = {
        "nulls": values.null_count(),
        "mean": values.mean(),
        "std": values.std(),
        "min": values.min(),
        "median": values.median(),
        "max": values.max(),
    }
    return pl.DataFrame(
        {
            "feature": list(FEATURE_NAMES),
            "family": [f.family for f in CATALOG],
            "unit": [f.unit for f in CATALOG],
            **{name: stat.cast(pl.Float64).row(0) for name, stat in stats.items()},
        }
    )


def _summary_markdown(summary: pl.DataFrame, window_nulls: dict[str, int]) -> str:
    lines = [
        "| feature | family | unit | nulls (this run) | nulls (sample) | mean | std | min | median | max |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in summary.iter_rows(named=True):
        stats = " | ".join("" if row[k] is None else f"{row[k]:.4g}" for k in ("mean", "std", "min", "median", "max"))
        lines.append(
            f"| {row['feature']} | {row['family']} | {row['unit']} | {window_nulls[row['feature']]} "
            f"| {int(row['nulls'])} | {stats} |"
        )
    return "\n".join(lines)


def _correlation_heatmap(sample: pl.DataFrame) -> bytes:
    """Pairwise Pearson correlations over the rows where both features are present."""
    step = max(1, -(-sample.height // HEATMAP_MAX_ROWS))
    matrix = sample.gather_every(step).select(FEATURE_NAMES).cast(pl.Float64).fill_null(np.nan).to_numpy()
    n = len(FEATURE_NAMES)
    corr = np.full((n, n), np.nan)
    present = ~np.isnan(matrix)
    for i in range(n):
        for j in range(i, n):
            both = present[:, i] & present[:, j]
            x, y = matrix[both, i], matrix[both, j]
            if both.sum() > 2 and x.std() > 0 and y.std() > 0:
                corr[i, j] = corr[j, i] = float(np.corrcoef(x, y)[0, 1])
    # Wider than the other plots (the cell scrolls): 65 feature names need the room to stay readable.
    figure, axis = new_figure(11, 10)
    image = axis.imshow(corr, cmap="RdBu_r", vmin=-1, vmax=1)
    axis.set_xticks(range(n), FEATURE_NAMES, rotation=90, fontsize=6)
    axis.set_yticks(range(n), FEATURE_NAMES, fontsize=6)
    axis.set_title(f"feature correlations over {len(matrix)} rows (blank: undefined)")
    figure.colorbar(image, ax=axis, shrink=0.6)
    return figure_png(figure)
