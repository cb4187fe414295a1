import json
import logging
import time
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from api import TEST_KEY, api_client, serving_config
from fastapi.testclient import TestClient
from models import xgboost_artifact
from prometheus_client.parser import text_string_to_metric_families

from alphapulse_assets.features.catalog import FEATURE_NAMES, feature_version
from alphapulse_assets.storage.object_store import LocalObjectStore
from alphapulse_contract.baseline import RulesBaseline
from alphapulse_contract.scoring import MANIFEST_KEY, SNAPSHOT_KEY, ModelManifest, ScoringModel, TradingRule, sha256_hex
from alphapulse_contract.storage import read_uri
from alphapulse_serving.app import create_app
from alphapulse_serving.audit import AuditLog
from alphapulse_serving.resilience import CircuitBreaker, ScoreCache
from alphapulse_serving.schemas import AuditPacket, BatchResponse, HealthResponse, PredictResponse
from alphapulse_serving.security import ApiKeys, ConfigError, RateLimiter, key_id, load_keys

FEATURES = list(FEATURE_NAMES)
CURRENT_VERSION = feature_version("vader", 6.0)
SNAPSHOT_HOUR = "2025-01-02T10:00:00+00:00"


def publish_model(
    store: LocalObjectStore,
    seed: int,
    version: str,
    corrupt: bool = False,
    feature_version: str = CURRENT_VERSION,
    smoothing_hours: int = 1,
) -> ModelManifest:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((400, len(FEATURES)))
    y = (x[:, 0] + 0.5 * rng.standard_normal(400) > 0).astype(int)
    artifact = xgboost_artifact(x, y, seed=seed, rounds=20)
    uri = store.put_bytes(f"models/{version}/model.ubj", artifact)
    manifest = ModelManifest(
        version=version,
        model_uri=uri,
        sha256=sha256_hex(artifact),
        feature_names=FEATURES,
        feature_version=feature_version,
        signal_band=0.02,
        smoothing_hours=smoothing_hours,
        symbols=["BTCUSDT", "ETHUSDT"],
        training_window={"train_start": "2025-01-01T00:00:00+00:00"},
        metrics={"oos_auc": 0.6},
        trained_at="2025-01-02T00:00:00+00:00",
        promoted_at="2025-01-02T00:00:00+00:00",
        decision_partition="2025-01-02T00:00:00+00:00",
    )
    if corrupt:
        store.put_bytes(f"models/{version}/model.ubj", artifact[:-10] + b"0123456789")
    store.put_bytes(MANIFEST_KEY, manifest.to_json())
    return manifest


def snapshot_values(ret_24h: float | None = 0.03, rv_24h: float | None = 0.01) -> dict:
    values = {n: (0.1 if i else None) for i, n in enumerate(FEATURES)}
    return values | {"ret_24h": ret_24h, "rv_24h": rv_24h, "news_sent_decayed": 0.4}


def publish_snapshot(store: LocalObjectStore, version: str | None = None, hour: str = SNAPSHOT_HOUR, **values) -> None:
    rows = {s: {"ts": hour, "values": snapshot_values(**values)} for s in ("BTCUSDT", "ETHUSDT")}
    payload = {"feature_version": version or CURRENT_VERSION, "feature_names": FEATURES, "rows": rows}
    store.put_bytes(SNAPSHOT_KEY, json.dumps(payload).encode())


def published_store(root: Path) -> LocalObjectStore:
    """A local object store with model v1 promoted and an online snapshot of its feature version."""
    store = LocalObjectStore(root=str(root))
    publish_model(store, 1, "v1")
    publish_snapshot(store)
    return store


@pytest.fixture
def store(tmp_path):
    return published_store(tmp_path / "objects")


@pytest.fixture
def served(store, tmp_path):
    with api_client(store.root, tmp_path / "audit") as client:
        yield client, store, client.app.state.services.serving


def predict(client, **body):
    response = client.post("/predict", json={"symbol": "BTCUSDT"} | body)
    assert response.status_code == 200, response.text
    return PredictResponse.model_validate(response.json()).model_dump()


class Broken:
    """A predictor that raises, to drive the circuit breaker."""

    n_features = len(FEATURES)

    def __init__(self):
        self.calls = 0

    def predict_proba(self, matrix):
        self.calls += 1
        raise RuntimeError("segfault in the model server, simulated")


# --- predictions and the model they come from ---------------------------------------------------------------------


