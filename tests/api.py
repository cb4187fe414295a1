"""Building the prediction API in tests: a config with a known key and generous limits, and a client that sends it;
asking a running one (`python -m alphapulse_serving`) for a decision."""

import json
import subprocess
import time
import urllib.error
import urllib.request
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


def predict_when_up(port: int, api: subprocess.Popen, symbol: str = "BTCUSDT", timeout: float = 120.0) -> dict:
    """POST /predict to an API process once it listens; an HTTP error is its answer and is raised at once."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/predict",
        data=json.dumps({"symbol": symbol}).encode(),
        headers={"Content-Type": "application/json", "X-API-Key": TEST_KEY},
        method="POST",
    )
    deadline = time.monotonic() + timeout
    while True:
        assert api.poll() is None, f"the API exited with {api.returncode}"
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError:
            raise
        except OSError:  # not listening yet
            assert time.monotonic() < deadline, f"the API did not answer within {timeout:.0f}s"
            time.sleep(0.5)
