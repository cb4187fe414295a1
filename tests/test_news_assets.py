"""The news assets end to end: RSS and JSONL sources land, deduplicate, tag and score headlines, and the
sentiment reaches `features`; the drop-folder sensor asks for exactly the hours a file reaches."""

import io
import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl
from news_stub import Document, FeedServer, atom, rss

from alphapulse_assets.features.assets import features
from alphapulse_assets.features.catalog import HISTORY_HOURS, SENTIMENT
from alphapulse_assets.features.sensors import news_drop_sensor
from alphapulse_assets.market.assets import prices
from alphapulse_assets.market.resources import PriceQuality, SimulatedMarket
from alphapulse_assets.news.assets import news, news_sentiment
from alphapulse_assets.news.resources import JsonlDropFolder, RssNewsSource, SentimentModel
from alphapulse_assets.partitions import PARTITION_FORMAT
from alphapulse_assets.runner import run_job
from alphapulse_assets.storage.object_store import LocalObjectStore
from alphapulse_assets.storage.warehouse import DuckDBWarehouse

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
DAY = datetime(2025, 3, 3, tzinfo=UTC)
RANGE = (DAY.strftime(PARTITION_FORMAT), (DAY + timedelta(hours=23)).strftime(PARTITION_FORMAT))


def definitions(tmp_path, newswire) -> tuple[dg.Definitions, DuckDBWarehouse]:
    warehouse = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))
    assets = [prices, news, news_sentiment, features]
    defs = dg.Definitions(
        assets=assets,
        jobs=[dg.define_asset_job("news_test_job", selection=assets)],
        resources={
            "market": SimulatedMarket(symbols=SYMBOLS, seed=7, news_signal_strength=0.3),
            "newswire": newswire,
            "warehouse": warehouse,
            "object_store": LocalObjectStore(root=str(tmp_path / "objects")),
            "sentiment": SentimentModel(scorer_name="loughran_mcdonald", half_life_hours=3.0),
            "price_quality": PriceQuality(),
        },
        executor=dg.in_process_executor,
    )
    return defs, warehouse


def run(defs, instance, partition_range=RANGE):
    outcome = run_job(defs, instance, "news_test_job", partition_range=partition_range, out=io.StringIO())
    assert outcome.success, outcome.error


def test_rss_and_atom_feeds_flow_through_news_sentiment_into_features(tmp_path):
    at = DAY + timedelta(hours=10)
    wire_a = rss(
        [
            {
                "title": "Bitcoin gains as strong inflows return",
                "link": "https://news.example/btc-gains?utm_source=rss",
                "guid": "a-1",
                "pubDate": at + timedelta(minutes=59, seconds=59),
            },
            {
                "title": "Crypto market losses deepen",
                "link": "https://news.example/mkt",
                "pubDate": at + timedelta(hours=1),
            },
            {"title": "Undated rumour", "link": "https://news.example/rumour"},
        ]
    )
    wire_b = atom(
        [
            {  # the same story, linked without the tracking parameter, worded and timed differently
                "title": "Bitcoin gains on strong inflows",
                "link": "http://www.news.example/btc-gains/",
                "id": "urn:b:1",
                "published": at + timedelta(minutes=59, seconds=59),
            },
            {
                "title": "Ether slides after exploit losses",
                "link": "https://b.example/eth",
                "id": "urn:b:2",
                "published": at + timedelta(hours=3, minutes=5),
            },
        ]
    )
    with FeedServer({"/a": Document(wire_a, etag='"a1"'), "/b": Document(wire_b, etag='"b1"')}) as server:
        source = RssNewsSource(symbols=SYMBOLS, feed_urls=[server.url("/a"), server.url("/b"), server.url("/gone")])
        defs, warehouse = definitions(tmp_path, source)
        with dg.instance_for_test() as instance:
            run(defs, instance)
            first = warehouse.query("SELECT * FROM news ORDER BY published_at")
            run(defs, instance)  # a re-poll: 304s, and nothing is counted twice
            assert server.statuses("/a") == [200, 304] and server.statuses("/b") == [200, 304]
            latest = instance.get_latest_materialization_event(dg.AssetKey("news")).asset_materialization
    stored = warehouse.query("SELECT * FROM news ORDER BY published_at")
    assert stored.equals(first) and stored.height == 3
    story = stored.row(0, named=True)
    assert story["sources"] == sorted([server.url("/a"), server.url("/b")])
    assert story["url"] == "https://news.example/btc-gains" and story["symbols"] == ["BTCUSDT"]
    assert story["ts"] == at  # published 10:59:59 belongs to the hour starting 10:00
    assert stored["ts"].to_list()[1:] == [at + timedelta(hours=1), at + timedelta(hours=3)]
    assert stored["symbols"].to_list()[1:] == [[], ["ETHUSDT"]]

    rejected = warehouse.query("SELECT * FROM news_rejected ORDER BY reason")
    assert rejected["reason"].to_list() == ["http_error", "no_date"]
    assert rejected.filter(pl.col("reason") == "http_error")["occurrences"].item() == 2  # the dead feed, each poll
    assert rejected.filter(pl.col("reason") == "no_date")["occurrences"].item() == 1  # its document was 304 after
    assert latest.metadata["range_row_count"].value == 3

    sentiment = warehouse.query("SELECT * FROM news_sentiment ORDER BY ts, symbol")
    btc = sentiment.filter(pl.col("symbol") == "BTCUSDT")
    by_hour = dict(zip(btc["ts"], btc.iter_rows(named=True), strict=True))
    assert by_hour[at]["item_count"] == 1 and by_hour[at]["sentiment_mean"] == 1.0
    assert by_hour[at - timedelta(hours=1)]["news_intensity_decayed"] == 0.0  # nothing is seen early
    assert (
        by_hour[at + timedelta(hours=1)]["market_item_count"] == 1
        and by_hour[at + timedelta(hours=1)]["sentiment_mean"] == -1.0
    )
    assert 0 < by_hour[at + timedelta(hours=2)]["news_intensity_decayed"] < by_hour[at]["news_intensity_decayed"] + 1

    feats = warehouse.query("SELECT * FROM features WHERE symbol = 'BTCUSDT' ORDER BY ts")
    rows = dict(zip(feats["ts"], feats.iter_rows(named=True), strict=True))
    assert rows[at]["news_count_1h"] == 1.0 and rows[at]["news_sent_decayed"] == 1.0
    assert rows[at - timedelta(hours=1)]["news_sent_decayed"] is None
    assert rows[at + timedelta(hours=2)]["news_sent_decayed"] == by_hour[at + timedelta(hours=2)]["sentiment_decayed"]


