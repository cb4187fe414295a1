"""Configuration from the environment, validated once, with errors that name the setting.

Every value a user can set lives here so that a malformed environment fails at code-location load time, before
any run starts and before anything is written.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

from alphapulse_assets.market.simulator import EPOCH, SYMBOL_CATALOG
from alphapulse_serving.contract import MAX_SMOOTHING_HOURS, SIGNAL_BANDS, SMOOTHING_HOURS, store_location

SUPPORTED_MARKET_SOURCES = ("simulated", "binance_archive", "binance_rest")
SUPPORTED_NEWS_SOURCES = ("simulated", "rss", "jsonl", "none")
SUPPORTED_SENTIMENT_SCORERS = ("vader", "loughran_mcdonald")
SUPPORTED_MODEL_FAMILIES = ("xgboost", "catboost", "logistic")
SUPPORTED_CV_WINDOWS = ("expanding", "sliding")
SUPPORTED_DEVICES = ("auto", "cpu", "cuda")
DEFAULT_HISTORY_START = "2025-01-01"
_SYMBOL_PATTERN = re.compile(r"^[A-Z0-9]{2,20}$")


class ConfigError(ValueError):
    """A setting from the environment is malformed; the message names the variable."""


def parse_history_start(raw: str, name: str = "ALPHAPULSE_HISTORY_START") -> datetime:
    """Parse `YYYY-MM-DD` or `YYYY-MM-DD-HH:MM` (UTC) into an hour-aligned datetime."""
    text = raw.strip()
    for fmt in ("%Y-%m-%d-%H:%M", "%Y-%m-%d"):
        try:
            parsed = datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
        if parsed.minute != 0:
            raise ConfigError(f"{name}={raw!r}: partitions are hourly, so the minutes must be :00")
        return parsed
    raise ConfigError(f"{name}={raw!r}: expected YYYY-MM-DD or YYYY-MM-DD-HH:MM (UTC)")


def _unique_list(raw: str, name: str, normalise, problem, what: str, separators: str = ",") -> tuple[str, ...]:
    """Separated values, normalised, each checked by `problem` (a message, or None when fine), no repeats."""
    values: list[str] = []
    for part in re.split(f"[{separators}]+", raw):
        value = normalise(part.strip())
        if not value:
            continue
        message = problem(value)
        if message:
            raise ConfigError(f"{name}: {message}")
        if value in values:
            raise ConfigError(f"{name}: {value} is listed twice")
        values.append(value)
    if not values:
        raise ConfigError(f"{name}={raw!r}: at least one {what} is required")
    return tuple(values)


def parse_symbols(raw: str, name: str = "ALPHAPULSE_SYMBOLS") -> tuple[str, ...]:
    return _unique_list(
        raw,
        name,
        str.upper,
        lambda s: None if _SYMBOL_PATTERN.match(s) else f"{s!r} is not a symbol (letters and digits, like BTCUSDT)",
        "symbol",
    )


def parse_rss_urls(raw: str, name: str = "ALPHAPULSE_RSS_URLS") -> tuple[str, ...]:
    return _unique_list(
        raw,
        name,
        lambda part: part,
        lambda url: None if re.match(r"^https?://[^/\s]+", url) else f"{url!r} is not an http:// or https:// URL",
        "feed URL (required when ALPHAPULSE_NEWS_SOURCE=rss)",
        separators=r",\s",
    )


def _json_object(raw: str, name: str, example: str) -> dict:
    """A JSON object from the environment ({} when unset), or an error naming the variable and showing `example`."""
    if not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name}: not valid JSON ({exc})") from None
    if not isinstance(parsed, dict):
        raise ConfigError(f"{name}: expected a JSON object like {example}")
    return parsed


def parse_aliases(raw: str, name: str = "ALPHAPULSE_SYMBOL_ALIASES") -> dict[str, tuple[str, ...]]:
    """A JSON object from symbol to its aliases, e.g. {"SOLUSDT": ["SOL", "solana"]}; it replaces that symbol's
    default aliases."""
    parsed = _json_object(raw, name, '{"BTCUSDT": ["BTC", "bitcoin"]}')
    aliases = {}
    for symbol, names in parsed.items():
        if not _SYMBOL_PATTERN.match(str(symbol)):
            raise ConfigError(f"{name}: {symbol!r} is not a symbol (letters and digits, like BTCUSDT)")
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            raise ConfigError(f"{name}: the aliases of {symbol} must be a list of non-empty strings")
        aliases[symbol] = tuple(n.strip() for n in names)
    return aliases


def parse_families(raw: str, name: str = "ALPHAPULSE_MODEL_FAMILIES") -> tuple[str, ...]:
    supported = ", ".join(SUPPORTED_MODEL_FAMILIES)
    return _unique_list(
        raw,
        name,
        str.lower,
        lambda f: None if f in SUPPORTED_MODEL_FAMILIES else f"{f!r} is not a model family; supported: {supported}",
        "model family",
    )


def parse_numbers(raw: str, name: str, kind: type, minimum: float, maximum: float) -> tuple:
    """Comma-separated numbers of `kind` (int or float) in [minimum, maximum], no repeats."""

    def problem(value: str) -> str | None:
        try:
            number = kind(value)
        except ValueError:
            return f"{value!r} is not {'a whole number' if kind is int else 'a number'}"
        return None if minimum <= number <= maximum else f"{value} is outside [{minimum:g}, {maximum:g}]"

    return tuple(kind(v) for v in _unique_list(raw, name, str, problem, "value"))


def parse_gates(raw: str, name: str = "ALPHAPULSE_GATES") -> dict[str, float]:
    """A JSON object overriding gate thresholds by name, e.g. {"min_dsr": 0.99}; unknown names are errors."""
    from alphapulse_assets.training.gates import GateThresholds

    parsed = _json_object(raw, name, '{"min_dsr": 0.99}')
    known = GateThresholds.__dataclass_fields__
    for key, value in parsed.items():
        if key not in known:
            raise ConfigError(f"{name}: unknown threshold {key!r}; known: {', '.join(known)}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ConfigError(f"{name}: {key} must be a finite number")
    return {k: float(v) for k, v in parsed.items()}


def _env(env: dict[str, str], name: str, default: str) -> str:
    value = env.get(name)
    return default if value is None or value.strip() == "" else value.strip()


def _int(env: dict[str, str], name: str, default: int, minimum: int, maximum: int | None = None) -> int:
    raw = _env(env, name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a whole number") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ConfigError(f"{name}={value}: must be {bound}")
    return value


def _float(env: dict[str, str], name: str, default: float, minimum: float, maximum: float) -> float:
    raw = _env(env, name, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number") from None
    if not (minimum <= value <= maximum):
        raise ConfigError(f"{name}={value}: must be between {minimum} and {maximum}")
    return value


def _choice(env: dict[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _env(env, name, default).lower()
    if value not in choices:
        raise ConfigError(f"{name}={value!r}: supported values are {', '.join(choices)}")
    return value


def _url(env: dict[str, str], name: str, schemes: tuple[str, ...], expected: str):
    """(the value, parsed) of a URL setting with one of `schemes` and a host; None when unset."""
    raw = _env(env, name, "")
    if not raw:
        return None
    parsed = urlparse(raw)
    if parsed.scheme not in schemes or not parsed.hostname:
        raise ConfigError(f"{name}: expected {expected}, got {parsed.scheme or raw[:40]!r}")
    return raw, parsed


def _postgres_url(env: dict[str, str], name: str) -> str | None:
    """A PostgreSQL URL, or None when unset. Keep the password out of it (libpq reads PGPASSWORD): resource
    configuration is shown in the Dagster UI."""
    found = _url(env, name, ("postgresql", "postgres"), "postgresql://user@host:5432/database")
    if found is None:
        return None
    raw, parsed = found
    if not parsed.path.strip("/"):
        raise ConfigError(f"{name}: the URL names no database (postgresql://user@host:5432/<database>)")
    return raw


def _http_url(env: dict[str, str], name: str) -> str | None:
    """An http(s) URL with a host, or None when unset."""
    found = _url(env, name, ("http", "https"), "an http:// or https:// URL")
    return None if found is None else found[0]


def _object_store_url(env: dict[str, str], name: str) -> str | None:
    raw = _env(env, name, "")
    if not raw:
        return None
    try:
        return store_location(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={exc}") from None


def default_news_source(market_source: str) -> str:
    """The simulated wire only with the simulated market: its headlines are drawn from that market's own latent
    tone. Beside real prices they would be noise presented as news, and a model could learn from that noise, so a
    real market runs price-only (`none`) until a real news source is set. Defaulting beats refusing: price-only is
    a complete, honest setup, and the demo says which source it used."""
    return "simulated" if market_source == "simulated" else "none"


@dataclass(frozen=True)
class Settings:
    home: Path
    symbols: tuple[str, ...]
    history_start: datetime
    market_source: str
    news_source: str
    demo_days: int
    seed: int
    news_signal_strength: float
    mlflow_tracking_uri: str
    train_days: int
    validation_days: int
    embargo_hours: int
    cost_bps: float
    drift_window_hours: int
    archive_dir: Path | None = None
    binance_url: str = "https://api.binance.com"
    extreme_move_z: float = 12.0
    rss_urls: tuple[str, ...] = ()
    rss_timeout_seconds: float = 10.0
    rss_max_bytes: int = 5_000_000
    news_dir: Path | None = None
    symbol_aliases: dict[str, tuple[str, ...]] | None = None
    sentiment_scorer: str = "vader"
    sentiment_half_life_hours: float = 6.0
    label_horizon_hours: int = 1
    label_dead_band_bps: float = 0.0
    cv_folds: int = 5
    cv_window: str = "expanding"
    tuning_trials: int = 30
    retune_every_hours: int = 0
    model_families: tuple[str, ...] = SUPPORTED_MODEL_FAMILIES
    signal_bands: tuple[float, ...] = SIGNAL_BANDS
    smoothing_hours: tuple[int, ...] = SMOOTHING_HOURS
    placebo_runs: int = 5
    training_device: str = "auto"
    training_threads: int = 2
    mlflow_model_name: str = "alphapulse-direction"
    gates: dict[str, float] | None = None
    drift_alpha: float = 0.05
    drift_critical_share: float = 0.3
    performance_window_hours: int = 168
    min_live_hours: int = 48
    rollback_z: float = 2.33
    evidently_every_hours: int = 24
    promotion_log_loss_margin: float = 0.0005
    promotion_sharpe_margin: float = 0.1
    min_shadow_hours: int = 24
    sim_regime_change: datetime | None = None
    sim_regime_vol: float = 3.0
    # Production backends; None keeps the embedded ones under `home`.
    warehouse_url: str | None = None
    object_store_url: str | None = None
    mlflow_artifact_root: str | None = None
    optuna_storage: str | None = None
    alert_webhook_url: str | None = None
    ui_url: str | None = None
    reports_url: str | None = None

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
        env = dict(os.environ if env is None else env)
        home = Path(_env(env, "ALPHAPULSE_HOME", ".alphapulse")).expanduser().resolve()
        market_source = _choice(env, "ALPHAPULSE_MARKET_SOURCE", "simulated", SUPPORTED_MARKET_SOURCES)
        news_source = _choice(env, "ALPHAPULSE_NEWS_SOURCE", default_news_source(market_source), SUPPORTED_NEWS_SOURCES)
        symbols = parse_symbols(_env(env, "ALPHAPULSE_SYMBOLS", "BTCUSDT,ETHUSDT"))
        if market_source == "simulated":
            unknown = [s for s in symbols if s not in SYMBOL_CATALOG]
            if unknown:
                raise ConfigError(
                    f"ALPHAPULSE_SYMBOLS: the simulated market does not list {', '.join(unknown)}; "
                    f"it lists {', '.join(SYMBOL_CATALOG)}"
                )
        archive_dir = None
        if market_source == "binance_archive":
            raw_dir = _env(env, "ALPHAPULSE_ARCHIVE_DIR", "")
            if not raw_dir:
                raise ConfigError("ALPHAPULSE_ARCHIVE_DIR: required when ALPHAPULSE_MARKET_SOURCE=binance_archive")
            archive_dir = Path(raw_dir).expanduser().resolve()
            if not archive_dir.is_dir():
                raise ConfigError(f"ALPHAPULSE_ARCHIVE_DIR={raw_dir}: no such directory")
        rss_urls = parse_rss_urls(_env(env, "ALPHAPULSE_RSS_URLS", "")) if news_source == "rss" else ()
        news_dir = None
        if news_source == "jsonl":
            raw_news_dir = _env(env, "ALPHAPULSE_NEWS_DIR", "")
            if not raw_news_dir:
                raise ConfigError("ALPHAPULSE_NEWS_DIR: required when ALPHAPULSE_NEWS_SOURCE=jsonl")
            news_dir = Path(raw_news_dir).expanduser().resolve()
            if not news_dir.is_dir():
                raise ConfigError(f"ALPHAPULSE_NEWS_DIR={raw_news_dir}: no such directory")
        binance_url = _env(env, "ALPHAPULSE_BINANCE_URL", "https://api.binance.com").rstrip("/")
        if not re.match(r"^https?://[^/\s]+", binance_url):
            raise ConfigError(f"ALPHAPULSE_BINANCE_URL={binance_url!r}: expected an http:// or https:// base URL")
        history_start = parse_history_start(_env(env, "ALPHAPULSE_HISTORY_START", DEFAULT_HISTORY_START))
        if history_start > datetime.now(UTC) - timedelta(hours=1):
            raise ConfigError(
                f"ALPHAPULSE_HISTORY_START={history_start:%Y-%m-%d-%H:%M}: the first partition must be an hour "
                "that has already closed"
            )
        if news_source == "simulated" and market_source != "simulated":
            raise ConfigError(
                f"ALPHAPULSE_NEWS_SOURCE=simulated: the simulated wire's headlines are drawn from the simulated "
                f"market's own tone; beside ALPHAPULSE_MARKET_SOURCE={market_source} they would be noise presented "
                "as news. Set ALPHAPULSE_NEWS_SOURCE to none (price-only), rss or jsonl"
            )
        if market_source == "simulated" and history_start < EPOCH:
            raise ConfigError(
                f"ALPHAPULSE_HISTORY_START={history_start:%Y-%m-%d}: the simulated market and its newswire start "
                f"{EPOCH:%Y-%m-%d}; move ALPHAPULSE_HISTORY_START to {EPOCH:%Y-%m-%d} or later, or set "
                "ALPHAPULSE_MARKET_SOURCE to a real source"
            )
        settings = cls(
            home=home,
            symbols=symbols,
            history_start=history_start,
            market_source=market_source,
            news_source=news_source,
            demo_days=_int(env, "ALPHAPULSE_DEMO_DAYS", 136, minimum=1, maximum=3650),
            seed=_int(env, "ALPHAPULSE_SEED", 7, minimum=0),
            news_signal_strength=_float(env, "ALPHAPULSE_NEWS_SIGNAL", 0.35, 0.0, 0.9),
            mlflow_tracking_uri=_env(env, "MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}"),
            train_days=_int(env, "ALPHAPULSE_TRAIN_DAYS", 90, minimum=1),
            validation_days=_int(env, "ALPHAPULSE_VALIDATION_DAYS", 30, minimum=1),
            embargo_hours=_int(env, "ALPHAPULSE_EMBARGO_HOURS", 24, minimum=1),
            cost_bps=_float(env, "ALPHAPULSE_COST_BPS", 2.0, 0.0, 1000.0),
            drift_window_hours=_int(env, "ALPHAPULSE_DRIFT_WINDOW_HOURS", 24, minimum=2),
            archive_dir=archive_dir,
            binance_url=binance_url,
            extreme_move_z=_float(env, "ALPHAPULSE_EXTREME_MOVE_Z", 12.0, 3.0, 1000.0),
            rss_urls=rss_urls,
            rss_timeout_seconds=_float(env, "ALPHAPULSE_RSS_TIMEOUT_SECONDS", 10.0, 0.1, 300.0),
            rss_max_bytes=_int(env, "ALPHAPULSE_RSS_MAX_BYTES", 5_000_000, minimum=1_000),
            news_dir=news_dir,
            symbol_aliases=parse_aliases(_env(env, "ALPHAPULSE_SYMBOL_ALIASES", "")),
            sentiment_scorer=_choice(env, "ALPHAPULSE_SENTIMENT_SCORER", "vader", SUPPORTED_SENTIMENT_SCORERS),
            sentiment_half_life_hours=_float(env, "ALPHAPULSE_SENTIMENT_HALF_LIFE_HOURS", 6.0, 0.25, 72.0),
            label_horizon_hours=_int(env, "ALPHAPULSE_LABEL_HORIZON_HOURS", 1, minimum=1, maximum=168),
            label_dead_band_bps=_float(env, "ALPHAPULSE_LABEL_DEAD_BAND_BPS", 0.0, 0.0, 1000.0),
            cv_folds=_int(env, "ALPHAPULSE_CV_FOLDS", 5, minimum=2, maximum=20),
            cv_window=_choice(env, "ALPHAPULSE_CV_WINDOW", "expanding", SUPPORTED_CV_WINDOWS),
            tuning_trials=_int(env, "ALPHAPULSE_TUNING_TRIALS", 30, minimum=1, maximum=10_000),
            retune_every_hours=_int(env, "ALPHAPULSE_RETUNE_EVERY_HOURS", 0, minimum=0, maximum=8760),
            model_families=parse_families(_env(env, "ALPHAPULSE_MODEL_FAMILIES", ",".join(SUPPORTED_MODEL_FAMILIES))),
            signal_bands=parse_numbers(
                _env(env, "ALPHAPULSE_SIGNAL_BANDS", ",".join(map(str, SIGNAL_BANDS))),
                "ALPHAPULSE_SIGNAL_BANDS",
                float,
                0.0,
                0.49,
            ),
            smoothing_hours=parse_numbers(
                _env(env, "ALPHAPULSE_SMOOTHING_HOURS", ",".join(map(str, SMOOTHING_HOURS))),
                "ALPHAPULSE_SMOOTHING_HOURS",
                int,
                1,
                MAX_SMOOTHING_HOURS,
            ),
            placebo_runs=_int(env, "ALPHAPULSE_PLACEBO_RUNS", 5, minimum=2, maximum=100),
            training_device=_choice(env, "ALPHAPULSE_TRAINING_DEVICE", "auto", SUPPORTED_DEVICES),
            training_threads=_int(env, "ALPHAPULSE_TRAINING_THREADS", 2, minimum=1, maximum=256),
            mlflow_model_name=_env(env, "ALPHAPULSE_MLFLOW_MODEL_NAME", "alphapulse-direction"),
            gates=parse_gates(_env(env, "ALPHAPULSE_GATES", "")),
            drift_alpha=_float(env, "ALPHAPULSE_DRIFT_ALPHA", 0.05, 1e-6, 0.5),
            drift_critical_share=_float(env, "ALPHAPULSE_DRIFT_CRITICAL_SHARE", 0.3, 0.01, 1.0),
            performance_window_hours=_int(env, "ALPHAPULSE_PERFORMANCE_WINDOW_HOURS", 168, minimum=2),
            min_live_hours=_int(env, "ALPHAPULSE_MIN_LIVE_HOURS", 48, minimum=2),
            rollback_z=_float(env, "ALPHAPULSE_ROLLBACK_Z", 2.33, 0.5, 10.0),
            evidently_every_hours=_int(env, "ALPHAPULSE_EVIDENTLY_EVERY_HOURS", 24, minimum=0, maximum=24 * 365),
            promotion_log_loss_margin=_float(env, "ALPHAPULSE_PROMOTION_LOG_LOSS_MARGIN", 0.0005, 0.0, 1.0),
            promotion_sharpe_margin=_float(env, "ALPHAPULSE_PROMOTION_SHARPE_MARGIN", 0.1, 0.0, 100.0),
            min_shadow_hours=_int(env, "ALPHAPULSE_MIN_SHADOW_HOURS", 24, minimum=1),
            sim_regime_change=(
                parse_history_start(_env(env, "ALPHAPULSE_SIM_REGIME_CHANGE", ""), "ALPHAPULSE_SIM_REGIME_CHANGE")
                if _env(env, "ALPHAPULSE_SIM_REGIME_CHANGE", "")
                else None
            ),
            sim_regime_vol=_float(env, "ALPHAPULSE_SIM_REGIME_VOL", 3.0, 0.1, 100.0),
            warehouse_url=_postgres_url(env, "ALPHAPULSE_WAREHOUSE_URL"),
            object_store_url=_object_store_url(env, "ALPHAPULSE_OBJECT_STORE_URL"),
            mlflow_artifact_root=_env(env, "ALPHAPULSE_MLFLOW_ARTIFACT_ROOT", "") or None,
            optuna_storage=_postgres_url(env, "ALPHAPULSE_OPTUNA_STORAGE"),
            alert_webhook_url=_http_url(env, "ALPHAPULSE_ALERT_WEBHOOK_URL"),
            ui_url=_http_url(env, "ALPHAPULSE_UI_URL"),
            reports_url=_http_url(env, "ALPHAPULSE_REPORTS_URL"),
        )
        return settings
