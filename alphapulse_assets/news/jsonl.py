"""JSON-lines exports dropped into a folder: one item per line.

Each line is an object with `title`, `published` (ISO 8601 with a UTC offset, or Unix seconds), `url` and/or `id`,
and optionally `summary` and `source` (default: `jsonl:<file name>`). `published_at` is accepted for `published`.
A timestamp without an offset is rejected rather than assumed to be UTC: guessing wrong by a few hours would move
headlines into hours before they were published.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from alphapulse_assets.file_drops import file_fingerprint
from alphapulse_assets.news.items import Intake

MAX_LINE_BYTES = 1_000_000
NEWS_FILE_SCHEMA = {
    "file_name": pl.String,
    "fingerprint": pl.String,
    "sha256": pl.String,
    "lines": pl.Int64,
    "items": pl.Int64,
    "rejected": pl.Int64,
    "processed_at": pl.Datetime("us", "UTC"),
}


def drop_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.jsonl") if p.is_file())


def parse_timestamp(value: object) -> datetime:
    """An aware UTC datetime from ISO 8601 with an offset (or `Z`), or from Unix seconds; ValueError otherwise."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{value!r} is not a timestamp")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), tz=UTC)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a timestamp")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset (write it as ...Z or ...+00:00)")
    return parsed.astimezone(UTC)


def parse_jsonl(path: Path, now: datetime) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """(items, rejections, the file's ledger row) for one export."""
    data = path.read_bytes()
    intake = Intake(f"jsonl:{path.name}", now)
    lines = data.splitlines()
    for number, raw in enumerate(lines, start=1):
        where = f"{path.name} line {number}"
        label = f"line {number}"
        if not raw.strip():
            continue
        if len(raw) > MAX_LINE_BYTES:
            intake.reject("oversized", f"{where}: {len(raw):,} bytes, over the {MAX_LINE_BYTES:,}-byte line cap", label)
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            intake.reject("non_utf8", f"{where}: {exc}", label)
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            intake.reject("invalid_json", f"{where}: {exc}", label)
            continue
        if not isinstance(record, dict):
            intake.reject("invalid_json", f"{where}: expected an object, got {type(record).__name__}", label)
            continue
        label = f"line {number}: {str(record.get('title', ''))[:150]}"
        published = record.get("published", record.get("published_at"))
        published_at = None
        if published is not None:
            try:
                published_at = parse_timestamp(published)
            except (ValueError, OverflowError, OSError) as exc:
                intake.reject("bad_date", f"{where}: {exc}", label)
                continue
        text_fields = {k: record.get(k) for k in ("id", "url", "title", "summary", "source")}
        wrong = [k for k, v in text_fields.items() if v is not None and not isinstance(v, str)]
        if wrong:
            intake.reject("missing_field", f"{where}: {', '.join(wrong)} must be strings", label)
            continue
        intake.admit(
            where,
            guid=text_fields["id"],
            title=text_fields["title"],
            label=label,
            url=text_fields["url"],
            summary=text_fields["summary"],
            source=text_fields["source"],
            published_at=published_at,
        )
    items, rejected = intake.frames()
    ledger = {
        "file_name": path.name,
        "fingerprint": file_fingerprint(path),
        "sha256": hashlib.sha256(data).hexdigest(),
        "lines": len(lines),
        "items": items.height,
        "rejected": rejected.height,
        "processed_at": now,
    }
    return items, rejected, ledger


def published_span(path: Path) -> tuple[datetime, datetime] | None:
    """The earliest and latest valid publication times in a file, for a sensor to choose the hours to re-run."""
    times = []
    for raw in path.read_bytes().splitlines():
        try:
            record = json.loads(raw)
            times.append(parse_timestamp(record.get("published", record.get("published_at"))))
        except (ValueError, UnicodeDecodeError, AttributeError, OverflowError, OSError):
            continue
    return (min(times), max(times)) if times else None
