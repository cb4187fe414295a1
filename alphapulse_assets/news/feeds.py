"""RSS 2.0 and Atom feeds: polite fetching (conditional GET, a timeout, a byte cap) and strict parsing.

Fetching and parsing are separate so the parser can be tested on documents alone and the fetcher against a local
HTTP server. Neither raises for a bad feed: each returns what it could read plus rejections with reasons, so one
broken feed never blocks the others.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urljoin

import feedparser
import httpx
import polars as pl

from alphapulse_assets.news.items import REJECTED_SCHEMA, Intake, plain_text, rejection

FEED_STATE_SCHEMA = {
    "feed_url": pl.String,
    "etag": pl.String,
    "last_modified": pl.String,
    "last_status": pl.String,
    "last_polled_at": pl.Datetime("us", "UTC"),
    "last_changed_at": pl.Datetime("us", "UTC"),
    "last_items": pl.Int64,
}


@dataclass(frozen=True)
class FeedState:
    """What the last successful fetch of a feed said about its version, for the next conditional GET."""

    etag: str | None = None
    last_modified: str | None = None
    last_changed_at: datetime | None = None


@dataclass(frozen=True)
class FeedPoll:
    url: str
    status: str  # "200", "304", or the rejection reason that stopped it
    body: bytes | None
    content_type: str | None
    state: FeedState
    rejected: pl.DataFrame

    def state_row(self, now: datetime, items: int | None) -> dict:
        return {
            "feed_url": self.url,
            "etag": self.state.etag,
            "last_modified": self.state.last_modified,
            "last_status": self.status,
            "last_polled_at": now,
            "last_changed_at": self.state.last_changed_at,
            "last_items": items,
        }


def fetch_feed(client: httpx.Client, url: str, previous: FeedState, max_bytes: int, now: datetime) -> FeedPoll:
    """GET `url`, conditional on the previous ETag / Last-Modified; the body is read up to `max_bytes`."""
    headers = {"Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.1"}
    if previous.etag:
        headers["If-None-Match"] = previous.etag
    if previous.last_modified:
        headers["If-Modified-Since"] = previous.last_modified

    def failed(reason: str, detail: str) -> FeedPoll:
        rejected = pl.DataFrame([rejection(url, reason, detail, "", None, now)], schema=REJECTED_SCHEMA)
        return FeedPoll(url, reason, None, None, previous, rejected)

    try:
        with client.stream("GET", url, headers=headers) as response:
            if response.status_code == 304:
                return FeedPoll(url, "304", None, None, previous, pl.DataFrame(schema=REJECTED_SCHEMA))
            if response.status_code != 200:
                return failed("http_error", f"HTTP {response.status_code} {response.reason_phrase}")
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                return failed("oversized", f"Content-Length {int(declared):,} bytes exceeds the cap of {max_bytes:,}")
            chunks, size = [], 0
            # Decoded bytes are counted, so a small gzip body that inflates past the cap is stopped too.
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    return failed("oversized", f"body exceeds the cap of {max_bytes:,} bytes; stopped reading")
                chunks.append(chunk)
            body = b"".join(chunks)
            state = FeedState(response.headers.get("etag"), response.headers.get("last-modified"), now)
            return FeedPoll(
                url, "200", body, response.headers.get("content-type"), state, pl.DataFrame(schema=REJECTED_SCHEMA)
            )
    except httpx.TimeoutException as exc:
        return failed("unreachable", f"timed out ({type(exc).__name__})")
    except httpx.TransportError as exc:
        return failed("unreachable", f"{type(exc).__name__}: {exc}")


def parse_feed(
    body: bytes, source: str, now: datetime, content_type: str | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Items (RAW_ITEM_SCHEMA) and rejections (REJECTED_SCHEMA) from one RSS or Atom document.

    A document that is not well-formed XML, or whose bytes are invalid in its declared encoding, is rejected as a
    whole: feedparser would salvage something from it, but a salvaged headline can be truncated or garbled, and a
    wrong score is worse than a missing one.
    """
    intake = Intake(source, now)
    headers = {"content-type": content_type} if content_type else {}
    # No content-location: feedparser would then "resolve" relative guids into URLs too. Links are joined below.
    parsed = feedparser.parse(body, response_headers=headers)
    problem = parsed.get("bozo_exception")
    if isinstance(problem, feedparser.CharacterEncodingOverride | feedparser.CharacterEncodingUnknown):
        intake.reject("non_utf8", f"{problem}")
        return intake.frames()
    if parsed.get("bozo") and not isinstance(problem, feedparser.NonXMLContentType):
        intake.reject("malformed_xml", f"not well-formed XML: {problem}")
        return intake.frames()
    if not parsed.get("version"):
        intake.reject("not_a_feed", "well-formed, but neither an RSS nor an Atom document")
        return intake.frames()
    for number, entry in enumerate(parsed.entries, start=1):
        published_at, unparseable = _entry_time(entry)
        if unparseable:
            intake.reject("bad_date", f"entry {number}: {unparseable}", plain_text(entry.get("title"))[:200])
            continue
        intake.admit(
            f"entry {number}",
            guid=entry.get("id"),
            title=entry.get("title"),
            url=urljoin(source, entry["link"]) if entry.get("link") else None,
            summary=entry.get("summary"),
            published_at=published_at,
        )
    return intake.frames()


def _entry_time(entry) -> tuple[datetime | None, str | None]:
    """Publication time in UTC: `published`, else Atom's `updated` (never earlier than publication, so never
    early). A date that is present but does not parse is its own rejection, not a missing date."""
    for name in ("published", "updated"):
        parsed = entry.get(f"{name}_parsed")
        if parsed is not None:
            return datetime.fromtimestamp(calendar.timegm(parsed), tz=UTC), None
        if entry.get(name):
            return None, f"{name} {entry.get(name)!r} is not a date"
    return None, None
