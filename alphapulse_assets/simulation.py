"""A simulated crypto market and newswire, deterministic for a given seed.

This is *simulated data*, made to have the stylized facts of hourly crypto returns so the rest of the platform has
something realistic to chew on without an account anywhere:

- volatility clustering: GARCH(1,1) conditional variance per symbol;
- fat tails: Student-t (5 degrees of freedom) innovations, scaled to unit variance;
- an intraday pattern: volatility and volume peak around 15:00 UTC (US open) and trough twelve hours later;
- cross-asset correlation: each symbol loads on one market factor (correlation `market_corr`);
- a planted, configurable news signal: the tone of an hour's headlines about a symbol (and, at half weight,
  market-wide headlines) leads that symbol's *next-hour* return with correlation `news_signal_strength`
  (0 switches it off, and returns are then serially uncorrelated);
- optionally a regime change at one hour: from then on the news signal reverses and volatility and volume are
  scaled, so a model trained before it fails live and its features drift.

Every random draw is keyed by (seed, stream, week-block), and the GARCH recursion always starts at `EPOCH`, so
the value of any hour is a pure function of the seed and that hour: it never depends on which range was asked for.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import numpy as np
import polars as pl

from alphapulse_assets.hours import hour_range

EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
BLOCK_HOURS = 168
HOURS_PER_YEAR = 24 * 365
_T_DF = 5.0
_GARCH_ALPHA = 0.08
_GARCH_BETA = 0.90
_NEWS_RATE = 0.7  # headlines per symbol-hour, before the intraday pattern
_MARKET_NEWS_RATE = 0.3
_HEADLINE_NOISE = 0.35  # how loosely a headline's wording follows the hour's latent tone
NEWSWIRE_SOURCE = "simulated-newswire"


@dataclass(frozen=True)
class SymbolSpec:
    stream: int  # stable random stream: adding a symbol to the config never changes another's history
    names: tuple[str, ...]  # how headlines refer to the asset
    start_price: float
    annual_vol: float
    market_corr: float
    base_volume: float
    price_decimals: int
    trades_per_unit: float


SYMBOL_CATALOG: dict[str, SymbolSpec] = {
    "BTCUSDT": SymbolSpec(1, ("Bitcoin", "BTC"), 7200.0, 0.60, 0.80, 1_800.0, 2, 12.0),
    "ETHUSDT": SymbolSpec(2, ("Ethereum", "ETH", "Ether"), 130.0, 0.75, 0.75, 22_000.0, 2, 1.6),
    "SOLUSDT": SymbolSpec(3, ("Solana", "SOL"), 1.5, 0.95, 0.65, 90_000.0, 3, 0.5),
    "BNBUSDT": SymbolSpec(4, ("BNB", "Binance Coin"), 14.0, 0.70, 0.65, 40_000.0, 2, 0.6),
    "XRPUSDT": SymbolSpec(5, ("XRP", "Ripple"), 0.19, 0.85, 0.60, 9_000_000.0, 4, 0.004),
    "ADAUSDT": SymbolSpec(6, ("Cardano", "ADA"), 0.033, 0.90, 0.60, 12_000_000.0, 5, 0.003),
    "DOGEUSDT": SymbolSpec(7, ("Dogecoin", "DOGE"), 0.002, 1.10, 0.55, 90_000_000.0, 6, 0.0006),
    "LTCUSDT": SymbolSpec(8, ("Litecoin", "LTC"), 41.0, 0.80, 0.70, 60_000.0, 2, 0.4),
}

_QUOTES = ("USDT", "USDC", "BUSD", "FDUSD", "USD", "BTC", "ETH", "EUR")


def symbol_spec(symbol: str) -> SymbolSpec:
    """The catalog's spec, or, for a symbol the simulated market does not list (real prices from an archive with
    simulated news), a stable derived one: its own random stream and its base asset as the name headlines use."""
    if symbol in SYMBOL_CATALOG:
        return SYMBOL_CATALOG[symbol]
    base = next((symbol[: -len(q)] for q in _QUOTES if symbol.endswith(q) and len(symbol) > len(q)), symbol)
    stream = 1000 + int(hashlib.sha256(symbol.encode()).hexdigest(), 16) % 100_000
    return SymbolSpec(stream, (base,), 1.0, 0.8, 0.6, 1_000.0, 8, 1.0)


_TEMPLATES: tuple[tuple[str, ...], ...] = (
    (  # very negative
        "{name} plunges as panic selling hits the market",
        "{name} crashes after liquidations spark fear",
        "{name} tumbles, losses deepen amid turmoil",
    ),
    (  # negative
        "{name} slips as traders grow nervous",
        "{name} declines amid weak demand",
        "Worries weigh on {name} as selling pressure builds",
    ),
    (  # neutral
        "{name} trades sideways ahead of macro data",
        "{name} holds its range as volumes thin",
        "{name} little changed in a quiet session",
    ),
    (  # positive
        "{name} edges higher on good demand",
        "{name} gains as sentiment improves",
        "Analysts optimistic about {name} outlook",
    ),
    (  # very positive
        "{name} soars as investors cheer strong inflows",
        "{name} rallies sharply, traders celebrate record demand",
        "Bullish breakout: {name} surges to impressive gains",
    ),
)
_MARKET_NAMES = ("Crypto market", "Digital assets", "Crypto traders")
_TONE_EDGES = np.array([-1.2, -0.4, 0.4, 1.2])


def hour_index(ts: datetime) -> int:
    """Hours since EPOCH for an hour-aligned UTC datetime."""
    if ts.tzinfo is None:
        raise ValueError(f"naive datetime {ts!r}: all times are UTC and must say so")
    delta = ts.astimezone(UTC) - EPOCH
    hours, remainder = divmod(delta.total_seconds(), 3600)
    if remainder:
        raise ValueError(f"{ts.isoformat()} is not on the hour")
    if hours < 0:
        raise BeforeTheMarketOpens(f"{ts.isoformat()} is before the simulated market opens ({EPOCH:%Y-%m-%d})")
    return int(hours)


class BeforeTheMarketOpens(ValueError):
    """An hour before EPOCH was asked for: the simulated world has no such hour."""


def simulated(generate):
    """`generate()`, with an hour before the simulated market opens failing as an error no retry can fix (settings
    refuse such a start; a resource built by hand can still ask)."""
    from alphapulse_assets.retries import NotRetryable

    try:
        return generate()
    except BeforeTheMarketOpens as exc:
        raise NotRetryable(f"{exc}: set ALPHAPULSE_HISTORY_START to {EPOCH:%Y-%m-%d} or later") from exc


def _student_t(rng: np.random.Generator, size) -> np.ndarray:
    return rng.standard_t(_T_DF, size) / math.sqrt(_T_DF / (_T_DF - 2.0))


def _intraday(hours_of_day: np.ndarray, amplitude: float) -> np.ndarray:
    return 1.0 + amplitude * np.cos(2.0 * np.pi * (hours_of_day - 15.0) / 24.0)


@dataclass(frozen=True)
class _SymbolPath:
    close: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    volume: np.ndarray
    quote_volume: np.ndarray
    trades: np.ndarray
    taker_buy_volume: np.ndarray
    taker_buy_quote_volume: np.ndarray
    news_count: np.ndarray
    news_tone: np.ndarray  # latent tone of the hour's symbol headlines
    tone_noise: np.ndarray  # (hours, max headlines) per-headline deviation from the hour's tone
    minute: np.ndarray  # (hours, max headlines) second-of-hour each headline is published


@dataclass(frozen=True)
class _MarketNews:
    count: np.ndarray
    tone: np.ndarray
    tone_noise: np.ndarray
    minute: np.ndarray


_MAX_HEADLINES = 8
# Probabilities that an hour carries symbol / market-wide news. They normalise the latent tone and must be constants:
# estimating them from the drawn sample would make every hour depend on the length of the requested range.
_P_SYMBOL_NEWS = float(np.mean(1.0 - np.exp(-_NEWS_RATE * _intraday(np.arange(24), 0.5))))
_P_MARKET_NEWS = 1.0 - math.exp(-_MARKET_NEWS_RATE)


def _block_draws(seed: int, stream: int, n_blocks: int, draw):
    """Concatenate per-block draws so an hour's random numbers depend only on (seed, stream, its block)."""
    parts = [draw(np.random.default_rng([seed, stream, b])) for b in range(n_blocks)]
    return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]


