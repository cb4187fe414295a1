"""Where prices come from. `ALPHAPULSE_MARKET_SOURCE` picks the implementation."""

from __future__ import annotations

from datetime import datetime

import dagster as dg
import polars as pl

from alphapulse_assets.market.simulator import SimulatedWorld


class MarketSource(dg.ConfigurableResource):
    """Hourly candles for the configured symbols over [start, end), one row per (ts, symbol)."""

    symbols: list[str]

    def fetch_prices(self, start: datetime, end: datetime) -> pl.DataFrame:
        raise NotImplementedError


class SimulatedMarket(MarketSource):
    """The seeded simulated market (see `simulator.py` for its model)."""

    seed: int
    news_signal_strength: float

    def fetch_prices(self, start: datetime, end: datetime) -> pl.DataFrame:
        world = SimulatedWorld(self.seed, self.news_signal_strength)
        return world.prices(self.symbols, start, end).with_columns(pl.lit("simulated").alias("source"))
