"""The feature catalog's promises, on the pure function: chunk invariance, point in time, TA-Lib parity, honest
nulls, declared lookbacks and warm-ups that are true."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import talib
from polars.testing import assert_frame_equal

from alphapulse_assets.features import catalog
from alphapulse_assets.features.catalog import (
    CATALOG,
    CLOCK,
    FEATURE_NAMES,
    FEATURES,
    HISTORY_HOURS,
    MARKET,
    SENTIMENT,
    compute_features,
    feature_version,
)
from alphapulse_assets.features.docs import render_catalog
from alphapulse_assets.news.sentiment import VaderScorer, aggregate_sentiment
from alphapulse_assets.simulation import SimulatedWorld

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
START = datetime(2025, 7, 1, tzinfo=UTC)
END = START + timedelta(days=20)
HISTORY = timedelta(hours=max(HISTORY_HOURS.values()))
PRICE_COLUMNS = ("open", "high", "low", "close", "volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume")
TALIB_REFERENCE = {
    "rsi_14": lambda o, h, lo, c, v: talib.RSI(c, 14),
    "natr_14": lambda o, h, lo, c, v: talib.NATR(h, lo, c, 14),
    "willr_14": lambda o, h, lo, c, v: talib.WILLR(h, lo, c, 14),
    "cci_20": lambda o, h, lo, c, v: talib.CCI(h, lo, c, 20),
    "mfi_14": lambda o, h, lo, c, v: talib.MFI(h, lo, c, v, 14),
    "adx_14": lambda o, h, lo, c, v: talib.ADX(h, lo, c, 14),
    "bb_pctb_20": lambda o, h, lo, c, v: (lambda u, m, b: (c - b) / (u - b))(*talib.BBANDS(c, 20, 2, 2)),
    "macd_hist_norm": lambda o, h, lo, c, v: talib.MACD(c, 12, 26, 9)[2] / c,
    "roc_24": lambda o, h, lo, c, v: talib.ROC(c, 24),
}


def inputs(start=START - HISTORY, end=END, symbols=SYMBOLS):
    world = SimulatedWorld(4, 0.3)
    prices = world.prices(symbols, start, end)
    items = world.news(symbols, start, end)
    scored = items.with_columns(pl.Series("sentiment", VaderScorer().score(items["headline"].to_list())))
    return prices, aggregate_sentiment(scored, symbols, start, end, 6.0)


@pytest.fixture(scope="module")
def data():
    return inputs()


@pytest.fixture(scope="module")
def whole(data):
    prices, sentiment = data
    return compute_features(prices, sentiment, SYMBOLS, START, END)


def by_ts(frame):
    return frame.sort("ts", "symbol")


def test_the_catalog_has_every_family_and_at_least_fifty_documented_features():
    assert len(CATALOG) >= 50
    families = {f.family for f in CATALOG}
    for family in ("returns", "volatility", "volume", "candle", "trend", "price-volume", "microstructure"):
        assert family in families
    for family in ("classic (TA-Lib)", "cross-asset", "calendar", "sentiment"):
        assert family in families
    for feature in CATALOG:
        assert feature.formula and feature.unit and feature.lookback_hours >= 0 and feature.sources, feature.name
    assert set(TALIB_REFERENCE) <= set(FEATURE_NAMES)
    for name in ("parkinson_24h", "garman_klass_24h", "rv_z_24h", "volume_z_24h", "trades_z_24h", "trend_r2_24h"):
        assert name in FEATURES
    for name in ("corr_close_volume_24h", "taker_buy_ratio_1h", "avg_trade_size_z_168h", "market_ret_1h"):
        assert name in FEATURES
    for name in ("hour_sin", "week_cos", "news_count_1h", "news_sent_mean_1h", "news_sent_decayed"):
        assert name in FEATURES


def test_the_docs_page_is_generated_from_the_catalog():
    page = Path(__file__).resolve().parents[1] / "docs" / "features.md"
    assert page.read_text() == render_catalog(), "docs/features.md is stale: run `make docs`"


def test_one_row_per_symbol_hour_with_every_feature_and_no_nan_or_infinity(whole):
    assert whole.height == 20 * 24 * 2
    assert whole.columns == ["ts", "symbol", *FEATURE_NAMES]
    assert whole.select("ts", "symbol").is_duplicated().sum() == 0
    assert whole.select(pl.col(FEATURE_NAMES).is_nan().any()).row(0) == (False,) * len(FEATURE_NAMES)
    assert whole.select(pl.col(FEATURE_NAMES).is_infinite().any()).row(0) == (False,) * len(FEATURE_NAMES)
    # With the full history in, only the sentiment features may be null (hours without headlines).
    nulls = whole.select(pl.col(FEATURE_NAMES).null_count()).row(0, named=True)
    assert {n for n, c in nulls.items() if c} <= {"news_sent_mean_1h", "news_sent_mean_prev_1h", "news_sent_mean_24h"}


@pytest.mark.parametrize(
    "cuts",
    [
        [0, 7, 73, 200, 333, 480],  # irregular chunks, one shorter than every lookback
        [0, *range(1, 25), 480],  # a day of single-hour partitions, then the rest at once
    ],
)
def test_chunk_invariance(data, whole, cuts):
    prices, sentiment = data
    bounds = [START + timedelta(hours=h) for h in cuts]
    chunks = pl.concat(
        [compute_features(prices, sentiment, SYMBOLS, a, b) for a, b in zip(bounds, bounds[1:], strict=False)]
    )
    assert_frame_equal(by_ts(chunks), by_ts(whole), check_exact=False, rel_tol=0, abs_tol=1e-9)


def test_chunk_invariance_with_gaps_in_the_data(data):
    prices, sentiment = data
    holes = [START + timedelta(hours=h) for h in (30, 31, 200)]
    holed = prices.filter(~(pl.col("ts").is_in(holes) & (pl.col("symbol") == "ETHUSDT")))
    holed_news = sentiment.filter(pl.col("ts") != START + timedelta(hours=100))
    whole = compute_features(holed, holed_news, SYMBOLS, START, END)
    bounds = [START + timedelta(hours=h) for h in (0, 31, 32, 150, 201, 480)]
    chunks = pl.concat(
        [compute_features(holed, holed_news, SYMBOLS, a, b) for a, b in zip(bounds, bounds[1:], strict=False)]
    )
    assert_frame_equal(by_ts(chunks), by_ts(whole), check_exact=False, rel_tol=0, abs_tol=1e-9)


@pytest.mark.parametrize("hour", [0, 57, 300, 479])
def test_point_in_time_no_feature_sees_the_future(data, whole, hour):
    prices, sentiment = data
    t = START + timedelta(hours=hour)
    later = pl.col("ts") > t
    shocked = prices.with_columns(
        pl.when(later).then(pl.col(c) * 1.37).otherwise(pl.col(c)).alias(c) for c in PRICE_COLUMNS
    ).with_columns(pl.when(later).then(pl.col("trades") * 3).otherwise(pl.col("trades")).alias("trades"))
    louder = sentiment.with_columns(
        pl.when(later).then(-pl.col(c) - 0.5).otherwise(pl.col(c)).alias(c)
        for c in ("sentiment_mean", "sentiment_decayed")
    ).with_columns(pl.when(later).then(pl.col("item_count") + 5).otherwise(pl.col("item_count")).alias("item_count"))
    after = compute_features(shocked, louder, SYMBOLS, START, END)
    assert_frame_equal(after.filter(pl.col("ts") <= t), whole.filter(pl.col("ts") <= t), check_exact=True)
    if hour < 479:
        changed = [n for n in FEATURE_NAMES if not after.filter(later)[n].equals(whole.filter(later)[n])]
        assert len(changed) > 40, "the canary is alive: the perturbation does reach later hours"


def talib_reference(prices: pl.DataFrame, symbol: str) -> dict[str, np.ndarray]:
    bars = prices.filter(pl.col("symbol") == symbol).sort("ts")
    arrays = [bars[c].cast(pl.Float64).to_numpy() for c in ("open", "high", "low", "close", "volume")]
    return {"ts": bars["ts"], **{name: fn(*arrays) for name, fn in TALIB_REFERENCE.items()}}


def test_classic_indicators_equal_ta_lib_after_warm_up():
    # A long series, computed in chunks that each start far from the data's start: the exponential indicators only
    # see HISTORY_HOURS of history, TA-Lib sees all of it.
    first, last = START - timedelta(days=60), START + timedelta(days=30)
    prices, sentiment = inputs(first, last)
    bounds = [first, first + timedelta(days=3), START, START + timedelta(days=11, hours=5), last]
    ours = pl.concat(
        [compute_features(prices, sentiment, SYMBOLS, a, b) for a, b in zip(bounds, bounds[1:], strict=False)]
    )
    for symbol in SYMBOLS:
        reference = talib_reference(prices, symbol)
        mine = ours.filter(pl.col("symbol") == symbol).sort("ts")
        assert mine["ts"].equals(reference["ts"])
        for name in TALIB_REFERENCE:
            warm = FEATURES[name].warmup_hours
            expected, got = reference[name][warm:], mine[name].to_numpy()[warm:]
            assert np.isnan(mine[name].cast(pl.Float64).fill_null(np.nan).to_numpy()[:warm]).all(), name
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6, err_msg=f"{symbol} {name}")


ENDPOINT_FEATURES = {f"ret_{h}h" for h in (1, 2, 4, 8, 12, 24, 72, 168)} | {"excess_ret_24h"}


def test_declared_lookbacks_and_warm_ups_are_exactly_where_nulls_fall():
    """One missing hour nulls each feature for exactly the hours its declared window covers, and a series that
    starts from nothing is null for exactly the declared warm-up: never zero, never a forward-filled guess."""
    start = START - timedelta(days=40)
    prices, sentiment = inputs(start, END)
    gap = START + timedelta(days=5)
    holed = prices.filter(~((pl.col("ts") == gap) & (pl.col("symbol") == "ETHUSDT")))
    # Every hour of the sentiment exists, with items, so only the prices gap can make a price feature null.
    frame = compute_features(holed, sentiment, SYMBOLS, start, END).filter(pl.col("symbol") == "ETHUSDT")
    hours = ((frame["ts"] - start).dt.total_hours()).to_numpy()
    gap_hour = int((gap - start) / timedelta(hours=1))
    for feature in CATALOG:
        null = frame[feature.name].is_null().to_numpy()
        if feature.sources == (CLOCK,) or SENTIMENT in feature.sources:
            continue
        if feature.sources == (MARKET,):
            assert not null[hours >= feature.warmup_hours].any(), feature.name  # BTC has no gap
            continue
        if feature.name in ENDPOINT_FEATURES:  # a return reads two closes, not the hours between them
            touched = (hours == gap_hour) | (hours == gap_hour + feature.lookback_hours)
        else:  # TA-Lib restarts after the gap; its exponential indicators are null for their warm-up, not lookback
            reach = feature.warmup_hours if "TA-Lib" in feature.family else feature.lookback_hours
            touched = (hours >= gap_hour) & (hours <= gap_hour + reach)
        expected = (hours < feature.warmup_hours) | touched
        assert (null == expected).all(), (
            f"{feature.name}: null at hours {np.flatnonzero(null != expected)[:10].tolist()} "
            f"(declared lookback {feature.lookback_hours}, warm-up {feature.warmup_hours})"
        )


def test_sentiment_features_are_null_where_news_are_missing_and_zero_only_when_counted(data):
    prices, sentiment = data
    missing = START + timedelta(hours=50)
    frame = compute_features(prices, sentiment.filter(pl.col("ts") != missing), SYMBOLS, START, END)
    at = frame.filter(pl.col("ts") == missing).row(0, named=True)
    assert at["news_count_1h"] is None and at["news_sent_decayed"] is None
    day_later = frame.filter(pl.col("ts") == missing + timedelta(hours=23)).row(0, named=True)
    assert day_later["news_count_24h"] is None
    assert frame.filter(pl.col("ts") == missing + timedelta(hours=24)).row(0, named=True)["news_count_24h"] is not None
    quiet = frame.filter(pl.col("news_count_1h") == 0)
    assert quiet.height and quiet["news_sent_mean_1h"].null_count() == quiet.height


def test_degenerate_windows_are_null_not_zero_or_infinite(data):
    prices, sentiment = data
    frozen_from = START + timedelta(days=3)
    frozen = frozen_from + timedelta(hours=60)
    level = prices.filter((pl.col("ts") == frozen_from) & (pl.col("symbol") == "ETHUSDT"))["close"][0]
    still = (pl.col("symbol") == "ETHUSDT") & (pl.col("ts") >= frozen_from) & (pl.col("ts") <= frozen)
    halted = prices.with_columns(
        *(pl.when(still).then(pl.lit(level)).otherwise(pl.col(c)).alias(c) for c in ("open", "high", "low", "close")),
        *(pl.when(still).then(0).otherwise(pl.col(c)).alias(c) for c in PRICE_COLUMNS[4:]),
        pl.when(still).then(0).otherwise(pl.col("trades")).alias("trades"),
    )
    row = (
        compute_features(halted, sentiment, SYMBOLS, START, END)
        .filter((pl.col("symbol") == "ETHUSDT") & (pl.col("ts") == frozen))
        .row(0, named=True)
    )
    undefined = [
        "candle_body_to_range", "candle_close_position", "price_position_24h", "trend_r2_24h", "volume_z_24h",
        "trades_z_24h", "corr_close_volume_24h", "corr_return_volume_change_24h", "taker_buy_ratio_1h",
        "taker_buy_ratio_24h", "avg_trade_size_z_168h", "rv_ratio_6h_24h", "bb_pctb_20",
    ]  # fmt: skip
    assert {n: row[n] for n in undefined} == dict.fromkeys(undefined)
    assert row["ret_1h"] == 0.0 and row["rv_24h"] == 0.0 and row["range_log"] == 0.0  # defined, and zero


def test_cross_asset_features_follow_the_reference_symbol(data, whole):
    btc = whole.filter(pl.col("symbol") == "BTCUSDT").sort("ts")
    eth = whole.filter(pl.col("symbol") == "ETHUSDT").sort("ts")
    assert eth["market_ret_1h"].equals(btc["ret_1h"]) and eth["market_ret_24h"].equals(btc["ret_24h"])
    np.testing.assert_allclose(eth["excess_ret_24h"], eth["ret_24h"] - btc["ret_24h"], atol=1e-12)
    np.testing.assert_allclose(btc["market_corr_168h"], 1.0, atol=1e-9)
    prices, sentiment = data
    alone = compute_features(prices, sentiment, ["ETHUSDT"], START, END)
    assert alone["market_ret_1h"].null_count() == alone.height, "no reference symbol: null, not zero"


def test_calendar_features():
    prices, sentiment = inputs(START - HISTORY, START + timedelta(days=7))
    frame = compute_features(prices, sentiment, SYMBOLS, START, START + timedelta(days=7))
    saturday_6am = frame.filter(pl.col("ts") == datetime(2025, 7, 5, 6, tzinfo=UTC)).row(0, named=True)
    assert saturday_6am["hour_sin"] == pytest.approx(1.0) and saturday_6am["is_weekend"] == 1.0
    monday_midnight = frame.filter(pl.col("ts") == datetime(2025, 7, 7, tzinfo=UTC)).row(0, named=True)
    assert monday_midnight["week_sin"] == pytest.approx(0.0, abs=1e-12) and monday_midnight["week_cos"] == 1.0
    assert monday_midnight["is_weekend"] == 0.0


def test_bad_inputs_are_refused_with_the_reason(data):
    prices, sentiment = data
    with pytest.raises(ValueError, match="more than one row"):
        compute_features(pl.concat([prices, prices.head(1)]), sentiment, SYMBOLS, START, END)
    shifted = prices.with_columns(pl.col("ts") + timedelta(minutes=30))
    with pytest.raises(ValueError, match="not on the hour"):
        compute_features(shifted, sentiment, SYMBOLS, START, END)
    with pytest.raises(ValueError, match="lacks the columns"):
        compute_features(prices.drop("trades"), sentiment, SYMBOLS, START, END)
    with pytest.raises(ValueError, match="empty or inverted"):
        compute_features(prices, sentiment, SYMBOLS, END, START)


def test_feature_version_is_a_stable_hash_of_everything_that_decides_the_values(monkeypatch):
    version = feature_version("vader", 6.0)
    assert version == feature_version("vader", 6) and len(version) == 16
    assert feature_version("loughran_mcdonald", 6.0) != version
    assert feature_version("vader", 12.0) != version
    monkeypatch.setattr(catalog, "IMPLEMENTATION_REVISION", catalog.IMPLEMENTATION_REVISION + 1)
    assert feature_version("vader", 6.0) != version
