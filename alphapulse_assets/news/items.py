"""What a news item is, however it arrived: identity, normalisation, symbol tags and rejections. Pure functions.

Identity: an item is its canonical URL, or its guid when it has no link. Two feeds carrying the same story link
to the same page, so they produce one item whose `sources` lists both. The hour an item belongs to is the hour in
which it was published (UTC); see docs/news.md for the point-in-time rule that follows from it.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import polars as pl

# Query parameters that identify a campaign or a click, never the page.
_TRACKING_PARAMS = re.compile(
    r"^(utm_.*|fbclid|gclid|dclid|msclkid|mc_cid|mc_eid|igshid|ref|ref_src|cmpid|guccounter)$"
)
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
# A publisher's clock a little ahead of ours is not a future date; anything beyond this is.
FUTURE_TOLERANCE = timedelta(minutes=5)

_ITEM_FIELDS = {
    "item_id": pl.String,
    "published_at": pl.Datetime("us", "UTC"),
    "headline": pl.String,
    "summary": pl.String,
    "url": pl.String,
    "guid": pl.String,
}
# One sighting of an item, as a source delivered it.
RAW_ITEM_SCHEMA = _ITEM_FIELDS | {"source": pl.String, "first_seen_at": pl.Datetime("us", "UTC")}
# The landing table `news_items`: one row per item, every source that carried it.
LANDED_ITEM_SCHEMA = _ITEM_FIELDS | {
    "sources": pl.List(pl.String),
    "first_seen_at": pl.Datetime("us", "UTC"),
    "last_seen_at": pl.Datetime("us", "UTC"),
}
REJECTED_SCHEMA = {
    "rejection_id": pl.String,
    "source": pl.String,
    "reason": pl.String,
    "detail": pl.String,
    "item": pl.String,
    "published_at": pl.Datetime("us", "UTC"),
    "first_rejected_at": pl.Datetime("us", "UTC"),
    "last_rejected_at": pl.Datetime("us", "UTC"),
    "occurrences": pl.Int64,
}
REJECTION_REASONS = (
    "unreachable",  # connection refused, DNS failure, timeout
    "http_error",  # any status other than 200 and 304
    "oversized",  # a feed over the byte cap, or a JSONL line over the line cap
    "malformed_xml",
    "not_a_feed",  # well-formed, but neither RSS nor Atom
    "non_utf8",  # bytes invalid in the declared (or, for JSONL, the required UTF-8) encoding
    "invalid_json",
    "missing_field",
    "no_date",
    "bad_date",  # a date that does not parse, or one without a UTC offset
    "future_date",
    "duplicate_guid",  # a guid repeated inside one document or file
)


class NewsItemError(ValueError):
    """An item that cannot be admitted; `reason` is one of REJECTION_REASONS."""

    def __init__(self, reason: str, detail: str):
        if reason not in REJECTION_REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def canonical_url(url: str) -> str:
    """The URL that identifies a page: https, lower-case host without `www.` or a default port, no fragment, no
    tracking parameters, remaining parameters sorted, no trailing slash."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise NewsItemError("missing_field", f"link {url!r} is not an http(s) URL")
    host = parts.hostname.lower().removeprefix("www.")
    if parts.port and parts.port not in (80, 443):
        host = f"{host}:{parts.port}"
    query = urlencode(
        sorted(
            (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _TRACKING_PARAMS.match(k.lower())
        )
    )
    path = parts.path.rstrip("/") or ""
    return urlunsplit(("https", host, path, query, ""))


def item_identity(url: str | None, guid: str | None) -> tuple[str, str | None]:
    """(item_id, canonical url). The id hashes the canonical URL, or the guid when there is no link."""
    if url and url.strip():
        canonical = canonical_url(url)
        return hashlib.sha256(f"url:{canonical}".encode()).hexdigest()[:32], canonical
    if guid and guid.strip():
        return hashlib.sha256(f"guid:{guid.strip()}".encode()).hexdigest()[:32], None
    raise NewsItemError("missing_field", "neither a link nor a guid/id: the item could not be deduplicated")


def plain_text(text: str | None) -> str:
    """Markup removed, entities decoded, whitespace collapsed: what a reader (and a lexicon) sees."""
    if not text:
        return ""
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", text))).strip()


def admit_item(
    *,
    source: str,
    published_at: datetime | None,
    title: str | None,
    url: str | None,
    guid: str | None,
    summary: str | None,
    now: datetime,
    first_seen_at: datetime | None = None,
) -> dict:
    """One raw item (RAW_ITEM_SCHEMA) or NewsItemError. `published_at` must already be an aware datetime."""
    headline = plain_text(title)
    if not headline:
        raise NewsItemError("missing_field", "no title")
    if published_at is None:
        raise NewsItemError("no_date", "no publication date: the item cannot be placed in an hour")
    if published_at.tzinfo is None:
        raise NewsItemError("bad_date", f"{published_at.isoformat()} has no UTC offset")
    if published_at > now + FUTURE_TOLERANCE:
        raise NewsItemError(
            "future_date", f"published {published_at.isoformat()}, after the time it was read ({now.isoformat()})"
        )
    item_id, canonical = item_identity(url, guid)
    return {
        "item_id": item_id,
        "published_at": published_at,
        "headline": headline,
        "summary": plain_text(summary) or None,
        "url": canonical,
        "guid": guid.strip() if guid and guid.strip() else None,
        "source": source,
        "first_seen_at": first_seen_at or now,
    }


@dataclass
class Intake:
    """Items and rejections accumulated while reading one document or file."""

    source: str
    now: datetime
    items: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    _guids: dict[str, str] = field(default_factory=dict)

    def reject(self, reason: str, detail: str, item: str = "", published_at: datetime | None = None) -> None:
        self.rejected.append(rejection(self.source, reason, detail, item, published_at, self.now))

    def admit(self, where: str, *, guid: str | None, title: str | None, label: str | None = None, **fields) -> None:
        """Admit one entry found at `where` (an entry number, a line), or record why not. `label` names the entry in
        a rejection (default: its title), and with the source and reason identifies the rejection across polls."""
        # Never empty: a rejection without an item is how a whole document's refusal is told apart.
        label = label or plain_text(title)[:200] or (guid or "").strip()[:200] or where
        source = fields.pop("source", None) or self.source
        if guid and guid.strip():
            first = self._guids.get(guid.strip())
            if first is not None:
                self.reject("duplicate_guid", f"{where}: guid {guid.strip()!r} already used by {first}", label)
                return
            self._guids[guid.strip()] = where
        try:
            self.items.append(admit_item(source=source, title=title, guid=guid, now=self.now, **fields))
        except NewsItemError as exc:
            self.reject(exc.reason, f"{where}: {exc.detail}", label, fields.get("published_at"))

    def frames(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        return pl.DataFrame(self.items, schema=RAW_ITEM_SCHEMA), pl.DataFrame(self.rejected, schema=REJECTED_SCHEMA)


def rejection(source: str, reason: str, detail: str, item: str, published_at: datetime | None, now: datetime) -> dict:
    """A `news_rejected` row. Its id names what was rejected, not when, so a bad item met on every poll is one row
    whose `occurrences` grows; a feed-level failure is keyed by feed and reason."""
    if reason not in REJECTION_REASONS:
        raise ValueError(f"unknown rejection reason {reason!r}")
    key = f"{source}\n{reason}\n{item}" if item else f"{source}\n{reason}"
    return {
        "rejection_id": hashlib.sha256(key.encode()).hexdigest()[:32],
        "source": source,
        "reason": reason,
        "detail": detail,
        "item": item or None,
        "published_at": published_at,
        "first_rejected_at": now,
        "last_rejected_at": now,
        "occurrences": 1,
    }


def merge_sightings(raw: pl.DataFrame) -> pl.DataFrame:
    """Raw items (one row per sighting) into landed items (one row per item_id, all its sources).

    The earliest publication time wins: the story was public from then on. The headline kept is the one from that
    earliest sighting (ties: the alphabetically first source, so the result does not depend on poll order).
    """
    if raw.height == 0:
        return pl.DataFrame(schema=LANDED_ITEM_SCHEMA)
    ordered = raw.sort("item_id", "published_at", "source", "headline")
    return (
        ordered.group_by("item_id", maintain_order=True)
        .agg(
            pl.col("published_at").first(),
            pl.col("headline").first(),
            pl.col("summary").drop_nulls().first(),
            pl.col("url").drop_nulls().first(),
            pl.col("guid").drop_nulls().first(),
            pl.col("source").unique().sort().alias("sources"),
            pl.col("first_seen_at").min(),
            pl.col("first_seen_at").max().alias("last_seen_at"),
        )
        .select(list(LANDED_ITEM_SCHEMA))
        .cast(LANDED_ITEM_SCHEMA)
    )


# The examples, plus how the simulated newswire and the press name the other majors. Any configured symbol
# also matches its own ticker (BTCUSDT) and its base asset (BTC). ALPHAPULSE_SYMBOL_ALIASES adds to or replaces these.
DEFAULT_ALIASES: dict[str, tuple[str, ...]] = {
    "BTCUSDT": ("BTC", "bitcoin", "XBT"),
    "ETHUSDT": ("ETH", "ether", "ethereum"),
    "SOLUSDT": ("SOL", "solana"),
    "BNBUSDT": ("BNB", "binance coin"),
    "XRPUSDT": ("XRP", "ripple"),
    "ADAUSDT": ("ADA", "cardano"),
    "DOGEUSDT": ("DOGE", "dogecoin"),
    "LTCUSDT": ("LTC", "litecoin"),
}
_QUOTES = ("USDT", "USDC", "BUSD", "FDUSD", "USD", "EUR")


def base_asset(symbol: str) -> str:
    return next((symbol[: -len(q)] for q in _QUOTES if symbol.endswith(q) and len(symbol) > len(q)), symbol)


@dataclass(frozen=True)
class SymbolTagger:
    """Tags text with every symbol one of whose aliases it contains as a whole word, case-insensitively.

    Whole word means not inside a longer word or ticker: "ETH" tags "ETH ETF" and "$ETH" but not "ETHOS", and
    "ether" does not tag "Ethernet". Symbols outside the configured ones are tagged too, so that a Solana story is
    not mistaken for market-wide news by a deployment that only trades BTC and ETH.
    """

    aliases: Mapping[str, tuple[str, ...]]

    @classmethod
    def build(cls, symbols: Iterable[str], overrides: Mapping[str, Iterable[str]] | None = None) -> SymbolTagger:
        aliases = {s: set(a) for s, a in DEFAULT_ALIASES.items()}
        for symbol in symbols:
            aliases.setdefault(symbol, set()).update({symbol, base_asset(symbol)})
        for symbol, names in (overrides or {}).items():
            aliases[symbol] = {n for n in names if n.strip()}
        return cls(
            {s: tuple(sorted({n.strip() for n in names}, key=str.lower)) for s, names in sorted(aliases.items())}
        )

    def _pattern(self, names: tuple[str, ...]) -> str:
        escaped = "|".join(re.escape(n).replace(r"\ ", r"\s+") for n in sorted(names, key=len, reverse=True))
        return rf"(?i)(?:^|[^\p{{L}}\p{{N}}_])(?:{escaped})(?:$|[^\p{{L}}\p{{N}}_])"

    def tag(self, text: pl.Expr) -> pl.Expr:
        """A list[str] expression: the sorted symbols `text` mentions (empty: market-wide)."""
        hits = [
            pl.when(text.str.contains(self._pattern(names))).then(pl.lit(symbol)).otherwise(None)
            for symbol, names in self.aliases.items()
            if names
        ]
        if not hits:
            return pl.lit([], dtype=pl.List(pl.String))
        return pl.concat_list(hits).list.drop_nulls().list.sort()

    def tag_texts(self, texts: list[str]) -> list[list[str]]:
        return (
            pl.DataFrame({"text": texts}, schema={"text": pl.String})
            .select(self.tag(pl.col("text")).alias("symbols"))["symbols"]
            .to_list()
        )


def merge_rejections(rejected: pl.DataFrame) -> pl.DataFrame:
    """One row per rejection_id: a bad item met twice in one pass is one rejection seen twice."""
    if rejected.height == 0:
        return pl.DataFrame(schema=REJECTED_SCHEMA)
    return (
        rejected.sort("last_rejected_at")
        .group_by("rejection_id", maintain_order=True)
        .agg(
            pl.col("source", "reason", "item", "published_at").first(),
            pl.col("detail").last(),
            pl.col("first_rejected_at").min(),
            pl.col("last_rejected_at").max(),
            pl.col("occurrences").sum(),
        )
        .select(list(REJECTED_SCHEMA))
        .cast(REJECTED_SCHEMA)
    )
