from datetime import UTC, datetime, timedelta

import duckdb
import polars as pl
import pytest

from alphapulse_assets.storage.warehouse import DuckDBWarehouse

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def hours(n, value=1.0, start=T0):
    return pl.DataFrame({"ts": [start + timedelta(hours=h) for h in range(n)], "symbol": "X", "value": value})


def test_replace_window_is_idempotent(tmp_path):
    warehouse = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
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


def test_rows_outside_the_window_are_refused_and_nothing_is_written(tmp_path):
    warehouse = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    warehouse.replace_window("t", hours(3), T0, T0 + timedelta(hours=3))
    with pytest.raises(ValueError, match="outside the window"):
        warehouse.replace_window("t", hours(5, value=7.0), T0, T0 + timedelta(hours=3))
    assert warehouse.read_window("t", T0, T0 + timedelta(hours=3))["value"].to_list() == [1.0, 1.0, 1.0]


def test_a_failure_in_any_table_rolls_back_the_whole_write(tmp_path):
    warehouse = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    window = (T0, T0 + timedelta(hours=3))
    warehouse.replace_windows({"a": hours(3), "b": hours(3)}, *window)
    incompatible = hours(3).with_columns(pl.lit("not a number").alias("value"))
    with pytest.raises(ValueError, match="column value is DOUBLE in the warehouse but VARCHAR"):
        warehouse.replace_windows({"a": hours(3, value=5.0), "b": incompatible}, *window)
    assert warehouse.read_window("a", *window)["value"].to_list() == [1.0, 1.0, 1.0], "table a rolled back too"
    assert warehouse.read_window("b", *window)["value"].to_list() == [1.0, 1.0, 1.0]


def test_insert_errors_roll_back_the_delete(tmp_path):
    warehouse = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    window = (T0, T0 + timedelta(hours=3))
    warehouse.replace_window("t", hours(3), *window)
    with warehouse.connect() as con:
        con.execute("CREATE TABLE strict (ts TIMESTAMPTZ, symbol VARCHAR, value DOUBLE CHECK (value > 0))")
        con.execute("INSERT INTO strict SELECT * FROM t")
    with pytest.raises(duckdb.ConstraintException):
        warehouse.replace_window("strict", hours(3, value=-1.0), *window)
    assert warehouse.read_window("strict", *window)["value"].to_list() == [1.0, 1.0, 1.0]


def test_new_columns_are_added(tmp_path):
    warehouse = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    warehouse.replace_window("t", hours(2), T0, T0 + timedelta(hours=2))
    grown = hours(2, start=T0 + timedelta(hours=2)).with_columns(pl.lit(3.0).alias("extra"))
    warehouse.replace_window("t", grown, T0 + timedelta(hours=2), T0 + timedelta(hours=4))
    assert warehouse.query("SELECT count(extra) AS n FROM t")["n"][0] == 2


def test_bad_identifiers_are_refused(tmp_path):
    warehouse = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    with pytest.raises(ValueError, match="not a valid table"):
        warehouse.replace_window("t; drop table x", hours(1), T0, T0 + timedelta(hours=1))
