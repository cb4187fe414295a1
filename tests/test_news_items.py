"""Item identity, deduplication, symbol tagging and JSONL parsing: pure functions."""

import json
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from alphapulse_assets.news.items import (
    RAW_ITEM_SCHEMA,
    NewsItemError,
    SymbolTagger,
    canonical_url,
    item_identity,
    merge_sightings,
)
from alphapulse_assets.news.jsonl import parse_jsonl, parse_timestamp, published_span
from alphapulse_assets.simulation import SYMBOL_CATALOG, SimulatedWorld

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("https://example.com/a", "https://example.com/a"),
        ("HTTP://WWW.Example.COM:80/a/?utm_source=x&utm_medium=rss#comments", "https://example.com/a"),
        ("https://example.com:443/a?b=2&a=1&fbclid=zz", "https://example.com/a?a=1&b=2"),
        ("https://example.com:8443/a/", "https://example.com:8443/a"),
        ("https://example.com/", "https://example.com"),
    ],
)
def test_canonical_url(url, canonical):
    assert canonical_url(url) == canonical


def test_identity_is_the_canonical_url_else_the_guid():
    same = {item_identity(u, g)[0] for u, g in [("https://x.io/a?utm_source=1", "g1"), ("http://www.x.io/a/", "g2")]}
    assert len(same) == 1
    assert item_identity(None, "urn:1")[0] == item_identity("", "urn:1")[0] != item_identity(None, "urn:2")[0]
    with pytest.raises(NewsItemError, match="neither a link nor a guid"):
        item_identity(None, "  ")
    with pytest.raises(NewsItemError, match="not an http"):
        item_identity("ftp://x.io/a", None)


def test_the_same_story_from_two_sources_is_one_item_with_both_recorded():
    t = NOW - timedelta(hours=2)
    raw = pl.DataFrame(
        [
            ("id1", t + timedelta(minutes=9), "BTC up (wire B)", None, "u", None, "feed-b", NOW),
            ("id1", t, "BTC up", "s", "u", "g", "feed-a", NOW),
            ("id1", t, "BTC up", None, "u", None, "feed-a", NOW + timedelta(minutes=1)),
            ("id2", t, "ETH down", None, "v", None, "feed-b", NOW),
        ],
        schema=RAW_ITEM_SCHEMA,
        orient="row",
    )
    merged = merge_sightings(raw).sort("item_id")
    assert merged.height == 2
    first = merged.row(0, named=True)
    assert first["sources"] == ["feed-a", "feed-b"] and first["published_at"] == t
    assert first["headline"] == "BTC up" and first["summary"] == "s" and first["guid"] == "g"
    assert (first["first_seen_at"], first["last_seen_at"]) == (NOW, NOW + timedelta(minutes=1))


def test_tagging_follows_the_issue_aliases_whole_word_and_case_insensitive():
    tagger = SymbolTagger.build(["BTCUSDT", "ETHUSDT"])
    texts = {
        "Bitcoin slides as XBT futures expire": ["BTCUSDT"],
        "btc and ETH rally together": ["BTCUSDT", "ETHUSDT"],
        "$ETH breaks out; ether options pile up": ["ETHUSDT"],
        "Ethereum devs ship upgrade": ["ETHUSDT"],
        "ETHOS token and Ethernet cables": [],  # inside longer words: no tag
        "BTCS shares and bitcoins": [],
        "Crypto market slumps": [],  # market-wide
        "Solana outage": ["SOLUSDT"],  # another asset: not market-wide, and counts for neither BTC nor ETH
    }
    assert tagger.tag_texts(list(texts)) == list(texts.values())


def test_aliases_are_configurable():
    tagger = SymbolTagger.build(["BTCUSDT", "PEPEUSDT"], {"BTCUSDT": ["digital gold"]})
    assert tagger.tag_texts(["Digital   gold shines", "BTC up", "pepe moons"]) == [["BTCUSDT"], [], ["PEPEUSDT"]]


def test_tagging_recovers_the_simulated_wires_own_tags():
    symbols = list(SYMBOL_CATALOG)
    wire = SimulatedWorld(3, 0.3).news(symbols, datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 8, tzinfo=UTC))
    assert wire.height > 500
    assert SymbolTagger.build(symbols).tag_texts(wire["headline"].to_list()) == wire["symbols"].to_list()


def write_jsonl(path, records: list) -> None:
    lines = [r if isinstance(r, bytes) else json.dumps(r).encode() for r in records]
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_jsonl_admits_good_lines_and_rejects_each_bad_one_with_its_line(tmp_path):
    path = tmp_path / "export.jsonl"
    good = {"id": "a1", "url": "https://x.io/1", "title": "BTC up", "published": "2026-11-21T09:15:00+02:00"}
    write_jsonl(
        path,
        [
            good,
            {"url": "https://x.io/2", "title": "ETH", "published": 1795000000, "source": "desk", "summary": "s"},
            b"{not json",
            b'{"title": "caf\xe9", "url": "https://x.io/3", "published": "2026-11-21T09:00:00Z"}',
            {"url": "https://x.io/4", "title": "Naive", "published": "2026-11-21T09:00:00"},
            {"url": "https://x.io/5", "title": "Dateless"},
            {"url": "https://x.io/6", "title": "Future", "published": "2027-01-01T00:00:00Z"},
            {"id": "a1", "url": "https://x.io/7", "title": "Repeat id", "published": "2026-11-21T09:00:00Z"},
            {"title": "Unidentified", "published": "2026-11-21T09:00:00Z"},
            {"url": "https://x.io/9", "title": 5, "published": "2026-11-21T09:00:00Z"},
            [1, 2],
        ],
    )
    items, rejected, ledger = parse_jsonl(path, NOW)
    assert items["headline"].to_list() == ["BTC up", "ETH"]
    assert items["published_at"].to_list() == [
        datetime(2026, 11, 21, 7, 15, tzinfo=UTC),
        datetime.fromtimestamp(1795000000, tz=UTC),
    ]
    assert items["source"].to_list() == ["jsonl:export.jsonl", "desk"]
    by_line = {
        int(d.split(" line ")[1].split(":")[0]): r for d, r in zip(rejected["detail"], rejected["reason"], strict=True)
    }
    assert by_line == {
        3: "invalid_json",
        4: "non_utf8",
        5: "bad_date",
        6: "no_date",
        7: "future_date",
        8: "duplicate_guid",
        9: "missing_field",
        10: "missing_field",
        11: "invalid_json",
    }
    assert ledger["items"] == 2 and ledger["rejected"] == 9 and ledger["lines"] == 11
    assert rejected["rejection_id"].n_unique() == 9


def test_timestamps_must_carry_an_offset():
    assert parse_timestamp("2026-11-21T09:00:00Z") == datetime(2026, 11, 21, 9, tzinfo=UTC)
    assert parse_timestamp(0) == datetime(1970, 1, 1, tzinfo=UTC)
    for bad in ("2026-11-21 09:00", "soon", True, None, [1]):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


def test_published_span_ignores_bad_lines(tmp_path):
    path = tmp_path / "a.jsonl"
    write_jsonl(
        path,
        [{"published": "2026-11-20T10:30:00Z"}, b"garbage", {"published": "2026-11-21T01:00:00+01:00"}, {"x": 1}],
    )
    assert published_span(path) == (datetime(2026, 11, 20, 10, 30, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC))
