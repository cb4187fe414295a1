"""The binance_rest source against a local server that implements the documented klines format."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import dagster as dg
import polars as pl
import pytest
from binance_stub import Failure, KlinesStub

from alphapulse_assets.market.assets import prices
from alphapulse_assets.market.binance_rest import BinanceApiError, KlinesClient, WeightLimiter
from alphapulse_assets.market.resources import BinanceRestMarket, PriceQuality
from alphapulse_assets.runner import run_job
from alphapulse_assets.storage.object_store import LocalObjectStore
from alphapulse_assets.storage.warehouse import DuckDBWarehouse

START = datetime(2025, 3, 2, tzinfo=UTC)
END = START + timedelta(days=3)


def kline(hour: int, close: str | None = None) -> list:
    open_ms = int((START + timedelta(hours=hour)).timestamp() * 1000)
    return [open_ms, "84000.00000000", "90000.00000000", "79000.00000001", close or f"8{hour:04d}.0000000{hour % 10}",
            "123456789012.12345678", open_ms + 3_599_999, "0.00000001", 42, "617.5", "51.9", "0"]  # fmt: skip


def klines(hours: int = 72) -> list[list]:
    return [kline(h) for h in range(hours)]


class FakeTime:
    """A clock that only moves when the client sleeps: waits are recorded, never spent."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def client(stub: KlinesStub, fake: FakeTime, **kwargs) -> KlinesClient:
    return KlinesClient(
        stub.url, timeout_seconds=kwargs.pop("timeout", 2.0), sleep=fake.sleep, clock=fake.clock, **kwargs
    )


def test_pages_through_short_pages_and_keeps_exact_decimals():
    with KlinesStub({"BTCUSDT": klines()}, page_cap=7) as stub:
        fake = FakeTime()
        parsed = client(stub, fake).fetch("BTCUSDT", START, END)
    assert parsed.rejected.is_empty()
    assert parsed.prices["ts"].to_list() == [START + timedelta(hours=h) for h in range(72)]
    assert parsed.prices["close"][13] == Decimal("80013.00000003")
    assert parsed.prices["volume"][0] == Decimal("123456789012.12345678")
    assert len(stub.requests) == 11  # ten full pages of 7, one of 2, then an empty page ends it
    assert all(r["interval"] == "1h" and r["limit"] == "1000" for r in stub.requests)


@pytest.mark.parametrize("status", [429, 418])
def test_rate_limit_answers_are_retried_after_retry_after(status):
    with KlinesStub({"BTCUSDT": klines(5)}) as stub:
        stub.failures.append(Failure(status, {"Retry-After": "7"}))
        fake = FakeTime()
        parsed = client(stub, fake).fetch("BTCUSDT", START, START + timedelta(hours=5))
    assert parsed.prices.height == 5
    assert fake.sleeps == [7.0]


def test_server_errors_back_off_then_succeed():
    with KlinesStub({"BTCUSDT": klines(5)}) as stub:
        stub.failures.extend([Failure(503, body="busy"), Failure(500, body="oops")])
        fake = FakeTime()
        parsed = client(stub, fake).fetch("BTCUSDT", START, START + timedelta(hours=5))
    assert parsed.prices.height == 5 and fake.sleeps == [0.5, 1.0]


def test_timeouts_are_retried():
    with KlinesStub({"BTCUSDT": klines(5)}) as stub:
        stub.failures.append(Failure(200, body="[]", delay=1.0))
        fake = FakeTime()
        parsed = client(stub, fake, timeout=0.2).fetch("BTCUSDT", START, START + timedelta(hours=5))
    assert parsed.prices.height == 5 and fake.sleeps == [0.5]


def test_persistent_failure_is_a_clear_error():
    with KlinesStub({"BTCUSDT": klines(5)}) as stub:
        stub.failures.extend([Failure(500, body="down")] * 4)
        with pytest.raises(BinanceApiError, match="HTTP 500 after 4 attempts: down"):
            client(stub, FakeTime(), max_retries=3).fetch("BTCUSDT", START, START + timedelta(hours=5))


def test_client_errors_are_not_retried():
    with KlinesStub({"BTCUSDT": klines(5)}) as stub:
        fake = FakeTime()
        with pytest.raises(BinanceApiError, match="HTTP 400.*Invalid symbol"):
            client(stub, fake).fetch("NOPEUSDT", START, START + timedelta(hours=5))
    assert fake.sleeps == [] and len(stub.requests) == 1


def test_weight_limit_waits_for_the_next_minute():
    fake = FakeTime()
    fake.now = 60 * 1000 + 15.0  # 15 s into a minute
    limiter = WeightLimiter(limit_per_minute=4, clock=fake.clock, sleep=fake.sleep)
    limiter.acquire(2)
    limiter.acquire(2)
    assert fake.sleeps == []
    limiter.acquire(2)
    assert fake.sleeps == [pytest.approx(45.01)] and limiter.used == 2
    limiter.observe(4)  # the server counted more (another client on the same IP)
    limiter.acquire(2)
    assert len(fake.sleeps) == 2


def test_malformed_rows_are_rejected_with_the_request_as_source():
    rows = klines(6)
    rows[2] = rows[2][:11]
    rows[4] = kline(4, close="12.3.4")
    with KlinesStub({"BTCUSDT": rows}) as stub:
        parsed = client(stub, FakeTime()).fetch("BTCUSDT", START, START + timedelta(hours=6))
    assert parsed.prices.height == 4
    reasons = parsed.rejected.sort("line")["reason"].to_list()
    assert reasons == ["expected 12 columns, found 11", "close='12.3.4' is not a decimal number"]
    assert parsed.rejected["source"][0].startswith("GET /api/v3/klines?symbol=BTCUSDT&startTime=")


def test_through_the_prices_asset(tmp_path):
    with KlinesStub({"BTCUSDT": klines(), "ETHUSDT": klines()}, page_cap=50) as stub:
        warehouse = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
        defs = dg.Definitions(
            assets=[prices],
            jobs=[dg.define_asset_job("prices_job", selection=[prices])],
            resources={
                "market": BinanceRestMarket(symbols=["BTCUSDT", "ETHUSDT"], base_url=stub.url),
                "warehouse": warehouse,
                "price_quality": PriceQuality(),
                "object_store": LocalObjectStore(root=str(tmp_path / "objects")),
            },
            executor=dg.in_process_executor,
        )
        with dg.instance_for_test() as instance:
            outcome = run_job(defs, instance, "prices_job", partition_range=("2025-03-02-00:00", "2025-03-04-23:00"))
        assert outcome.success, outcome.error
    stored = warehouse.query("SELECT * FROM prices ORDER BY symbol, ts")
    assert stored.height == 144 and warehouse.query("SELECT count(*) AS n FROM prices_rejected")["n"][0] == 0
    expected = [Decimal(k[4]) for k in klines()] * 2
    assert stored["close"].to_list() == expected
    sources = stored.filter(pl.col("symbol") == "ETHUSDT")["source"].unique().to_list()
    assert sources and all(s.startswith("GET /api/v3/klines?symbol=ETHUSDT&startTime=") for s in sources)
