from datetime import UTC, datetime

import pytest

from alphapulse_assets.settings import ConfigError, Settings, parse_history_start


def settings(**env):
    return Settings.from_env({"ALPHAPULSE_HOME": "/tmp/alphapulse-settings-test", **env})


def test_defaults():
    s = settings()
    assert s.symbols == ("BTCUSDT", "ETHUSDT")
    assert s.history_start == datetime(2025, 1, 1, tzinfo=UTC)
    assert s.market_source == s.news_source == "simulated"
    assert s.mlflow_tracking_uri == "sqlite:////tmp/alphapulse-settings-test/mlflow.db"
    assert s.warehouse_path.name == "warehouse.duckdb"
    assert (s.label_horizon_hours, s.cv_folds, s.cv_window, s.tuning_trials) == (1, 5, "expanding", 30)
    assert s.model_families == ("xgboost", "catboost", "logistic") and s.gates == {}


def test_training_settings_reach_the_policy():
    from alphapulse_assets.definitions import build_resources

    s = settings(
        ALPHAPULSE_MODEL_FAMILIES="logistic, xgboost",
        ALPHAPULSE_GATES='{"min_dsr": 0.99, "min_oos_rows": 500}',
        ALPHAPULSE_LABEL_HORIZON_HOURS="4",
        ALPHAPULSE_TRAINING_DEVICE="cpu",
        ALPHAPULSE_SIGNAL_BANDS="0.03, 0",
        ALPHAPULSE_SMOOTHING_HOURS="12,1",
    )
    policy = build_resources(s)["policy"]
    assert policy.model_families == ["logistic", "xgboost"] and policy.horizon_hours == 4
    assert [r.as_dict() for r in policy.tuning(datetime(2025, 3, 1, tzinfo=UTC)).rules] == [
        {"band": 0.0, "smoothing_hours": 1},
        {"band": 0.03, "smoothing_hours": 1},
        {"band": 0.0, "smoothing_hours": 12},
        {"band": 0.03, "smoothing_hours": 12},
    ]
    thresholds = policy.evaluation().thresholds
    assert thresholds.min_dsr == 0.99 and thresholds.min_oos_rows == 500 and thresholds.min_psr == 0.95
    assert policy.tuning(datetime(2025, 3, 1, tzinfo=UTC)).trainer.device == "cpu"


