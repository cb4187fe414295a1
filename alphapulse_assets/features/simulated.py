"""The catalog's features of the simulated market and newswire, computed in memory without the warehouse: what the
features asset would hold, for calibrating the monitors on the pipeline's own features."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from alphapulse_assets.features.catalog import HISTORY_HOURS, compute_features
from alphapulse_assets.news.sentiment import aggregate_sentiment, decay_window, make_scorer
from alphapulse_assets.simulation import SimulatedWorld


def simulated_features(
    symbols: list[str],
    start: datetime,
    end: datetime,
    seed: int = 7,
    news_signal_strength: float = 0.35,
    regime_change: datetime | None = None,
    regime_vol_multiplier: float = 3.0,
    scorer: str = "vader",
    half_life_hours: float = 6.0,
) -> pl.DataFrame:
    """Every catalog feature for every (symbol, hour) in [start, end), from the seeded world's candles and
    headlines (scored and aggregated as the news assets do)."""
    world = SimulatedWorld(seed, news_signal_strength, regime_change, regime_vol_multiplier)
    first = start - timedelta(hours=max(HISTORY_HOURS.values()))
    items = world.news(symbols, first - decay_window(half_life_hours), end)
    scored = items.with_columns(pl.Series("sentiment", make_scorer(scorer).score(items["headline"].to_list())))
    sentiment = aggregate_sentiment(scored, symbols, first, end, half_life_hours)
    return compute_features(world.prices(symbols, first, end), sentiment, symbols, start, end)
