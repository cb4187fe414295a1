"""Where headlines come from. `ALPHAPULSE_NEWS_SOURCE` picks the implementation."""

from __future__ import annotations

from datetime import datetime

import dagster as dg
import polars as pl

from alphapulse_assets.market.simulator import SimulatedWorld


class NewsSource(dg.ConfigurableResource):
    """Headlines published in [start, end): item_id, published_at, ts (its hour), headline, symbols, url, source."""

    symbols: list[str]

    def fetch_news(self, start: datetime, end: datetime) -> pl.DataFrame:
        raise NotImplementedError


class SimulatedNewswire(NewsSource):
    """Headlines from the same seeded world as the simulated market, so their tone can lead its returns."""

    seed: int
    news_signal_strength: float

    def fetch_news(self, start: datetime, end: datetime) -> pl.DataFrame:
        return SimulatedWorld(self.seed, self.news_signal_strength).news(self.symbols, start, end)