def test_history_start_formats():
    assert parse_history_start("2025-02-03") == datetime(2025, 2, 3, tzinfo=UTC)
    assert parse_history_start("2025-02-03-07:00") == datetime(2025, 2, 3, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    "env, named",
    [
        ({"ALPHAPULSE_SYMBOLS": "BTCUSDT,NOPEUSDT"}, "ALPHAPULSE_SYMBOLS"),
        ({"ALPHAPULSE_SYMBOLS": "BTC-USD"}, "ALPHAPULSE_SYMBOLS"),
        ({"ALPHAPULSE_SYMBOLS": " , "}, "ALPHAPULSE_SYMBOLS"),
        ({"ALPHAPULSE_SYMBOLS": "BTCUSDT,btcusdt"}, "ALPHAPULSE_SYMBOLS"),
        ({"ALPHAPULSE_HISTORY_START": "01/02/2025"}, "ALPHAPULSE_HISTORY_START"),
        ({"ALPHAPULSE_HISTORY_START": "2025-01-01-10:30"}, "ALPHAPULSE_HISTORY_START"),
        ({"ALPHAPULSE_HISTORY_START": "2999-01-01"}, "ALPHAPULSE_HISTORY_START"),
        ({"ALPHAPULSE_MARKET_SOURCE": "bloomberg"}, "ALPHAPULSE_MARKET_SOURCE"),
        ({"ALPHAPULSE_NEWS_SOURCE": "twitter"}, "ALPHAPULSE_NEWS_SOURCE"),
        ({"ALPHAPULSE_DEMO_DAYS": "ten"}, "ALPHAPULSE_DEMO_DAYS"),
        ({"ALPHAPULSE_DEMO_DAYS": "0"}, "ALPHAPULSE_DEMO_DAYS"),
        ({"ALPHAPULSE_NEWS_SIGNAL": "2"}, "ALPHAPULSE_NEWS_SIGNAL"),
        ({"ALPHAPULSE_MARKET_SOURCE": "binance_archive"}, "ALPHAPULSE_ARCHIVE_DIR"),
        (
            {"ALPHAPULSE_MARKET_SOURCE": "binance_archive", "ALPHAPULSE_ARCHIVE_DIR": "/no/such/dir"},
            "ALPHAPULSE_ARCHIVE_DIR",
        ),
        ({"ALPHAPULSE_EXTREME_MOVE_Z": "1"}, "ALPHAPULSE_EXTREME_MOVE_Z"),
        ({"ALPHAPULSE_MARKET_SOURCE": "binance_rest", "ALPHAPULSE_BINANCE_URL": "ftp://x"}, "ALPHAPULSE_BINANCE_URL"),
        ({"ALPHAPULSE_NEWS_SOURCE": "rss"}, "ALPHAPULSE_RSS_URLS"),
        ({"ALPHAPULSE_NEWS_SOURCE": "rss", "ALPHAPULSE_RSS_URLS": "feeds.example/rss"}, "ALPHAPULSE_RSS_URLS"),
        ({"ALPHAPULSE_NEWS_SOURCE": "rss", "ALPHAPULSE_RSS_URLS": "http://a/x,http://a/x"}, "ALPHAPULSE_RSS_URLS"),
        ({"ALPHAPULSE_NEWS_SOURCE": "jsonl"}, "ALPHAPULSE_NEWS_DIR"),
        ({"ALPHAPULSE_NEWS_SOURCE": "jsonl", "ALPHAPULSE_NEWS_DIR": "/no/such/dir"}, "ALPHAPULSE_NEWS_DIR"),
        ({"ALPHAPULSE_RSS_TIMEOUT_SECONDS": "0"}, "ALPHAPULSE_RSS_TIMEOUT_SECONDS"),
        ({"ALPHAPULSE_RSS_MAX_BYTES": "10"}, "ALPHAPULSE_RSS_MAX_BYTES"),
        ({"ALPHAPULSE_SYMBOL_ALIASES": "BTC=bitcoin"}, "ALPHAPULSE_SYMBOL_ALIASES"),
        ({"ALPHAPULSE_SYMBOL_ALIASES": '["BTC"]'}, "ALPHAPULSE_SYMBOL_ALIASES"),
        ({"ALPHAPULSE_SYMBOL_ALIASES": '{"BTCUSDT": "BTC"}'}, "ALPHAPULSE_SYMBOL_ALIASES"),
        ({"ALPHAPULSE_SYMBOL_ALIASES": '{"btc-usd": ["BTC"]}'}, "ALPHAPULSE_SYMBOL_ALIASES"),
        ({"ALPHAPULSE_SENTIMENT_SCORER": "finbert"}, "ALPHAPULSE_SENTIMENT_SCORER"),
        ({"ALPHAPULSE_SENTIMENT_HALF_LIFE_HOURS": "0"}, "ALPHAPULSE_SENTIMENT_HALF_LIFE_HOURS"),
        ({"ALPHAPULSE_LABEL_HORIZON_HOURS": "0"}, "ALPHAPULSE_LABEL_HORIZON_HOURS"),
        ({"ALPHAPULSE_LABEL_DEAD_BAND_BPS": "-1"}, "ALPHAPULSE_LABEL_DEAD_BAND_BPS"),
        ({"ALPHAPULSE_CV_FOLDS": "1"}, "ALPHAPULSE_CV_FOLDS"),
        ({"ALPHAPULSE_CV_WINDOW": "rolling"}, "ALPHAPULSE_CV_WINDOW"),
        ({"ALPHAPULSE_TUNING_TRIALS": "0"}, "ALPHAPULSE_TUNING_TRIALS"),
        ({"ALPHAPULSE_MODEL_FAMILIES": "xgboost,lightgbm"}, "ALPHAPULSE_MODEL_FAMILIES"),
        ({"ALPHAPULSE_MODEL_FAMILIES": "xgboost,xgboost"}, "ALPHAPULSE_MODEL_FAMILIES"),
        ({"ALPHAPULSE_PLACEBO_RUNS": "1"}, "ALPHAPULSE_PLACEBO_RUNS"),
        ({"ALPHAPULSE_SIGNAL_BANDS": "0.5"}, "ALPHAPULSE_SIGNAL_BANDS"),
        ({"ALPHAPULSE_SIGNAL_BANDS": "wide"}, "ALPHAPULSE_SIGNAL_BANDS"),
        ({"ALPHAPULSE_SMOOTHING_HOURS": "48"}, "ALPHAPULSE_SMOOTHING_HOURS"),
        ({"ALPHAPULSE_SMOOTHING_HOURS": "1,1"}, "ALPHAPULSE_SMOOTHING_HOURS"),
        ({"ALPHAPULSE_TRAINING_DEVICE": "tpu"}, "ALPHAPULSE_TRAINING_DEVICE"),
        ({"ALPHAPULSE_GATES": '{"min_sharpe": 1}'}, "ALPHAPULSE_GATES"),
        ({"ALPHAPULSE_GATES": '{"min_dsr": "high"}'}, "ALPHAPULSE_GATES"),
        ({"ALPHAPULSE_GATES": "min_dsr=0.9"}, "ALPHAPULSE_GATES"),
    ],
)
def test_bad_values_name_the_setting(env, named):
    with pytest.raises(ConfigError, match=named):
        settings(**env)


