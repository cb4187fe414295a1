"""The feature store through Dagster: TA-Lib parity and chunk invariance on the warehouse table, the version ledger,
metadata, the online snapshot, and the API's refusal of another version's features."""

import json
import os
from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import polars as pl
import pytest
from api import api_client
from models import xgboost_artifact
from polars.testing import assert_frame_equal
from test_features import TALIB_REFERENCE, talib_reference

from alphapulse_assets.definitions import build_definitions
from alphapulse_assets.features.catalog import FEATURE_NAMES, FEATURES, HISTORY_HOURS, compute_features
from alphapulse_assets.features.store import FEATURE_HOURS, current_feature_version, require_feature_version
from alphapulse_assets.runner import run_job
from alphapulse_assets.settings import Settings
from alphapulse_contract.scoring import MANIFEST_KEY, SNAPSHOT_KEY, ModelManifest, sha256_hex

FIRST = datetime(2025, 3, 1, tzinfo=UTC)
# Three runs: a long range, a short one, then a single hour. The last starts more than HISTORY_HOURS after the
# first, so its exponential indicators are computed from a history that does not reach the start of the data.
RUNS = [("2025-03-01-00:00", "2025-03-24-23:00"), ("2025-03-25-00:00", "2025-03-27-23:00"), ("2025-03-28-00:00",)]
END = datetime(2025, 3, 28, 1, tzinfo=UTC)
HOURS = int((END - FIRST) / timedelta(hours=1))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    home = tmp_path_factory.mktemp("feature-store")
    settings = Settings.from_env({**os.environ, "ALPHAPULSE_HOME": str(home)})
    defs = build_definitions(settings)
    assert (END - FIRST) - timedelta(hours=1) > timedelta(hours=HISTORY_HOURS["prices"])
    with dg.instance_for_test() as instance:
        for run in RUNS:
            if len(run) == 2:
                outcome = run_job(defs, instance, "data_job", partition_range=run)
            else:
                outcome = run_job(defs, instance, "data_job", partition_key=run[0])
            assert outcome.success, outcome.error
        yield defs, instance, settings


def table(defs, name):
    return defs.resources["warehouse"].query(f"SELECT * FROM {name} ORDER BY ALL")


def test_the_table_has_ts_symbol_then_one_column_per_catalog_feature(store):
    defs, _, _ = store
    features = table(defs, "features")
    assert features.columns == ["ts", "symbol", *FEATURE_NAMES]
    assert features.height == HOURS * 2 and features.select("ts", "symbol").is_duplicated().sum() == 0


def test_classic_indicators_equal_ta_lib_through_the_asset(store):
    defs, _, _ = store
    prices, features = table(defs, "prices"), table(defs, "features")
    for symbol in ("BTCUSDT", "ETHUSDT"):
        reference = talib_reference(prices, symbol)
        mine = features.filter(pl.col("symbol") == symbol)
        assert mine["ts"].equals(reference["ts"])
        for name in TALIB_REFERENCE:
            warm = FEATURES[name].warmup_hours
            got = mine[name].cast(pl.Float64).fill_null(np.nan).to_numpy()
            np.testing.assert_allclose(got[warm:], reference[name][warm:], rtol=0, atol=1e-6, err_msg=name)


def test_chunked_materializations_equal_one_computation_over_the_whole_range(store):
    defs, _, settings = store
    whole = compute_features(table(defs, "prices"), table(defs, "news_sentiment"), settings.symbols, FIRST, END)
    assert_frame_equal(table(defs, "features"), whole.sort("ts", "symbol"), check_exact=False, rel_tol=0, abs_tol=1e-9)


def test_every_hour_records_its_feature_version_and_the_guard_names_stale_hours(store):
    defs, _, _ = store
    warehouse, version = defs.resources["warehouse"], current_feature_version(defs.resources["sentiment"])
    ledger = table(defs, FEATURE_HOURS)
    assert ledger.height == HOURS and ledger["feature_version"].unique().to_list() == [version]
    require_feature_version(warehouse, FIRST, END, version, "a test")

    with pytest.raises(dg.Failure, match="no features"):
        require_feature_version(warehouse, FIRST, END + timedelta(hours=3), version, "a test")
    stale_from = FIRST + timedelta(days=2)
    warehouse.replace_window(
        FEATURE_HOURS,
        ledger.filter(pl.col("ts") < stale_from + timedelta(hours=5))
        .filter(pl.col("ts") >= stale_from)
        .with_columns(pl.lit("0123456789abcdef").alias("feature_version")),
        stale_from,
        stale_from + timedelta(hours=5),
    )
    try:
        with pytest.raises(dg.Failure, match=r"5 hours \(from 2025-03-03T00:00:00\+00:00\) hold version 0123456789"):
            require_feature_version(warehouse, FIRST, END, version, "a test")
    finally:
        warehouse.replace_window(
            FEATURE_HOURS, ledger.filter(pl.col("ts").is_between(FIRST, END, closed="left")), FIRST, END
        )


