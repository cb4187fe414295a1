"""Keys with scopes, and a keys file rotated without a restart (issue #24, part 6)."""

from __future__ import annotations

import time

import pytest
from api import api_client

from alphapulse_serving.security import ALL_SCOPES, ConfigError, parse_key_file, read_keys

PREDICT_ONLY = "ap_predict_only_0123456789abcdef"
AUDITOR = "ap_auditor_0123456789abcdefghij"
OPERATOR = "ap_operator_0123456789abcdefghi"
EVERYTHING = "ap_everything_0123456789abcdefg"
DECISION = "/audit/" + "0" * 32


def test_a_keys_file_line_names_its_scopes():
    keys = parse_key_file(
        f"# rotated 2026-12\n{PREDICT_ONLY} predict\n{AUDITOR}\taudit\n{OPERATOR} admin,audit\n{EVERYTHING}\n",
        "keys",
    )
    assert keys == {
        PREDICT_ONLY: {"predict"},
        AUDITOR: {"audit"},
        OPERATOR: {"admin", "audit"},
        EVERYTHING: ALL_SCOPES,
    }
    with pytest.raises(ConfigError, match="line 1: unknown scope trade"):
        parse_key_file(f"{PREDICT_ONLY} predict,trade", "keys")
    with pytest.raises(ConfigError, match="line 2: expected a key and, optionally, its scopes"):
        parse_key_file(f"{AUDITOR}\n{PREDICT_ONLY} predict audit", "keys")
    with pytest.raises(ConfigError, match="shorter than 16"):
        parse_key_file("short predict", "keys")


def test_a_key_used_outside_its_scopes_gets_403(tmp_path):
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"{PREDICT_ONLY} predict\n{AUDITOR} audit\n{OPERATOR} admin\n{EVERYTHING}\n")
    keys = read_keys(None, str(keys_file))
    with api_client(tmp_path / "objects", tmp_path / "audit", api_keys=list(keys), api_keys_file=str(keys_file)) as c:

        def status(method: str, path: str, key: str) -> int:
            return c.request(method, path, headers={"X-API-Key": key}, json={"symbol": "BTCUSDT"}).status_code

        routes = {"predict": ("POST", "/predict"), "audit": ("GET", DECISION), "admin": ("GET", "/model")}
        batch = ("POST", "/predict/batch")
        for key, granted in [(PREDICT_ONLY, "predict"), (AUDITOR, "audit"), (OPERATOR, "admin")]:
            for scope, (method, path) in routes.items():
                code = status(method, path, key)
                assert (code == 403) == (scope != granted), (key, path, code)
            assert (c.post(batch[1], headers={"X-API-Key": key}, json={"requests": []}).status_code == 403) == (
                granted != "predict"
            )
        for method, path in routes.values():
            assert status(method, path, EVERYTHING) not in (401, 403), path
        refused = c.get("/model", headers={"X-API-Key": PREDICT_ONLY})
        assert refused.json()["detail"] == "this key may not admin (its scopes: predict)"


def _until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_rotated_keys_file_takes_effect_without_a_restart(tmp_path):
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"{EVERYTHING}\n")
    overrides = {"api_keys": [EVERYTHING], "api_keys_file": str(keys_file), "poll_seconds": 0.05}
    with api_client(tmp_path / "objects", tmp_path / "audit", **overrides) as c:

        def audit_status(key: str) -> int:
            return c.get(DECISION, headers={"X-API-Key": key}).status_code

        assert audit_status(EVERYTHING) != 401 and audit_status(AUDITOR) == 401
        keys_file.write_text(f"{AUDITOR} audit\n")  # rotated: the old key removed, a new one added
        assert _until(lambda: audit_status(EVERYTHING) == 401), "a removed key must stop working within a poll"
        assert audit_status(AUDITOR) != 401
        keys_file.write_text(f"{AUDITOR} audit,trade\n")  # a broken file: the keys stay as they were
        assert _until(lambda: any("unknown scope trade" in r for r in c.get("/health").json()["reasons"]))
        assert audit_status(AUDITOR) != 401 and audit_status(EVERYTHING) == 401
        keys_file.write_text(f"{AUDITOR} audit\n{PREDICT_ONLY} predict\n")
        assert _until(lambda: not any("API keys were kept" in r for r in c.get("/health").json()["reasons"]))
        assert audit_status(PREDICT_ONLY) == 403  # known again, and held to its scope
