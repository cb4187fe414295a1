"""The API's configuration: its settings declared once (alphapulse_contract/config.py), read at start-up.

The settings the graph reads too (the home, the object store, the port, the keys) are declared in the contract and
used here as they are; `python -m alphapulse_serving.config` prints the README's table of the API's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from alphapulse_contract.config import (
    API_KEYS,
    API_KEYS_FILE,
    API_PORT,
    HOME,
    OBJECT_STORE_URL,
    SHARED,
    ConfigError,
    Derived,
    Parser,
    choice,
    directory,
    flag,
    integer,
    location,
    main,
    markdown_table,
    number,
    read,
    setting,
    text,
)
from alphapulse_serving.security import load_keys

MODEL_SOURCES = ("store", "mlflow")


def _origins(raw: str, name: str) -> tuple[str, ...]:
    origins = tuple(o.strip() for o in raw.split(",") if o.strip())
    if "*" in origins:
        raise ConfigError(f"{name}: list the origins; '*' would let any web page call the API")
    return origins


@dataclass(frozen=True)
class ServingConfig:
    home: Path = HOME.field()
    # The graph's object store: a directory, or s3://bucket/prefix.
    store: str = OBJECT_STORE_URL.field()
    api_keys_inline: str | None = API_KEYS.field()
    api_keys_file: str | None = API_KEYS_FILE.field()
    host: str = setting("ALPHAPULSE_API_HOST", "127.0.0.1", "The address the API binds to.", text("address"))
    port: int = API_PORT.field()
    access_log: bool = setting(
        "ALPHAPULSE_API_ACCESS_LOG",
        False,
        "uvicorn's access log (it costs more than a request at 1,000 req/s; `/metrics` counts every request).",
        flag(),
    )
    # Where the promoted model's bytes come from: "store" (the manifest's model_uri) or "mlflow" (its registered
    # version, through the tracking server at mlflow_tracking_uri).
    model_source: str = setting(
        "ALPHAPULSE_API_MODEL_SOURCE",
        "store",
        "Where the API loads the champion's bytes: the manifest's `model_uri`, or the registered version the manifest "
        "names through the tracking server at MLFLOW_TRACKING_URI (verified against the manifest's run and sha256).",
        choice(*MODEL_SOURCES),
    )
    mlflow_tracking_uri: str | None = setting(
        "MLFLOW_TRACKING_URI",
        None,
        "The MLflow tracking server the graph logs to.",
        text("URI"),
        when=lambda values: values["model_source"] == "mlflow",
        when_text="with ALPHAPULSE_API_MODEL_SOURCE=mlflow",
    )
    audit_dir: Path = setting(
        "ALPHAPULSE_API_AUDIT_DIR",
        Derived(lambda v: v["home"] / "audit", "`$ALPHAPULSE_HOME/audit`"),
        "Where the audit database lives.",
        directory(),
    )
    poll_seconds: float = setting(
        "ALPHAPULSE_API_POLL_SECONDS",
        2.0,
        "How often the API checks for a new promoted model or snapshot.",
        number(0.01),
    )
    rate_limit_per_second: float = setting(
        "ALPHAPULSE_API_RATE_LIMIT", 50.0, "Requests per second per key (token bucket).", number(0.001)
    )
    rate_limit_burst: float = setting("ALPHAPULSE_API_RATE_BURST", 100.0, "Burst size per key.", number(1))
    cors_origins: tuple[str, ...] = setting(
        "ALPHAPULSE_API_CORS_ORIGINS",
        (),
        "Origins allowed by CORS, comma-separated; `*` is refused.",
        Parser(_origins, "origins, comma-separated"),
    )
    max_body_bytes: int = setting(
        "ALPHAPULSE_API_MAX_BODY_BYTES", 64 * 1024, "Larger request bodies get 413.", integer(1024)
    )
    max_batch: int = setting("ALPHAPULSE_API_MAX_BATCH", 256, "Requests per `POST /predict/batch`.", integer(1))
    time_budget_ms: float = setting(
        "ALPHAPULSE_API_TIME_BUDGET_MS",
        50.0,
        "Per-decision time budget (a request's `budget_ms` overrides it).",
        number(0.1),
    )
    cache_max_age_seconds: float = setting(
        "ALPHAPULSE_API_CACHE_MAX_AGE_SECONDS",
        3600.0,
        "Oldest cached primary score the fallback chain serves.",
        number(0),
    )
    breaker_failures: int = setting(
        "ALPHAPULSE_API_BREAKER_FAILURES",
        5,
        "Consecutive primary failures (errors or over-budget calls) that open the circuit.",
        integer(1),
    )
    breaker_cooldown_seconds: float = setting(
        "ALPHAPULSE_API_BREAKER_COOLDOWN_SECONDS",
        30.0,
        "How long the circuit stays open before a trial call.",
        number(0.01),
    )
    audit_max_pending: int = setting(
        "ALPHAPULSE_API_AUDIT_MAX_PENDING",
        100_000,
        "Uncommitted audit packets at which the API answers 503.",
        integer(1),
    )
    # Where sealed audit batches go, how often, how long a packet stays in the local database after the archive has
    # confirmed it, and how many unconfirmed packets the local disk may hold before the API refuses to decide.
    audit_archive: str | None = setting(
        "ALPHAPULSE_API_AUDIT_ARCHIVE_URL",
        Derived(lambda v: v["store"], "the object store"),
        "Where sealed audit batches are shipped (keys `audit/<date>/…`).",
        location(),
    )
    audit_ship_seconds: float = setting(
        "ALPHAPULSE_API_AUDIT_SHIP_SECONDS", 60.0, "How often committed packets are sealed and shipped.", number(0.01)
    )
    audit_local_retention_hours: float = setting(
        "ALPHAPULSE_API_AUDIT_LOCAL_RETENTION_HOURS",
        1.0,
        "How long a packet stays in the local database after the archive confirmed its batch (`0`: pruned at once).",
        number(0),
    )
    audit_max_unshipped: int = setting(
        "ALPHAPULSE_API_AUDIT_MAX_UNSHIPPED",
        1_000_000,
        "Packets waiting for the archive (about 1.1 KB each on disk) at which the API answers 503 rather than fill "
        "the disk.",
        integer(1),
    )
    api_keys: list[str] = field(default_factory=list, repr=False)  # the keys of both sources, checked (from_env)

    def __post_init__(self):
        if self.store is None:
            object.__setattr__(self, "store", str(self.home / "objects"))
        if self.audit_archive is None:
            object.__setattr__(self, "audit_archive", self.store)

    @classmethod
    def from_env(cls, env: dict | None = None, **overrides) -> ServingConfig:
        values = read(cls, env)
        if values["model_source"] == "mlflow" and not values["mlflow_tracking_uri"]:
            raise ConfigError(
                "ALPHAPULSE_API_MODEL_SOURCE=mlflow loads the champion through the MLflow registry: set "
                "MLFLOW_TRACKING_URI to the tracking server the graph logs to"
            )
        values["api_keys"] = load_keys(values["api_keys_inline"], values["api_keys_file"])
        return cls(**(values | overrides))


def configuration_table() -> str:
    """The README's table of the API's own settings (the shared ones are in the graph's table)."""
    return markdown_table(ServingConfig, skip=SHARED)


if __name__ == "__main__":
    main(configuration_table(), "settings:api")