@lru_cache(maxsize=8)
def _market_news(seed: int, n_blocks: int) -> _MarketNews:
    def draw(rng):
        return (
            rng.poisson(_MARKET_NEWS_RATE, BLOCK_HOURS).clip(0, _MAX_HEADLINES),
            rng.standard_normal(BLOCK_HOURS),
            rng.standard_normal((BLOCK_HOURS, _MAX_HEADLINES)),
            rng.integers(0, 3600, (BLOCK_HOURS, _MAX_HEADLINES)),
        )

    count, tone, noise, minute = _block_draws(seed, 2, n_blocks, draw)
    return _MarketNews(count, tone, noise, minute)


@lru_cache(maxsize=8)
def _market_factor(seed: int, n_blocks: int) -> np.ndarray:
    (factor,) = _block_draws(seed, 1, n_blocks, lambda rng: (_student_t(rng, BLOCK_HOURS),))
    return factor


@lru_cache(maxsize=32)
def _symbol_path(
    seed: int, strength: float, symbol: str, n_blocks: int, regime_change: int | None = None, regime_vol: float = 1.0
) -> _SymbolPath:
    spec = symbol_spec(symbol)
    n = n_blocks * BLOCK_HOURS
    hod = np.arange(n) % 24

    def draw(rng):
        count = rng.poisson(_NEWS_RATE * _intraday(hod[:BLOCK_HOURS], 0.5)).clip(0, _MAX_HEADLINES)
        return (
            _student_t(rng, BLOCK_HOURS),  # idiosyncratic shock
            count,
            rng.standard_normal(BLOCK_HOURS),  # latent news tone
            rng.standard_normal((BLOCK_HOURS, _MAX_HEADLINES)),
            rng.integers(0, 3600, (BLOCK_HOURS, _MAX_HEADLINES)),
            np.abs(rng.standard_normal((2, BLOCK_HOURS))),  # intra-hour excursions
            rng.standard_normal((3, BLOCK_HOURS)),  # volume, trade-count and taker-flow noise
        )

    idio, count, tone, tone_noise, minute, excursion, flow_noise = _block_draws(seed, 100 + spec.stream, n_blocks, draw)
    excursion = excursion.reshape(-1, 2, BLOCK_HOURS).transpose(1, 0, 2).reshape(2, n)
    flow_noise = flow_noise.reshape(-1, 3, BLOCK_HOURS).transpose(1, 0, 2).reshape(3, n)
    market = _market_news(seed, n_blocks)

    # The latent signal an hour's news carries, standardised so `strength` is a correlation with the next return.
    latent = np.where(count > 0, tone, 0.0) + 0.5 * np.where(market.count > 0, market.tone, 0.0)
    latent_var = _P_SYMBOL_NEWS + 0.25 * _P_MARKET_NEWS
    latent = latent / math.sqrt(max(latent_var, 1e-12))
    lead = np.concatenate([[0.0], latent[:-1]])  # news in hour t-1 drives the return of hour t

    rho = spec.market_corr
    z = rho * _market_factor(seed, n_blocks) + math.sqrt(1.0 - rho * rho) * idio
    # From the regime change on, news leads returns with the opposite sign and volatility and volume are scaled:
    # what a model learned stops working and the features it sees move (the loop's drift and rollback show it).
    changed = np.arange(n) >= (n if regime_change is None else regime_change)
    shock = np.where(changed, -strength, strength) * lead + math.sqrt(1.0 - strength * strength) * z
    regime_scale = np.where(changed, regime_vol, 1.0)

    target_var = spec.annual_vol**2 / HOURS_PER_YEAR
    omega = target_var * (1.0 - _GARCH_ALPHA - _GARCH_BETA)
    variance = np.empty(n)
    h = target_var
    shock_sq = (shock * shock).tolist()
    for t in range(n):  # a scalar loop: ~60k hours per symbol runs in tens of milliseconds
        variance[t] = h
        h = omega + (_GARCH_ALPHA * shock_sq[t] + _GARCH_BETA) * h
    sigma = np.sqrt(variance * _intraday(hod, 0.3)) * regime_scale

    returns = sigma * shock
    log_close = math.log(spec.start_price) + np.cumsum(returns)
    close = np.exp(log_close)
    open_ = np.concatenate([[spec.start_price], close[:-1]])
    high = np.maximum(open_, close) * np.exp(0.6 * sigma * excursion[0])
    low = np.minimum(open_, close) * np.exp(-0.6 * sigma * excursion[1])

    vol_scale = np.sqrt(variance / target_var)
    volume = (
        spec.base_volume
        * _intraday(hod, 0.5)
        * vol_scale
        * regime_scale
        * np.exp(0.5 * np.abs(shock) + 0.25 * flow_noise[0])
    )
    vwap = (open_ + high + low + close) / 4.0
    trades = np.maximum(1, np.round(volume * spec.trades_per_unit * np.exp(0.1 * flow_noise[1])))
    taker_share = 1.0 / (1.0 + np.exp(-(0.8 * shock + 0.3 * flow_noise[2])))

    d = spec.price_decimals
    return _SymbolPath(
        close=np.round(close, d),
        open=np.round(open_, d),
        high=np.round(high, d),
        low=np.round(low, d),
        volume=np.round(volume, 4),
        quote_volume=np.round(volume * vwap, 2),
        trades=trades.astype(np.int64),
        taker_buy_volume=np.round(volume * taker_share, 4),
        taker_buy_quote_volume=np.round(volume * taker_share * vwap, 2),
        news_count=count,
        news_tone=tone,
        tone_noise=tone_noise,
        minute=minute,
    )


