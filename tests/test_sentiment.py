from datetime import UTC, datetime, timedelta

import polars as pl

from alphapulse_assets.news.sentiment import VaderScorer, aggregate_sentiment

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def test_vader_scores_order_good_and_bad_news():
    good, neutral, bad = VaderScorer().score(
        [
            "Bitcoin soars as investors cheer strong inflows",
            "Bitcoin trades sideways",
            "Bitcoin crashes after liquidations spark fear",
        ]
    )
    assert good > 0.3 and bad < -0.3 and abs(neutral) < 0.1


def test_aggregation_counts_market_news_for_every_symbol_and_keeps_empty_hours():
    scored = pl.DataFrame(
        {
            "ts": [T0, T0, T0 + timedelta(hours=1)],
            "symbols": [["BTCUSDT"], [], ["ETHUSDT", "BTCUSDT"]],
            "sentiment": [0.8, -0.2, 0.4],
        }
    )
    frame = aggregate_sentiment(scored, ["BTCUSDT", "ETHUSDT"], T0, T0 + timedelta(hours=3))
    assert frame.height == 6
    rows = {(r["ts"], r["symbol"]): r for r in frame.iter_rows(named=True)}
    btc0 = rows[(T0, "BTCUSDT")]
    assert (btc0["item_count"], btc0["symbol_item_count"], btc0["market_item_count"]) == (2, 1, 1)
    assert abs(btc0["sentiment_mean"] - 0.3) < 1e-12 and btc0["sentiment_min"] == -0.2
    eth0 = rows[(T0, "ETHUSDT")]
    assert eth0["item_count"] == 1 and eth0["sentiment_mean"] == -0.2
    assert rows[(T0 + timedelta(hours=1), "ETHUSDT")]["sentiment_mean"] == 0.4
    quiet = rows[(T0 + timedelta(hours=2), "BTCUSDT")]
    assert quiet["item_count"] == 0 and quiet["sentiment_mean"] is None


def test_aggregation_of_no_news():
    empty = pl.DataFrame(
        schema={"ts": pl.Datetime("us", "UTC"), "symbols": pl.List(pl.String), "sentiment": pl.Float64}
    )
    frame = aggregate_sentiment(empty, ["BTCUSDT"], T0, T0 + timedelta(hours=2))
    assert frame["item_count"].to_list() == [0, 0] and frame["sentiment_mean"].null_count() == 2
