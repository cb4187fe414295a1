"""Binance public-data kline files: discovery, checksum verification and exact parsing. Pure: no Dagster.

Format facts (data.binance.vision, `spot|futures/.../klines/SYMBOL/1h/`):
- files `SYMBOL-1h-YYYY-MM.zip` (monthly) and `SYMBOL-1h-YYYY-MM-DD.zip` (daily), one CSV inside, or the CSV alone;
- 12 columns: open time, open, high, low, close, volume, close time, quote asset volume, number of trades,
  taker buy base volume, taker buy quote volume, ignore;
- spot files have no header, some futures files do;
- timestamps are epoch milliseconds before 2025-01-01 and microseconds from then on, so the unit is decided per
  value, never per file;
- a `.CHECKSUM` file beside a zip holds `<sha256>  <file name>`.

Prices and volumes stay decimal strings until they become `Decimal`s: nothing passes through a float, so the
value read back from the warehouse equals the text the file holds.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl

# DECIMAL(38, 8): Binance quotes at most 8 decimal places, and 30 integer digits hold any volume.
PRICE_DTYPE = pl.Decimal(38, 8)
MAX_DECIMALS = 8
DECIMAL_COLUMNS = (
    "open", "high", "low", "close", "volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume",
)  # fmt: skip
KLINE_FIELDS = (
    "open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "trades",
    "taker_buy_volume", "taker_buy_quote_volume", "ignore",
)  # fmt: skip
_FILE_NAME = re.compile(
    r"^(?P<symbol>[A-Z0-9]{2,20})-1h-(?P<year>\d{4})-(?P<month>\d{2})(?:-(?P<day>\d{2}))?\.(?P<ext>zip|csv)$"
)
_DECIMAL_TEXT = re.compile(r"^-?\d+(?:\.\d+)?$")
_MS_LIMIT = 10**14  # epoch ms stay below this until the year 5138; epoch µs are above it since 1973
_US_LIMIT = 10**17

PRICE_SCHEMA = {
    "ts": pl.Datetime("us", "UTC"),
    "symbol": pl.String,
    **{c: PRICE_DTYPE for c in DECIMAL_COLUMNS[:5]},
    "quote_volume": PRICE_DTYPE,
    "trades": pl.Int64,
    "taker_buy_volume": PRICE_DTYPE,
    "taker_buy_quote_volume": PRICE_DTYPE,
    "source": pl.String,
}
# What the parser returns: candles plus where each came from, so quarantine can record the text the source sent.
PARSED_SCHEMA = {**PRICE_SCHEMA, "line": pl.Int64, "raw": pl.String}
REJECTED_SCHEMA = {
    "ts": pl.Datetime("us", "UTC"),  # the row's hour when it could be read, else the start of the window read
    "symbol": pl.String,
    "source": pl.String,  # file name (and line) or request
    "line": pl.Int64,
    "raw": pl.String,
    "reason": pl.String,
}


@dataclass(frozen=True)
class ArchiveFile:
    path: Path
    symbol: str
    start: datetime
    end: datetime

    @property
    def checksum_path(self) -> Path:
        return self.path.with_name(self.path.name + ".CHECKSUM")


@dataclass(frozen=True)
class ParsedRows:
    prices: pl.DataFrame  # PARSED_SCHEMA
    rejected: pl.DataFrame  # REJECTED_SCHEMA


def find_archive_files(
    directory: Path, symbols: list[str] | tuple[str, ...], start: datetime, end: datetime
) -> list[ArchiveFile]:
    """Archive files of `symbols` whose period overlaps [start, end); a zip wins over a CSV of the same name."""
    found: dict[tuple[str, datetime, datetime], ArchiveFile] = {}
    for path in sorted(directory.iterdir()):
        match = _FILE_NAME.match(path.name)
        if not match or match["symbol"] not in symbols:
            continue
        year, month = int(match["year"]), int(match["month"])
        if match["day"]:
            period_start = datetime(year, month, int(match["day"]), tzinfo=UTC)
            period_end = period_start + timedelta(days=1)
        else:
            period_start = datetime(year, month, 1, tzinfo=UTC)
            period_end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
        if period_end <= start or period_start >= end:
            continue
        key = (match["symbol"], period_start, period_end)
        if key not in found or path.suffix == ".zip":
            found[key] = ArchiveFile(path, match["symbol"], period_start, period_end)
    return sorted(found.values(), key=lambda f: (f.symbol, f.start, f.end))


ALL_TIME = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def last_covered_hour(directory: Path, symbols: list[str] | tuple[str, ...]) -> datetime:
    """The last hour for which every symbol has a row, read from the rows, not the file names: a delisted
    symbol's last monthly file stops mid-month. Only each symbol's newest files are opened, newest first, until
    one holds a readable row."""
    files: dict[str, list[ArchiveFile]] = {}
    for archive in find_archive_files(directory, symbols, *ALL_TIME):
        files.setdefault(archive.symbol, []).append(archive)
    missing = [s for s in symbols if s not in files]
    if missing:
        raise ValueError(f"{directory} has no SYMBOL-1h-YYYY-MM[-DD].zip/.csv files for {', '.join(missing)}")
    ends: dict[str, datetime] = {}
    for symbol, archives in files.items():
        for archive in sorted(archives, key=lambda a: a.end, reverse=True):
            rows = parse_archive_file(archive).prices
            if rows.height:
                ends[symbol] = rows["ts"].max()
                break
    unreadable = [s for s in symbols if s not in ends]
    if unreadable:
        raise ValueError(f"{directory}: no readable kline row in any file of {', '.join(unreadable)}")
    return min(ends.values())


def parse_epoch(value: str) -> datetime:
    """Epoch milliseconds or microseconds, decided per value."""
    number = int(value)
    if number < 0:
        raise ValueError(f"negative timestamp {value}")
    if number < _MS_LIMIT:
        return datetime.fromtimestamp(number / 1000, tz=UTC).replace(microsecond=(number % 1000) * 1000)
    if number < _US_LIMIT:
        seconds, micros = divmod(number, 1_000_000)
        return datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=micros)
    raise ValueError(f"timestamp {value} is neither epoch milliseconds nor microseconds")


def parse_decimal(text: str, field: str) -> Decimal:
    if not _DECIMAL_TEXT.match(text):
        raise ValueError(f"{field}={text!r} is not a decimal number")
    value = Decimal(text)
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_DECIMALS:
        raise ValueError(f"{field}={text!r} has more than {MAX_DECIMALS} decimal places")
    return value


def _file_bytes(archive: ArchiveFile) -> bytes:
    """The CSV bytes of an archive file, after its checksum (when there is one) has been verified."""
    data = archive.path.read_bytes()
    if archive.path.suffix == ".zip":
        if archive.checksum_path.exists():
            expected = archive.checksum_path.read_text(errors="replace").split()
            digest = hashlib.sha256(data).hexdigest()
            if not expected or expected[0].lower() != digest:
                shown = expected[0] if expected else "nothing"
                raise ValueError(f"sha256 mismatch: file is {digest}, {archive.checksum_path.name} says {shown}")
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as bundle:
                members = [m for m in bundle.namelist() if not m.endswith("/")]
                if len(members) != 1:
                    raise ValueError(f"expected one CSV inside the zip, found {len(members)}")
                return bundle.read(members[0])
        except (zipfile.BadZipFile, EOFError) as exc:
            raise ValueError(f"corrupt or truncated zip: {exc}") from exc
    return data


class RowRejected(ValueError):
    """A kline row that cannot be accepted; `ts` is its hour when that much could be read."""

    def __init__(self, reason: str, ts: datetime | None = None):
        super().__init__(reason)
        self.ts = ts


def parse_kline(
    fields: list[str], symbol: str, source: str, line: int | None, period: tuple[datetime, datetime]
) -> dict:
    """One kline (12 fields, as text) as a PARSED_SCHEMA row, or RowRejected with the reason.

    Shared by the archive files and the REST API, which use the same 12 fields in the same order.
    """
    raw = ",".join(fields)
    if len(fields) != len(KLINE_FIELDS):
        raise RowRejected(f"expected {len(KLINE_FIELDS)} columns, found {len(fields)}")
    values = dict(zip(KLINE_FIELDS, (f.strip() for f in fields), strict=True))
    try:
        ts = parse_epoch(values["open_time"])
    except ValueError as exc:
        raise RowRejected(f"open time: {exc}") from None
    try:
        if ts.minute or ts.second or ts.microsecond:
            raise ValueError(f"open time {ts.isoformat()} is not on the hour")
        row = {"ts": ts, "symbol": symbol, "source": source, "line": line, "raw": raw[:500]}
        for column in DECIMAL_COLUMNS:
            row[column] = parse_decimal(values[column], column)
        if not values["trades"].isdigit():
            raise ValueError(f"number of trades={values['trades']!r} is not a whole number")
        row["trades"] = int(values["trades"])
        if not period[0] <= ts < period[1]:
            raise ValueError(f"open time {ts.isoformat()} lies outside the requested period")
    except ValueError as exc:
        raise RowRejected(str(exc), ts) from None
    return row


def parse_archive_file(archive: ArchiveFile) -> ParsedRows:
    """Every row of one file, either accepted (exact decimals, on-the-hour UTC) or rejected with its reason."""
    rejected: list[dict] = []

    def reject(line: int | None, raw: str, reason: str, ts: datetime | None = None) -> None:
        rejected.append(
            {
                "ts": ts or archive.start,
                "symbol": archive.symbol,
                "source": archive.path.name,
                "line": line,
                "raw": raw[:500],
                "reason": reason,
            }  # fmt: skip
        )

    rows: list[dict] = []
    try:
        text = _file_bytes(archive).decode("utf-8")
    except (ValueError, OSError) as exc:  # UnicodeDecodeError is a ValueError
        reject(None, archive.path.name, f"file rejected: {exc}")
        return ParsedRows(_frame(rows, PARSED_SCHEMA), _frame(rejected, REJECTED_SCHEMA))
    if not text.strip():
        reject(None, archive.path.name, "file rejected: empty file")
    for number, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
        raw = ",".join(fields)
        if not fields or not raw.strip():
            continue
        if number == 1 and not fields[0].strip().isdigit():
            continue  # a header line (futures files have one)
        try:
            rows.append(parse_kline(fields, archive.symbol, archive.path.name, number, (archive.start, archive.end)))
        except RowRejected as exc:
            reject(number, raw, str(exc), exc.ts)
    return ParsedRows(_frame(rows, PARSED_SCHEMA), _frame(rejected, REJECTED_SCHEMA))


def _frame(rows: list[dict], schema: dict) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
