"""Where prices come from. `ALPHAPULSE_MARKET_SOURCE` picks the implementation; all share one interface."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl

from alphapulse_assets.market.binance_archive import (
    DECIMAL_COLUMNS,
    PARSED_SCHEMA,
    PRICE_DTYPE,
    PRICE_SCHEMA,
    REJECTED_SCHEMA,
    find_archive_files,
    parse_archive_file,
)
from alphapulse_assets.market.binance_rest import KlinesClient
from alphapulse_assets.retries import NotRetryable
from alphapulse_assets.settings import DEFAULTS
from alphapulse_assets.simulation import SimulatedWorld, simulated


@dataclass(frozen=True)
class PriceBatch:
    """Candles for a window (PRICE_SCHEMA: exact decimals, optionally with `line` and `raw` saying where each came
    from) and the raw rows that could not be read, with reasons."""

    prices: pl.DataFrame
    rejected: pl.DataFrame


class PriceQuality(dg.ConfigurableResource):
    """Thresholds of the price checks."""

    # Robust z-score of an hourly log return above which the hour is flagged for a person to look at. Crypto has
    # real 10-sigma hours, so this warns rather than blocks.
    extreme_move_z: float = DEFAULTS.extreme_move_z


class MarketSource(dg.ConfigurableResource):
    """Hourly candles for the configured symbols over [start, end), at most one row per (ts, symbol) intended."""

    symbols: list[str]

    def fetch_prices(self, start: datetime, end: datetime) -> PriceBatch:
        raise NotImplementedError


class SimulatedMarket(MarketSource):
    """The seeded simulated market (see `simulator.py` for its model)."""

    seed: int
    news_signal_strength: float
    regime_change: str | None = None  # ISO hour (ALPHAPULSE_SIM_REGIME_CHANGE)
    regime_vol_multiplier: float = DEFAULTS.sim_regime_vol

    def fetch_prices(self, start: datetime, end: datetime) -> PriceBatch:
        change = datetime.fromisoformat(self.regime_change) if self.regime_change else None
        world = SimulatedWorld(self.seed, self.news_signal_strength, change, self.regime_vol_multiplier)
        frame = simulated(lambda: world.prices(self.symbols, start, end))
        # The simulator rounds to each market's tick; the cast to DECIMAL(38, 8) keeps exactly those digits.
        prices = frame.with_columns(pl.col(DECIMAL_COLUMNS).cast(PRICE_DTYPE), pl.lit("simulated").alias("source"))
        return PriceBatch(prices.select(list(PRICE_SCHEMA)), pl.DataFrame(schema=REJECTED_SCHEMA))


class BinanceArchiveMarket(MarketSource):
    """A directory of Binance public-data kline files (`SYMBOL-1h-YYYY-MM[-DD].zip` or `.csv`)."""

    archive_dir: str

    def fetch_prices(self, start: datetime, end: datetime) -> PriceBatch:
        directory = Path(self.archive_dir)
        if not directory.is_dir():
            raise NotRetryable(f"ALPHAPULSE_ARCHIVE_DIR={self.archive_dir}: no such directory")
        prices, rejected = [], []
        last_hour = end - timedelta(hours=1)
        for archive in find_archive_files(directory, self.symbols, start, end):
            parsed = parse_archive_file(archive)
            prices.append(parsed.prices.filter((pl.col("ts") >= start) & (pl.col("ts") < end)))
            rows = parsed.rejected
            # A rejected file is recorded in every window it should have supplied; a rejected row in its own hour.
            whole_file = rows.filter(pl.col("line").is_null()).with_columns(pl.col("ts").clip(start, last_hour))
            in_window = rows.filter(pl.col("line").is_not_null() & (pl.col("ts") >= start) & (pl.col("ts") < end))
            rejected += [whole_file, in_window]
        return PriceBatch(
            pl.concat(prices) if prices else pl.DataFrame(schema=PARSED_SCHEMA),
            pl.concat(rejected) if rejected else pl.DataFrame(schema=REJECTED_SCHEMA),
        )


class BinanceRestMarket(MarketSource):
    """The klines REST API at `ALPHAPULSE_BINANCE_URL`, paged, retried and kept under the request-weight limit."""

    base_url: str
    timeout_seconds: float = 10.0
    max_retries: int = 5
    weight_limit_per_minute: int = 1200

    def fetch_prices(self, start: datetime, end: datetime) -> PriceBatch:
        with KlinesClient(
            self.base_url, self.timeout_seconds, self.max_retries, weight_limit_per_minute=self.weight_limit_per_minute
        ) as client:
            parsed = [client.fetch(symbol, start, end) for symbol in self.symbols]
        return PriceBatch(pl.concat([p.prices for p in parsed]), pl.concat([p.rejected for p in parsed]))
