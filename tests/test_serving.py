import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from models import xgboost_artifact

from alphapulse_assets.features.catalog import FEATURE_NAMES, feature_version
from alphapulse_assets.storage.object_store import LocalObjectStore
from alphapulse_serving.app import create_app
from alphapulse_serving.contract import MANIFEST_KEY, SNAPSHOT_KEY, ModelManifest, sha256_hex

FEATURES = list(FEATURE_NAMES)
CURRENT_VERSION = feature_version("vader", 6.0)


def publish_model(store: LocalObjectStore, seed: int, version: str, corrupt: bool = False) -> ModelManifest:
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
        feature_version=CURRENT_VERSION,
        signal_band=0.02,
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


def publish_snapshot(store: LocalObjectStore, version: str | None = None) -> None:
    rows = {
        s: {"ts": "2025-01-02T10:00:00+00:00", "values": {n: (0.1 if i else None) for i, n in enumerate(FEATURES)}}
        for s in ("BTCUSDT", "ETHUSDT")
    }
    payload = {"feature_version": version or CURRENT_VERSION, "feature_names": FEATURES, "rows": rows}
    store.put_bytes(SNAPSHOT_KEY, json.dumps(payload).encode())


@pytest.fixture
def served(tmp_path):
    store = LocalObjectStore(root=str(tmp_path))
    publish_model(store, 1, "v1")
    publish_snapshot(store)
    app = create_app(store_root=tmp_path, poll_seconds=3600)
    with TestClient(app) as client:
        yield client, store, app.state.serving


def test_predict_from_online_features(served):
    client, _, _ = served
    response = client.post("/predict", json={"symbol": "btcusdt"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["symbol"] == "BTCUSDT" and body["model_version"] == "v1"
    assert 0 < body["probability"] < 1 and body["signal"] in (-1, 0, 1)
    assert body["feature_timestamp"] == "2025-01-02T10:00:00+00:00" and body["feature_source"] == "online_snapshot"


def test_predict_with_given_features_matches_the_offline_model(served):
    client, store, state = served
    values = {n: 0.5 for n in FEATURES}
    body = client.post("/predict", json={"symbol": "ETHUSDT", "features": values}).json()
    offline = float(state.model.predictor.booster.inplace_predict(np.array([[0.5] * len(FEATURES)]))[0])
    assert body["probability"] == pytest.approx(offline, abs=2e-7)  # XGBoost rounds its sigmoid to float32
    assert body["feature_source"] == "request" and body["feature_timestamp"] is None


def test_errors(served):
    client, _, _ = served
    assert client.post("/predict", json={"symbol": "DOGEUSDT"}).status_code == 404
    assert client.post("/predict", json={}).status_code == 422
    assert client.post("/predict", json={"symbol": "BTC/USDT"}).status_code == 422
    assert client.post("/predict", json={"symbol": "BTCUSDT", "extra": 1}).status_code == 422
    missing = client.post("/predict", json={"symbol": "BTCUSDT", "features": {"ret_1h": 0.1}})
    assert missing.status_code == 422 and "missing features" in missing.json()["detail"]
    unknown = client.post(
        "/predict", json={"symbol": "BTCUSDT", "features": {**{n: 0.0 for n in FEATURES}, "bogus": 1.0}}
    )
    assert unknown.status_code == 422 and "unknown features: bogus" in unknown.json()["detail"]
    text = client.post("/predict", json={"symbol": "BTCUSDT", "features": {n: "high" for n in FEATURES}})
    assert text.status_code == 422


def test_hot_swap_and_keep_last_good_model(served):
    client, store, state = served
    assert client.get("/model").json()["version"] == "v1"
    publish_model(store, 2, "v2")
    state.refresh()
    assert client.get("/model").json()["version"] == "v2"
    assert client.post("/predict", json={"symbol": "BTCUSDT"}).json()["model_version"] == "v2"

    publish_model(store, 3, "v3", corrupt=True)  # sha256 no longer matches
    state.refresh()
    health = client.get("/health").json()
    assert health["status"] == "degraded" and health["model_version"] == "v2"
    assert any("sha256" in reason and "still serving v2" in reason for reason in health["reasons"])
    assert client.post("/predict", json={"symbol": "BTCUSDT"}).json()["model_version"] == "v2"

    store.put_bytes(MANIFEST_KEY, b"{not json")
    state.refresh()
    assert client.get("/health").json()["model_version"] == "v2"


def test_feature_version_mismatch_makes_the_model_abstain_and_say_why(served):
    client, store, state = served
    publish_snapshot(store, version="0000000000000000")
    state.refresh()
    body = client.post("/predict", json={"symbol": "BTCUSDT"}).json()
    assert body["source"] == "abstain" and body["signal"] == 0 and body["probability"] is None
    assert body["feature_version"] == "0000000000000000"
    (reason,) = body["fallback_reasons"]
    assert reason.startswith("primary:") and "0000000000000000" in reason and CURRENT_VERSION in reason
    health = client.get("/health").json()
    assert health["status"] == "degraded" and any("version" in r for r in health["reasons"])
    # Features the caller computes are the caller's responsibility: the model still answers them.
    given = {name: 0.0 for name in FEATURE_NAMES}
    assert client.post("/predict", json={"symbol": "BTCUSDT", "features": given}).json()["source"] == "primary"


def test_no_model_yet(tmp_path):
    with TestClient(create_app(store_root=tmp_path, poll_seconds=3600)) as client:
        assert client.get("/health").status_code == 503
        response = client.post("/predict", json={"symbol": "BTCUSDT"})
        assert response.status_code == 503 and "no promoted model" in response.json()["detail"]
