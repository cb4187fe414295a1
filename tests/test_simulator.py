from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from alphapulse_assets.simulation import SimulatedWorld

START = datetime(2025, 6, 1, tzinfo=UTC)


def returns(world, symbol="BTCUSDT", days=240):
    frame = world.prices([symbol], START, START + timedelta(days=days))
    return np.diff(np.log(frame["close"].to_numpy()))


def autocorr(x, lag):
    return float(np.corrcoef(x[lag:], x[:-lag])[0, 1])


def test_stylized_facts():
    r = returns(SimulatedWorld(seed=3, news_signal_strength=0.0))
    kurtosis = float(np.mean((r - r.mean()) ** 4) / np.var(r) ** 2)
    assert kurtosis > 3.0, "fat tails"
    assert all(autocorr(np.abs(r), lag) > 0 for lag in range(1, 25)), "volatility clustering"
    assert abs(autocorr(r, 1)) < 3 / np.sqrt(len(r)), "no linear predictability without the news signal"


def test_cross_asset_correlation_and_intraday_pattern():
    world = SimulatedWorld(seed=3, news_signal_strength=0.0)
    frame = world.prices(["BTCUSDT", "ETHUSDT"], START, START + timedelta(days=120))
    wide = frame.pivot(on="symbol", index="ts", values="close").sort("ts")
    btc, eth = (np.diff(np.log(wide[s].to_numpy())) for s in ("BTCUSDT", "ETHUSDT"))
    assert np.corrcoef(btc, eth)[0, 1] > 0.3
    by_hour = frame.group_by(pl.col("ts").dt.hour().alias("h")).agg(pl.col("volume").mean()).sort("h")
    volume = by_hour["volume"].to_numpy()
    assert volume[15] > 1.5 * volume[3], "volume peaks at the US open"


def test_deterministic_and_independent_of_the_requested_range():
    world = SimulatedWorld(seed=11, news_signal_strength=0.3)
    whole = world.prices(["BTCUSDT", "SOLUSDT"], START, START + timedelta(days=30))
    part = world.prices(["SOLUSDT"], START + timedelta(days=12, hours=5), START + timedelta(days=13))
    joined = part.join(whole, on=["ts", "symbol"], suffix="_whole")
    assert joined.height == part.height
    for column in ("open", "high", "low", "close", "volume"):
        assert (joined[column] == joined[f"{column}_whole"]).all()
    again = SimulatedWorld(seed=11, news_signal_strength=0.3).news(["BTCUSDT"], START, START + timedelta(days=2))
    assert again.equals(world.news(["BTCUSDT"], START, START + timedelta(days=2)))


def test_seed_changes_the_world():
    a = SimulatedWorld(1, 0.3).prices(["BTCUSDT"], START, START + timedelta(days=2))
    b = SimulatedWorld(2, 0.3).prices(["BTCUSDT"], START, START + timedelta(days=2))
    assert not a["close"].equals(b["close"])


def test_ohlc_is_consistent():
    frame = SimulatedWorld(5, 0.3).prices(["BTCUSDT", "XRPUSDT"], START, START + timedelta(days=60))
    assert frame.filter(
        (pl.col("low") > pl.min_horizontal("open", "close")) | (pl.col("high") < pl.max_horizontal("open", "close"))
    ).is_empty()
    assert (frame["low"] > 0).all() and (frame["volume"] > 0).all()


def test_news_tone_leads_next_hour_return():
    """The planted signal: hours with good news are followed by higher returns, with strength 0 they are not."""

    def lead_correlation(strength):
        world = SimulatedWorld(seed=21, news_signal_strength=strength)
        end = START + timedelta(days=200)
        r = world.prices(["BTCUSDT"], START, end).with_columns(pl.col("close").log().diff().alias("r"))
        from alphapulse_assets.news.sentiment import VaderScorer, aggregate_sentiment

        items = world.news(["BTCUSDT"], START, end)
        scored = items.with_columns(pl.Series("sentiment", VaderScorer().score(items["headline"].to_list())))
        sentiment = aggregate_sentiment(scored, ["BTCUSDT"], START, end)
        frame = sentiment.join(r, on=["ts", "symbol"]).sort("ts").with_columns(pl.col("r").shift(-1).alias("next"))
        frame = frame.drop_nulls(["sentiment_mean", "next"])
        return float(np.corrcoef(frame["sentiment_mean"], frame["next"])[0, 1])

    assert lead_correlation(0.3) > 0.1
    assert abs(lead_correlation(0.0)) < 0.05


def test_rejects_bad_ranges():
    world = SimulatedWorld(1, 0.1)
    with pytest.raises(ValueError, match="inverted"):
        world.prices(["BTCUSDT"], START, START)
    with pytest.raises(ValueError, match="before the simulated market"):
        world.prices(["BTCUSDT"], datetime(2019, 1, 1, tzinfo=UTC), START)
    with pytest.raises(ValueError, match="not on the hour"):
        world.prices(["BTCUSDT"], START + timedelta(minutes=5), START + timedelta(hours=2))


def test_newswire_covers_symbols_the_simulated_market_does_not_list():
    """Real prices (an archive) with simulated news: any symbol gets a stable news stream named after its base."""
    world = SimulatedWorld(seed=3, news_signal_strength=0.3)
    items = world.news(["PEPEUSDT"], START, START + timedelta(days=5))
    assert items.height > 20 and items["headline"].str.contains("PEPE").any()
    assert items.equals(
        SimulatedWorld(seed=3, news_signal_strength=0.3).news(["PEPEUSDT"], START, START + timedelta(days=5))
    )
    btc = world.news(["BTCUSDT"], START, START + timedelta(days=5))
    assert not btc["headline"].str.contains("PEPE").any()


def test_an_hour_before_the_market_opens_fails_without_retries():
    from alphapulse_assets.market.resources import SimulatedMarket
    from alphapulse_assets.news.resources import SimulatedNewswire
    from alphapulse_assets.retries import NotRetryable

    before = (datetime(2019, 12, 31, tzinfo=UTC), datetime(2020, 1, 1, 1, tzinfo=UTC))
    market = SimulatedMarket(symbols=["BTCUSDT"], seed=1, news_signal_strength=0.1)
    wire = SimulatedNewswire(symbols=["BTCUSDT"], seed=1, news_signal_strength=0.1)
    for fetch in (lambda: market.fetch_prices(*before), lambda: wire.collect(*before, None)):
        with pytest.raises(NotRetryable, match="before the simulated market opens .* ALPHAPULSE_HISTORY_START") as exc:
            fetch()
        assert exc.value.allow_retries is False
