"""The feature catalog: every feature declared once (name, formula, lookback, unit, family) and computed from that
declaration. The same entries generate docs/features.md, the asset's metadata and the feature-set version.

Conventions, each one tested:
- Point in time: the row for hour t (`ts` = the hour's start, UTC) uses only bars of hours <= t and news published
  before t + 1h, i.e. what is known when hour t closes.
- Fixed windows on a complete hourly grid: a missing hour makes every window that holds it null; nothing is
  forward-filled, and undefined values (a zero range, a zero variance, no headlines) are null, never 0.
- Chunk invariance: a value depends on its own window only, so a backfill chunked any way gives the same table.
  TA-Lib's exponential smoothings formally reach back to the start of the data; they are computed from
  `EXPONENTIAL_HISTORY_HOURS` back, where the start's influence has fallen below 1e-12.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import talib

from alphapulse_assets.features import indicators as ind
from alphapulse_assets.hours import hour_range

# The cross-asset reference: its returns are a feature of every symbol. Null when it is not in the universe.
MARKET_REFERENCE = "BTCUSDT"
# TA-Lib's exponential smoothings (RSI, ATR, ADX, EMA) forget their starting value at rate (1 - 1/14) per hour or
# faster; measured on a random walk, 450 hours bring the difference from an infinitely long series under 1e-12.
EXPONENTIAL_HISTORY_HOURS = 504
# Bump when a computation changes without its catalog entry changing.
IMPLEMENTATION_REVISION = 2

PRICES, SENTIMENT, MARKET, CLOCK = "prices", "news_sentiment", "market_reference", "clock"


@dataclass(frozen=True)
class Feature:
    name: str
    family: str
    formula: str
    unit: str
    lookback_hours: int  # hours before t the value reads: it depends on hours t - lookback_hours .. t
    sources: tuple[str, ...]
    # Hours of complete data a value needs before it is non-null (after the start of data or a missing hour).
    # Equal to lookback_hours except for TA-Lib's exponential indicators, which start after TA-Lib's own lookback.
    warmup_hours: int = -1
    # Exactly one of these computes it: a polars expression over the base columns (and the array features), or a
    # function over one symbol's numpy arrays.
    expr: pl.Expr | None = field(default=None, compare=False, repr=False)
    array: Callable[[ind.Series], np.ndarray] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if (self.expr is None) == (self.array is None):
            raise ValueError(f"feature {self.name}: give exactly one of expr and array")
        if self.warmup_hours < 0:
            object.__setattr__(self, "warmup_hours", self.lookback_hours)

    def definition(self) -> dict:
        return {
            "name": self.name,
            "family": self.family,
            "formula": self.formula,
            "unit": self.unit,
            "lookback_hours": self.lookback_hours,
            "warmup_hours": self.warmup_hours,
            "sources": list(self.sources),
        }


def _returns(hours: int) -> Feature:
    return Feature(
        f"ret_{hours}h", "returns", f"ln(close_t / close_(t-{hours}))", "log return", hours, (PRICES,),
        expr=ind.log_return(hours),
    )  # fmt: skip


def _realised_vol(hours: int) -> Feature:
    return Feature(
        f"rv_{hours}h", "volatility", f"sqrt(mean(ret_1h² over the last {hours} hours))", "log return per hour",
        hours, (PRICES,), array=lambda series: ind.realised_vol(series["log_return_1h"], hours),
    )  # fmt: skip


def _range_vol(estimator: str, hours: int) -> Feature:
    if estimator == "parkinson":
        formula = f"sqrt(mean(ln(high/low)² over {hours} hours) / (4 ln 2))"
        estimate = ind.parkinson_vol
    else:
        formula = f"sqrt(mean(0.5 ln(high/low)² - (2 ln 2 - 1) ln(close/open)² over {hours} hours))"
        estimate = ind.garman_klass_vol
    return Feature(
        f"{estimator}_{hours}h", "volatility", formula, "log return per hour", hours - 1, (PRICES,),
        array=lambda series: estimate(series, hours),
    )  # fmt: skip


def _activity_z(column: str, hours: int) -> Feature:
    return Feature(
        f"{column}_z_{hours}h", "volume", f"z-score of ln(1 + {column}_t) within its last {hours} hours",
        "standard deviations", hours - 1, (PRICES,),
        array=lambda series: ind.moving_zscore(np.log1p(series[column]), hours),
    )  # fmt: skip


def _candle(name: str, formula: str, expr: pl.Expr, unit: str = "fraction of the open") -> Feature:
    return Feature(name, "candle", formula, unit, 0, (PRICES,), expr=expr)


def _price_position(hours: int) -> Feature:
    return Feature(
        f"price_position_{hours}h", "candle",
        f"(close_t - min(low, {hours}h)) / (max(high, {hours}h) - min(low, {hours}h)); null when the range is 0",
        "0..1", hours - 1, (PRICES,), array=lambda series: ind.price_position(series, hours),
    )  # fmt: skip


def _trend(hours: int) -> tuple[Feature, ...]:
    slope = f"trend_slope_{hours}h"
    return (
        Feature(
            slope, "trend", f"least-squares slope of ln(close) on the hour index over the last {hours} hours",
            "log return per hour", hours - 1, (PRICES,),
            array=lambda series: ind.trend_slope(series["log_return_1h"], hours),
        ),
        Feature(
            f"trend_r2_{hours}h", "trend", "R² of that least-squares line (1: a straight line; null: a flat window)",
            "0..1", hours - 1, (PRICES,),
            array=lambda series: ind.trend_r_squared(series["log_close"], series[slope], hours),
        ),
        Feature(
            f"ma_gap_{hours}h", "trend", f"ln(close_t / SMA(close, {hours}h))", "log ratio", hours - 1, (PRICES,),
            array=lambda series: ind.moving_average_gap(series["close"], hours),
        ),
    )  # fmt: skip


def _correlation_with_returns(
    other: Callable[[ind.Series], np.ndarray], hours: int
) -> Callable[[ind.Series], np.ndarray]:
    return lambda series: ind.moving_corr(series["log_return_1h"], other(series), hours)


def _bollinger_percent_b(close: np.ndarray) -> np.ndarray:
    upper, _, lower = talib.BBANDS(close, timeperiod=20, nbdevup=2, nbdevdn=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (close - lower) / (upper - lower)


def _macd_histogram_over_close(close: np.ndarray) -> np.ndarray:
    return talib.MACD(close, fastperiod=12, slowperiod=26, signalperiod=9)[2] / close


def _classic(
    name: str, formula: str, unit: str, indicator: Callable, inputs: tuple[str, ...], warmup: int, exponential: bool
) -> Feature:
    """A TA-Lib indicator with TA-Lib's definition and scale. `warmup` is TA-Lib's own lookback for it."""
    return Feature(
        name, "classic (TA-Lib)", formula, unit, EXPONENTIAL_HISTORY_HOURS if exponential else warmup, (PRICES,),
        warmup_hours=warmup, array=ind.talib_by_run(indicator, inputs, warmup),
    )  # fmt: skip


HLC = ("high", "low", "close")

CATALOG: tuple[Feature, ...] = (
    *(_returns(h) for h in (1, 2, 4, 8, 12, 24, 72, 168)),
    *(_realised_vol(h) for h in (6, 24, 72, 168)),
    Feature(
        "rv_ratio_6h_24h", "volatility", "rv_6h / rv_24h", "ratio", 24, (PRICES,),
        expr=ind.ratio(pl.col("rv_6h"), pl.col("rv_24h")),
    ),
    Feature(
        "rv_z_24h", "volatility", "z-score of rv_24h within its last 168 hours", "standard deviations", 24 + 167,
        (PRICES,), array=lambda series: ind.moving_zscore(ind.realised_vol(series["log_return_1h"], 24), 168),
    ),
    Feature("range_log", "volatility", "ln(high_t / low_t)", "log ratio", 0, (PRICES,), expr=ind.LOG_RANGE),
    *(_range_vol(estimator, h) for estimator in ("parkinson", "garman_klass") for h in (24, 168)),
    *(_activity_z(column, h) for column in ("volume", "trades") for h in (24, 168)),
    _candle("candle_body", "(close - open) / open", (ind.CLOSE - ind.OPEN) / ind.OPEN),
    _candle("candle_range", "(high - low) / open", ind.RANGE / ind.OPEN),
    _candle("candle_upper_shadow", "(high - max(open, close)) / open", (ind.HIGH - ind.BODY_TOP) / ind.OPEN),
    _candle("candle_lower_shadow", "(min(open, close) - low) / open", (ind.BODY_BOTTOM - ind.LOW) / ind.OPEN),
    _candle(
        "candle_body_to_range", "(close - open) / (high - low); null when high = low",
        (ind.CLOSE - ind.OPEN) / ind.RANGE, "-1..1",
    ),
    _candle(
        "candle_upper_to_range", "(high - max(open, close)) / (high - low); null when high = low",
        (ind.HIGH - ind.BODY_TOP) / ind.RANGE, "0..1",
    ),
    _candle(
        "candle_lower_to_range", "(min(open, close) - low) / (high - low); null when high = low",
        (ind.BODY_BOTTOM - ind.LOW) / ind.RANGE, "0..1",
    ),
    _candle(
        "candle_close_position", "(close - low) / (high - low): where the close sits in the hour's range",
        (ind.CLOSE - ind.LOW) / ind.RANGE, "0..1",
    ),
    *(_price_position(h) for h in (24, 168)),
    *_trend(24),
    *_trend(168),
    Feature(
        "corr_close_volume_24h", "price-volume", "correlation of close and ln(1 + volume) over 24 hours",
        "correlation", 23, (PRICES,),
        array=lambda series: ind.moving_corr(series["close"], np.log1p(series["volume"]), 24),
    ),
    Feature(
        "corr_return_volume_change_24h", "price-volume",
        "correlation of ret_1h and ln((1 + volume_t) / (1 + volume_(t-1))) over 24 hours", "correlation", 24,
        (PRICES,),
        array=_correlation_with_returns(lambda series: ind.first_difference(np.log1p(series["volume"])), 24),
    ),
    Feature(
        "taker_buy_ratio_1h", "microstructure", "taker_buy_volume_t / volume_t (buyer-initiated share)", "0..1", 0,
        (PRICES,), expr=ind.ratio(pl.col("taker_buy_volume"), pl.col("volume")),
    ),
    Feature(
        "taker_buy_ratio_24h", "microstructure", "sum(taker_buy_volume, 24h) / sum(volume, 24h)", "0..1", 23,
        (PRICES,), array=lambda series: ind.sum_ratio(series["taker_buy_volume"], series["volume"], 24),
    ),
    Feature(
        "avg_trade_size_z_168h", "microstructure",
        "z-score of ln(volume_t / trades_t) within its last 168 hours (an hour without trades is null)",
        "standard deviations", 167, (PRICES,),
        array=lambda series: ind.moving_zscore(ind.log_trade_size(series["volume"], series["trades"]), 168),
    ),
    _classic("rsi_14", "TA-Lib RSI(close, 14)", "0..100", lambda c: talib.RSI(c, 14), ("close",), 14, True),
    _classic(
        "natr_14", "TA-Lib NATR(high, low, close, 14)", "percent of close",
        lambda hi, lo, c: talib.NATR(hi, lo, c, 14), HLC, 14, True,
    ),
    _classic(
        "willr_14", "TA-Lib WILLR(high, low, close, 14)", "-100..0",
        lambda hi, lo, c: talib.WILLR(hi, lo, c, 14), HLC, 13, False,
    ),
    _classic(
        "cci_20", "TA-Lib CCI(high, low, close, 20)", "index points",
        lambda hi, lo, c: talib.CCI(hi, lo, c, 20), HLC, 19, False,
    ),
    _classic(
        "mfi_14", "TA-Lib MFI(high, low, close, volume, 14)", "0..100",
        lambda hi, lo, c, v: talib.MFI(hi, lo, c, v, 14), (*HLC, "volume"), 14, False,
    ),
    _classic(
        "adx_14", "TA-Lib ADX(high, low, close, 14)", "0..100",
        lambda hi, lo, c: talib.ADX(hi, lo, c, 14), HLC, 27, True,
    ),
    _classic(
        "bb_pctb_20", "(close - lower) / (upper - lower) of TA-Lib BBANDS(close, 20, 2, 2)", "fraction of the band",
        _bollinger_percent_b, ("close",), 19, False,
    ),
    _classic(
        "macd_hist_norm", "TA-Lib MACD(close, 12, 26, 9) histogram / close", "fraction of the close",
        _macd_histogram_over_close, ("close",), 33, True,
    ),
    _classic(
        "roc_24", "TA-Lib ROC(close, 24) = 100 (close_t / close_(t-24) - 1)", "percent",
        lambda c: talib.ROC(c, 24), ("close",), 24, False,
    ),
    Feature(
        "market_ret_1h", "cross-asset", f"ret_1h of {MARKET_REFERENCE} (its own ret_1h on its own rows)",
        "log return", 1, (MARKET,), expr=ind.log_return(1, ind.MARKET_LOG_CLOSE),
    ),
    Feature(
        "market_ret_24h", "cross-asset", f"ret_24h of {MARKET_REFERENCE}", "log return", 24, (MARKET,),
        expr=ind.log_return(24, ind.MARKET_LOG_CLOSE),
    ),
    Feature(
        "excess_ret_24h", "cross-asset", f"ret_24h - ret_24h of {MARKET_REFERENCE}", "log return", 24,
        (PRICES, MARKET), expr=ind.log_return(24) - ind.log_return(24, ind.MARKET_LOG_CLOSE),
    ),
    Feature(
        "market_corr_168h", "cross-asset", f"correlation of ret_1h with {MARKET_REFERENCE}'s ret_1h over 168 hours",
        "correlation", 168, (PRICES, MARKET),
        array=_correlation_with_returns(lambda series: series["market_log_return_1h"], 168),
    ),
    Feature(
        "hour_sin", "calendar", "sin(2π · hour of day / 24), UTC", "-1..1", 0, (CLOCK,), array=ind.calendar(24, np.sin)
    ),
    Feature(
        "hour_cos", "calendar", "cos(2π · hour of day / 24), UTC", "-1..1", 0, (CLOCK,), array=ind.calendar(24, np.cos)
    ),
    Feature(
        "week_sin", "calendar", "sin(2π · hour of week / 168), Monday 00:00 UTC = 0", "-1..1", 0, (CLOCK,),
        array=ind.calendar(168, np.sin),
    ),
    Feature(
        "week_cos", "calendar", "cos(2π · hour of week / 168), Monday 00:00 UTC = 0", "-1..1", 0, (CLOCK,),
        array=ind.calendar(168, np.cos),
    ),
    Feature(
        "is_weekend", "calendar", "1 on Saturday and Sunday (UTC), else 0", "0/1", 0, (CLOCK,),
        array=ind.calendar(168, lambda phase: (phase >= 5 * ind.TWO_PI / 7 - 1e-9).astype(np.float64)),
    ),
    Feature(
        "news_count_1h", "sentiment", "headlines about the symbol or the whole market published in hour t", "count",
        0, (SENTIMENT,), expr=pl.col("item_count"),
    ),
    Feature(
        "news_count_24h", "sentiment", "news_count_1h summed over the last 24 hours", "count", 23, (SENTIMENT,),
        array=lambda series: ind.moving_sum(series["item_count"], 24),
    ),
    Feature(
        "news_sent_mean_1h", "sentiment", "mean headline sentiment of hour t; null without headlines", "score -1..1",
        0, (SENTIMENT,), expr=pl.col("sentiment_mean"),
    ),
    Feature(
        "news_sent_mean_prev_1h", "sentiment", "news_sent_mean_1h of hour t-1", "score -1..1", 1, (SENTIMENT,),
        expr=pl.col("sentiment_mean").shift(1),
    ),
    Feature(
        "news_sent_sum_6h", "sentiment", "sum of headline sentiment over hours t-5..t (0 without headlines)",
        "score", 5, (SENTIMENT,),
        array=lambda series: ind.moving_sum(series["sentiment_sum"], 6, exact_zero_when=series["item_count"]),
    ),
    Feature(
        "news_sent_mean_24h", "sentiment",
        "headline-weighted mean sentiment over the last 24 hours; null without headlines", "score -1..1", 23,
        (SENTIMENT,), array=lambda series: ind.sum_ratio(series["sentiment_sum"], series["item_count"], 24),
    ),
    Feature(
        "news_sent_decayed", "sentiment",
        "news_sentiment.sentiment_decayed: mean headline sentiment weighted by 2^-(age / half-life), "
        "ALPHAPULSE_SENTIMENT_HALF_LIFE_HOURS; null without headlines in the decay window",
        "score -1..1", 0, (SENTIMENT,), expr=pl.col("sentiment_decayed"),
    ),
    Feature(
        "news_intensity_decayed", "sentiment", "news_sentiment.news_intensity_decayed: the sum of those weights",
        "decayed count", 0, (SENTIMENT,), expr=pl.col("news_intensity_decayed"),
    ),
)  # fmt: skip

FEATURES: dict[str, Feature] = {f.name: f for f in CATALOG}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURES)
FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(f.family for f in CATALOG))
# How far back each input is read: the longest lookback among the features that read it.
HISTORY_HOURS: dict[str, int] = {
    source: max(f.lookback_hours for f in CATALOG if source in f.sources) for source in (PRICES, MARKET, SENTIMENT)
}
# The longest run of complete hours any feature needs before it has a value.
WARMUP_HOURS = max(f.warmup_hours for f in CATALOG)
_PRICE_COLUMNS = ("open", "high", "low", "close", "volume", "trades", "taker_buy_volume")
_SENTIMENT_COLUMNS = ("item_count", "sentiment_mean", "sentiment_decayed", "news_intensity_decayed")
# The columns the polars stage reads: the expressions' inputs and the array features it passes through.
_BASE_COLUMNS_READ = tuple(
    dict.fromkeys(
        [name for f in CATALOG if f.expr is not None for name in f.expr.meta.root_names()]
        + [f.name for f in CATALOG if f.array is not None]
    )
)

if len(FEATURES) != len(CATALOG):
    raise ValueError("feature names in the catalog must be unique")


def feature_version(sentiment_scorer: str, sentiment_half_life_hours: float, headlines: bool = True) -> str:
    """A hash of everything that decides the feature values: the catalog, the TA-Lib C library's version, the
    cross-asset reference and the sentiment configuration (none at all when there are no headlines). A model is
    only served features of its own version."""
    sentiment = {"scorer": sentiment_scorer, "half_life_hours": float(sentiment_half_life_hours)} if headlines else None
    payload = json.dumps(
        {
            "revision": IMPLEMENTATION_REVISION,
            "features": [f.definition() for f in CATALOG],
            "ta_lib": talib.__ta_version__.decode().split()[0],
            "market_reference": MARKET_REFERENCE,
            "exponential_history_hours": EXPONENTIAL_HISTORY_HOURS,
            "sentiment": sentiment,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def compute_features(
    prices: pl.DataFrame,
    sentiment: pl.DataFrame,
    symbols: list[str] | tuple[str, ...],
    start: datetime,
    end: datetime,
) -> pl.DataFrame:
    """Every catalog feature for every (symbol, hour) in [start, end), one row each, ordered by symbol then ts.

    `prices` should cover [start - HISTORY_HOURS[PRICES], end) and `sentiment` [start - HISTORY_HOURS[SENTIMENT],
    end); hours absent from them are missing data and give nulls in every feature whose window holds them.
    """
    if end <= start:
        raise ValueError(f"empty or inverted window: {start.isoformat()} .. {end.isoformat()}")
    symbols = sorted(set(symbols))
    history = max(HISTORY_HOURS.values())
    grid = _Grid(symbols, start - timedelta(hours=history), end)
    arrays = {
        **grid.scatter(prices, "prices", _PRICE_COLUMNS),
        **grid.scatter(sentiment, "news_sentiment", _SENTIMENT_COLUMNS),
    }
    arrays["market_close"] = grid.market_reference(arrays["close"])
    for prefix in ("", "market_"):
        log_close = np.log(arrays[f"{prefix}close"])
        arrays[f"{prefix}log_close"] = log_close
        arrays[f"{prefix}log_return_1h"] = grid.first_difference(log_close)
    arrays["epoch_hour"] = grid.epoch_hours()
    with np.errstate(invalid="ignore"):
        arrays["sentiment_sum"] = np.where(
            arrays["item_count"] == 0, 0.0, arrays["sentiment_mean"] * arrays["item_count"]
        )
    for feature in CATALOG:
        if feature.array is not None:
            arrays[feature.name] = grid.per_symbol(feature.array, arrays)
    base = pl.DataFrame(
        [grid.ts_column(), grid.symbol_column()] + [_column(name, arrays[name]) for name in _BASE_COLUMNS_READ]
    )
    # The row-wise expressions run over the whole symbol-major column at once: a `shift` that crosses into the
    # previous symbol's block only ever belongs to a history row, and history rows are cut off below.
    columns = [(pl.col(f.name) if f.expr is None else f.expr).alias(f.name) for f in CATALOG]
    computed = grid.without_history(base.lazy().select("ts", "symbol", *columns).collect(), history)
    return _undefined_as_null(computed, [f.name for f in CATALOG if f.expr is not None])


def _column(name: str, values: np.ndarray | list[np.ndarray]) -> pl.Series:
    """A polars column from a grid array or from per-symbol blocks (joined without copying); NaN becomes null."""
    if isinstance(values, list):
        return pl.concat([pl.Series(name, v, dtype=pl.Float64, nan_to_null=True) for v in values], rechunk=False)
    return pl.Series(name, values, dtype=pl.Float64, nan_to_null=True)


def _undefined_as_null(frame: pl.DataFrame, names: list[str]) -> pl.DataFrame:
    """Undefined values (0/0, a zero range) are null like missing ones: never NaN or infinity. The expressions guard
    their divisions, so infinities are not expected; they are still caught."""
    frame = frame.with_columns(pl.col(names).fill_nan(None))
    infinite = [n for n, found in frame.select(pl.col(names).is_infinite().any()).row(0, named=True).items() if found]
    return frame.with_columns(pl.when(pl.col(n).is_finite()).then(pl.col(n)).alias(n) for n in infinite)


class _Block(Mapping[str, np.ndarray]):
    """One symbol's rows of the grid's arrays, sliced (without copying) when a feature asks for a column. Array
    features are kept as one array per symbol (a list), so they are never copied into a grid-long array."""

    def __init__(self, arrays: dict[str, np.ndarray | list[np.ndarray]], index: int, hours: int):
        self._arrays, self._index, self._hours = arrays, index, hours

    def __getitem__(self, column: str) -> np.ndarray:
        values = self._arrays[column]
        if isinstance(values, list):
            return values[self._index]
        return values[self._index * self._hours : (self._index + 1) * self._hours]

    def __iter__(self):
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)


class _Grid:
    """The complete (symbol, hour) grid, symbol-major: row = symbol_index * hours + hour_index."""

    def __init__(self, symbols: list[str], start: datetime, end: datetime):
        self.symbols, self.start, self.end = symbols, start, end
        self.hours = int((end - start) / timedelta(hours=1))
        self.rows = self.hours * len(symbols)

    def scatter(self, frame: pl.DataFrame, table: str, columns: tuple[str, ...]) -> dict[str, np.ndarray]:
        """The frame's columns laid out on the grid as float64, NaN where the frame has no row (or a null)."""
        missing = [c for c in ("ts", "symbol", *columns) if c not in frame.columns]
        if missing:
            raise ValueError(f"{table} lacks the columns {missing}")
        hour_us = 3_600_000_000
        offset = frame["ts"].dt.epoch("us").to_numpy() - int(self.start.timestamp() * 1_000_000)
        codes = frame["symbol"].cast(pl.Enum(self.symbols), strict=False).to_physical()
        located = codes.is_not_null().to_numpy() & (offset >= 0) & (offset < self.hours * hour_us)
        if (offset[located] % hour_us).any():
            raise ValueError(f"{table} has timestamps that are not on the hour")
        rows = codes.fill_null(0).to_numpy().astype(np.int64)[located] * self.hours + offset[located] // hour_us
        if np.bincount(rows, minlength=self.rows).max(initial=0) > 1:
            raise ValueError(f"{table} holds more than one row for some (ts, symbol)")
        values = frame.select(pl.col(columns).cast(pl.Float64))
        out = {}
        for column in columns:
            grid_values = np.full(self.rows, np.nan)
            grid_values[rows] = values[column].to_numpy()[located]
            out[column] = grid_values
        return out

    def market_reference(self, close: np.ndarray) -> np.ndarray:
        if MARKET_REFERENCE not in self.symbols:
            return np.full(self.rows, np.nan)
        block = self.symbols.index(MARKET_REFERENCE) * self.hours
        return np.tile(close[block : block + self.hours], len(self.symbols))

    def per_symbol(self, compute: Callable[[ind.Series], np.ndarray], arrays: dict) -> list[np.ndarray]:
        """`compute` on each symbol's block; undefined values (infinities too) become NaN, i.e. null."""
        blocks = []
        for index in range(len(self.symbols)):
            values = np.asarray(compute(_Block(arrays, index, self.hours)), dtype=np.float64)
            blocks.append(np.where(np.isfinite(values), values, np.nan))
        return blocks

    def epoch_hours(self) -> np.ndarray:
        first = int(self.start.timestamp()) // 3600
        return np.tile(np.arange(first, first + self.hours, dtype=np.int64), len(self.symbols))

    def first_difference(self, values: np.ndarray) -> np.ndarray:
        """x_t - x_(t-1) within each symbol's block (NaN at a block's first row)."""
        out = ind.first_difference(values)
        out[:: self.hours] = np.nan
        return out

    def ts_column(self) -> pl.Series:
        return pl.concat([hour_range(self.start, self.end)] * len(self.symbols))

    def symbol_column(self) -> pl.Series:
        return pl.concat([pl.repeat(s, self.hours, dtype=pl.String, eager=True) for s in self.symbols]).alias("symbol")

    def without_history(self, frame: pl.DataFrame, history: int) -> pl.DataFrame:
        kept = self.hours - history
        return pl.concat([frame.slice(b + history, kept) for b in range(0, self.rows, self.hours)], rechunk=False)


def latest_rows(features: pl.DataFrame) -> pl.DataFrame:
    """The newest row per symbol: what the online snapshot serves."""
    return features.sort("ts").group_by("symbol", maintain_order=True).last().sort("symbol")