def write_jsonl(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_a_dropped_jsonl_export_is_picked_up_by_the_sensor_and_deduplicated(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    at = DAY + timedelta(hours=6)
    source = JsonlDropFolder(symbols=SYMBOLS, news_dir=str(drop))
    defs, warehouse = definitions(tmp_path, source)
    sentiment = SentimentModel(half_life_hours=3.0)
    with dg.instance_for_test() as instance:
        # The sensor's first look takes the folder as it is; the export dropped after it is new.
        first_look = news_drop_sensor(
            dg.build_sensor_context(instance=instance, resources={"newswire": source, "sentiment": sentiment})
        )
        assert not first_look.run_requests and "first look" in first_look.skip_reason.skip_message
        write_jsonl(
            drop / "desk-a.jsonl",
            [
                {
                    "url": "https://n.example/1",
                    "title": "BTC gains",
                    "published": (at + timedelta(minutes=5)).isoformat(),
                },
                {
                    "id": "x-2",
                    "title": "ETH losses",
                    "published": (at + timedelta(hours=2)).isoformat(),
                    "source": "desk",
                },
                {"url": "https://n.example/3", "title": "No date"},
            ],
        )
        context = dg.build_sensor_context(
            instance=instance, cursor=first_look.cursor, resources={"newswire": source, "sentiment": sentiment}
        )
        result = news_drop_sensor(context)
        (request,) = result.run_requests
        reach = sentiment.lookback() + timedelta(hours=HISTORY_HOURS[SENTIMENT])
        assert request.tags["dagster/asset_partition_range_start"] == at.strftime(PARTITION_FORMAT)
        assert request.tags["dagster/asset_partition_range_end"] == (at + timedelta(hours=2) + reach).strftime(
            PARTITION_FORMAT
        )
        unchanged = news_drop_sensor(
            dg.build_sensor_context(
                instance=instance, cursor=result.cursor, resources={"newswire": source, "sentiment": sentiment}
            )
        )
        assert not unchanged.run_requests

        run(defs, instance)
        # A second export carrying the first story again, from another desk, and one new story.
        write_jsonl(
            drop / "desk-b.jsonl",
            [
                {
                    "url": "https://n.example/1?utm_campaign=z",
                    "title": "Bitcoin gains",
                    "published": at.isoformat(),
                    "source": "desk-b",
                },
                {
                    "url": "https://n.example/4",
                    "title": "Market calm",
                    "published": (at + timedelta(hours=1)).isoformat(),
                },
            ],
        )
        again = news_drop_sensor(
            dg.build_sensor_context(
                instance=instance, cursor=result.cursor, resources={"newswire": source, "sentiment": sentiment}
            )
        )
        assert [r.tags["alphapulse/news_file"] for r in again.run_requests] == ["desk-b.jsonl"]
        run(defs, instance)

    stored = warehouse.query("SELECT * FROM news ORDER BY published_at")
    assert stored["headline"].to_list() == ["BTC gains", "Market calm", "ETH losses"]
    assert stored["sources"].to_list() == [["desk-b", "jsonl:desk-a.jsonl"], ["jsonl:desk-b.jsonl"], ["desk"]]
    # The first landing fixed the story's time; a later sighting adds its source without moving it between hours.
    assert stored["published_at"][0] == at + timedelta(minutes=5)
    files = warehouse.query("SELECT * FROM news_files ORDER BY file_name")
    assert files["file_name"].to_list() == ["desk-a.jsonl", "desk-b.jsonl"] and files["rejected"].to_list() == [1, 0]
    assert warehouse.query("SELECT reason FROM news_rejected")["reason"].to_list() == ["no_date"]


def test_the_sensor_skips_when_news_do_not_come_from_a_drop_folder():
    context = dg.build_sensor_context(
        resources={"newswire": RssNewsSource(symbols=SYMBOLS, feed_urls=["http://x"]), "sentiment": SentimentModel()}
    )
    assert "not jsonl" in news_drop_sensor(context).skip_message


def test_an_item_counted_in_two_hours_fails_the_blocking_check(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    write_jsonl(drop / "a.jsonl", [{"url": "https://n.example/1", "title": "BTC", "published": DAY.isoformat()}])
    defs, warehouse = definitions(tmp_path, JsonlDropFolder(symbols=SYMBOLS, news_dir=str(drop)))
    with dg.instance_for_test() as instance:
        first = dg.materialize([news], partition_key=RANGE[0], instance=instance, resources=defs.resources)
        assert all(e.passed for e in first.get_asset_check_evaluations())
        with warehouse.connect() as con:  # an older version's bug, or a hand edit, counted it in a second hour
            con.execute("INSERT INTO news SELECT * REPLACE (ts + INTERVAL 5 HOUR AS ts) FROM news")
        second = dg.materialize(
            [news], partition_key=RANGE[0], instance=instance, resources=defs.resources, raise_on_error=False
        )
    (evaluation,) = [e for e in second.get_asset_check_evaluations() if e.check_name == "news_unique_items"]
    assert not evaluation.passed and evaluation.metadata["items_in_several_rows"].value == 1


def _news_check(instance, name: str):
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey("news"), name)]
    )[dg.AssetCheckKey(dg.AssetKey("news"), name)]
    return record.event.dagster_event.event_specific_data