def test_definitions_refuse_to_load_with_a_bad_environment(tmp_path):
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "ALPHAPULSE_HOME": str(tmp_path), "ALPHAPULSE_SYMBOLS": "BTCUSDT,FAKEUSDT"}
    result = subprocess.run(
        [sys.executable, "-c", "import alphapulse_assets.definitions"], env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "ALPHAPULSE_SYMBOLS" in result.stderr and "FAKEUSDT" in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_archive_source_takes_any_well_formed_symbol(tmp_path):
    s = settings(ALPHAPULSE_MARKET_SOURCE="binance_archive", ALPHAPULSE_ARCHIVE_DIR=str(tmp_path),
                 ALPHAPULSE_SYMBOLS="BTCUSDT,PEPEUSDT")  # fmt: skip
    assert s.archive_dir == tmp_path and s.symbols == ("BTCUSDT", "PEPEUSDT")


def test_news_settings(tmp_path):
    rss = settings(ALPHAPULSE_NEWS_SOURCE="rss", ALPHAPULSE_RSS_URLS="https://a.example/rss, http://b.example/atom\n")
    assert rss.rss_urls == ("https://a.example/rss", "http://b.example/atom")
    assert (rss.rss_timeout_seconds, rss.rss_max_bytes, rss.sentiment_scorer) == (10.0, 5_000_000, "vader")
    jsonl = settings(
        ALPHAPULSE_NEWS_SOURCE="jsonl",
        ALPHAPULSE_NEWS_DIR=str(tmp_path),
        ALPHAPULSE_SYMBOL_ALIASES='{"SOLUSDT": ["SOL", "solana"]}',
        ALPHAPULSE_SENTIMENT_SCORER="loughran_mcdonald",
        ALPHAPULSE_SENTIMENT_HALF_LIFE_HOURS="2.5",
    )
    assert jsonl.news_dir == tmp_path and jsonl.symbol_aliases == {"SOLUSDT": ("SOL", "solana")}
    assert (jsonl.sentiment_scorer, jsonl.sentiment_half_life_hours) == ("loughran_mcdonald", 2.5)


def test_production_backends_are_chosen_by_configuration():
    from alphapulse_assets.definitions import build_resources
    from alphapulse_assets.storage.object_store import LocalObjectStore, S3ObjectStore
    from alphapulse_assets.storage.postgres import PostgresWarehouse
    from alphapulse_assets.storage.warehouse import DuckDBWarehouse

    embedded = build_resources(settings())
    assert isinstance(embedded["warehouse"], DuckDBWarehouse)
    assert isinstance(embedded["object_store"], LocalObjectStore)
    assert embedded["mlflow"].artifact_root == "/tmp/alphapulse-settings-test/mlartifacts"
    production = build_resources(
        settings(
            ALPHAPULSE_WAREHOUSE_URL="postgresql://alphapulse@db:5432/warehouse",
            ALPHAPULSE_OBJECT_STORE_URL="s3://alphapulse-prod/v1",
            MLFLOW_TRACKING_URI="http://mlflow:5000",
            ALPHAPULSE_OPTUNA_STORAGE="postgresql://alphapulse@db:5432/optuna",
        )
    )
    assert embedded["policy"].optuna_storage is None, "tuning stays in the run's process by default"
    assert production["policy"].optuna_storage == "postgresql://alphapulse@db:5432/optuna"
    assert isinstance(production["warehouse"], PostgresWarehouse)
    assert production["warehouse"].url == "postgresql://alphapulse@db:5432/warehouse"
    store = production["object_store"]
    assert isinstance(store, S3ObjectStore) and (store.bucket, store.prefix) == ("alphapulse-prod", "v1")
    assert production["mlflow"].artifact_root is None, "a tracking server chooses where artifacts go"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ALPHAPULSE_WAREHOUSE_URL", "mysql://db/warehouse", "expected postgresql://"),
        ("ALPHAPULSE_WAREHOUSE_URL", "postgresql://alphapulse@db:5432", "names no database"),
        ("ALPHAPULSE_OBJECT_STORE_URL", "s3://Bad_Bucket/x", "valid bucket name"),
        ("ALPHAPULSE_OBJECT_STORE_URL", "gs://bucket/x", "expected s3://"),
        ("ALPHAPULSE_OPTUNA_STORAGE", "sqlite:///optuna.db", "expected postgresql://"),
    ],
)
def test_bad_backend_urls_name_the_variable(name, value, message):
    with pytest.raises(ConfigError, match=f"{name}.*{message}|{name}: {message}"):
        settings(**{name: value})


