"""The graph's configuration: every setting declared once, read from the environment and validated together.

Each field is a `setting()` (alphapulse_contract/config.py): variable, default, type and bounds, help text. The
README's configuration table is generated from these declarations (`python -m alphapulse_assets.settings`; a test
fails when it is stale), and the resources are built from the one `Settings` (definitions.py). A malformed
environment fails at code-location load time, before any run starts and before anything is written.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alphapulse_assets.partitions import HISTORY_START, HOUR
from alphapulse_assets.retries import STEP_RETRIES, STEP_RETRY_DELAY_SECONDS
from alphapulse_assets.simulation import EPOCH, SYMBOL_CATALOG
from alphapulse_assets.thresholds import GateThresholds
from alphapulse_contract.config import (
    API_KEYS,
    API_KEYS_FILE,
    API_PORT,
    HOME,
    OBJECT_STORE_URL,
    ConfigError,
    Derived,
    Parser,
    Setting,
    choice,
    directory,
    http_url,
    integer,
    json_object,
    main,
    markdown_table,
    number,
    numbers,
    port,
    postgres_url,
    read,
    setting,
    text,
    unique_list,
)
from alphapulse_contract.scoring import MAX_SMOOTHING_HOURS, SIGNAL_BANDS, SMOOTHING_HOURS

__all__ = ["ConfigError", "Settings", "parse_history_start"]

SUPPORTED_MARKET_SOURCES = ("simulated", "binance_archive", "binance_rest")
SUPPORTED_NEWS_SOURCES = ("simulated", "rss", "jsonl", "none")
SUPPORTED_SENTIMENT_SCORERS = ("vader", "loughran_mcdonald")
SUPPORTED_MODEL_FAMILIES = ("xgboost", "catboost", "logistic")
_SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]{2,20}$")
_NOT_A_SYMBOL = "is not a symbol (letters and digits, like BTCUSDT)"
parse_history_start = HOUR.parse

SYMBOLS = Parser(
    unique_list(str.upper, lambda s: None if _SYMBOL_PATTERN.match(s) else f"{s!r} {_NOT_A_SYMBOL}", "symbol"),
    "symbols, comma-separated",
)
RSS_URLS = Parser(
    unique_list(
        lambda part: part,
        lambda url: None if re.match(r"^https?://[^/\s]+", url) else f"{url!r} is not an http:// or https:// URL",
        "feed URL (required when ALPHAPULSE_NEWS_SOURCE=rss)",
        separators=r",\s",
    ),
    "http(s) URLs, comma- or space-separated",
)
FAMILIES = Parser(
    unique_list(
        str.lower,
        lambda f: (
            None
            if f in SUPPORTED_MODEL_FAMILIES
            else f"{f!r} is not a model family; supported: {', '.join(SUPPORTED_MODEL_FAMILIES)}"
        ),
        "model family",
    ),
    " / ".join(SUPPORTED_MODEL_FAMILIES) + ", comma-separated",
)


def _aliases(raw: str, name: str) -> dict[str, tuple[str, ...]]:
    aliases = {}
    for symbol, names in json_object('{"BTCUSDT": ["BTC", "bitcoin"]}')(raw, name).items():
        if not _SYMBOL_PATTERN.match(str(symbol)):
            raise ConfigError(f"{name}: {symbol!r} {_NOT_A_SYMBOL}")
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            raise ConfigError(f"{name}: the aliases of {symbol} must be a list of non-empty strings")
        aliases[symbol] = tuple(n.strip() for n in names)
    return aliases


def _gates(raw: str, name: str) -> dict[str, float]:
    known = GateThresholds.__dataclass_fields__
    parsed = json_object('{"min_dsr": 0.99}')(raw, name)
    for key, value in parsed.items():
        if key not in known:
            raise ConfigError(f"{name}: unknown threshold {key!r}; known: {', '.join(known)}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ConfigError(f"{name}: {key} must be a finite number")
    return {k: float(v) for k, v in parsed.items()}


def _binance_url(raw: str, name: str) -> str:
    url = raw.rstrip("/")
    if not re.match(r"^https?://[^/\s]+", url):
        raise ConfigError(f"{name}={url!r}: expected an http:// or https:// base URL")
    return url


def default_news_source(market_source: str) -> str:
    """The simulated wire only with the simulated market: its headlines are drawn from that market's own latent
    tone. Beside real prices they would be noise presented as news, and a model could learn from that noise, so a
    real market runs price-only (`none`) until a real news source is set. Defaulting beats refusing: price-only is
    a complete, honest setup, and the demo says which source it used."""
    return "simulated" if market_source == "simulated" else "none"


def _source(name: str, value: str) -> dict[str, Any]:
    """Read only with this source: a directory the simulated market never reads is not checked."""
    return {"when": lambda values: values[name] == value, "when_text": f"with ALPHAPULSE_{name.upper()}={value}"}


# Read by the instance's configuration (instance.py) from a given environment too: a test's, a child's.
DAGSTER_PG_URL = Setting(
    "ALPHAPULSE_DAGSTER_PG_URL",
    None,
    "When set, `make demo` runs the Dagster instance on PostgreSQL (infra/dagster/dagster-postgres.yaml).",
    postgres_url(),
)


@dataclass(frozen=True)
class Settings:
    # Where things are.
    home: Path = HOME.field()
    symbols: tuple[str, ...] = setting(
        "ALPHAPULSE_SYMBOLS",
        ("BTCUSDT", "ETHUSDT"),
        "The symbols every asset is partitioned over. The simulated market lists " + ", ".join(SYMBOL_CATALOG) + ".",
        SYMBOLS,
    )
    history_start: datetime = HISTORY_START.field()
    # Sources.
    market_source: str = setting(
        "ALPHAPULSE_MARKET_SOURCE",
        "simulated",
        "Where prices come from (docs/market-data.md).",
        choice(*SUPPORTED_MARKET_SOURCES),
    )
    archive_dir: Path | None = setting(
        "ALPHAPULSE_ARCHIVE_DIR",
        None,
        "A directory of Binance public-data kline files `SYMBOL-1h-YYYY-MM[-DD].zip` (optional `.CHECKSUM`) or `.csv`.",
        directory(must_exist=True),
        **_source("market_source", "binance_archive"),
    )
    binance_url: str = setting(
        "ALPHAPULSE_BINANCE_URL",
        "https://api.binance.com",
        "Base URL of the klines REST API.",
        Parser(_binance_url, "http(s) URL"),
        **_source("market_source", "binance_rest"),
    )
    extreme_move_z: float = setting(
        "ALPHAPULSE_EXTREME_MOVE_Z",
        12.0,
        "Robust z-score of an hourly log return above which `prices_no_extreme_moves` warns.",
        number(3.0, 1000.0),
    )
    news_source: str = setting(
        "ALPHAPULSE_NEWS_SOURCE",
        Derived(
            lambda v: default_news_source(v["market_source"]), "`simulated` with the simulated market, else `none`"
        ),
        "Where headlines come from; `none` is price-only (news features null). `simulated` beside a real market is "
        "refused: its headlines are drawn from the simulated market's own tone.",
        choice(*SUPPORTED_NEWS_SOURCES),
    )
    rss_urls: tuple[str, ...] = setting(
        "ALPHAPULSE_RSS_URLS", (), "RSS 2.0 / Atom feed URLs.", RSS_URLS, **_source("news_source", "rss")
    )
    rss_timeout_seconds: float = setting(
        "ALPHAPULSE_RSS_TIMEOUT_SECONDS", 10.0, "Per-feed HTTP timeout.", number(0.1, 300.0)
    )
    rss_max_bytes: int = setting(
        "ALPHAPULSE_RSS_MAX_BYTES",
        5_000_000,
        "Per-feed size cap (decoded bytes); a larger feed is rejected as `oversized`.",
        integer(1_000),
    )
    news_dir: Path | None = setting(
        "ALPHAPULSE_NEWS_DIR",
        None,
        "The drop folder of `*.jsonl` exports `news_drop_sensor` watches.",
        directory(must_exist=True),
        **_source("news_source", "jsonl"),
    )
    symbol_aliases: dict[str, tuple[str, ...]] = setting(
        "ALPHAPULSE_SYMBOL_ALIASES",
        {},
        'JSON object replacing a symbol\'s aliases in headlines, e.g. `{"BTCUSDT": ["BTC", "bitcoin", "XBT"]}`.',
        Parser(_aliases, "JSON object"),
    )
    sentiment_scorer: str = setting(
        "ALPHAPULSE_SENTIMENT_SCORER",
        "vader",
        "The headline sentiment lexicon.",
        choice(*SUPPORTED_SENTIMENT_SCORERS),
    )
    sentiment_half_life_hours: float = setting(
        "ALPHAPULSE_SENTIMENT_HALF_LIFE_HOURS", 6.0, "Half-life of the decayed sentiment.", number(0.25, 72.0)
    )
    # The simulated world.
    demo_days: int = setting(
        "ALPHAPULSE_DEMO_DAYS",
        136,
        "The window `make demo` materializes, ending at the last closed hour (extended to what the replay's first "
        "retrain needs).",
        integer(1, 3650),
    )
    seed: int = setting("ALPHAPULSE_SEED", 7, "Seed of the simulated world and of model training.", integer(0))
    news_signal_strength: float = setting(
        "ALPHAPULSE_NEWS_SIGNAL",
        0.35,
        "Correlation of the simulated news tone with the next hour's return (0 switches the planted signal off).",
        number(0.0, 0.9),
    )
    sim_regime_change: datetime | None = setting(
        "ALPHAPULSE_SIM_REGIME_CHANGE",
        None,
        "Simulated market only: from this hour news leads returns with the opposite sign, and volatility and volume "
        "are scaled by ALPHAPULSE_SIM_REGIME_VOL.",
        HOUR,
    )
    sim_regime_vol: float = setting(
        "ALPHAPULSE_SIM_REGIME_VOL",
        3.0,
        "The volatility and volume multiplier after the regime change.",
        number(0.1, 100.0),
    )
    # Labels, validation, tuning.
    train_days: int = setting(
        "ALPHAPULSE_TRAIN_DAYS", 90, "Training region: walk-forward folds, tuning, then the refit.", integer(1)
    )
    validation_days: int = setting(
        "ALPHAPULSE_VALIDATION_DAYS",
        30,
        "Final out-of-sample segment, ending with the newest labelled hour.",
        integer(1),
    )
    embargo_hours: int = setting(
        "ALPHAPULSE_EMBARGO_HOURS",
        24,
        "Embargo after the label purge, at every fold and before the final segment.",
        integer(1),
    )
    label_horizon_hours: int = setting(
        "ALPHAPULSE_LABEL_HORIZON_HOURS", 1, "Hours the label's return spans.", integer(1, 168)
    )
    label_dead_band_bps: float = setting(
        "ALPHAPULSE_LABEL_DEAD_BAND_BPS",
        0.0,
        "Returns within ± this many basis points are not labels.",
        number(0.0, 1000.0),
    )
    cv_folds: int = setting("ALPHAPULSE_CV_FOLDS", 5, "Purged walk-forward folds.", integer(2, 20))
    cv_window: str = setting(
        "ALPHAPULSE_CV_WINDOW", "expanding", "Fold training windows grow, or slide.", choice("expanding", "sliding")
    )
    model_families: tuple[str, ...] = setting(
        "ALPHAPULSE_MODEL_FAMILIES", SUPPORTED_MODEL_FAMILIES, "The model families tuned.", FAMILIES
    )
    tuning_trials: int = setting(
        "ALPHAPULSE_TUNING_TRIALS",
        30,
        "Optuna trials per family (with ALPHAPULSE_OPTUNA_STORAGE: the study's budget across workers).",
        integer(1, 10_000),
    )
    retune_every_hours: int = setting(
        "ALPHAPULSE_RETUNE_EVERY_HOURS",
        0,
        "0: every retrain searches. Otherwise a retrain less than this many hours after the last search refits the "
        "configuration that search chose; its deflated Sharpe counts that search's trials.",
        integer(0, 8760),
    )
    placebo_runs: int = setting("ALPHAPULSE_PLACEBO_RUNS", 5, "Placebo twins per evaluation.", integer(2, 100))
    training_device: str = setting(
        "ALPHAPULSE_TRAINING_DEVICE",
        "auto",
        "GPU when present; `cpu` or `cuda` force it.",
        choice("auto", "cpu", "cuda"),
    )
    training_threads: int = setting("ALPHAPULSE_TRAINING_THREADS", 2, "CPU threads per fit.", integer(1, 256))
    cost_bps: float = setting(
        "ALPHAPULSE_COST_BPS", 2.0, "Trading cost in basis points per unit of position change.", number(0.0, 1000.0)
    )
    signal_bands: tuple[float, ...] = setting(
        "ALPHAPULSE_SIGNAL_BANDS",
        SIGNAL_BANDS,
        "The trading rules' bands around 0.5 that training tries.",
        numbers(float, 0.0, 0.49),
    )
    smoothing_hours: tuple[int, ...] = setting(
        "ALPHAPULSE_SMOOTHING_HOURS",
        SMOOTHING_HOURS,
        "The trading rules' moving means of P(up) that training tries; every band × smoothing pair is a rule, and "
        "a trial the deflated Sharpe pays for.",
        numbers(int, 1, MAX_SMOOTHING_HOURS),
    )
    gates: dict[str, float] = setting(
        "ALPHAPULSE_GATES",
        {},
        'JSON object overriding gate thresholds by name, e.g. `{"min_dsr": 0.99}` (docs/training.md).',
        Parser(_gates, "JSON object"),
    )
    mlflow_model_name: str = setting(
        "ALPHAPULSE_MLFLOW_MODEL_NAME",
        "alphapulse-direction",
        "The MLflow registered model every training adds a version to.",
        text("name"),
    )
    # Promotion, drift and live performance.
    promotion_log_loss_margin: float = setting(
        "ALPHAPULSE_PROMOTION_LOG_LOSS_MARGIN",
        0.0005,
        "Log loss a challenger must beat the champion's by, on the same rows.",
        number(0.0, 1.0),
    )
    promotion_sharpe_margin: float = setting(
        "ALPHAPULSE_PROMOTION_SHARPE_MARGIN",
        0.1,
        "Annualised Sharpe a challenger must beat the champion's by, on the same rows.",
        number(0.0, 100.0),
    )
    min_shadow_hours: int = setting(
        "ALPHAPULSE_MIN_SHADOW_HOURS",
        24,
        "Live hours a challenger in shadow needs before its record can promote it.",
        integer(1),
    )
    drift_window_hours: int = setting(
        "ALPHAPULSE_DRIFT_WINDOW_HOURS",
        24,
        "Recent hours the drift report compares with the training reference.",
        integer(2),
    )
    drift_alpha: float = setting(
        "ALPHAPULSE_DRIFT_ALPHA", 0.05, "False-alarm rate of one whole feature-drift report.", number(1e-6, 0.5)
    )
    drift_critical_share: float = setting(
        "ALPHAPULSE_DRIFT_CRITICAL_SHARE",
        0.3,
        "Share of drifted features that makes drift critical (a retrain is requested).",
        number(0.01, 1.0),
    )
    evidently_every_hours: int = setting(
        "ALPHAPULSE_EVIDENTLY_EVERY_HOURS",
        24,
        "An Evidently report (~8 MB, ~10 s) at hours divisible by this and whenever drift is critical; 0: never.",
        integer(0, 24 * 365),
    )
    performance_window_hours: int = setting(
        "ALPHAPULSE_PERFORMANCE_WINDOW_HOURS", 168, "Live hours the champion's performance is judged on.", integer(2)
    )
    min_live_hours: int = setting(
        "ALPHAPULSE_MIN_LIVE_HOURS",
        48,
        "Fewer live hours with known outcomes: `insufficient_data`, no rollback.",
        integer(2),
    )
    rollback_z: float = setting(
        "ALPHAPULSE_ROLLBACK_Z",
        2.33,
        "Standard errors below its promise (accuracy or Sharpe) that make live performance critical (rollback).",
        number(0.5, 10.0),
    )
    # Backends; unset keeps the embedded ones under the home.
    mlflow_tracking_uri: str = setting(
        "MLFLOW_TRACKING_URI",
        Derived(lambda v: f"sqlite:///{v['home'] / 'mlflow.db'}", "`sqlite:///$ALPHAPULSE_HOME/mlflow.db`"),
        "MLflow tracking; always set explicitly, never MLflow's working-directory default.",
        text("URI"),
    )
    mlflow_artifact_root: str | None = setting(
        "ALPHAPULSE_MLFLOW_ARTIFACT_ROOT",
        None,
        "Where a new MLflow experiment keeps artifacts; unset: `$ALPHAPULSE_HOME/mlartifacts`, or the tracking "
        "server's choice with an http(s) tracking URI.",
        text("URI or directory"),
    )
    warehouse_url: str | None = setting(
        "ALPHAPULSE_WAREHOUSE_URL",
        None,
        "The warehouse on PostgreSQL (password in PGPASSWORD); unset: DuckDB under the home.",
        postgres_url(),
    )
    object_store_url: str | None = OBJECT_STORE_URL.field()
    optuna_storage: str | None = setting(
        "ALPHAPULSE_OPTUNA_STORAGE",
        None,
        "Optuna studies shared by tuning workers (`tuning_worker_job`); unset: studies in the run's process.",
        postgres_url(),
    )
    dagster_pg_url: str | None = DAGSTER_PG_URL.field()
    step_retries: int = STEP_RETRIES.field()
    step_retry_delay_seconds: float = STEP_RETRY_DELAY_SECONDS.field()
    # Alerts, links and the demo's services.
    alert_webhook_url: str | None = setting(
        "ALPHAPULSE_ALERT_WEBHOOK_URL",
        None,
        'An incoming-webhook URL (Slack\'s, or any endpoint taking `{"text": ...}`) alerts are posted to; unset: '
        "alerts stay as JSON under `alerts/`.",
        http_url(),
    )
    ui_url: str | None = setting(
        "ALPHAPULSE_UI_URL",
        None,
        "The Dagster UI's address, for links to runs in alerts (the demo sets it).",
        http_url(),
    )
    reports_url: str | None = setting(
        "ALPHAPULSE_REPORTS_URL",
        None,
        "Where browsers reach the object store's `plots/` and `reports/` (the demo sets it to its plots server); "
        "unset: plots are embedded and report links are store URIs.",
        http_url(),
    )
    ui_port: int = setting("ALPHAPULSE_UI_PORT", 3000, "The Dagster UI's port for `make demo`.", port())
    api_port: int = API_PORT.field()
    reports_port: int = setting("ALPHAPULSE_REPORTS_PORT", 3001, "The plots server's port for `make demo`.", port())
    api_keys: str | None = API_KEYS.field()
    api_keys_file: str | None = API_KEYS_FILE.field()

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def object_store_root(self) -> Path:
        return self.home / "objects"

    @property
    def object_store_location(self) -> str:
        return self.object_store_url or str(self.object_store_root)

    @property
    def min_training_hours(self) -> int:
        """Hours of labelled features one retrain needs: training, purge, embargo and validation windows."""
        return (self.train_days + self.validation_days) * 24 + self.embargo_hours + self.label_horizon_hours

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        settings = cls(**read(cls, env))
        settings.check()
        return settings

    def check(self) -> None:
        """The rules between settings."""
        if self.market_source == "simulated":
            unknown = [s for s in self.symbols if s not in SYMBOL_CATALOG]
            if unknown:
                raise ConfigError(
                    f"ALPHAPULSE_SYMBOLS: the simulated market does not list {', '.join(unknown)}; "
                    f"it lists {', '.join(SYMBOL_CATALOG)}"
                )
        if self.market_source == "binance_archive" and self.archive_dir is None:
            raise ConfigError("ALPHAPULSE_ARCHIVE_DIR: required when ALPHAPULSE_MARKET_SOURCE=binance_archive")
        if self.news_source == "rss" and not self.rss_urls:
            raise ConfigError("ALPHAPULSE_RSS_URLS: at least one feed URL is required when ALPHAPULSE_NEWS_SOURCE=rss")
        if self.news_source == "jsonl" and self.news_dir is None:
            raise ConfigError("ALPHAPULSE_NEWS_DIR: required when ALPHAPULSE_NEWS_SOURCE=jsonl")
        if self.history_start > datetime.now(UTC) - timedelta(hours=1):
            raise ConfigError(
                f"ALPHAPULSE_HISTORY_START={self.history_start:%Y-%m-%d-%H:%M}: the first partition must be an hour "
                "that has already closed"
            )
        if self.news_source == "simulated" and self.market_source != "simulated":
            raise ConfigError(
                f"ALPHAPULSE_NEWS_SOURCE=simulated: the simulated wire's headlines are drawn from the simulated "
                f"market's own tone; beside ALPHAPULSE_MARKET_SOURCE={self.market_source} they would be noise "
                "presented as news. Set ALPHAPULSE_NEWS_SOURCE to none (price-only), rss or jsonl"
            )
        if self.market_source == "simulated" and self.history_start < EPOCH:
            raise ConfigError(
                f"ALPHAPULSE_HISTORY_START={self.history_start:%Y-%m-%d}: the simulated market and its newswire start "
                f"{EPOCH:%Y-%m-%d}; move ALPHAPULSE_HISTORY_START to {EPOCH:%Y-%m-%d} or later, or set "
                "ALPHAPULSE_MARKET_SOURCE to a real source"
            )


# Every setting's default, for the resources' own field defaults: a resource built by hand (a test, a notebook)
# behaves as the configured one does with nothing set.
DEFAULTS = Settings()


def configuration_table() -> str:
    """The README's table of the graph's settings (the API's own are in alphapulse_serving/config.py)."""
    return markdown_table(Settings)


if __name__ == "__main__":
    main(configuration_table(), "settings:graph")