def test_a_smoothing_rule_trades_the_mean_of_the_recent_hours(tmp_path):
    """A model whose trading rule averages 6 hours: the API scores the snapshot's earlier hours within them (one
    missing, one too old), or the earlier hours a request gives, and thresholds the mean, as `predictions` does."""
    store = LocalObjectStore(root=str(tmp_path / "objects"))
    manifest = publish_model(store, 1, "v1", smoothing_hours=6)
    now = datetime.fromisoformat(SNAPSHOT_HOUR)
    earlier = [
        {"ts": (now - timedelta(hours=h)).isoformat(), "values": snapshot_values() | {FEATURES[0]: (-1.0) ** h * h}}
        for h in (1, 2, 3, 5, 7)
    ]
    rows = {s: {"ts": SNAPSHOT_HOUR, "values": snapshot_values(), "earlier": earlier} for s in ("BTCUSDT", "ETHUSDT")}
    payload = {"feature_version": CURRENT_VERSION, "feature_names": FEATURES, "rows": rows}
    store.put_bytes(SNAPSHOT_KEY, json.dumps(payload).encode())
    scorer = ScoringModel.load(manifest)
    used = [snapshot_values()] + [e["values"] for e in earlier[:4]]  # newest first; 7 hours back is outside
    probabilities = [float(scorer.predict_proba(scorer.vector(values))[0]) for values in used]
    signal, smoothed = manifest.rule.position(probabilities)
    assert smoothed != probabilities[0]
    with api_client(store.root, tmp_path / "audit") as client:
        body = predict(client)
        assert body["probability"] == probabilities[0] and body["smoothed_probability"] == smoothed
        assert body["smoothed_hours"] == 5 and body["signal"] == signal
        given = predict(client, features=used[0], earlier_features=used[1:])
        assert (given["smoothed_probability"], given["smoothed_hours"], given["signal"]) == (smoothed, 5, signal)
        alone = predict(client, features=used[0])
        assert alone["smoothed_hours"] == 1 and alone["smoothed_probability"] == probabilities[0]
        too_many = client.post(
            "/predict", json={"symbol": "BTCUSDT", "features": used[0], "earlier_features": [used[1]] * 6}
        )
        assert too_many.status_code == 422 and "at most 5 earlier hours" in too_many.text
        orphan = client.post("/predict", json={"symbol": "BTCUSDT", "earlier_features": [used[1]]})
        assert orphan.status_code == 422 and "give features too" in orphan.text
        model = client.get("/model").json()
        assert model["smoothing_hours"] == 6 and "mean P(up) of the last 6 hours" in model["trading_rule"]
        # The audit packet holds every hour the decision averaged, so it can be re-derived.
        packet = client.get(f"/audit/{body['decision_id']}").json()
        assert packet["features"]["earlier_values"] == used[1:]
        assert packet["output"]["smoothed_probability"] == smoothed and packet["model"]["smoothing_hours"] == 6
        assert client.get(f"/audit/{given['decision_id']}").json()["features"]["earlier_values"] == used[1:]


def test_predict_from_online_features(served):
    client, _, _ = served
    body = predict(client, symbol="btcusdt")
    assert body["symbol"] == "BTCUSDT" and body["model_version"] == "v1" and body["source"] == "primary"
    assert 0 < body["probability"] < 1 and body["signal"] in (-1, 0, 1) and body["fallback_reasons"] == []
    assert body["feature_timestamp"] == SNAPSHOT_HOUR and body["feature_source"] == "online_snapshot"
    assert len(body["decision_id"]) == 32 and body["latency_ms"] > 0
    assert body["model_sha256"] == client.get("/model").json()["sha256"]


def test_predict_with_given_features_matches_the_offline_model(served):
    client, _, state = served
    body = predict(client, symbol="ETHUSDT", features={n: 0.5 for n in FEATURES})
    offline = float(state.active.scorer.predictor.booster.inplace_predict(np.array([[0.5] * len(FEATURES)]))[0])
    assert body["probability"] == pytest.approx(offline, abs=2e-7)  # XGBoost rounds its sigmoid to float32
    assert body["feature_source"] == "request" and body["feature_timestamp"] is None


def test_batch(served):
    client, _, _ = served
    response = client.post(
        "/predict/batch", json={"requests": [{"symbol": "BTCUSDT"}, {"symbol": "ethusdt", "budget_ms": 100}]}
    )
    assert response.status_code == 200, response.text
    body = BatchResponse.model_validate(response.json())
    assert [p.symbol for p in body.predictions] == ["BTCUSDT", "ETHUSDT"]
    assert len({p.decision_id for p in body.predictions}) == 2
    # All or nothing: one bad item refuses the batch, and no decision is recorded for the good one.
    written = client.app.state.services.audit.pending + client.app.state.services.audit.written
    bad = client.post("/predict/batch", json={"requests": [{"symbol": "BTCUSDT"}, {"symbol": "DOGEUSDT"}]})
    assert bad.status_code == 404 and "DOGEUSDT" in bad.json()["detail"]
    assert client.app.state.services.audit.pending + client.app.state.services.audit.written == written
    assert client.post("/predict/batch", json={"requests": []}).status_code == 422


