"""Building the prediction API in tests: a config with a known key and generous limits, and a client that sends it."""

from pathlib import Path

from fastapi.testclient import TestClient

from alphapulse_serving.app import create_app
from alphapulse_serving.config import ServingConfig

TEST_KEY = "ap_test_key_0123456789abcdef"


def serving_config(store_root, audit_dir, **overrides) -> ServingConfig:
    values = dict(
        store=str(store_root),
        api_keys=[TEST_KEY],
        audit_dir=Path(audit_dir),
        poll_seconds=3600.0,
        rate_limit_per_second=100_000.0,
        rate_limit_burst=100_000.0,
    )
    return ServingConfig.from_env(env={}, **(values | overrides))


def api_client(store_root, audit_dir, **overrides) -> TestClient:
    return TestClient(create_app(serving_config(store_root, audit_dir, **overrides)), headers={"X-API-Key": TEST_KEY})
