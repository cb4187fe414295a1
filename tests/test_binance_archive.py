"""The binance_archive source on a corpus of good and malformed files, and exact decimals end to end."""

import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import dagster as dg
import polars as pl
import pytest

from alphapulse_assets.market.assets import prices
from alphapulse_assets.market.binance_archive import find_archive_files, parse_archive_file, parse_epoch
from alphapulse_assets.market.resources import BinanceArchiveMarket, PriceQuality
from alphapulse_assets.runner import run_job
from alphapulse_assets.storage.object_store import LocalObjectStore
from alphapulse_assets.storage.warehouse import DuckDBWarehouse

DAY = datetime(2025, 3, 2, tzinfo=UTC)


def kline(ts: datetime, close: str = "84123.45678901", unit: str = "us", **override) -> list[str]:
    stamp = int(ts.timestamp() * (1_000_000 if unit == "us" else 1000))
    close_stamp = stamp + (3_599_999_999 if unit == "us" else 3_599_999)
    row = {
        "open_time": str(stamp), "open": "84000.00000000", "high": "84999.99999999", "low": "83000.00000001",
        "close": close, "volume": "1234567890123.12345678", "close_time": str(close_stamp),
        "quote_volume": "0.00000001", "trades": "42", "taker_buy_volume": "617.5", "taker_buy_quote_volume": "51.9",
        "ignore": "0",
    }  # fmt: skip
    row.update(override)
    return list(row.values())


def day_lines(day: datetime, unit="us", **override) -> list[list[str]]:
    return [
        kline(day + timedelta(hours=h), close=f"84{h:03d}.1234567{h % 10}", unit=unit, **override) for h in range(24)
    ]


def write(directory, name: str, lines, *, header=False, checksum="good", raw: bytes | None = None) -> None:
    text = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
            "taker_buy_quote_volume,ignore\n" if header else "")  # fmt: skip
    text += "".join(",".join(line) + "\n" for line in lines)
    payload = raw if raw is not None else text.encode()
    path = directory / name
    if name.endswith(".zip"):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as bundle:
            bundle.writestr(name.replace(".zip", ".csv"), payload)
        data = buffer.getvalue()
        path.write_bytes(data)
        if checksum:
            digest = hashlib.sha256(data).hexdigest() if checksum == "good" else "0" * 64
            (directory / f"{name}.CHECKSUM").write_text(f"{digest}  {name}\n")
    else:
        path.write_bytes(payload)


def parsed(directory, symbol="BTCUSDT", start=DAY, end=DAY + timedelta(days=1)):
    files = find_archive_files(directory, [symbol], start, end)
    assert files, "no archive file found"
    results = [parse_archive_file(f) for f in files]
    return pl.concat([r.prices for r in results]), pl.concat([r.rejected for r in results])


def test_epoch_units_are_decided_per_value():
    moment = datetime(2025, 3, 2, 5, tzinfo=UTC)
    assert parse_epoch(str(int(moment.timestamp() * 1000))) == moment
    assert parse_epoch(str(int(moment.timestamp() * 1_000_000))) == moment
    with pytest.raises(ValueError, match="neither"):
        parse_epoch(str(int(moment.timestamp() * 1_000_000_000)))


def test_daily_zip_with_checksum_parses_exactly(tmp_path):
    write(tmp_path, "BTCUSDT-1h-2025-03-02.zip", day_lines(DAY))
    frame, rejected = parsed(tmp_path)
    assert rejected.is_empty() and frame.height == 24
    assert frame["close"].to_list()[7] == Decimal("84007.12345677")
    assert frame["volume"][0] == Decimal("1234567890123.12345678")
    assert frame["quote_volume"][0] == Decimal("0.00000001")


