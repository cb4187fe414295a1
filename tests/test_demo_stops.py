"""Stopping `make demo` leaves nothing behind: Ctrl-C (SIGINT to the terminal's process group) or SIGTERM to the
demo (`kill`, a supervisor, a container stop), while the daemon runs a long backfill, stops the webserver, the
daemon, every code server, the run's worker and the API within a bounded time, and the run is canceled in the
instance, not left STARTED."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
from services import free_port, stop_group

REPO = Path(__file__).resolve().parents[1]

SERVE = textwrap.dedent(
    """
    import sys
    from alphapulse_assets import demo
    from alphapulse_assets.settings import Settings

    settings = Settings.from_env()
    demo.start(settings)
    demo.serve(settings, int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), have_champion=False)
    """
)

LOCATIONS = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on PipelineNotFoundError { message } } }"""


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _descendants(pid: int) -> set[int]:
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _command(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_text(errors="ignore").replace("\0", " ")
    except OSError:
        return ""


def _graphql(port: int, query: str, variables: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())["data"]


@pytest.mark.timeout(420)
@pytest.mark.parametrize("how", ["ctrl_c", "sigterm"])
def test_stopping_the_demo_stops_every_process_and_cancels_the_run(tmp_path, how):
    ui_port, api_port, reports_port = free_port(), free_port(), free_port()
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"} | {
        "ALPHAPULSE_HOME": str(home),
        "ALPHAPULSE_API_KEYS": "a-test-key-of-sixteen-characters",
    }
    out = tmp_path / "demo.out"
    output = out.open("w")
    demo = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(ui_port), str(api_port), str(reports_port)],
        cwd=REPO,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 180
        while "Press Ctrl-C to stop." not in out.read_text():
            assert demo.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(1)
        # The webserver loads the code location on its own schedule: wait for it, as a person waits for the UI.
        while True:
            entries = _graphql(ui_port, LOCATIONS, {})["workspaceOrError"]["locationEntries"]
            if entries and entries[0]["loadStatus"] == "LOADED":
                break
            assert time.monotonic() < deadline, entries
            time.sleep(1)
        tags = [
            {"key": "dagster/asset_partition_range_start", "value": "2025-03-01-00:00"},
            # Long enough (20 months: about a minute here) to be in flight when the stop comes.
            {"key": "dagster/asset_partition_range_end", "value": "2026-10-31-23:00"},
        ]
        selector = {"repositoryLocationName": "alphapulse", "repositoryName": "__repository__", "jobName": "data_job"}
        params = {"selector": selector, "executionMetadata": {"tags": tags}}
        launched = _graphql(ui_port, LAUNCH, {"params": params})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
            while instance.get_run_by_id(run_id).status != dg.DagsterRunStatus.STARTED:
                assert time.monotonic() < deadline, instance.get_run_by_id(run_id).status
                seen |= _descendants(demo.pid)
                time.sleep(0.5)
            time.sleep(3)  # into its first step
            seen |= _descendants(demo.pid)
            # The code server runs the run in a multiprocessing child: the worker this test must see stopped.
            assert any("spawn_main" in _command(p) for p in seen), [_command(p)[:90] for p in seen]
            stop_started = time.monotonic()
            if how == "ctrl_c":
                os.killpg(demo.pid, signal.SIGINT)  # what a terminal sends to its foreground group
            else:
                demo.send_signal(signal.SIGTERM)
            demo.wait(timeout=120)
            stopped_in = time.monotonic() - stop_started
            time.sleep(1)
            survivors = sorted(p for p in seen if _alive(p))
            assert survivors == [], [_command(p) for p in survivors]
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.CANCELED
        assert stopped_in < 90, stopped_in
        assert demo.returncode == 0 and "stopping ..." in out.read_text(), out.read_text()
    finally:
        for pid in seen:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        stop_group(demo, timeout=5)
        output.close()


@pytest.mark.timeout(300)
def test_sigterm_during_the_backfill_cancels_the_in_process_run(tmp_path):
    """Steps 1-2 run in the demo's own process: SIGTERM there ends the run as canceled, not failed or STARTED
    forever, and the demo exits 130 without starting any service."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"} | {
        "ALPHAPULSE_HOME": str(home),
        # A backfill long enough (400 days: about a minute here) to be in flight when the stop comes.
        "ALPHAPULSE_DEMO_DAYS": "400",
        "ALPHAPULSE_API_KEYS": "a-test-key-of-sixteen-characters",
    }
    out = tmp_path / "demo.out"
    with out.open("w") as output:
        demo = subprocess.Popen(
            [sys.executable, "-m", "alphapulse_assets.demo"],
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 180
            while "[1/3] data backfill" not in out.read_text():
                assert demo.poll() is None and time.monotonic() < deadline, out.read_text()
                time.sleep(0.5)
            with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
                while not instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
                    assert demo.poll() is None and time.monotonic() < deadline, out.read_text()
                    time.sleep(0.5)
                time.sleep(2)
                (run,) = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
                children = _descendants(demo.pid)
                demo.send_signal(signal.SIGTERM)
                assert demo.wait(timeout=60) == 130, out.read_text()
                assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.CANCELED
            assert [p for p in children if _alive(p)] == []
            assert "stopped: the run in flight was canceled" in out.read_text()
            assert "[3/3]" not in out.read_text()
        finally:
            stop_group(demo, timeout=5)