def _assert_no_crash_and_a_warning(defs, warehouse, instance) -> None:
    run(defs, instance)
    assert warehouse.query("SELECT count(*) AS n FROM news")["n"][0] == 0
    check = _news_check(instance, "news_has_items")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    sentiment = warehouse.query("SELECT * FROM news_sentiment")
    assert sentiment.height == 24 * len(SYMBOLS) and sentiment["item_count"].to_list() == [0] * sentiment.height


def test_an_empty_drop_folder_gives_empty_windows_and_a_warning_not_a_crash(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    defs, warehouse = definitions(tmp_path, JsonlDropFolder(symbols=SYMBOLS, news_dir=str(drop)))
    with dg.instance_for_test() as instance:
        _assert_no_crash_and_a_warning(defs, warehouse, instance)


def test_a_feed_with_no_items_gives_empty_windows_and_a_warning_not_a_crash(tmp_path):
    with FeedServer({"/empty": Document(rss([]))}) as server:
        defs, warehouse = definitions(tmp_path, RssNewsSource(symbols=SYMBOLS, feed_urls=[server.url("/empty")]))
        with dg.instance_for_test() as instance:
            _assert_no_crash_and_a_warning(defs, warehouse, instance)
            assert "no headlines in this window" in _news_check(instance, "news_has_items").description


def test_price_only_news_features_are_null_not_zero_and_have_their_own_version(tmp_path):
    from alphapulse_assets.features.catalog import CATALOG
    from alphapulse_assets.features.store import current_feature_version
    from alphapulse_assets.news.resources import NoNewsSource

    defs, warehouse = definitions(tmp_path, NoNewsSource(symbols=SYMBOLS))
    price_only = SentimentModel(scorer_name="loughran_mcdonald", half_life_hours=3.0, headlines=False)
    defs = dg.Definitions(
        assets=[prices, news, news_sentiment, features],
        jobs=[dg.define_asset_job("news_test_job", selection=[prices, news, news_sentiment, features])],
        resources={**defs.resources, "sentiment": price_only},
        executor=dg.in_process_executor,
    )
    with dg.instance_for_test() as instance:
        run(defs, instance)
        check = _news_check(instance, "news_has_items")
        assert check.passed and "ALPHAPULSE_NEWS_SOURCE=none" in check.description
    # Unknown, not zero: a count of 0 would tell a model every hour was quiet.
    sentiment = warehouse.query("SELECT * FROM news_sentiment")
    assert sentiment.height == 24 * len(SYMBOLS) and sentiment["item_count"].null_count() == sentiment.height
    news_features = [f.name for f in CATALOG if SENTIMENT in f.sources]
    frame = warehouse.query("SELECT * FROM features")
    assert frame.height == 24 * len(SYMBOLS) and len(news_features) >= 8
    assert all(frame[name].null_count() == frame.height for name in news_features)
    assert frame["ret_1h"].null_count() == len(SYMBOLS)  # only the first hour, which has no earlier close
    assert current_feature_version(price_only) != current_feature_version(
        SentimentModel(scorer_name="loughran_mcdonald", half_life_hours=3.0)
    )
    # The scorer and half-life decide nothing without headlines.
    assert current_feature_version(price_only) == current_feature_version(SentimentModel(headlines=False))