def test_monthly_csv_with_header_and_mixed_units(tmp_path):
    lines = [kline(DAY + timedelta(hours=h), unit="ms" if h % 2 else "us") for h in range(48)]
    write(tmp_path, "ETHUSDT-1h-2025-03.csv", lines, header=True)
    frame, rejected = parsed(tmp_path, "ETHUSDT", DAY, DAY + timedelta(days=2))
    assert rejected.is_empty()
    assert frame["ts"].to_list() == [DAY + timedelta(hours=h) for h in range(48)]


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda lines: lines[:5] + [lines[5][:11]] + lines[6:], "expected 12 columns, found 11"),
        (lambda lines: lines[:5] + [lines[5] + ["extra"]] + lines[6:], "expected 12 columns, found 13"),
        (
            lambda lines: lines[:5] + [kline(DAY + timedelta(hours=5), close="abc")] + lines[6:],
            "close='abc' is not a decimal",
        ),
        (
            lambda lines: lines[:5] + [kline(DAY + timedelta(hours=5), close="1.123456789")] + lines[6:],
            "more than 8 decimal",
        ),
        (lambda lines: lines[:5] + [kline(DAY + timedelta(hours=5, minutes=30))] + lines[6:], "not on the hour"),
        (lambda lines: lines[:5] + [kline(DAY + timedelta(hours=5), trades="4.5")] + lines[6:], "not a whole number"),
        (lambda lines: lines[:5] + [kline(DAY + timedelta(days=3))] + lines[6:], "outside the requested period"),
        (lambda lines: lines[:5] + [["99999999999999999999"] + lines[5][1:]] + lines[6:], "neither epoch"),
    ],
)
def test_bad_rows_are_rejected_with_a_reason(tmp_path, mutate, reason):
    write(tmp_path, "BTCUSDT-1h-2025-03-02.zip", mutate(day_lines(DAY)))
    frame, rejected = parsed(tmp_path)
    assert rejected.height == 1, rejected
    assert reason in rejected["reason"][0] and rejected["line"][0] == 6
    assert rejected["source"][0] == "BTCUSDT-1h-2025-03-02.zip" and rejected["raw"][0]
    assert frame.height == 23


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("bad checksum", "sha256 mismatch"),
        ("truncated zip", "corrupt or truncated zip"),
        ("empty file", "empty file"),
        ("not utf-8", "utf-8"),
    ],
)
def test_bad_files_are_rejected_whole(tmp_path, kind, reason):
    name = "BTCUSDT-1h-2025-03-02.zip"
    if kind == "bad checksum":
        write(tmp_path, name, day_lines(DAY), checksum="bad")
    elif kind == "truncated zip":
        write(tmp_path, name, day_lines(DAY), checksum=None)
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
    elif kind == "empty file":
        write(tmp_path, name, [], checksum=None)
    else:
        write(tmp_path, name, [], raw=b"\xff\xfe\x00bad bytes", checksum=None)
    frame, rejected = parsed(tmp_path)
    assert frame.is_empty()
    assert rejected.height == 1 and rejected["line"][0] is None
    assert reason in rejected["reason"][0].lower() or reason in rejected["reason"][0]


def test_zip_wins_over_csv_and_other_symbols_are_ignored(tmp_path):
    write(tmp_path, "BTCUSDT-1h-2025-03-02.zip", day_lines(DAY))
    write(tmp_path, "BTCUSDT-1h-2025-03-02.csv", day_lines(DAY)[:3])
    write(tmp_path, "SOLUSDT-1h-2025-03-02.csv", day_lines(DAY))
    (tmp_path / "README.txt").write_text("not an archive file")
    files = find_archive_files(tmp_path, ["BTCUSDT"], DAY, DAY + timedelta(days=1))
    assert [f.path.name for f in files] == ["BTCUSDT-1h-2025-03-02.zip"]


# ---- through the asset: quarantine, exact round trip, idempotency -------------------------------------------


def materialize(tmp_path, archive, first="2025-03-02-00:00", last="2025-03-03-23:00"):
    warehouse = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    defs = dg.Definitions(
        assets=[prices],
        jobs=[dg.define_asset_job("prices_job", selection=[prices])],
        resources={
            "market": BinanceArchiveMarket(symbols=["BTCUSDT", "ETHUSDT"], archive_dir=str(archive)),
            "warehouse": warehouse,
            "price_quality": PriceQuality(),
            "object_store": LocalObjectStore(root=str(tmp_path / "objects")),
        },
        executor=dg.in_process_executor,
    )
    with dg.instance_for_test() as instance:
        outcome = run_job(defs, instance, "prices_job", partition_range=(first, last))
        assert outcome.success, outcome.error
        checks = {
            key.name: record.event.dagster_event.event_specific_data.passed  # type: ignore[union-attr]
            for key, record in instance.event_log_storage.get_latest_asset_check_execution_by_key(
                [
                    dg.AssetCheckKey(dg.AssetKey("prices"), n)
                    for n in (
                        "prices_unique",
                        "prices_ohlc_valid",
                        "prices_complete",
                        "prices_no_rejected_rows",
                        "prices_no_extreme_moves",
                    )
                ]  # fmt: skip
            ).items()
            if record.event
        }
    return warehouse, checks


@pytest.fixture
def archive(tmp_path):
    directory = tmp_path / "archive"
    directory.mkdir()
    day2 = DAY + timedelta(days=1)
    write(directory, "BTCUSDT-1h-2025-03-02.zip", day_lines(DAY))
    btc = day_lines(day2)
    btc[3] = kline(day2 + timedelta(hours=3), high="1.0")  # high below open/close
    btc[4] = kline(day2 + timedelta(hours=4), volume="-5")
    btc[9] = kline(day2 + timedelta(hours=9), low="0")  # non-positive price
    btc.append(list(btc[10]))  # identical duplicate: one kept
    btc.append(kline(day2 + timedelta(hours=11), close="84500.5"))  # conflicting duplicate: both out
    write(directory, "BTCUSDT-1h-2025-03-03.csv", btc)
    write(directory, "ETHUSDT-1h-2025-03.zip", day_lines(DAY, unit="ms") + day_lines(day2), checksum="bad")
    return directory


