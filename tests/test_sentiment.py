import math
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from alphapulse_assets.news.sentiment import (
    LoughranMcDonaldScorer,
    VaderScorer,
    aggregate_sentiment,
    decay_window,
    make_scorer,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
SCHEMA = {"published_at": pl.Datetime("us", "UTC"), "symbols": pl.List(pl.String), "sentiment": pl.Float64}


def scored(rows: list[tuple[datetime, list[str], float]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")


def test_vader_scores_order_good_and_bad_news():
    good, neutral, bad = VaderScorer().score(
        [
            "Bitcoin soars as investors cheer strong inflows",
            "Bitcoin trades sideways",
            "Bitcoin crashes after liquidations spark fear",
        ]
    )
    assert good > 0.3 and bad < -0.3 and abs(neutral) < 0.1


def test_loughran_mcdonald_reads_the_shipped_dictionary_with_its_negation_rule():
    scorer = LoughranMcDonaldScorer()
    positive, negative = scorer._words
    # The 2018 master dictionary's word counts: the file really is Loughran–McDonald's.
    assert (len(positive), len(negative)) == (354, 2355)
    gains, losses, mixed, none, negated = scorer.score(
        [
            "Bitcoin gains on strong demand",
            "Exchange losses deepen after litigation",
            "Strong gains and impressive profit despite losses",
            "Bitcoin trades sideways",
            "No gains for bitcoin",
        ]
    )
    assert gains == 1.0 and losses == -1.0 and none == 0.0 and negated == -1.0
    assert mixed == pytest.approx((4 - 1) / 5)  # "despite" is on the positive list, "profit" on neither
    assert scorer.explain("No gains for bitcoin") == "-gains(negated)"


def test_scorers_explain_what_moved_the_score():
    assert "cheer+2.3" in VaderScorer().explain("Bitcoin soars as investors cheer")
    assert make_scorer("loughran_mcdonald").name.startswith("loughran-mcdonald")
    with pytest.raises(ValueError, match="unknown sentiment scorer"):
        make_scorer("finbert")


def test_aggregation_counts_market_news_for_every_symbol_and_keeps_empty_hours():
    frame = aggregate_sentiment(
        scored(
            [
                (T0 + timedelta(minutes=5), ["BTCUSDT"], 0.8),
                (T0 + timedelta(minutes=50), [], -0.2),
                (T0 + timedelta(hours=1, minutes=1), ["ETHUSDT", "BTCUSDT"], 0.4),
                (T0 + timedelta(minutes=7), ["SOLUSDT"], 0.9),  # a symbol not configured: counts for none
            ]
        ),
        ["BTCUSDT", "ETHUSDT"],
        T0,
        T0 + timedelta(hours=3),
    )
    assert frame.height == 6
    rows = {(r["ts"], r["symbol"]): r for r in frame.iter_rows(named=True)}
    btc0 = rows[(T0, "BTCUSDT")]
    assert (btc0["item_count"], btc0["symbol_item_count"], btc0["market_item_count"]) == (2, 1, 1)
    assert btc0["sentiment_mean"] == pytest.approx(0.3) and btc0["sentiment_min"] == -0.2
    eth0 = rows[(T0, "ETHUSDT")]
    assert eth0["item_count"] == 1 and eth0["sentiment_mean"] == -0.2
    assert rows[(T0 + timedelta(hours=1), "ETHUSDT")]["sentiment_mean"] == 0.4
    quiet = rows[(T0 + timedelta(hours=2), "BTCUSDT")]
    assert quiet["item_count"] == 0 and quiet["sentiment_mean"] is None
    # Quiet hours still carry the decayed tone of earlier news.
    assert quiet["sentiment_decayed"] is not None and quiet["news_intensity_decayed"] > 0


def test_decayed_sentiment_is_the_half_life_weighted_mean_measured_at_the_hours_end():
    half_life = 2.0
    news = scored([(T0 + timedelta(minutes=30), ["BTCUSDT"], 1.0), (T0 + timedelta(hours=2), ["BTCUSDT"], -1.0)])
    frame = aggregate_sentiment(news, ["BTCUSDT"], T0, T0 + timedelta(hours=4), half_life)
    by_hour = dict(zip(frame["ts"], frame.iter_rows(named=True), strict=True))
    first = by_hour[T0]
    assert first["sentiment_decayed"] == pytest.approx(1.0)
    assert first["news_intensity_decayed"] == pytest.approx(2 ** (-0.5 / half_life))
    w_old, w_new = 2 ** (-2.5 / half_life), 2 ** (-1.0 / half_life)  # ages at the end of hour 2 (03:00)
    third = by_hour[T0 + timedelta(hours=2)]
    assert third["news_intensity_decayed"] == pytest.approx(w_old + w_new)
    assert third["sentiment_decayed"] == pytest.approx((w_old - w_new) / (w_old + w_new))


def test_decay_reaches_back_a_fixed_window_so_chunking_does_not_matter():
    half_life = 1.5
    reach = decay_window(half_life)
    assert reach == timedelta(hours=math.ceil(8 * half_life))
    rng_rows = [
        (T0 + timedelta(minutes=37 * i), [["BTCUSDT"], [], ["ETHUSDT"]][i % 3], math.sin(i)) for i in range(200)
    ]
    news = scored(rng_rows)
    end = T0 + timedelta(hours=120)
    whole = aggregate_sentiment(news, ["BTCUSDT", "ETHUSDT"], T0, end, half_life)
    chunks = []
    for a, b in ((0, 7), (7, 50), (50, 51), (51, 120)):
        start, stop = T0 + timedelta(hours=a), T0 + timedelta(hours=b)
        visible = news.filter((pl.col("published_at") >= start - reach) & (pl.col("published_at") < stop))
        chunks.append(aggregate_sentiment(visible, ["BTCUSDT", "ETHUSDT"], start, stop, half_life))
    assert_frame_equal(pl.concat(chunks), whole, abs_tol=1e-12)


def test_point_in_time_news_after_an_hour_closes_changes_nothing_at_or_before_it():
    """The row for hour t is the decision at t + 1h: news published at or after t + 1h must not touch it."""
    base = scored([(T0 + timedelta(hours=h, minutes=10 * (h % 6)), [], 0.1 * (h % 7) - 0.3) for h in range(48)])
    end = T0 + timedelta(hours=48)
    reference = aggregate_sentiment(base, ["BTCUSDT"], T0, end)
    cutoff = T0 + timedelta(hours=30)
    for published_at in (cutoff, cutoff + timedelta(minutes=1), cutoff + timedelta(hours=5)):
        perturbed = pl.concat([base, scored([(published_at, ["BTCUSDT"], 1.0)])])
        changed = aggregate_sentiment(perturbed, ["BTCUSDT"], T0, end)
        before = pl.col("ts") < cutoff
        assert changed.filter(before).equals(reference.filter(before))
        assert not changed.filter(pl.col("ts") == published_at.replace(minute=0)).equals(
            reference.filter(pl.col("ts") == published_at.replace(minute=0))
        )
    # One second before the hour closes still counts for that hour.
    late = pl.concat([base, scored([(cutoff - timedelta(seconds=1), ["BTCUSDT"], 1.0)])])
    row = aggregate_sentiment(late, ["BTCUSDT"], T0, end).filter(pl.col("ts") == cutoff - timedelta(hours=1))
    assert row["symbol_item_count"].item() == 1


def test_aggregation_of_no_news():
    frame = aggregate_sentiment(pl.DataFrame(schema=SCHEMA), ["BTCUSDT"], T0, T0 + timedelta(hours=2))
    assert frame["item_count"].to_list() == [0, 0] and frame["sentiment_mean"].null_count() == 2
    assert frame["sentiment_decayed"].null_count() == 2 and frame["news_intensity_decayed"].to_list() == [0.0, 0.0]
