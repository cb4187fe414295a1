"""Headline sentiment: a scorer interface, the VADER lexicon scorer, and per symbol-hour aggregation."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cached_property
from typing import Protocol

import polars as pl


class SentimentScorer(Protocol):
    """Anything that maps texts to scores in [-1, 1]; a locally installed transformer can replace VADER."""

    name: str

    def score(self, texts: list[str]) -> list[float]: ...


class VaderScorer:
    """VADER's compound score. The lexicon ships inside the `vaderSentiment` wheel: nothing is downloaded."""

    name = "vader-3.3.2"

    @cached_property
    def _analyzer(self):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        return SentimentIntensityAnalyzer()

    def score(self, texts: list[str]) -> list[float]:
        return [float(self._analyzer.polarity_scores(text)["compound"]) for text in texts]


SENTIMENT_SCHEMA = {
    "ts": pl.Datetime("us", "UTC"),
    "symbol": pl.String,
    "item_count": pl.Int64,
    "symbol_item_count": pl.Int64,
    "market_item_count": pl.Int64,
    "sentiment_mean": pl.Float64,
    "sentiment_min": pl.Float64,
    "sentiment_max": pl.Float64,
}


def aggregate_sentiment(
    scored_news: pl.DataFrame, symbols: list[str] | tuple[str, ...], start: datetime, end: datetime
) -> pl.DataFrame:
    """One row per (hour, symbol) in [start, end), including hours without news (count 0, statistics null).

    `scored_news` has `ts` (the hour the item was published in), `symbols` (the tags; empty means market-wide)
    and `sentiment`. Market-wide items count towards every symbol.
    """
    hours = pl.datetime_range(start, end - timedelta(hours=1), "1h", time_zone="UTC", eager=True).alias("ts")
    grid = pl.DataFrame(hours).join(pl.DataFrame({"symbol": list(symbols)}), how="cross")
    if scored_news.height == 0:
        per_symbol = pl.DataFrame(
            schema={k: SENTIMENT_SCHEMA[k] for k in ("ts", "symbol")}
            | {"sentiment": pl.Float64, "is_market": pl.Boolean}
        )
    else:
        tagged = (
            scored_news.filter(pl.col("symbols").list.len() > 0)
            .explode("symbols")
            .rename({"symbols": "symbol"})
            .filter(pl.col("symbol").is_in(list(symbols)))
            .select("ts", "symbol", "sentiment", pl.lit(False).alias("is_market"))
        )
        market = (
            scored_news.filter(pl.col("symbols").list.len() == 0)
            .join(pl.DataFrame({"symbol": list(symbols)}), how="cross")
            .select("ts", "symbol", "sentiment", pl.lit(True).alias("is_market"))
        )
        per_symbol = pl.concat([tagged, market])
    stats = per_symbol.group_by("ts", "symbol").agg(
        pl.len().cast(pl.Int64).alias("item_count"),
        (~pl.col("is_market")).sum().cast(pl.Int64).alias("symbol_item_count"),
        pl.col("is_market").sum().cast(pl.Int64).alias("market_item_count"),
        pl.col("sentiment").mean().alias("sentiment_mean"),
        pl.col("sentiment").min().alias("sentiment_min"),
        pl.col("sentiment").max().alias("sentiment_max"),
    )
    return (
        grid.join(stats, on=["ts", "symbol"], how="left")
        .with_columns(pl.col("item_count", "symbol_item_count", "market_item_count").fill_null(0))
        .select(list(SENTIMENT_SCHEMA))
        .cast(SENTIMENT_SCHEMA)
        .sort("ts", "symbol")
    )