def test_quarantine_through_the_asset(tmp_path, archive):
    warehouse, checks = materialize(tmp_path, archive)
    stored = warehouse.query("SELECT * FROM prices ORDER BY ts, symbol")
    rejected = warehouse.query("SELECT * FROM prices_rejected ORDER BY ts, reason")
    assert stored["symbol"].unique().to_list() == ["BTCUSDT"]  # ETH's file failed its checksum
    # 50 rows: 3 break rules, 1 identical copy is dropped, and both conflicting copies of hour 11 go
    assert stored.height == 50 - 3 - 1 - 2
    reasons = rejected.group_by("reason").len().sort("reason").rows()
    assert ("OHLC inconsistent: high below max(open, close)", 1) in reasons
    assert ("negative volume or trade count", 1) in reasons
    assert ("non-positive price", 1) in reasons
    assert ("conflicting duplicates of (ts, symbol)", 2) in reasons
    assert ("duplicate of an identical row", 1) in reasons
    conflicting = rejected.filter(pl.col("reason").str.starts_with("conflicting"))
    assert sorted(conflicting["line"].to_list()) == [12, 26] and "84500.5," in conflicting["raw"].str.join("")[0]
    eth = rejected.filter(pl.col("symbol") == "ETHUSDT")
    assert eth.height == 1 and "sha256 mismatch" in eth["reason"][0], "a rejected file is recorded once per window"
    assert checks["prices_unique"] and checks["prices_ohlc_valid"]
    assert not checks["prices_complete"] and not checks["prices_no_rejected_rows"]


def test_decimals_round_trip_exactly_and_reruns_are_idempotent(tmp_path, archive):
    warehouse, _ = materialize(tmp_path, archive)
    first = warehouse.query("SELECT * FROM prices ORDER BY ts, symbol")
    written = {(r[0], r[4]) for r in (line for line in day_lines(DAY))}
    for row in first.filter(pl.col("ts") < DAY + timedelta(days=1)).iter_rows(named=True):
        stamp = str(int(row["ts"].timestamp() * 1_000_000))
        close_text = next(text for s, text in written if s == stamp)
        assert row["close"] == Decimal(close_text) and str(row["close"]) == close_text
    assert first["volume"].to_list()[0] == Decimal("1234567890123.12345678")
    for _ in range(2):
        again, _ = materialize(tmp_path, archive)
    assert again.query("SELECT * FROM prices ORDER BY ts, symbol").equals(first)
    assert again.query("SELECT count(*) AS n FROM prices_rejected")["n"][0] == 7
    # a different chunking of the same hours gives the same table
    materialize(tmp_path, archive, "2025-03-02-07:00", "2025-03-03-02:00")
    assert warehouse.query("SELECT * FROM prices ORDER BY ts, symbol").equals(first)


# ---- the sensor -----------------------------------------------------------------------------------------------


