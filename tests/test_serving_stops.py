"""Stopping `python -m alphapulse_serving` alone, as a supervisor or a terminal does: SIGTERM or Ctrl-C (SIGINT)
ends it within seconds, leaves no process behind, and ships the last audit batch first, so a decision answered
just before the stop is in the archive."""

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from api import TEST_KEY, predict_when_up
from services import free_port

from alphapulse_assets.features.catalog import FEATURE_NAMES
from alphapulse_assets.storage.object_store import LocalObjectStore
from alphapulse_contract.scoring import SNAPSHOT_KEY

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl_c"])
def test_a_stopped_api_exits_promptly_and_ships_its_last_audit_batch(tmp_path, signum):
    port = free_port()
    env = {
        **os.environ,
        "ALPHAPULSE_HOME": str(tmp_path),
        "ALPHAPULSE_API_PORT": str(port),
        "ALPHAPULSE_API_KEYS": TEST_KEY,
        # Longer than the test: only the shipping at shutdown can put the packet in the archive.
        "ALPHAPULSE_API_AUDIT_SHIP_SECONDS": "3600",
    }
    # An online snapshot with one symbol and no champion: the rules baseline answers (or abstains), and audits.
    rows = {"BTCUSDT": {"ts": "2025-03-13T23:00:00+00:00", "values": dict.fromkeys(FEATURE_NAMES, 0.01)}}
    snapshot = {"feature_version": "test", "feature_names": list(FEATURE_NAMES), "rows": rows}
    LocalObjectStore(root=str(tmp_path / "objects")).put_bytes(SNAPSHOT_KEY, json.dumps(snapshot).encode())
    log = tmp_path / "api.log"
    api = subprocess.Popen(
        [sys.executable, "-m", "alphapulse_serving"],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        decision = predict_when_up(port, api)
        os.kill(api.pid, signum)
        started = time.monotonic()
        code = api.wait(timeout=30)
        stopped_in = time.monotonic() - started
    finally:
        if api.poll() is None:
            os.killpg(api.pid, signal.SIGKILL)
            api.wait()
    # uvicorn shuts down cleanly, then exits by the signal it got (as a supervisor expects), or 0.
    assert code in (0, -signum), (code, log.read_text()[-3000:])
    assert "Application shutdown complete." in log.read_text()
    with pytest.raises(ProcessLookupError):  # nothing of its process group is left
        os.killpg(api.pid, 0)
    batches = sorted((tmp_path / "objects" / "audit").rglob("*.jsonl.gz"))
    shipped = [json.loads(line) for batch in batches for line in gzip.decompress(batch.read_bytes()).splitlines()]
    assert decision["decision_id"] in {packet["decision_id"] for packet in shipped}, log.read_text()[-3000:]
    print(f"stopped in {stopped_in:.1f}s")
