"""The API over real HTTP (uvicorn, uvloop, httptools), with promotions landing while clients hammer it."""

import threading
import time
from collections import Counter

import httpx
import pytest
import uvicorn
from api import TEST_KEY, serving_config
from services import free_port
from test_serving import publish_model, publish_snapshot

from alphapulse_assets.storage.object_store import LocalObjectStore
from alphapulse_serving.app import create_app


@pytest.fixture
def live(tmp_path):
    store = LocalObjectStore(root=str(tmp_path / "objects"))
    manifests = {"v1": publish_model(store, 1, "v1")}
    publish_snapshot(store)
    app = create_app(serving_config(store.root, tmp_path / "audit", poll_seconds=0.05))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", store, manifests, app
    server.should_exit = True
    thread.join(10)


def test_promotions_under_concurrent_load_fail_no_request(live):
    url, store, manifests, app = live
    stop = threading.Event()
    outcomes: list[tuple[int, str | None, str | None, str | None]] = []
    lock = threading.Lock()

    def hammer():
        with httpx.Client(base_url=url, headers={"X-API-Key": TEST_KEY}, timeout=10) as client:
            while not stop.is_set():
                try:
                    r = client.post("/predict", json={"symbol": "BTCUSDT"})
                    body = r.json()
                    row = (r.status_code, body.get("source"), body.get("model_version"), body.get("model_sha256"))
                except httpx.HTTPError as exc:
                    row = (0, type(exc).__name__, None, None)
                with lock:
                    outcomes.append(row)

    clients = [threading.Thread(target=hammer) for _ in range(4)]
    for c in clients:
        c.start()
    time.sleep(0.5)
    manifests["v2"] = publish_model(store, 2, "v2")
    time.sleep(0.5)
    publish_model(store, 3, "v3", corrupt=True)  # a broken promotion in the middle of it
    time.sleep(0.5)
    manifests["v4"] = publish_model(store, 4, "v4")
    time.sleep(0.7)
    stop.set()
    for c in clients:
        c.join(15)

    statuses = Counter(o[0] for o in outcomes)
    assert statuses == {200: len(outcomes)}, statuses
    assert {o[1] for o in outcomes} == {"primary"}
    versions = Counter(o[2] for o in outcomes)
    assert set(versions) == {"v1", "v2", "v4"} and len(outcomes) > 200, versions
    # Every answer names the model that made it: version and hash always belong together.
    assert all(o[3] == manifests[o[2]].sha256 for o in outcomes)
    assert outcomes[-1][2] == "v4"
    assert app.state.services.serving.reloads == 3
