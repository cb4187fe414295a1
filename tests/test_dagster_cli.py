"""Dagster's own commands, typed in the repo root the way its tutorials type them: no DAGSTER_HOME, nothing copied.

Dagster then makes a temporary instance in the working directory and reads the repo's `dagster.yaml` there; the
batching event log opens under that temporary home. ALPHAPULSE_HOME points into the test's directory only so the
test leaves nothing behind; a user's default (`.alphapulse/` in the repo) behaves the same.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from services import free_port, stop_group

REPO = Path(__file__).resolve().parents[1]
DAGSTER = str(Path(sys.executable).with_name("dagster"))


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    return env | {"ALPHAPULSE_HOME": str(tmp_path / "home")}


def _temporary_homes() -> set[str]:
    return {p.name for p in REPO.glob(".tmp_dagster_home_*")}


@pytest.mark.timeout(300)
def test_dagster_asset_materialize_in_the_repo_root(tmp_path):
    before = _temporary_homes()
    result = subprocess.run(
        [DAGSTER, "asset", "materialize", "-m", "alphapulse_assets.definitions", "--select", "prices"]
        + ["--partition", "2025-03-01-05:00"],
        cwd=REPO,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=280,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "RUN_SUCCESS" in output
    assert (tmp_path / "home" / "warehouse.duckdb").exists()
    assert _temporary_homes() == before, "Dagster removes its temporary home when the command ends"


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"]


LOCATIONS = """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


@pytest.mark.timeout(300)
def test_dagster_dev_in_the_repo_root_loads_the_code_location_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    log = (tmp_path / "dagster-dev.log").open("w")
    process = subprocess.Popen(
        [DAGSTER, "dev", "-p", str(port)],
        cwd=REPO,
        env=_env(tmp_path),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        entries = []
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "dagster-dev.log").read_text()[-3000:]
            try:
                entries = _graphql(port, LOCATIONS)["workspaceOrError"]["locationEntries"]
            except OSError:
                entries = []
            if entries and entries[0]["loadStatus"] == "LOADED":
                break
            time.sleep(1)
        assert [e["name"] for e in entries] == ["alphapulse"], entries
        assert entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation", entries
        # Ctrl-C in a terminal: SIGINT to the whole foreground process group.
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)
    finally:
        stop_group(process, timeout=5)
        log.close()
    text = (tmp_path / "dagster-dev.log").read_text()
    assert "BatchingSqliteEventLogStorage needs" not in text and "Traceback" not in text, text[-3000:]
