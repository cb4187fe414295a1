"""The Binance klines REST API (`GET /api/v3/klines`): pagination, retries and request-weight limiting. No Dagster.

Facts of the endpoint: parameters symbol, interval (`1h`), startTime, endTime (epoch ms), limit (at most 1000);
the response is an array of 12-element arrays (open time, open, high, low, close, volume, close time, quote
volume, trades, taker buy base volume, taker buy quote volume, ignore), prices as strings. Rate limits are in
request weight per minute; the server reports what it has counted in `X-MBX-USED-WEIGHT-1M`. 429 means slow down,
418 means the IP was banned for ignoring 429s; both say how long in `Retry-After` (seconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import polars as pl

from alphapulse_assets.market.binance_archive import (
    PARSED_SCHEMA,
    REJECTED_SCHEMA,
    ParsedRows,
    RowRejected,
    parse_kline,
)

KLINES_PATH = "/api/v3/klines"
MAX_LIMIT = 1000
_HOUR_MS = 3_600_000
_RETRYABLE = {418, 429}


class BinanceApiError(RuntimeError):
    """The API refused or kept failing; the message says what was asked and what came back."""


def _ms(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp() * 1000)


class WeightLimiter:
    """Keeps our request weight under `limit_per_minute` in the server's one-minute windows."""

    def __init__(self, limit_per_minute: int, clock: Callable[[], float], sleep: Callable[[float], None]):
        self.limit = limit_per_minute
        self._clock, self._sleep = clock, sleep
        self._window = int(clock() // 60)
        self.used = 0

    def _roll(self) -> None:
        window = int(self._clock() // 60)
        if window != self._window:
            self._window, self.used = window, 0

    def acquire(self, weight: int) -> None:
        self._roll()
        if self.used + weight > self.limit:
            self._sleep((self._window + 1) * 60 - self._clock() + 0.01)
            self._roll()
        self.used += weight

    def observe(self, used_by_server: int) -> None:
        """The server's count wins when it is higher (other clients on the same IP count too)."""
        self._roll()
        self.used = max(self.used, used_by_server)


class KlinesClient:
    def __init__(
        self,
        base_url: str,
        timeout_seconds: float = 10.0,
        max_retries: int = 5,
        request_weight: int = 2,
        weight_limit_per_minute: int = 1200,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ):
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.request_weight = request_weight
        self._sleep = sleep
        self._limiter = WeightLimiter(weight_limit_per_minute, clock, sleep)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_seconds)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> KlinesClient:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    @staticmethod
    def backoff(attempt: int) -> float:
        return min(0.5 * 2**attempt, 30.0)

    def get_page(self, params: dict[str, object]) -> list:
        description = f"GET {self.base_url}{KLINES_PATH} {params}"
        for attempt in range(self.max_retries + 1):
            self._limiter.acquire(self.request_weight)
            last_try = attempt == self.max_retries
            try:
                response = self._http.get(KLINES_PATH, params=params)
            except httpx.TransportError as exc:  # timeouts, refused or dropped connections
                if last_try:
                    raise BinanceApiError(f"{description}: {type(exc).__name__} after {attempt + 1} attempts") from exc
                self._sleep(self.backoff(attempt))
                continue
            used = response.headers.get("X-MBX-USED-WEIGHT-1M", "")
            if used.isdigit():
                self._limiter.observe(int(used))
            if response.status_code == 200:
                try:
                    payload = response.json()
                except ValueError as exc:
                    raise BinanceApiError(f"{description}: the response is not JSON") from exc
                if not isinstance(payload, list):
                    raise BinanceApiError(f"{description}: expected an array of klines, got {str(payload)[:200]}")
                return payload
            if response.status_code in _RETRYABLE or response.status_code >= 500:
                if last_try:
                    raise BinanceApiError(
                        f"{description}: HTTP {response.status_code} after {attempt + 1} attempts: "
                        f"{response.text[:200]}"
                    )
                retry_after = response.headers.get("Retry-After", "")
                self._sleep(float(retry_after) if retry_after.isdigit() else self.backoff(attempt))
                continue
            raise BinanceApiError(f"{description}: HTTP {response.status_code}: {response.text[:300]}")
        raise AssertionError("unreachable")

    def fetch(self, symbol: str, start: datetime, end: datetime) -> ParsedRows:
        """All hourly klines of `symbol` opening in [start, end), page by page."""
        rows: list[dict] = []
        rejected: list[dict] = []
        cursor, end_ms = _ms(start), _ms(end) - 1
        while cursor <= end_ms:
            params = {"symbol": symbol, "interval": "1h", "startTime": cursor, "endTime": end_ms, "limit": MAX_LIMIT}
            page = self.get_page(params)
            source = f"GET {KLINES_PATH}?symbol={symbol}&startTime={cursor}&endTime={end_ms}"
            newest: datetime | None = None
            for index, item in enumerate(page):
                fields = [str(v) for v in item] if isinstance(item, list) else [str(item)]
                try:
                    row = parse_kline(fields, symbol, source, index, (start, end))
                    rows.append(row)
                    newest = max(newest or row["ts"], row["ts"])
                except RowRejected as exc:
                    rejected.append(
                        {
                            "ts": exc.ts if exc.ts and start <= exc.ts < end else start,
                            "symbol": symbol,
                            "source": source,
                            "line": index,
                            "raw": ",".join(fields)[:500],
                            "reason": str(exc),
                        }  # fmt: skip
                    )
                    if exc.ts is not None:
                        newest = max(newest or exc.ts, exc.ts)
            if newest is None:
                break  # an empty page (or one without a readable time): nothing further in the range
            next_cursor = _ms(newest) + _HOUR_MS
            if next_cursor <= cursor:
                raise BinanceApiError(f"{source}: the API returned hours before the requested start; stopping")
            cursor = next_cursor
        prices = pl.DataFrame(rows, schema=PARSED_SCHEMA) if rows else pl.DataFrame(schema=PARSED_SCHEMA)
        bad = pl.DataFrame(rejected, schema=REJECTED_SCHEMA) if rejected else pl.DataFrame(schema=REJECTED_SCHEMA)
        return ParsedRows(prices, bad)
