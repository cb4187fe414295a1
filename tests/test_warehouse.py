"""One contract, two warehouses: the embedded DuckDB file and PostgreSQL (a real server, started by the suite)."""

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import polars as pl
import pytest

from alphapulse_assets.storage.errors import StorageUnavailable
from alphapulse_assets.storage.postgres import PostgresWarehouse, to_dollar_params
from alphapulse_assets.storage.warehouse import DuckDBWarehouse, Upsert

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def hours(n, value=1.0, start=T0):
    return pl.DataFrame({"ts": [start + timedelta(hours=h) for h in range(n)], "symbol": "X", "value": value})


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request, tmp_path):
    if request.param == "duckdb":
        return DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    return PostgresWarehouse(url=request.getfixturevalue("postgres_url"))


def execute(warehouse, sql: str) -> None:
    """DDL the contract has no method for (a test table with a constraint)."""
    with warehouse.connect() as con:
        if isinstance(warehouse, PostgresWarehouse):
            with con.cursor() as cur:
                cur.execute(sql)
            con.commit()
        else:
            con.execute(sql)


def test_replace_window_is_idempotent(warehouse):
    for _ in range(3):
        warehouse.replace_window("t", hours(24), T0, T0 + timedelta(hours=24))
    assert warehouse.query("SELECT count(*) AS n FROM t")["n"][0] == 24
    # a narrower window replaces only its own hours
    warehouse.replace_window(
        "t", hours(2, value=9.0, start=T0 + timedelta(hours=5)), T0 + timedelta(hours=5), T0 + timedelta(hours=7)
    )
    frame = warehouse.read_window("t", T0, T0 + timedelta(hours=24))
    assert frame.height == 24 and frame["value"].sum() == 22 + 18
    assert frame["ts"].dtype == pl.Datetime("us", "UTC")
    assert frame["ts"].to_list() == sorted(frame["ts"].to_list())


def test_rows_outside_the_window_are_refused_and_nothing_is_written(warehouse):
    warehouse.replace_window("t", hours(3), T0, T0 + timedelta(hours=3))
    with pytest.raises(ValueError, match="outside the window"):
        warehouse.replace_window("t", hours(5, value=7.0), T0, T0 + timedelta(hours=3))
    assert warehouse.read_window("t", T0, T0 + timedelta(hours=3))["value"].to_list() == [1.0, 1.0, 1.0]


def test_a_failure_in_any_table_rolls_back_the_whole_write(warehouse):
    window = (T0, T0 + timedelta(hours=3))
    warehouse.replace_windows({"a": hours(3), "b": hours(3)}, *window)
    incompatible = hours(3).with_columns(pl.lit("not a number").alias("value"))
    with pytest.raises(ValueError, match=r"column value is (DOUBLE|double precision) in the warehouse but"):
        warehouse.replace_windows({"a": hours(3, value=5.0), "b": incompatible}, *window)
    assert warehouse.read_window("a", *window)["value"].to_list() == [1.0, 1.0, 1.0], "table a rolled back too"
    assert warehouse.read_window("b", *window)["value"].to_list() == [1.0, 1.0, 1.0]


def test_insert_errors_roll_back_the_delete(warehouse):
    window = (T0, T0 + timedelta(hours=3))
    execute(warehouse, "CREATE TABLE strict (ts TIMESTAMPTZ, symbol TEXT, value DOUBLE PRECISION CHECK (value > 0))")
    warehouse.replace_window("strict", hours(3), *window)
    with pytest.raises(Exception, match="(?i)check"):
        warehouse.replace_window("strict", hours(3, value=-1.0), *window)
    assert warehouse.read_window("strict", *window)["value"].to_list() == [1.0, 1.0, 1.0]