def test_batch_size_limit(store, tmp_path):
    with api_client(store.root, tmp_path / "audit", max_batch=2) as client:
        response = client.post("/predict/batch", json={"requests": [{"symbol": "BTCUSDT"}] * 3})
        assert response.status_code == 422 and "limit is 2" in response.json()["detail"][0]["msg"]


def test_client_errors(served):
    client, _, _ = served
    assert client.post("/predict", json={"symbol": "DOGEUSDT"}).status_code == 404
    assert client.post("/predict", json={}).status_code == 422
    assert client.post("/predict", json={"symbol": "BTC/USDT"}).status_code == 422
    assert client.post("/predict", json={"symbol": "BTCUSDT", "extra": 1}).status_code == 422
    assert client.post("/predict", json={"symbol": "BTCUSDT", "budget_ms": -1}).status_code == 422
    assert (
        client.post("/predict", content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 422
    )
    missing = client.post("/predict", json={"symbol": "BTCUSDT", "features": {"ret_1h": 0.1}})
    assert missing.status_code == 422 and "missing features" in missing.json()["detail"][0]["msg"]
    unknown = client.post(
        "/predict", json={"symbol": "BTCUSDT", "features": {**{n: 0.0 for n in FEATURES}, "bogus": 1}}
    )
    assert unknown.status_code == 422 and "unknown features: bogus" in unknown.json()["detail"][0]["msg"]
    text = client.post("/predict", json={"symbol": "BTCUSDT", "features": {n: "high" for n in FEATURES}})
    assert text.status_code == 422
    assert client.get("/audit/not-an-id").status_code == 404
    assert client.get("/audit/" + "0" * 32).status_code == 404


# --- model management ------------------------------------------------------------------------------------------------


def test_hot_swap_and_keep_last_good_model(served):
    client, store, state = served
    assert client.get("/model").json()["version"] == "v1"
    publish_model(store, 2, "v2")
    state.refresh()
    assert client.get("/model").json()["version"] == "v2"
    assert predict(client)["model_version"] == "v2"

    publish_model(store, 3, "v3", corrupt=True)  # hash mismatch
    state.refresh()
    health = HealthResponse.model_validate(client.get("/health").json())
    assert health.status == "degraded" and health.model_version == "v2"
    assert any("sha256" in reason and "still serving v2" in reason for reason in health.reasons)
    assert predict(client)["model_version"] == "v2"

    store.put_bytes(MANIFEST_KEY, b"{not json")  # corrupt manifest
    state.refresh()
    assert client.get("/health").json()["model_version"] == "v2"
    assert "not valid JSON" in " ".join(client.get("/health").json()["reasons"])

    manifest = publish_model(store, 4, "v4")  # the artifact file is gone
    Path(urlparse(manifest.model_uri).path).unlink()
    store.put_bytes(MANIFEST_KEY, manifest.to_json().replace(b'"v4"', b'"v4b"'))
    state.refresh()
    assert "cannot read" in " ".join(client.get("/health").json()["reasons"])

    corrupt = publish_model(store, 5, "v5")  # bytes that match their hash but are not a model
    garbage = b"\x00garbage" * 10
    uri = store.put_bytes("models/v5/model.ubj", garbage)
    store.put_bytes(
        MANIFEST_KEY,
        ModelManifest(**(corrupt.__dict__ | {"model_uri": uri, "sha256": sha256_hex(garbage)})).to_json(),
    )
    state.refresh()
    assert "xgboost cannot load" in " ".join(client.get("/health").json()["reasons"])
    assert predict(client)["model_version"] == "v2"
    metrics = client.get("/metrics").text
    assert "alphapulse_api_model_load_failures_total 4.0" in metrics
    assert "alphapulse_api_model_reloads_total 2.0" in metrics


def test_a_model_for_other_features_waits_for_them(served):
    client, store, state = served
    publish_model(store, 2, "v2", feature_version="ffffffffffffffff")
    state.refresh()
    health = client.get("/health").json()
    assert health["model_version"] == "v1" and health["pending_model_version"] == "v2"
    assert any("refused model v2" in r and "ffffffffffffffff" in r for r in health["reasons"])
    assert predict(client)["model_version"] == "v1"
    assert client.get("/ready").status_code == 200  # v1 still matches the online features

    publish_snapshot(store, version="ffffffffffffffff")  # the graph recomputed the features at the new version
    state.refresh()
    health = client.get("/health").json()
    assert health["model_version"] == "v2" and health["pending_model_version"] is None and health["status"] == "ok"
    assert predict(client)["model_version"] == "v2"


def test_online_features_of_another_version_are_not_scored_by_the_model(served):
    client, store, state = served
    predict(client)  # fills the cache for this hour
    publish_snapshot(store, version="0000000000000000", hour="2025-01-02T11:00:00+00:00")
    state.refresh()
    body = predict(client)
    assert body["source"] == "baseline" and body["model_version"] is None
    primary, cache = body["fallback_reasons"]
    assert primary.startswith("primary: ") and "0000000000000000" in primary and CURRENT_VERSION in primary
    assert cache.startswith("cache: no primary score for BTCUSDT at 2025-01-02T11:00")
    assert client.get("/health").json()["status"] == "degraded"
    ready = client.get("/ready")
    assert ready.status_code == 503 and "feature version" in ready.json()["reasons"][0]
    # Features the caller computes are the caller's responsibility: the model still answers them.
    assert predict(client, features={n: 0.0 for n in FEATURES})["source"] == "primary"


def test_no_model_yet(tmp_path):
    with api_client(tmp_path / "objects", tmp_path / "audit") as client:
        health = client.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "unavailable"
        ready = client.get("/ready")
        assert ready.status_code == 503 and any("no promoted model" in r for r in ready.json()["reasons"])
        assert client.get("/model").status_code == 503
        assert client.post("/predict", json={"symbol": "BTCUSDT"}).status_code == 404  # no symbols known at all


# --- the fallback chain -------------------------------------------------------------------------------------------


def test_fallback_chain_primary_cache_baseline_abstain(store, tmp_path):
    with api_client(store.root, tmp_path / "audit", breaker_failures=2, breaker_cooldown_seconds=3600) as client:
        app = client.app
        first = predict(client)
        assert first["source"] == "primary"

        # The model starts failing: the cache answers with the model's last score for this symbol and hour.
        broken = Broken()
        app.state.services.serving.active.scorer.predictor = broken
        second = predict(client)
        assert second["source"] == "cache" and second["probability"] == first["probability"]
        assert second["cached_from"]["decision_id"] == first["decision_id"] and second["model_version"] == "v1"
        assert second["fallback_reasons"][0].startswith("primary: the model failed: RuntimeError")
        predict(client)
        assert broken.calls == 2 and app.state.services.breaker.state == "open"
        third = predict(client)  # the breaker skips the model without calling it
        assert broken.calls == 2 and "circuit open after 2 consecutive failures" in third["fallback_reasons"][0]
        assert client.get("/health").json()["circuit"] == "open"

        # ETHUSDT was never scored: no cached score, so the rules baseline answers.
        eth = predict(client, symbol="ETHUSDT")
        assert eth["source"] == "baseline" and eth["model_version"] is None
        assert eth["fallback_reasons"][1] == "cache: no primary score for ETHUSDT at " + SNAPSHOT_HOUR
        expected, _, _ = RulesBaseline().score(snapshot_values())
        assert eth["probability"] == expected and eth["signal"] == 1

        # Without the baseline's inputs nobody can answer: flat, and every reason says why.
        publish_snapshot(store, hour="2025-01-02T11:00:00+00:00", ret_24h=None)
        app.state.services.serving.refresh()
        nobody = predict(client)
        assert nobody["source"] == "abstain" and nobody["signal"] == 0 and nobody["probability"] is None
        assert [r.split(":")[0] for r in nobody["fallback_reasons"]] == ["primary", "cache", "baseline"]
        assert "ret_24h is missing" in nobody["fallback_reasons"][2]

        metrics = client.get("/metrics").text
        for line in (
            'alphapulse_api_predictions_total{source="primary"} 1.0',
            'alphapulse_api_predictions_total{source="cache"} 3.0',
            'alphapulse_api_predictions_total{source="baseline"} 1.0',
            'alphapulse_api_predictions_total{source="abstain"} 1.0',
            'alphapulse_api_fallbacks_total{reason="circuit_open",stage="primary"}',
            'alphapulse_api_fallbacks_total{reason="error",stage="primary"} 2.0',
            "alphapulse_api_circuit_open 1.0",
        ):
            assert line in metrics, line


def test_the_cache_has_a_maximum_age_and_belongs_to_one_model(store, tmp_path):
    with api_client(store.root, tmp_path / "audit", cache_max_age_seconds=0.2) as client:
        predict(client)
        client.app.state.services.serving.active.scorer.predictor = Broken()
        assert predict(client)["source"] == "cache"
        time.sleep(0.3)
        stale = predict(client)
        assert stale["source"] == "baseline" and "s old (max 0 s)" in stale["fallback_reasons"][1]


def test_time_budget_skips_the_model(served):
    client, _, _ = served
    first = predict(client)
    starved = predict(client, budget_ms=0.0001)
    assert starved["source"] == "cache" and starved["probability"] == first["probability"]
    assert "ms budget" in starved["fallback_reasons"][0]


def test_circuit_breaker_half_open_trial():
    now = [0.0]
    breaker = CircuitBreaker(failures=2, cooldown=10, clock=lambda: now[0])
    breaker.failure("a")
    assert breaker.allow() is None and breaker.state == "closed"
    breaker.failure("b")
    assert "circuit open after 2" in breaker.allow()
    now[0] = 10.0
    assert breaker.allow() is None  # the one trial call
    assert "a trial call is in flight" in breaker.allow()
    breaker.failure("c")  # the trial failed: open again for a full cooldown
    now[0] = 15.0
    assert "next trial in 5.0 s" in breaker.allow()
    now[0] = 20.0
    assert breaker.allow() is None
    breaker.success()
    assert breaker.state == "closed" and breaker.allow() is None


def test_score_cache_rules():
    now = [100.0]
    cache = ScoreCache(max_age_seconds=60, clock=lambda: now[0])
    from alphapulse_serving.resilience import CachedScore

    cache.put("BTCUSDT", "h1", CachedScore(0.6, 0.6, 1, 1, "v1", "sha1", "fv", "d1", 100.0))
    assert cache.get("BTCUSDT", "h1", "sha1")[0].probability == 0.6
    assert "no longer served" in cache.get("BTCUSDT", "h1", "sha2")[1]
    assert "no primary score" in cache.get("BTCUSDT", "h2", "sha1")[1]
    now[0] = 161.0
    assert "61 s old" in cache.get("BTCUSDT", "h1", "sha1")[1]


def test_rules_baseline_is_transparent():
    baseline = RulesBaseline()
    p, terms, _ = baseline.score({"ret_24h": 0.049, "rv_24h": 0.01, "news_sent_decayed": None})
    assert terms["momentum_z"] == pytest.approx(0.049 / (0.01 * 24**0.5))
    assert p == pytest.approx(1 / (1 + np.exp(-0.15 * terms["momentum_z"])))
    assert baseline.score({"ret_24h": 1.0, "rv_24h": 0.001})[1]["momentum_z"] == 3.0  # clipped
    assert baseline.score({"ret_24h": float("nan"), "rv_24h": 0.01})[2] == "ret_24h is missing"
    assert baseline.score({"ret_24h": 0.01, "rv_24h": 0.0})[2] == "rv_24h is 0.0, not positive"
    assert baseline.signal(0.53) == 1 and baseline.signal(0.51) == 0 and baseline.signal(0.47) == -1


# --- audit -----------------------------------------------------------------------------------------------------------


def test_audit_packet_re_derives_the_decision(served):
    client, store, _ = served
    body = predict(client)
    given = predict(client, symbol="ETHUSDT", features={n: 0.25 for n in FEATURES})
    packet = AuditPacket.model_validate(client.get(f"/audit/{body['decision_id']}").json()).model_dump()
    assert packet["key_id"] == key_id(TEST_KEY) and TEST_KEY not in json.dumps(packet)
    assert packet["source"] == "primary" and packet["output"]["probability"] == body["probability"]
    assert packet["features"]["timestamp"] == SNAPSHOT_HOUR and len(packet["features"]["snapshot_sha256"]) == 64
    assert packet["features"]["values"] == snapshot_values()
    assert packet["latency_ms"] > 0
    # Re-derive: fetch the artifact the packet names, check its hash, score the packet's features.
    for decision in (body, given):
        packet = client.get(f"/audit/{decision['decision_id']}").json()
        model = packet["model"]
        scorer = ScoringModel.from_artifact(
            read_uri(model["model_uri"]),
            model["sha256"],
            FEATURES,
            TradingRule(model["signal_band"], model["smoothing_hours"]),
            model["version"],
        )
        probability = float(scorer.predict_proba(scorer.vector(packet["features"]["values"]))[0])
        assert probability == packet["output"]["probability"] == decision["probability"]
        assert scorer.signal(probability) == packet["output"]["signal"]


def test_a_request_id_is_kept_or_made_echoed_and_audited(served):
    client, _, _ = served
    mine = client.post("/predict", json={"symbol": "BTCUSDT"}, headers={"X-Request-ID": "trade-42.a:b"})
    made = client.post("/predict", json={"symbol": "BTCUSDT"})
    odd = client.post("/predict", json={"symbol": "BTCUSDT"}, headers={"X-Request-ID": "x" * 129})
    batch = client.post("/predict/batch", json={"requests": [{"symbol": "BTCUSDT"}, {"symbol": "ETHUSDT"}]})
    assert mine.headers["x-request-id"] == "trade-42.a:b"
    for response in (made, odd, batch):
        assert len(response.headers["x-request-id"]) == 32 and int(response.headers["x-request-id"], 16) >= 0
    assert made.headers["x-request-id"] != odd.headers["x-request-id"]
    for response in (mine, made, odd):
        packet = client.get(f"/audit/{response.json()['decision_id']}").json()
        assert packet["request_id"] == response.headers["x-request-id"]
    ids = [client.get(f"/audit/{p['decision_id']}").json()["request_id"] for p in batch.json()["predictions"]]
    assert ids == [batch.headers["x-request-id"]] * 2, "a batch's decisions share its request id"
    assert client.get("/health").headers["x-request-id"], "every response carries one"


def test_audit_is_durable_and_readable_before_and_after_it_is_written(store, tmp_path):
    with api_client(store.root, tmp_path / "audit") as client:
        audit = client.app.state.services.audit
        client.app.state.services.serving.active.scorer.predictor = Broken()
        ids = [predict(client, symbol=s)["decision_id"] for s in ("BTCUSDT", "ETHUSDT") * 50]
        assert client.get(f"/audit/{ids[-1]}").status_code == 200  # maybe still in memory: readable all the same
        baseline_packet = client.get(f"/audit/{ids[1]}").json()
    # The app has shut down: everything queued was committed. A fresh reader finds every packet.
    reopened = AuditLog(tmp_path / "audit")
    try:
        assert audit.written == 100 and reopened.pending == 0
        packets = [reopened.get(i) for i in ids]
        assert all(p is not None for p in packets)
        assert packets[1] == baseline_packet
        assert packets[1]["source"] == "baseline" and packets[1]["baseline"]["name"] == "momentum_news_v1"
        recomputed, _, _ = RulesBaseline().score(packets[1]["features"]["values"])
        assert recomputed == packets[1]["output"]["probability"]
    finally:
        reopened.close()


def test_a_full_audit_backlog_refuses_to_decide(store, tmp_path):
    with api_client(store.root, tmp_path / "audit", audit_max_pending=1) as client:
        audit = client.app.state.services.audit
        audit.stop()  # the writer stops draining (storage stuck)
        assert predict(client)["source"] == "primary"
        refused = client.post("/predict", json={"symbol": "BTCUSDT"})
        assert refused.status_code == 503 and "audit" in refused.json()["detail"]
        assert refused.headers["Retry-After"] == "5"
        assert client.get("/ready").status_code == 503


# --- security --------------------------------------------------------------------------------------------------------


def test_api_keys_are_required_and_held_hashed(store, tmp_path):
    config = serving_config(store.root, tmp_path / "audit")
    with TestClient(create_app(config)) as client:
        for headers in ({}, {"X-API-Key": "wrong-key-0123456789"}, {"X-API-Key": TEST_KEY[:-1]}):
            response = client.post("/predict", json={"symbol": "BTCUSDT"}, headers=headers)
            assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "ApiKey"
            assert client.get("/model", headers=headers).status_code == 401
            assert client.get("/audit/" + "0" * 32, headers=headers).status_code == 401
        assert client.post("/predict", json={"symbol": "BTCUSDT"}, headers={"X-API-Key": TEST_KEY}).status_code == 200
        for open_path in ("/health", "/ready", "/metrics", "/openapi.json"):
            assert client.get(open_path).status_code == 200, open_path
    keys = ApiKeys([TEST_KEY])
    assert TEST_KEY not in repr(vars(keys)) and keys.identify(TEST_KEY) == key_id(TEST_KEY)


def test_keys_from_the_environment_and_a_secrets_file(tmp_path):
    secrets_file = tmp_path / "keys"
    secrets_file.write_text("# rotated 2025-03\nfile-key-0123456789abcdef\n\n")
    assert load_keys("env-key-0123456789abcdef, other-key-0123456789ab", str(secrets_file)) == [
        "env-key-0123456789abcdef",
        "other-key-0123456789ab",
        "file-key-0123456789abcdef",
    ]
    with pytest.raises(ConfigError, match="shorter than 16"):
        load_keys("short", None)
    with pytest.raises(ConfigError, match="cannot read"):
        load_keys(None, str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="no API keys"):
        ApiKeys([])
    from alphapulse_serving.config import ServingConfig

    config = ServingConfig.from_env(
        {
            "ALPHAPULSE_HOME": str(tmp_path),
            "ALPHAPULSE_API_KEYS_FILE": str(secrets_file),
            "ALPHAPULSE_API_RATE_LIMIT": "5",
        }
    )
    assert config.api_keys == ["file-key-0123456789abcdef"] and config.rate_limit_per_second == 5
    assert config.store == str(tmp_path / "objects") and config.audit_dir == tmp_path / "audit"
    assert "file-key" not in repr(config)
    with pytest.raises(ConfigError, match="ALPHAPULSE_API_RATE_LIMIT='fast'"):
        ServingConfig.from_env({"ALPHAPULSE_API_RATE_LIMIT": "fast"})
    with pytest.raises(ConfigError, match="list the origins"):
        ServingConfig.from_env({"ALPHAPULSE_API_CORS_ORIGINS": "*"})
    assert config.model_source == "store" and config.mlflow_tracking_uri is None
    with pytest.raises(ConfigError, match="ALPHAPULSE_API_MODEL_SOURCE='registry': expected one of store, mlflow"):
        ServingConfig.from_env({"ALPHAPULSE_API_MODEL_SOURCE": "registry"})
    with pytest.raises(ConfigError, match="set MLFLOW_TRACKING_URI"):
        ServingConfig.from_env({"ALPHAPULSE_API_MODEL_SOURCE": "mlflow"})
    registry = ServingConfig.from_env(
        {
            "ALPHAPULSE_HOME": str(tmp_path),
            "ALPHAPULSE_API_KEYS_FILE": str(secrets_file),
            "ALPHAPULSE_API_MODEL_SOURCE": "mlflow",
            "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        }
    )
    assert (registry.model_source, registry.mlflow_tracking_uri) == ("mlflow", "http://mlflow:5000")


def test_rate_limit_per_key_with_retry_after(store, tmp_path):
    other = "ap_second_key_0123456789abcdef"
    config = serving_config(store.root, tmp_path / "audit", rate_limit_per_second=0.5, rate_limit_burst=3)
    config = type(config)(**(config.__dict__ | {"api_keys": [TEST_KEY, other]}))
    with TestClient(create_app(config), headers={"X-API-Key": TEST_KEY}) as client:
        codes = [client.post("/predict", json={"symbol": "BTCUSDT"}).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = client.post("/predict", json={"symbol": "BTCUSDT"})
        assert limited.status_code == 429 and 1 <= int(limited.headers["Retry-After"]) <= 2
        # Each key has its own bucket.
        assert client.post("/predict", json={"symbol": "BTCUSDT"}, headers={"X-API-Key": other}).status_code == 200
        batch = client.post(
            "/predict/batch", json={"requests": [{"symbol": "BTCUSDT"}] * 4}, headers={"X-API-Key": other}
        )
        assert batch.status_code == 429 and "exceeds the burst" in batch.json()["detail"]
        assert 'alphapulse_api_requests_total{route="predict",status="429"} 2.0' in client.get("/metrics").text


def test_token_bucket():
    now = [0.0]
    limiter = RateLimiter(rate=2, burst=2, clock=lambda: now[0])
    assert limiter.acquire("k") == 0 and limiter.acquire("k") == 0
    assert limiter.acquire("k") == pytest.approx(0.5)
    now[0] = 0.5
    assert limiter.acquire("k") == 0
    assert limiter.acquire("k", cost=3) == float("inf")


def test_cors_is_off_by_default_and_follows_configuration(store, tmp_path):
    preflight = {"Origin": "https://desk.example", "Access-Control-Request-Method": "POST"}
    with api_client(store.root, tmp_path / "a") as client:
        assert "access-control-allow-origin" not in client.options("/predict", headers=preflight).headers
        assert "access-control-allow-origin" not in client.get("/health", headers={"Origin": "https://x"}).headers
    with api_client(store.root, tmp_path / "b", cors_origins=("https://desk.example",)) as client:
        allowed = client.options("/predict", headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "https://desk.example"
        other = client.options("/predict", headers=preflight | {"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_request_size_limit(store, tmp_path):
    with api_client(store.root, tmp_path / "audit", max_body_bytes=2048) as client:
        big = {"symbol": "BTCUSDT", "features": {f"f{i}": 1.0 for i in range(400)}}
        response = client.post("/predict", json=big)
        assert response.status_code == 413 and "limit is 2048" in response.json()["detail"]

        def chunks():  # no Content-Length: the guard counts as it reads
            for _ in range(10):
                yield b" " * 500

        chunked = client.post("/predict", content=chunks(), headers={"Content-Type": "application/json"})
        assert chunked.status_code == 413
        small = client.post(
            "/predict", content=iter([b'{"symbol": ', b'"BTCUSDT"}']), headers={"Content-Type": "application/json"}
        )
        assert small.status_code == 200


def test_no_secrets_in_logs_or_audit(store, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with api_client(store.root, tmp_path / "audit") as client:
        predict(client)
        client.post("/predict", json={"symbol": TEST_KEY[:20]})  # a key pasted into the wrong field
        client.post("/predict", json={"symbol": "BTCUSDT", "features": {"x": TEST_KEY}})
        client.post("/predict", json={"symbol": "BTCUSDT"}, headers={"X-API-Key": "ap_leaked_wrong_key_123456"})
        bodies = " ".join(
            r.text for r in [client.post("/predict", json={"symbol": "BTCUSDT", "features": {"x": TEST_KEY}})]
        )
    assert TEST_KEY not in bodies, "validation errors must not echo inputs back"
    assert TEST_KEY not in caplog.text and "ap_leaked_wrong_key_123456" not in caplog.text
    for path in (tmp_path / "audit").iterdir():
        assert TEST_KEY.encode() not in path.read_bytes()


# --- metrics and schema ---------------------------------------------------------------------------------------------


def test_prometheus_metrics(served):
    client, _, _ = served
    predict(client)
    client.post("/predict", json={"symbol": "DOGEUSDT"})
    text = client.get("/metrics").text
    for line in (
        'alphapulse_api_request_duration_seconds_bucket{le="0.001",route="predict"}',
        'alphapulse_api_requests_total{route="predict",status="200"} 1.0',
        'alphapulse_api_requests_total{route="predict",status="404"} 1.0',
        'alphapulse_api_predictions_total{source="primary"} 1.0',
        f'alphapulse_api_model_info{{feature_version="{CURRENT_VERSION}",sha256=',
        "alphapulse_api_model_reloads_total 1.0",
        "alphapulse_api_audit_pending",
    ):
        assert line in text, line
    (family,) = [f for f in text_string_to_metric_families(text) if f.name.endswith("snapshot_timestamp_seconds")]
    assert family.samples[0].value == datetime.fromisoformat(SNAPSHOT_HOUR).timestamp()


def test_openapi_schema_is_complete_with_examples(served):
    client, _, _ = served
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An API key from ALPHAPULSE_API_KEYS",
    }
    for path in ("/predict", "/predict/batch", "/model", "/audit/{decision_id}", "/health", "/ready", "/metrics"):
        assert path in schema["paths"], path
    predict_op = schema["paths"]["/predict"]["post"]
    assert {"200", "401", "404", "413", "422", "429", "503"} <= set(predict_op["responses"])
    assert "Retry-After" in predict_op["responses"]["429"]["headers"]
    components = schema["components"]["schemas"]
    for name in ("PredictRequest", "PredictResponse", "BatchRequest", "HealthResponse", "ErrorResponse"):
        assert components[name].get("examples"), name
    assert components["PredictResponse"]["properties"]["source"]["enum"] == ["primary", "cache", "baseline", "abstain"]


def test_make_demo_makes_a_key_once_unless_one_is_configured(tmp_path):
    import stat
    from types import SimpleNamespace

    from alphapulse_assets.demo import demo_api_key

    settings = SimpleNamespace(home=tmp_path)
    env: dict = {}
    key = demo_api_key(settings, env)
    path = Path(env["ALPHAPULSE_API_KEYS_FILE"])
    assert key.startswith("ap_") and len(key) > 30 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keys(None, str(path)) == [key]
    assert demo_api_key(settings, {}) == key  # a restart keeps the key
    assert demo_api_key(settings, {"ALPHAPULSE_API_KEYS": "mine-0123456789abcdef"}) is None


def test_grafana_dashboard_queries_metrics_the_api_exports(served):
    import re

    client, _, _ = served
    predict(client)
    predict(client, budget_ms=0.0001)  # a fallback, so the fallback counter has a sample
    exported = {s.name for f in text_string_to_metric_families(client.get("/metrics").text) for s in f.samples}
    dashboard = json.loads((Path(__file__).parents[1] / "infra/grafana/alphapulse-api.json").read_text())
    queried = set(re.findall(r"alphapulse_api_\w+", json.dumps(dashboard)))
    assert len(queried) >= 9 and queried <= exported, queried - exported
