"""The API's configuration, from ALPHAPULSE_* environment variables, checked once at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from alphapulse_serving.contract import store_location
from alphapulse_serving.security import ConfigError, load_keys


def _number(env: dict, name: str, default: float, minimum: float, integer: bool = False) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected {'an integer' if integer else 'a number'}") from None
    if not value >= minimum:
        raise ConfigError(f"{name}={raw!r}: must be at least {minimum}")
    return value


def _location(env: dict, name: str, default: str | None) -> str | None:
    """A store location (a directory or s3://bucket/prefix) from `name`, as the code location reads its store."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return store_location(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={exc}") from None


MODEL_SOURCES = ("store", "mlflow")


def _model_source(env: dict) -> tuple[str, str | None]:
    """(ALPHAPULSE_API_MODEL_SOURCE, the MLflow tracking URI it needs)."""
    source = env.get("ALPHAPULSE_API_MODEL_SOURCE", "").strip() or "store"
    if source not in MODEL_SOURCES:
        raise ConfigError(f"ALPHAPULSE_API_MODEL_SOURCE={source!r}: expected one of {', '.join(MODEL_SOURCES)}")
    if source == "store":
        return source, None
    tracking_uri = env.get("MLFLOW_TRACKING_URI", "").strip()
    if not tracking_uri:
        raise ConfigError(
            "ALPHAPULSE_API_MODEL_SOURCE=mlflow loads the champion through the MLflow registry: set "
            "MLFLOW_TRACKING_URI to the tracking server the graph logs to"
        )
    return source, tracking_uri


@dataclass(frozen=True)
class ServingConfig:
    store: str  # the graph's object store: a directory, or s3://bucket/prefix
    api_keys: list[str] = field(repr=False)
    audit_dir: Path
    # Where the promoted model's bytes come from: "store" (the manifest's model_uri) or "mlflow" (its registered
    # version, through the tracking server at mlflow_tracking_uri).
    model_source: str = "store"
    mlflow_tracking_uri: str | None = None
    poll_seconds: float = 2.0
    rate_limit_per_second: float = 50.0
    rate_limit_burst: float = 100.0
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 64 * 1024
    max_batch: int = 256
    time_budget_ms: float = 50.0
    cache_max_age_seconds: float = 3600.0
    breaker_failures: int = 5
    breaker_cooldown_seconds: float = 30.0
    audit_max_pending: int = 100_000
    # Where sealed audit batches go (a directory or s3://bucket/prefix; by default the object store), how often,
    # how long a packet stays in the local database after the archive has confirmed it, and how many unconfirmed
    # packets the local disk may hold before the API refuses to decide.
    audit_archive: str | None = None
    audit_ship_seconds: float = 60.0
    audit_local_retention_hours: float = 1.0
    audit_max_unshipped: int = 1_000_000

    def __post_init__(self):
        if self.audit_archive is None:
            object.__setattr__(self, "audit_archive", self.store)

    @classmethod
    def from_env(cls, env: dict | None = None, **overrides) -> ServingConfig:
        env = dict(os.environ if env is None else env)
        home = Path(env.get("ALPHAPULSE_HOME", "").strip() or ".alphapulse").expanduser().resolve()
        origins = tuple(o.strip() for o in env.get("ALPHAPULSE_API_CORS_ORIGINS", "").split(",") if o.strip())
        if "*" in origins:
            raise ConfigError("ALPHAPULSE_API_CORS_ORIGINS: list the origins; '*' would let any web page call the API")
        model_source, tracking_uri = _model_source(env)
        values = dict(
            model_source=model_source,
            mlflow_tracking_uri=tracking_uri,
            store=_location(env, "ALPHAPULSE_OBJECT_STORE_URL", str(home / "objects")),
            api_keys=load_keys(env.get("ALPHAPULSE_API_KEYS"), env.get("ALPHAPULSE_API_KEYS_FILE")),
            audit_dir=Path(env.get("ALPHAPULSE_API_AUDIT_DIR", "").strip() or home / "audit"),
            poll_seconds=_number(env, "ALPHAPULSE_API_POLL_SECONDS", 2.0, 0.01),
            rate_limit_per_second=_number(env, "ALPHAPULSE_API_RATE_LIMIT", 50.0, 0.001),
            rate_limit_burst=_number(env, "ALPHAPULSE_API_RATE_BURST", 100.0, 1),
            cors_origins=origins,
            max_body_bytes=_number(env, "ALPHAPULSE_API_MAX_BODY_BYTES", 64 * 1024, 1024, integer=True),
            max_batch=_number(env, "ALPHAPULSE_API_MAX_BATCH", 256, 1, integer=True),
            time_budget_ms=_number(env, "ALPHAPULSE_API_TIME_BUDGET_MS", 50.0, 0.1),
            cache_max_age_seconds=_number(env, "ALPHAPULSE_API_CACHE_MAX_AGE_SECONDS", 3600.0, 0),
            breaker_failures=_number(env, "ALPHAPULSE_API_BREAKER_FAILURES", 5, 1, integer=True),
            breaker_cooldown_seconds=_number(env, "ALPHAPULSE_API_BREAKER_COOLDOWN_SECONDS", 30.0, 0.01),
            audit_max_pending=_number(env, "ALPHAPULSE_API_AUDIT_MAX_PENDING", 100_000, 1, integer=True),
            audit_archive=_location(env, "ALPHAPULSE_API_AUDIT_ARCHIVE_URL", None),  # None: the object store
            audit_ship_seconds=_number(env, "ALPHAPULSE_API_AUDIT_SHIP_SECONDS", 60.0, 0.01),
            audit_local_retention_hours=_number(env, "ALPHAPULSE_API_AUDIT_LOCAL_RETENTION_HOURS", 1.0, 0),
            audit_max_unshipped=_number(env, "ALPHAPULSE_API_AUDIT_MAX_UNSHIPPED", 1_000_000, 1, integer=True),
        )
        return cls(**(values | overrides))