def test_new_columns_are_added_and_exact_columns_drops_stale_ones(warehouse):
    warehouse.replace_window("t", hours(2), T0, T0 + timedelta(hours=2))
    grown = hours(2, start=T0 + timedelta(hours=2)).with_columns(pl.lit(3.0).alias("extra"))
    warehouse.replace_window("t", grown, T0 + timedelta(hours=2), T0 + timedelta(hours=4))
    assert warehouse.query("SELECT count(extra) AS n FROM t")["n"][0] == 2
    shrunk = hours(1, start=T0 + timedelta(hours=4)).with_columns(pl.lit(4.0).alias("extra")).drop("value")
    warehouse.replace_window("t", shrunk, T0 + timedelta(hours=4), T0 + timedelta(hours=5), exact_columns=True)
    assert warehouse.read_window("t", T0, T0 + timedelta(hours=5)).columns == ["ts", "symbol", "extra"]


def test_a_column_with_no_values_takes_its_type_later(warehouse):
    first = hours(1).with_columns(pl.lit(None).alias("fallback_version"))
    warehouse.replace_window("t", first, T0, T0 + timedelta(hours=1))
    later = hours(1, start=T0 + timedelta(hours=1)).with_columns(pl.lit("v1").alias("fallback_version"))
    warehouse.replace_window("t", later, T0 + timedelta(hours=1), T0 + timedelta(hours=2))
    nulls = hours(1, start=T0 + timedelta(hours=2)).with_columns(pl.lit(None).alias("fallback_version"))
    warehouse.replace_window("t", nulls, T0 + timedelta(hours=2), T0 + timedelta(hours=3))
    assert warehouse.read_window("t", T0, T0 + timedelta(hours=3))["fallback_version"].to_list() == [None, "v1", None]


def test_lists_and_types_round_trip(warehouse):
    frame = pl.DataFrame(
        {
            "ts": [T0, T0 + timedelta(hours=1)],
            "symbols": [["BTCUSDT", "ETHUSDT"], []],
            "count": [3, None],
            "flag": [True, False],
            "text": ["a'b", None],
        }
    )
    warehouse.replace_window("t", frame, T0, T0 + timedelta(hours=2))
    assert warehouse.read_window("t", T0, T0 + timedelta(hours=2)).to_dicts() == frame.to_dicts()


def test_upsert_combines_each_column_by_its_rule(warehouse):
    key = pl.Series("item_id", ["a", "b"])
    first = pl.DataFrame(
        {"item_id": key, "seen": [1, None], "low": [5.0, 1.0], "high": [5.0, 1.0], "n": [1, 1], "tags": [["x"], []]}
    )
    rules = {"seen": "keep", "low": "min", "high": "max", "n": "sum", "tags": "union"}
    warehouse.upsert({"items": Upsert(first, ("item_id",), rules)})
    second = pl.DataFrame(
        {
            "item_id": ["b", "c"],
            "seen": [2, 3],
            "low": [None, 2.0],
            "high": [4.0, 2.0],
            "n": [2, 1],
            "tags": [["z", "y", "z"], ["q"]],
        }
    )
    warehouse.upsert({"items": Upsert(second, ("item_id",), rules)})
    rows = {r["item_id"]: r for r in warehouse.query("SELECT * FROM items ORDER BY item_id").to_dicts()}
    assert rows["a"] == {"item_id": "a", "seen": 1, "low": 5.0, "high": 5.0, "n": 1, "tags": ["x"]}
    assert rows["b"] == {"item_id": "b", "seen": 2, "low": 1.0, "high": 4.0, "n": 3, "tags": ["y", "z"]}
    assert rows["c"] == {"item_id": "c", "seen": 3, "low": 2.0, "high": 2.0, "n": 1, "tags": ["q"]}