def test_archive_sensor_requests_exactly_the_hours_of_new_or_changed_files(tmp_path):
    from alphapulse_assets.market.resources import SimulatedMarket
    from alphapulse_assets.market.sensors import archive_file_sensor

    def tick(cursor):
        return archive_file_sensor(
            dg.build_sensor_context(instance=instance, resources={"market": market}, cursor=cursor)
        )

    def ranges(result):
        return sorted(
            (r.tags["alphapulse/archive_file"], r.tags["dagster/asset_partition_range_start"],
             r.tags["dagster/asset_partition_range_end"]) for r in result.run_requests
        )  # fmt: skip

    write(tmp_path, "SOLUSDT-1h-2025-03-10.csv", day_lines(DAY + timedelta(days=8)))
    market = BinanceArchiveMarket(symbols=["BTCUSDT", "ETHUSDT", "SOLUSDT"], archive_dir=str(tmp_path))
    with dg.instance_for_test() as instance:
        # The files already there when the sensor first looks are the starting point: nothing is queued behind
        # the user's back.
        baseline = tick(None)
        assert baseline.run_requests == [] and "first look" in baseline.skip_reason.skip_message
        cursor = json.loads(baseline.cursor)
        assert cursor["folder"] == str(tmp_path) and list(cursor["seen"]) == ["SOLUSDT-1h-2025-03-10.csv"]

        write(tmp_path, "BTCUSDT-1h-2025-03-02.zip", day_lines(DAY))
        write(tmp_path, "ETHUSDT-1h-2025-03.csv", day_lines(DAY))
        write(tmp_path, "BTCUSDT-1h-2025-04-20.csv", day_lines(DAY + timedelta(days=49)))
        write(tmp_path, "BTCUSDT-1h-2024-12.csv", [])  # before ALPHAPULSE_HISTORY_START (2025-03-01 in tests)
        first = tick(baseline.cursor)
        # Files that overlap or touch share one run; a file weeks away gets its own.
        assert ranges(first) == [
            ("BTCUSDT-1h-2025-03-02.zip, ETHUSDT-1h-2025-03.csv", "2025-03-01-00:00", "2025-03-31-23:00"),
            ("BTCUSDT-1h-2025-04-20.csv", "2025-04-20-00:00", "2025-04-20-23:00"),
        ]
        again = tick(first.cursor)
        assert again.run_requests == [] and "no new or changed" in again.skip_reason.skip_message

        write(tmp_path, "BTCUSDT-1h-2025-03-02.zip", day_lines(DAY)[:20])  # re-downloaded, different content
        changed = tick(again.cursor)
        assert ranges(changed) == [("BTCUSDT-1h-2025-03-02.zip", "2025-03-02-00:00", "2025-03-02-23:00")]
        assert changed.run_requests[0].run_key not in {r.run_key for r in first.run_requests}

        (tmp_path / "BTCUSDT-1h-2025-03-02.zip.CHECKSUM").write_text("0" * 64 + "  BTCUSDT-1h-2025-03-02.zip\n")
        checksum_dropped = tick(changed.cursor)
        assert [r.tags["alphapulse/archive_file"] for r in checksum_dropped.run_requests] == [
            "BTCUSDT-1h-2025-03-02.zip"
        ]

        # On request (the cursor set to {} in the UI) every file present is loaded, in as few runs as they allow.
        everything = tick("{}")
        assert [r[1:] for r in ranges(everything)] == [
            ("2025-03-01-00:00", "2025-03-31-23:00"),
            ("2025-04-20-00:00", "2025-04-20-23:00"),
        ]
        assert "SOLUSDT-1h-2025-03-10.csv" in everything.run_requests[0].tags["alphapulse/archive_file"]

        # Pointed at another folder, the sensor takes a first look there too.
        elsewhere = tmp_path / "other"
        elsewhere.mkdir()
        market = BinanceArchiveMarket(symbols=["BTCUSDT"], archive_dir=str(elsewhere))
        write(elsewhere, "BTCUSDT-1h-2025-03-02.csv", day_lines(DAY))
        assert tick(checksum_dropped.cursor).run_requests == []

        simulated = SimulatedMarket(symbols=["BTCUSDT"], seed=1, news_signal_strength=0.1)
        idle = archive_file_sensor(dg.build_sensor_context(instance=instance, resources={"market": simulated}))
        assert "not binance_archive" in idle.skip_message


def test_rows_sent_out_of_order_are_kept_sorted_and_reported(tmp_path):
    from alphapulse_assets.market.quality import out_of_order

    lines = day_lines(DAY)
    lines[3], lines[8] = lines[8], lines[3]
    write(tmp_path, "BTCUSDT-1h-2025-03-02.csv", lines)
    frame, rejected = parsed(tmp_path)
    assert rejected.is_empty() and frame.height == 24
    late = out_of_order(frame)
    assert late["line"].to_list() == [5, 6, 7, 8, 9]  # hours 4..7 and 3 arrive after hour 8


def test_last_covered_hour_is_read_from_the_rows_not_the_file_names(tmp_path):
    from alphapulse_assets.market.binance_archive import last_covered_hour

    write(tmp_path, "BTCUSDT-1h-2025-02.zip", day_lines(DAY - timedelta(days=5)))
    write(tmp_path, "BTCUSDT-1h-2025-03-02.zip", day_lines(DAY))
    # A delisted symbol's last monthly file stops mid-month: its name says March, its rows end on the 2nd at 09:00.
    write(tmp_path, "ETHUSDT-1h-2025-03.csv", day_lines(DAY)[:10])
    write(tmp_path, "ETHUSDT-1h-2025-04.csv", [])  # unreadable: the newest file with rows decides
    assert last_covered_hour(tmp_path, ["BTCUSDT", "ETHUSDT"]) == datetime(2025, 3, 2, 9, tzinfo=UTC)
    assert last_covered_hour(tmp_path, ["BTCUSDT"]) == datetime(2025, 3, 2, 23, tzinfo=UTC)
    with pytest.raises(ValueError, match="no .* files for SOLUSDT"):
        last_covered_hour(tmp_path, ["BTCUSDT", "SOLUSDT"])
    write(tmp_path, "SOLUSDT-1h-2025-03.csv", [])
    with pytest.raises(ValueError, match="no readable kline row in any file of SOLUSDT"):
        last_covered_hour(tmp_path, ["BTCUSDT", "SOLUSDT"])