def test_metadata_carries_version_null_counts_summary_and_heatmap(store):
    defs, instance, _ = store
    event = instance.get_latest_materialization_event(dg.AssetKey("features"))
    metadata = event.asset_materialization.metadata
    assert metadata["feature_version"].value == current_feature_version(defs.resources["sentiment"])
    assert metadata["feature_count"].value == len(FEATURE_NAMES) >= 50
    last_hour = table(defs, "features").filter(pl.col("ts") == END - timedelta(hours=1))
    nulls = metadata["null_counts"].value
    assert nulls == {n: last_hour[n].null_count() for n in FEATURE_NAMES}
    assert metadata["null_cells"].value == sum(nulls.values())
    summary = metadata["summary"].value
    assert all(f"| {name} |" in summary for name in FEATURE_NAMES)
    assert metadata["correlation_heatmap"].value.startswith("![feature correlation heatmap](data:image/png;base64,")
    assert metadata["summary_sample"].value.endswith("(336 rows)")  # a single hour describes the trailing week
    assert metadata["online_snapshot"].value == f"published: {(END - timedelta(hours=1)).isoformat()}"


def test_the_online_snapshot_is_the_newest_row_per_symbol(store):
    defs, _, settings = store
    snapshot = json.loads(defs.resources["object_store"].get_bytes(SNAPSHOT_KEY))
    assert snapshot["feature_version"] == current_feature_version(defs.resources["sentiment"])
    assert snapshot["feature_names"] == list(FEATURE_NAMES)
    newest = table(defs, "features").filter(pl.col("ts") == END - timedelta(hours=1))
    for row in newest.iter_rows(named=True):
        online = snapshot["rows"][row["symbol"]]
        assert datetime.fromisoformat(online["ts"]) == END - timedelta(hours=1)
        assert online["values"] == {n: row[n] for n in FEATURE_NAMES}


def test_the_api_serves_its_own_version_and_abstains_on_another(store):
    defs, _, settings = store
    object_store, version = defs.resources["object_store"], current_feature_version(defs.resources["sentiment"])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, len(FEATURE_NAMES)))
    artifact = xgboost_artifact(x, (x[:, 0] > 0).astype(int), seed=0, rounds=5)

    def promote(model_version: str, feature_version: str) -> None:
        uri = object_store.put_bytes(f"models/{model_version}/model.ubj", artifact)
        manifest = ModelManifest(
            version=model_version, model_uri=uri, sha256=sha256_hex(artifact), feature_names=list(FEATURE_NAMES),
            feature_version=feature_version, signal_band=0.02, symbols=list(settings.symbols),
            training_window={}, metrics={}, trained_at="", promoted_at="", decision_partition="",
        )  # fmt: skip
        object_store.put_bytes(MANIFEST_KEY, manifest.to_json())

    promote("current", version)
    with api_client(settings.object_store_root, settings.object_store_root.parent / "audit") as client:
        body = client.post("/predict", json={"symbol": "ETHUSDT"}).json()
        assert body["source"] == "primary" and body["feature_version"] == version
        assert datetime.fromisoformat(body["feature_timestamp"]) == END - timedelta(hours=1)

        # A model built for other features is verified but refused: the one in service keeps answering.
        promote("older", "0000000000000000")
        client.app.state.services.serving.refresh()
        body = client.post("/predict", json={"symbol": "ETHUSDT"}).json()
        assert body["source"] == "primary" and body["model_version"] == "current"
        health = client.get("/health").json()
        assert health["status"] == "degraded" and health["pending_model_version"] == "older"
        assert any("refused model older" in r and "0000000000000000" in r for r in health["reasons"])


def test_columns_dropped_from_the_catalog_leave_the_table(store):
    defs, instance, _ = store
    warehouse = defs.resources["warehouse"]
    with warehouse.connect() as con:
        con.execute("ALTER TABLE features ADD COLUMN retired_feature DOUBLE")
    outcome = run_job(defs, instance, "data_job", partition_key=RUNS[-1][0])
    assert outcome.success, outcome.error
    assert table(defs, "features").columns == ["ts", "symbol", *FEATURE_NAMES]