def test_upserts_are_all_or_nothing_and_refuse_duplicate_keys(warehouse):
    def rows(value):
        return Upsert(pl.DataFrame({"k": ["x"], "v": [value]}), ("k",))

    warehouse.upsert({"a": rows(1.0), "c": rows(1.0)})
    with pytest.raises(ValueError, match="share a key"):
        warehouse.upsert({"a": Upsert(pl.DataFrame({"k": ["y", "y"], "v": [1.0, 2.0]}), ("k",))})
    with pytest.raises(ValueError, match="in the warehouse but"):
        warehouse.upsert({"a": rows(9.0), "c": rows("text")})
    assert warehouse.query("SELECT v FROM a")["v"].to_list() == [1.0], "the failed upsert left table a untouched"


def test_queries_read_keys_and_filtered_windows(warehouse):
    warehouse.replace_window(
        "t", hours(4).with_columns(pl.Series("symbol", ["X", "Y", "X", "Y"])), T0, T0 + timedelta(hours=4)
    )
    assert warehouse.query("SELECT count(*) AS n FROM t WHERE symbol = ? AND ts >= ?", ["Y", T0])["n"][0] == 2
    assert warehouse.query("SELECT '?' AS q, ? AS p", ["value"]).row(0) == ("?", "value")
    assert warehouse.read_keys("t", "symbol", ["Y", "Z"]).height == 2
    assert warehouse.read_keys("t", "symbol", []).height == 0
    window = warehouse.read_window("t", T0, T0 + timedelta(hours=4), where="symbol = ?", params=["X"])
    assert window["ts"].to_list() == [T0, T0 + timedelta(hours=2)]


def test_bad_identifiers_are_refused(warehouse):
    with pytest.raises(ValueError, match="not a valid table"):
        warehouse.replace_window("t; drop table x", hours(1), T0, T0 + timedelta(hours=1))


def test_concurrent_writers_never_lose_or_duplicate_rows(warehouse):
    """Eight writers, each replacing its own day and the shared first day, at once."""
    errors = []

    def write(day: int) -> None:
        try:
            for d in (0, day):
                start = T0 + timedelta(days=d)
                warehouse.replace_window(
                    "t", hours(24, value=float(day), start=start), start, start + timedelta(days=1)
                )
        except Exception as exc:  # reported below: a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(day,)) for day in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    counts = warehouse.query("SELECT count(*) AS n, count(DISTINCT ts) AS hours FROM t").row(0)
    assert counts == (24 * 9, 24 * 9)
    first_day = warehouse.read_window("t", T0, T0 + timedelta(days=1))
    assert first_day["value"].n_unique() == 1, "the first day is one writer's window, not a mix"


def test_placeholders_become_numbered_outside_quotes():
    assert to_dollar_params("SELECT '?', \"a?\" FROM t WHERE x = ? AND y = ?") == (
        "SELECT '?', \"a?\" FROM t WHERE x = $1 AND y = $2"
    )


def test_an_unreachable_postgres_is_a_clear_error_without_the_password():
    warehouse = PostgresWarehouse(url="postgresql://alphapulse:s3cret@127.0.0.1:9/warehouse", connect_timeout_seconds=2)
    with pytest.raises(StorageUnavailable, match=r"postgresql://alphapulse:\*\*\*@127.0.0.1:9/warehouse") as caught:
        warehouse.table_exists("prices")
    assert "s3cret" not in str(caught.value)


def test_exact_decimals_keep_their_precision_and_scale(warehouse):
    prices = pl.DataFrame(
        {"ts": [T0], "close": [Decimal("43210.12345678")]},
        schema={"ts": pl.Datetime("us", "UTC"), "close": pl.Decimal(38, 8)},
    )
    warehouse.replace_window("prices", prices, T0, T0 + timedelta(hours=1))
    back = warehouse.read_window("prices", T0, T0 + timedelta(hours=1))
    assert back.schema["close"] == pl.Decimal(38, 8) and back["close"].to_list() == [Decimal("43210.12345678")]
    total = warehouse.query("SELECT sum(close) AS total FROM prices")["total"]
    assert total.to_list() == [Decimal("43210.12345678")]
