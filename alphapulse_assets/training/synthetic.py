"""Markets with a known answer, for checking that the training pipeline tells signal from noise.

`random_walk_market` has no predictable component at all; `lead_lag_market` plants one: the follower's next-hour
return carries a share of the leader's current return. Prices come with the columns the feature catalog reads, and
an empty news history (every sentiment feature is then null, as it is for a symbol without coverage).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl

from alphapulse_assets.features.catalog import HISTORY_HOURS, MARKET_REFERENCE, PRICES, compute_features
from alphapulse_assets.hours import hour_range
from alphapulse_assets.news.sentiment import SENTIMENT_SCHEMA

LEADER, FOLLOWER = MARKET_REFERENCE, "ETHUSDT"
HOURLY_VOLATILITY = 0.006


def _bars(symbol: str, log_returns: np.ndarray, start: datetime, rng: np.random.Generator) -> pl.DataFrame:
    close = 100.0 * np.exp(np.cumsum(log_returns))
    open_ = np.concatenate([[100.0], close[:-1]])
    wick = np.abs(rng.normal(0.0, HOURLY_VOLATILITY / 3, (2, len(close))))
    volume = np.exp(rng.normal(8.0, 0.4, len(close)))
    return pl.DataFrame(
        {
            "ts": hour_range(start, start + timedelta(hours=len(close))),
            "symbol": symbol,
            "open": open_,
            "high": np.maximum(open_, close) * (1 + wick[0]),
            "low": np.minimum(open_, close) * (1 - wick[1]),
            "close": close,
            "volume": volume,
            "trades": np.round(volume / 3).astype(np.int64),
            "taker_buy_volume": volume * rng.uniform(0.3, 0.7, len(close)),
        }
    )


def _market(returns: dict[str, np.ndarray], start: datetime, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(prices, features) for rows from `start`; prices begin the catalog's history earlier so no feature lacks it."""
    rng = np.random.default_rng([seed, 1])
    history_start = start - timedelta(hours=HISTORY_HOURS[PRICES])
    prices = pl.concat([_bars(symbol, r, history_start, rng) for symbol, r in returns.items()])
    end = history_start + timedelta(hours=len(next(iter(returns.values()))))
    sentiment = pl.DataFrame(schema=SENTIMENT_SCHEMA)
    features = compute_features(prices, sentiment, list(returns), start, end - timedelta(hours=1))
    return prices, features


def random_walk_market(start: datetime, hours: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Two independent Gaussian random walks: nothing in the past says anything about the next hour."""
    rng = np.random.default_rng([seed, 0])
    n = hours + HISTORY_HOURS[PRICES] + 1
    return _market({s: rng.normal(0.0, HOURLY_VOLATILITY, n) for s in (LEADER, FOLLOWER)}, start, seed)


def lead_lag_market(start: datetime, hours: int, seed: int, strength: float = 0.3) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The follower's return in hour t+1 correlates at `strength` with the leader's return in hour t."""
    rng = np.random.default_rng([seed, 0])
    n = hours + HISTORY_HOURS[PRICES] + 1
    leader = rng.normal(0.0, HOURLY_VOLATILITY, n)
    noise = rng.normal(0.0, HOURLY_VOLATILITY, n)
    follower = np.concatenate([[noise[0]], strength * leader[:-1] + np.sqrt(1 - strength**2) * noise[1:]])
    return _market({LEADER: leader, FOLLOWER: follower}, start, seed)


def slow_signal_market(
    start: datetime, hours: int, seed: int, strength: float = 0.06
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A real but small edge that moves slowly: the follower's return in hour t+1 correlates at `strength` with the
    leader's return over the 24 hours to t (standardised). The best position changes a few times a day; a rule that
    trades each hour's noisy estimate of it turns over far more, and at a few basis points a trade the costs eat
    the edge. What a trading rule chosen for net Sharpe must find: trade less, and keep it."""
    rng = np.random.default_rng([seed, 0])
    n = hours + HISTORY_HOURS[PRICES] + 1
    leader = rng.normal(0.0, HOURLY_VOLATILITY, n)
    day = np.convolve(leader, np.ones(24), mode="full")[:n] / (HOURLY_VOLATILITY * np.sqrt(24))
    noise = rng.normal(0.0, 1.0, n)
    follower = HOURLY_VOLATILITY * np.concatenate(
        [[noise[0]], strength * day[:-1] + np.sqrt(1 - strength**2) * noise[1:]]
    )
    return _market({LEADER: leader, FOLLOWER: follower}, start, seed)
