"""RSS/Atom parsing and polling against a local HTTP server: every kind of bad input gets its reason."""

from datetime import UTC, datetime, timedelta

import httpx
import polars as pl
import pytest
from news_stub import Document, FeedServer, atom, http_date, rss

from alphapulse_assets.news.feeds import FeedState, fetch_feed, parse_feed
from alphapulse_assets.news.resources import RssNewsSource

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def reasons(rejected: pl.DataFrame) -> list[str]:
    return sorted(rejected["reason"].to_list())


def test_rss_items_are_normalised_to_utc_and_identified_by_canonical_url():
    body = rss(
        [
            {
                "title": "Bitcoin &amp; Ether rally",
                "link": "http://www.example.com/story/1/?utm_source=rss&amp;b=2&amp;a=1",
                "guid": "story-1",
                "pubDate": "Sat, 21 Nov 2026 10:30:00 +0200",
                "description": "&lt;p&gt;Both &lt;b&gt;up&lt;/b&gt;&lt;/p&gt;",
            }
        ]
    )
    items, rejected = parse_feed(body, "https://feed.example/rss", NOW)
    assert rejected.height == 0
    item = items.row(0, named=True)
    assert item["published_at"] == datetime(2026, 11, 21, 8, 30, tzinfo=UTC)
    assert item["headline"] == "Bitcoin & Ether rally" and item["summary"] == "Both up"
    assert item["url"] == "https://example.com/story/1?a=1&b=2" and item["guid"] == "story-1"
    assert item["source"] == "https://feed.example/rss" and item["first_seen_at"] == NOW


def test_atom_uses_published_then_updated():
    body = atom(
        [
            {"title": "ETH upgrade", "id": "urn:a", "link": "https://x.example/a", "updated": NOW - timedelta(hours=1)},
            {
                "title": "BTC dip",
                "id": "urn:b",
                "link": "https://x.example/b",
                "published": NOW - timedelta(hours=3),
                "updated": NOW - timedelta(hours=2),
            },
        ]
    )
    items, rejected = parse_feed(body, "atom", NOW, "application/atom+xml")
    assert rejected.height == 0
    assert items["published_at"].to_list() == [NOW - timedelta(hours=1), NOW - timedelta(hours=3)]


def test_bad_items_are_rejected_one_by_one_and_the_rest_admitted():
    body = rss(
        [
            {"title": "Good", "link": "https://x.example/1", "guid": "g1", "pubDate": NOW - timedelta(minutes=5)},
            {"title": "No date", "link": "https://x.example/2", "guid": "g2"},
            {"title": "Bad date", "link": "https://x.example/3", "guid": "g3", "pubDate": "yesterday"},
            {"title": "Future", "link": "https://x.example/4", "guid": "g4", "pubDate": NOW + timedelta(hours=2)},
            {"title": "Repeat", "link": "https://x.example/5", "guid": "g1", "pubDate": NOW},
            {"link": "https://x.example/6", "guid": "g6", "pubDate": NOW},
            {"title": "Nowhere", "pubDate": NOW},
            {"title": "Skewed clock", "link": "https://x.example/8", "pubDate": NOW + timedelta(minutes=3)},
            {"link": "https://x.example/9", "pubDate": NOW},  # neither title nor guid: named by its position
        ]
    )
    items, rejected = parse_feed(body, "wire", NOW)
    assert items["headline"].to_list() == ["Good", "Skewed clock"]
    assert reasons(rejected) == sorted(
        ["no_date", "bad_date", "future_date", "duplicate_guid", "missing_field", "missing_field", "missing_field"]
    )
    details = dict(zip(rejected["reason"], rejected["detail"], strict=False))
    assert "guid 'g1' already used by entry 1" in details["duplicate_guid"]
    assert "'yesterday' is not a date" in details["bad_date"]
    assert rejected["item"].null_count() == 0  # every item-level rejection names its item
    assert "entry 9" in rejected["item"].to_list()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'<?xml version="1.0"?><rss version="2.0"><channel><item><title>x</channel></rss>', "malformed_xml"),
        (b"this is not xml", "malformed_xml"),
        (b'<?xml version="1.0"?><html><body>hello</body></html>', "not_a_feed"),
        (
            rss([{"title": "caf\xe9 crash", "link": "https://x.example/c", "pubDate": NOW}]).replace(
                "caf\xe9".encode(), b"caf\xe9\xff"
            ),
            "non_utf8",
        ),
    ],
)
def test_a_broken_document_is_refused_whole_with_its_reason(body, reason):
    items, rejected = parse_feed(body, "wire", NOW)
    assert items.height == 0 and reasons(rejected) == [reason]
    assert rejected["item"].null_count() == 1  # a document-level rejection, not an item's