def _headline(template_bucket: int, name: str, variant: int) -> str:
    templates = _TEMPLATES[template_bucket]
    return templates[variant % len(templates)].format(name=name)


def _item_id(*parts: object) -> str:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()


class SimulatedWorld:
    """One seeded world: the market and the newswire share the latent news tone that leads returns."""

    def __init__(
        self,
        seed: int,
        news_signal_strength: float,
        regime_change: datetime | None = None,
        regime_vol_multiplier: float = 3.0,
    ):
        if not 0.0 <= news_signal_strength < 1.0:
            raise ValueError(f"news_signal_strength={news_signal_strength}: must be in [0, 1)")
        if regime_vol_multiplier <= 0:
            raise ValueError(f"regime_vol_multiplier={regime_vol_multiplier}: must be positive")
        self.seed = seed
        self.strength = news_signal_strength
        self.regime = (None, 1.0) if regime_change is None else (hour_index(regime_change), regime_vol_multiplier)

    @staticmethod
    def _span(start: datetime, end: datetime) -> tuple[int, int, int]:
        first, stop = hour_index(start), hour_index(end)
        if stop <= first:
            raise ValueError(f"empty or inverted range: {start.isoformat()} .. {end.isoformat()}")
        return first, stop, -(-stop // BLOCK_HOURS)

    def prices(self, symbols: list[str] | tuple[str, ...], start: datetime, end: datetime) -> pl.DataFrame:
        """Hourly candles for [start, end): `ts` is the hour's open, the candle closes an hour later."""
        first, stop, n_blocks = self._span(start, end)
        frames = []
        for symbol in symbols:
            path = _symbol_path(self.seed, self.strength, symbol, n_blocks, *self.regime)
            window = slice(first, stop)
            frames.append(
                pl.DataFrame(
                    {
                        "ts": hour_range(start, end),
                        "symbol": [symbol] * (stop - first),
                        "open": path.open[window],
                        "high": path.high[window],
                        "low": path.low[window],
                        "close": path.close[window],
                        "volume": path.volume[window],
                        "quote_volume": path.quote_volume[window],
                        "trades": path.trades[window],
                        "taker_buy_volume": path.taker_buy_volume[window],
                        "taker_buy_quote_volume": path.taker_buy_quote_volume[window],
                    }
                )
            )
        return pl.concat(frames).sort("ts", "symbol")

    def news(self, symbols: list[str] | tuple[str, ...], start: datetime, end: datetime) -> pl.DataFrame:
        """Headlines published in [start, end), tagged with the symbols they mention (none = market-wide)."""
        first, stop, n_blocks = self._span(start, end)
        rows: dict[str, list] = {k: [] for k in ("item_id", "published_at", "headline", "symbols", "url", "source")}

        seconds: list[int] = []

        def add(hour: int, j: int, second: int, text: str, tags: list[str], key: str) -> None:
            item_id = _item_id(NEWSWIRE_SOURCE, self.seed, key, hour, j)
            rows["item_id"].append(item_id)
            rows["published_at"].append(EPOCH + timedelta(hours=hour))
            rows["headline"].append(text)
            rows["symbols"].append(tags)
            rows["url"].append(f"https://newswire.simulated.invalid/{item_id[:20]}")
            rows["source"].append(NEWSWIRE_SOURCE)
            seconds.append(second)

        for symbol in symbols:
            path = _symbol_path(self.seed, self.strength, symbol, n_blocks, *self.regime)
            names = symbol_spec(symbol).names
            for hour in range(first, stop):
                for j in range(int(path.news_count[hour])):
                    expressed = path.news_tone[hour] + _HEADLINE_NOISE * path.tone_noise[hour, j]
                    bucket = int(np.searchsorted(_TONE_EDGES, expressed))
                    text = _headline(bucket, names[(hour + j) % len(names)], hour * 7 + j)
                    add(hour, j, int(path.minute[hour, j]), text, [symbol], symbol)
        market = _market_news(self.seed, n_blocks)
        for hour in range(first, stop):
            for j in range(int(market.count[hour])):
                expressed = market.tone[hour] + _HEADLINE_NOISE * market.tone_noise[hour, j]
                bucket = int(np.searchsorted(_TONE_EDGES, expressed))
                text = _headline(bucket, _MARKET_NAMES[(hour + j) % len(_MARKET_NAMES)], hour * 5 + j)
                add(hour, j, int(market.minute[hour, j]), text, [], "market")
        frame = pl.DataFrame(
            rows,
            schema={
                "item_id": pl.String,
                "published_at": pl.Datetime("us", "UTC"),
                "headline": pl.String,
                "symbols": pl.List(pl.String),
                "url": pl.String,
                "source": pl.String,
            },
        )
        frame = frame.with_columns(
            (pl.col("published_at") + pl.duration(seconds=pl.Series(seconds, dtype=pl.Int64))).alias("published_at")
        )
        return frame.with_columns(pl.col("published_at").dt.truncate("1h").alias("ts")).sort("published_at", "item_id")