def test_real_prices_default_to_price_only_and_never_to_the_simulated_wire(tmp_path):
    from alphapulse_assets.definitions import build_resources
    from alphapulse_assets.news.resources import NoNewsSource

    archive = {"ALPHAPULSE_MARKET_SOURCE": "binance_archive", "ALPHAPULSE_ARCHIVE_DIR": str(tmp_path)}
    s = settings(**archive, ALPHAPULSE_HISTORY_START="2017-10-01")
    assert s.news_source == "none"
    resources = build_resources(s)
    assert isinstance(resources["newswire"], NoNewsSource) and resources["sentiment"].headlines is False
    assert settings(ALPHAPULSE_MARKET_SOURCE="binance_rest").news_source == "none"
    assert build_resources(settings())["sentiment"].headlines is True
    with pytest.raises(ConfigError, match="ALPHAPULSE_NEWS_SOURCE=simulated: .* noise presented as news"):
        settings(**archive, ALPHAPULSE_NEWS_SOURCE="simulated")


def test_the_simulated_market_before_it_opens_is_refused_naming_the_variable():
    with pytest.raises(ConfigError, match="ALPHAPULSE_HISTORY_START=2017-10-01: the simulated market .* 2020-01-01"):
        settings(ALPHAPULSE_HISTORY_START="2017-10-01")
    assert settings(ALPHAPULSE_HISTORY_START="2020-01-01").history_start == datetime(2020, 1, 1, tzinfo=UTC)
