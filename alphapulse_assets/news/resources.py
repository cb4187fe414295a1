"""Where headlines come from. `ALPHAPULSE_NEWS_SOURCE` picks the implementation; every one returns the same
`NewsCollection`, so tagging, deduplication, landing and sentiment are the same code whatever the source."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import httpx
import polars as pl

from alphapulse_assets.file_drops import file_fingerprint
from alphapulse_assets.news.feeds import FEED_STATE_SCHEMA, FeedState, fetch_feed, parse_feed
from alphapulse_assets.news.items import RAW_ITEM_SCHEMA, REJECTED_SCHEMA, SymbolTagger, item_identity
from alphapulse_assets.news.jsonl import NEWS_FILE_SCHEMA, drop_files, parse_jsonl
from alphapulse_assets.news.sentiment import SentimentScorer, decay_window, make_scorer
from alphapulse_assets.settings import DEFAULTS
from alphapulse_assets.simulation import NEWSWIRE_SOURCE, SimulatedWorld, simulated


@dataclass(frozen=True)
class NewsCollection:
    """One collection pass: raw items (possibly outside the requested window, possibly repeats of items already
    landed), rejections, and the source's own bookkeeping rows (`ledger_table`), all landed in one transaction."""

    items: pl.DataFrame
    rejected: pl.DataFrame
    ledger: pl.DataFrame | None = None
    report: list[dict] = field(default_factory=list)  # one line per feed or file: what happened to it


class NewsSource(dg.ConfigurableResource):
    """Headlines, and the symbol aliases that tag them (ALPHAPULSE_SYMBOL_ALIASES over the defaults)."""

    symbols: list[str]
    aliases: dict[str, list[str]] = {}

    # The warehouse table holding what this source remembers between runs (ETags, files read), keyed by its first
    # column; None when it remembers nothing.
    ledger_table: str | None = None

    def tagger(self) -> SymbolTagger:
        return SymbolTagger.build(self.symbols, self.aliases)

    def collect(self, start: datetime, end: datetime, ledger: pl.DataFrame | None) -> NewsCollection:
        """Items for at least [start, end): a feed gives whatever it has now, a drop folder its unread files."""
        raise NotImplementedError


class SimulatedNewswire(NewsSource):
    """Headlines from the same seeded world as the simulated market, so their tone can lead its returns. Each item
    is 'seen' the moment it is published, as from a live wire."""

    seed: int
    news_signal_strength: float

    def collect(self, start: datetime, end: datetime, ledger: pl.DataFrame | None) -> NewsCollection:
        wire = simulated(lambda: SimulatedWorld(self.seed, self.news_signal_strength).news(self.symbols, start, end))
        ids = [item_identity(url, None)[0] for url in wire["url"].to_list()]
        items = wire.select(
            pl.Series("item_id", ids, dtype=pl.String),
            "published_at",
            "headline",
            pl.lit(None, dtype=pl.String).alias("summary"),
            "url",
            pl.lit(None, dtype=pl.String).alias("guid"),
            "source",
            pl.col("published_at").alias("first_seen_at"),
        ).cast(RAW_ITEM_SCHEMA)
        report = [{"source": NEWSWIRE_SOURCE, "status": "generated", "items": items.height, "rejected": 0}]
        return NewsCollection(items, pl.DataFrame(schema=REJECTED_SCHEMA), None, report)


