"""End to end, the way a user's script drives AlphaPulse: the Dagster webserver and daemon and the API run as
subprocesses; a partition backfill and a retrain are launched through Dagster's GraphQL API; then /predict."""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
from api import TEST_KEY
from services import free_port

from alphapulse_assets.demo import service_commands, stop_processes
from alphapulse_assets.instance import write_instance_config
from alphapulse_contract.scoring import MANIFEST_KEY

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parent.parent
DATA_ASSETS = ["prices", "news", "news_sentiment", "features"]
MODEL_ASSETS = ["trained_model", "model_evaluation", "promotion_decision", "promoted_model"]
FIRST_DAY, LAST_DAY = 1, 13  # March 2025, as in the test environment (conftest.py)
LAST = "2025-03-13-23:00"

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionSetNotFoundError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}"""
STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status }
    ... on PythonError { message }
  }
}"""


def http(method: str, url: str, body: dict | None = None, timeout: float = 30.0) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", "X-API-Key": TEST_KEY}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def fetch(url: str) -> tuple[int, str, bytes]:
    """Status, content type and body of a GET, whatever the body is."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def wait_until(predicate, what: str, timeout: float, processes: dict) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, process in processes.items():
            assert process.poll() is None, f"{name} exited with {process.returncode}"
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def graphql(port: int, query: str, variables: dict) -> dict:
    status, payload = http("POST", f"http://127.0.0.1:{port}/graphql", {"query": query, "variables": variables})
    assert status == 200 and "errors" not in payload, payload
    return payload["data"]


def backfill(port: int, assets: list[str], partitions: list[str], processes: dict, timeout: float) -> None:
    params = {
        "partitionNames": partitions,
        "assetSelection": [{"path": [a]} for a in assets],
        "title": f"e2e {','.join(assets)}",
    }
    launched = graphql(port, LAUNCH, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]
    final = {}

    def done() -> bool:
        result = graphql(port, STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        final["status"] = result.get("status")
        return result.get("status") in ("COMPLETED_SUCCESS", "COMPLETED", "COMPLETED_FAILED", "FAILED", "CANCELED")

    wait_until(done, f"backfill {backfill_id} of {assets}", timeout, processes)
    assert final["status"] in ("COMPLETED_SUCCESS", "COMPLETED"), final


@pytest.fixture
def services(tmp_path):
    home = tmp_path / "home"
    dagster_home = home / "dagster"
    write_instance_config(dagster_home)
    ui_port, api_port, reports_port = free_port(), free_port(), free_port()
    env = dict(
        os.environ,
        ALPHAPULSE_REPORTS_URL=f"http://127.0.0.1:{reports_port}",
        ALPHAPULSE_HOME=str(home),
        DAGSTER_HOME=str(dagster_home),
        ALPHAPULSE_API_PORT=str(api_port),
        ALPHAPULSE_API_POLL_SECONDS="1",
        ALPHAPULSE_API_KEYS=TEST_KEY,
    )
    processes, logs = {}, {}
    try:
        for name, command in service_commands(ui_port, reports_port).items():
            logs[name] = tmp_path / f"{name}.log"
            processes[name] = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=logs[name].open("wb"), stderr=subprocess.STDOUT
            )
        wait_until(
            lambda: http("GET", f"http://127.0.0.1:{ui_port}/server_info")[0] == 200, "webserver", 120, processes
        )
        wait_until(lambda: http("GET", f"http://127.0.0.1:{api_port}/health")[0] == 200, "API", 60, processes)
        wait_until(lambda: fetch(f"http://127.0.0.1:{reports_port}/")[0] == 404, "the plots server", 60, processes)
        yield ui_port, api_port, reports_port, processes
    except BaseException:
        for name, log in logs.items():
            print(f"----- {name} log tail -----\n{log.read_text(errors='replace')[-4000:]}")
        raise
    finally:
        stop_processes(processes, timeout=20)


def test_backfill_retrain_and_predict_through_the_public_interfaces(services, tmp_path):
    ui_port, api_port, reports_port, processes = services
    status, health = http("GET", f"http://127.0.0.1:{api_port}/health")
    assert status == 200 and health["status"] == "unavailable"
    assert http("GET", f"http://127.0.0.1:{api_port}/ready")[0] == 503

    hours = [f"2025-03-{day:02d}-{hour:02d}:00" for day in range(FIRST_DAY, LAST_DAY + 1) for hour in range(24)]
    backfill(ui_port, DATA_ASSETS, hours, processes, timeout=420)
    backfill(ui_port, MODEL_ASSETS, [LAST], processes, timeout=240)

    def model_served() -> bool:
        return http("GET", f"http://127.0.0.1:{api_port}/health")[1].get("status") == "ok"

    wait_until(model_served, "the API to load the promoted model", 60, processes)
    status, model = http("GET", f"http://127.0.0.1:{api_port}/model")
    assert status == 200 and model["manifest"]["decision_partition"].startswith("2025-03-13T23:00")
    assert http("GET", f"http://127.0.0.1:{api_port}/ready")[0] == 200
    status, prediction = http("POST", f"http://127.0.0.1:{api_port}/predict", {"symbol": "BTCUSDT"})
    assert status == 200, prediction
    assert prediction["model_version"] == model["version"] and prediction["source"] == "primary"
    status, packet = http("GET", f"http://127.0.0.1:{api_port}/audit/{prediction['decision_id']}")
    assert status == 200 and packet["output"]["probability"] == prediction["probability"]
    assert prediction["feature_timestamp"].startswith("2025-03-13T23:00")
    assert 0.0 < prediction["probability"] < 1.0 and prediction["signal"] in (-1, 0, 1)
    assert http("POST", f"http://127.0.0.1:{api_port}/predict", {"symbol": "NOPE1"})[0] == 404
    assert http("POST", f"http://127.0.0.1:{api_port}/predict", {"sym": "BTCUSDT"})[0] == 422

    # The evaluation's plots: the asset page's image link points at the plots server, which serves them, and
    # nothing outside plots/ and reports/.
    with dg.DagsterInstance.from_config(str(tmp_path / "home" / "dagster")) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("model_evaluation")).asset_materialization
    markdown = event.metadata["equity_curve"].value
    url = markdown[markdown.index("(") + 1 : -1]
    assert len(markdown) < 1000 and url.startswith(f"http://127.0.0.1:{reports_port}/plots/model_evaluation/")
    status, content_type, body = fetch(url)
    assert status == 200 and content_type == "image/png" and body.startswith(b"\x89PNG")
    assert fetch(f"http://127.0.0.1:{reports_port}/{MANIFEST_KEY}")[0] == 404
    assert fetch(f"http://127.0.0.1:{reports_port}/plots/../{MANIFEST_KEY}")[0] == 404