def test_rejections_are_identified_by_what_was_rejected_not_when():
    body = rss([{"title": "No date", "link": "https://x.example/2"}])
    _, first = parse_feed(body, "wire", NOW)
    _, again = parse_feed(body, "wire", NOW + timedelta(hours=1))
    assert first["rejection_id"].to_list() == again["rejection_id"].to_list()


def test_conditional_get_and_the_failures_of_polling():
    modified = http_date(NOW - timedelta(days=1))
    ok = rss([{"title": "Hello", "link": "https://x.example/h", "pubDate": NOW - timedelta(hours=1)}])
    with FeedServer(
        {
            "/etag": Document(ok, etag='"v1"'),
            "/modified": Document(ok, last_modified=modified),
            "/down": Document(b"oops", status=503),
            "/big": Document(ok + b" " * 5000),
            "/big-chunked": Document(ok + b" " * 5000, chunked=True),
            "/slow": Document(ok, delay=2.0),
        }
    ) as server:
        with httpx.Client(timeout=0.5) as client:

            def poll(path, state=None, max_bytes=1_000_000):
                return fetch_feed(client, server.url(path), state or FeedState(), max_bytes, NOW)

            first = poll("/etag")
            assert first.status == "200" and first.state.etag == '"v1"' and first.body == ok
            second = poll("/etag", first.state)
            assert second.status == "304" and second.body is None and second.state == first.state
            assert server.requests[-1][1]["If-None-Match"] == '"v1"'

            dated = poll("/modified")
            assert poll("/modified", dated.state).status == "304"
            assert server.requests[-1][1]["If-Modified-Since"] == modified

            assert reasons(poll("/down").rejected) == ["http_error"]
            assert "HTTP 503" in poll("/down").rejected["detail"][0]
            assert reasons(poll("/missing").rejected) == ["http_error"]
            big = poll("/big", max_bytes=2000)
            assert reasons(big.rejected) == ["oversized"] and "Content-Length" in big.rejected["detail"][0]
            streamed = poll("/big-chunked", max_bytes=2000)
            assert reasons(streamed.rejected) == ["oversized"] and "stopped reading" in streamed.rejected["detail"][0]
            assert reasons(poll("/slow").rejected) == ["unreachable"]
        closed = httpx.Client(timeout=1.0)
        dead = fetch_feed(closed, "http://127.0.0.1:9/feed", FeedState(), 1000, NOW)
        assert reasons(dead.rejected) == ["unreachable"] and dead.body is None


def test_one_broken_feed_never_blocks_the_others_and_a_refused_document_is_read_again():
    good = rss([{"title": "BTC up", "link": "https://x.example/1", "pubDate": datetime.now(UTC) - timedelta(hours=1)}])
    with FeedServer(
        {"/good": Document(good, etag='"g"'), "/broken": Document(b"<rss><channel>", etag='"b"')}
    ) as server:
        source = RssNewsSource(
            symbols=["BTCUSDT"],
            feed_urls=[server.url("/broken"), "http://127.0.0.1:9/unreachable", server.url("/good")],
            timeout_seconds=2.0,
        )
        collection = source.collect(NOW, NOW, None)
        assert collection.items["headline"].to_list() == ["BTC up"]
        assert sorted(collection.rejected["reason"].to_list()) == ["malformed_xml", "unreachable"]
        state = {row["feed_url"]: row for row in collection.ledger.to_dicts()}
        assert state[server.url("/good")]["etag"] == '"g"' and state[server.url("/good")]["last_items"] == 1
        # The refused document's ETag is not kept, so the next poll reads it again instead of getting a 304.
        assert state[server.url("/broken")]["etag"] is None
        assert state[server.url("/broken")]["last_status"] == "malformed_xml"

        again = source.collect(NOW, NOW, collection.ledger)
        assert server.statuses("/good") == [200, 304] and server.statuses("/broken") == [200, 200]
        assert again.items.height == 0
        assert {row["feed_url"]: row["last_items"] for row in again.ledger.to_dicts()}[server.url("/good")] is None
        assert {r["source"]: r["status"] for r in again.report}[server.url("/good")] == "304"


def test_an_entity_expansion_bomb_is_refused_as_malformed():
    entities = '<!ENTITY a0 "lol">' + "".join(f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10))
    body = (
        f'<?xml version="1.0"?><!DOCTYPE rss [{entities}]><rss version="2.0"><channel><item><title>&a9;</title>'
        "<link>https://x.example/1</link></item></channel></rss>"
    ).encode()
    items, rejected = parse_feed(body, "wire", NOW)
    assert items.height == 0 and reasons(rejected) == ["malformed_xml"]
    assert "amplification" in rejected["detail"][0]