class RssNewsSource(NewsSource):
    """RSS 2.0 / Atom feeds (ALPHAPULSE_RSS_URLS), polled with conditional GET on every run. A feed holds only its
    latest entries, so history reaches back as far as the feeds' windows since polling began."""

    feed_urls: list[str]
    timeout_seconds: float = DEFAULTS.rss_timeout_seconds
    max_feed_bytes: int = DEFAULTS.rss_max_bytes
    ledger_table: str | None = "news_feed_state"

    def collect(self, start: datetime, end: datetime, ledger: pl.DataFrame | None) -> NewsCollection:
        now = datetime.now(UTC)
        known = {
            row["feed_url"]: FeedState(row["etag"], row["last_modified"], row["last_changed_at"])
            for row in (ledger.to_dicts() if ledger is not None else [])
        }
        items, rejected, states, report = [], [], [], []
        with httpx.Client(timeout=self.timeout_seconds, follow_redirects=True) as client:
            for url in self.feed_urls:
                previous = known.get(url, FeedState())
                poll = fetch_feed(client, url, previous, self.max_feed_bytes, now)
                feed_items, feed_rejected = pl.DataFrame(schema=RAW_ITEM_SCHEMA), poll.rejected
                if poll.body is not None:
                    feed_items, parse_rejected = parse_feed(poll.body, url, now, poll.content_type)
                    feed_rejected = pl.concat([feed_rejected, parse_rejected])
                    if parse_rejected["item"].is_null().any():
                        # The document itself was refused. Forgetting its validators makes the next poll read it
                        # again, so a feed that stays broken keeps saying so instead of answering 304.
                        poll = replace(poll, status=parse_rejected["reason"][0], state=previous)
                items.append(feed_items)
                rejected.append(feed_rejected)
                states.append(poll.state_row(now, feed_items.height if poll.body is not None else None))
                report.append(
                    {"source": url, "status": poll.status, "items": feed_items.height, "rejected": feed_rejected.height}
                )
        return NewsCollection(
            pl.concat([pl.DataFrame(schema=RAW_ITEM_SCHEMA), *items]),
            pl.concat([pl.DataFrame(schema=REJECTED_SCHEMA), *rejected]),
            pl.DataFrame(states, schema=FEED_STATE_SCHEMA),
            report,
        )


class JsonlDropFolder(NewsSource):
    """JSON-lines exports in ALPHAPULSE_NEWS_DIR. Each file is read once per version (its size and modification
    time); `news_drop_sensor` requests runs for the hours a new file covers."""

    news_dir: str
    ledger_table: str | None = "news_files"

    def collect(self, start: datetime, end: datetime, ledger: pl.DataFrame | None) -> NewsCollection:
        now = datetime.now(UTC)
        read = {row["file_name"]: row["fingerprint"] for row in (ledger.to_dicts() if ledger is not None else [])}
        items, rejected, files, report = [], [], [], []
        for path in drop_files(Path(self.news_dir)):
            if read.get(path.name) == file_fingerprint(path):
                continue
            file_items, file_rejected, row = parse_jsonl(path, now)
            items.append(file_items)
            rejected.append(file_rejected)
            files.append(row)
            report.append({"source": path.name, "status": "read", "items": row["items"], "rejected": row["rejected"]})
        return NewsCollection(
            pl.concat([pl.DataFrame(schema=RAW_ITEM_SCHEMA), *items]),
            pl.concat([pl.DataFrame(schema=REJECTED_SCHEMA), *rejected]),
            pl.DataFrame(files, schema=NEWS_FILE_SCHEMA),
            report,
        )


class NoNewsSource(NewsSource):
    """ALPHAPULSE_NEWS_SOURCE=none: price-only data. Nothing is collected, and the news features are null (unknown)
    rather than zero (a quiet hour), so no model mistakes a missing feed for silence."""

    def collect(self, start: datetime, end: datetime, ledger: pl.DataFrame | None) -> NewsCollection:
        report = [{"source": "none", "status": "ALPHAPULSE_NEWS_SOURCE=none", "items": 0, "rejected": 0}]
        return NewsCollection(pl.DataFrame(schema=RAW_ITEM_SCHEMA), pl.DataFrame(schema=REJECTED_SCHEMA), None, report)


class SentimentModel(dg.ConfigurableResource):
    """Which scorer turns headlines into numbers (ALPHAPULSE_SENTIMENT_SCORER), how fast their tone fades
    (ALPHAPULSE_SENTIMENT_HALF_LIFE_HOURS), and whether there are headlines at all (False with
    ALPHAPULSE_NEWS_SOURCE=none): all three decide the news features, so all three are in the feature version."""

    scorer_name: str = DEFAULTS.sentiment_scorer
    half_life_hours: float = DEFAULTS.sentiment_half_life_hours
    headlines: bool = True

    def scorer(self) -> SentimentScorer:
        return make_scorer(self.scorer_name)

    def lookback(self):
        return decay_window(self.half_life_hours)
