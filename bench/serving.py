"""The prediction API under load, next to a bare endpoint on the same stack and `mlflow models serve` on the same
model, in one run; the ratio to the bare endpoint is the figure that carries between machines.

    uv run python bench/serving.py [--steady-seconds 60] [--peak-seconds 30] [--skip-mlflow] [--audit-ship-seconds 60]

Model: 300 trees of depth 6 on 50 features (XGBoost, binary:logistic), the calibration model of issue #8.
Our API: `python -m alphapulse_serving`, one uvicorn worker (uvloop, httptools), API key auth, the audit trail and
/metrics on, rate limit raised above the load. MLflow: `mlflow models serve --env-manager local` on the same
artifact, wrapped in the same pyfunc the training logs. The load generator is `hey` on the same 2-core machine:
    steady: hey -z 60s -c 4 -q 250 (four connections at 250 req/s each: 1,000 req/s)
    peak:   hey -z 30s -c 32
Requests are symbol-only for our API (the features come from the online snapshot); MLflow has no feature store,
so its requests carry the 50 features (`dataframe_split`), which is how a client would have to call it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import xgboost as xgb

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alphapulse_assets.storage.object_store import LocalObjectStore  # noqa: E402
from alphapulse_assets.training.resources import save_pyfunc_model  # noqa: E402
from alphapulse_contract.scoring import MANIFEST_KEY, SNAPSHOT_KEY, ModelManifest, ScoringModel, sha256_hex  # noqa: E402
from alphapulse_serving.chain import FallbackChain  # noqa: E402

N_FEATURES, N_TREES, DEPTH = 50, 300, 6
NAMES = [f"f{i:02d}" for i in range(N_FEATURES)]
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"]
KEY = "ap_bench_key_0123456789abcdefghij"
FEATURE_VERSION = "bench000000000000"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train() -> bytes:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20_000, N_FEATURES))
    y = (x[:, 0] - 0.5 * x[:, 1] + x[:, 2] * x[:, 3] + rng.standard_normal(20_000) > 0).astype(int)
    params = {"objective": "binary:logistic", "max_depth": DEPTH, "eta": 0.05, "nthread": 2, "seed": 0}
    booster = xgb.train(params, xgb.DMatrix(x, y), N_TREES)
    return bytes(booster.save_raw(raw_format="ubj"))


def publish(root: Path, artifact: bytes) -> ModelManifest:
    store = LocalObjectStore(root=str(root / "objects"))
    uri = store.put_bytes("models/bench/model.ubj", artifact)
    manifest = ModelManifest(
        version="bench",
        model_uri=uri,
        sha256=sha256_hex(artifact),
        feature_names=NAMES,
        feature_version=FEATURE_VERSION,
        signal_band=0.02,
        symbols=SYMBOLS,
        training_window={},
        metrics={},
        trained_at="",
        promoted_at="",
        decision_partition="",
    )
    store.put_bytes(MANIFEST_KEY, manifest.to_json())
    rng = np.random.default_rng(1)
    rows = {
        s: {
            "ts": "2025-03-15T12:00:00+00:00",
            "values": dict(zip(NAMES, rng.standard_normal(N_FEATURES).tolist(), strict=True)),
        }
        for s in SYMBOLS
    }
    store.put_bytes(SNAPSHOT_KEY, json.dumps({"feature_version": FEATURE_VERSION, "rows": rows}).encode())
    return manifest


def per_call_us(fn, repeats: int = 20_000) -> float:
    for _ in range(500):
        fn()
    best = float("inf")
    for _ in range(3):  # best of three: the machine is shared
        started = time.perf_counter()
        for _ in range(repeats):
            fn()
        best = min(best, (time.perf_counter() - started) / repeats)
    return best * 1e6


def in_process(root: Path, artifact: bytes, manifest: ModelManifest) -> None:
    from alphapulse_contract.baseline import RulesBaseline
    from alphapulse_serving.resilience import CircuitBreaker, ScoreCache
    from alphapulse_serving.state import ServingState

    scorer = ScoringModel.load(manifest)
    row = scorer.vector(dict(zip(NAMES, np.random.default_rng(2).standard_normal(N_FEATURES).tolist(), strict=True)))
    booster = xgb.Booster()
    booster.load_model(bytearray(artifact))
    booster.set_param({"nthread": 1})
    state = ServingState(str(root / "objects"))  # a directory or s3:// URL, as ServingConfig.store
    state.refresh()
    chain = FallbackChain(state, CircuitBreaker(5, 30), ScoreCache(3600), RulesBaseline(), 0.05)
    print("in-process, one row, one thread (best of 3 x 20,000 calls):")
    print(f"  Booster.inplace_predict                    {per_call_us(lambda: booster.inplace_predict(row)):7.1f} us")
    print(f"  compiled trees (ScoringModel.predict_proba) {per_call_us(lambda: scorer.predict_proba(row)):7.1f} us")
    print(
        "  whole decision (FallbackChain.decide)     "
        f"{per_call_us(lambda: chain.decide('0' * 32, 'BTCUSDT', None, time.perf_counter())):7.1f} us"
    )


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url}: not ready after {timeout:.0f} s")


def hey(args: list[str]) -> dict:
    command = ["hey", *args]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    figures: dict = {"command": " ".join(a if " " not in a and "{" not in a else repr(a) for a in command)}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    figures["rps"] = float(rps.group(1)) if rps else 0.0
    for pct in ("50", "90", "99"):
        found = re.search(rf"\s{pct}% in ([\d.]+) secs", output)
        figures[f"p{pct}_ms"] = float(found.group(1)) * 1e3 if found else float("nan")
    statuses = {int(c): int(n) for c, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", output)}
    errors = sum(int(n) for n in re.findall(r"\[(\d+)\]\s+[A-Z][a-z]+ .*", output.split("Error distribution:")[-1]))
    figures["statuses"], figures["non_2xx"] = statuses, sum(n for c, n in statuses.items() if not 200 <= c < 300)
    figures["errors"] = errors if "Error distribution:" in output else 0
    return figures


def load(url: str, body_file: Path, headers: list[str], steady_s: int, peak_s: int) -> list[dict]:
    common = ["-m", "POST", "-T", "application/json", "-D", str(body_file), *headers]
    steady = hey(["-z", f"{steady_s}s", "-c", "4", "-q", "250", *common, url])
    time.sleep(2)
    peak = hey(["-z", f"{peak_s}s", "-c", "32", *common, url])
    return [steady | {"load": "steady 1,000 req/s"}, peak | {"load": "peak"}]


def report(name: str, rows: list[dict]) -> None:
    for r in rows:
        print(
            f"  {name:<22} {r['load']:<20} {r['rps']:9.1f} req/s  p50 {r['p50_ms']:7.2f} ms  p90 {r['p90_ms']:7.2f} ms"
            f"  p99 {r['p99_ms']:8.2f} ms  non-2xx {r['non_2xx']}  errors {r['errors']}"
        )
        print(f"      {r['command']}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steady-seconds", type=int, default=60)
    parser.add_argument("--peak-seconds", type=int, default=30)
    parser.add_argument("--skip-mlflow", action="store_true")
    # The shipper seals, gzips and writes audit batches in the serving process: 3600 takes it out of the run.
    parser.add_argument("--audit-ship-seconds", type=float, default=60)
    args = parser.parse_args()
    if shutil.which("hey") is None:
        raise SystemExit("hey is not installed: apt-get install hey")
    root = Path(tempfile.mkdtemp(prefix="alphapulse-bench-serving-"))
    artifact = train()
    manifest = publish(root, artifact)
    print(f"model: {N_TREES} trees, depth {DEPTH}, {N_FEATURES} features; sha256 {manifest.sha256[:12]}")
    in_process(root, artifact, manifest)

    results: dict[str, list[dict]] = {}
    body_file = root / "alphapulse-body.json"
    body_file.write_text('{"symbol": "BTCUSDT"}')
    # The reference, in the same run: the same stack with nothing of ours on it (bench/bare_api.py).
    port = free_port()
    bare = subprocess.Popen([sys.executable, str(REPO / "bench" / "bare_api.py"), str(port)], cwd=REPO)
    try:
        wait_ready(f"http://127.0.0.1:{port}/ready", bare)
        results["bare endpoint"] = load(
            f"http://127.0.0.1:{port}/predict", body_file, [], args.steady_seconds, args.peak_seconds
        )
    finally:
        bare.send_signal(signal.SIGINT)
        bare.wait(30)

    port = free_port()
    env = dict(
        os.environ,
        ALPHAPULSE_HOME=str(root),
        ALPHAPULSE_API_KEYS=KEY,
        ALPHAPULSE_API_PORT=str(port),
        ALPHAPULSE_API_RATE_LIMIT="100000",
        ALPHAPULSE_API_RATE_BURST="100000",
        ALPHAPULSE_API_AUDIT_SHIP_SECONDS=str(args.audit_ship_seconds),
    )
    api = subprocess.Popen([sys.executable, "-m", "alphapulse_serving"], cwd=REPO, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}/ready", api)
        print(f"  alphapulse_serving body ({body_file.name}): {body_file.read_text()}")
        results["alphapulse_serving"] = load(
            f"http://127.0.0.1:{port}/predict",
            body_file,
            ["-H", f"X-API-Key: {KEY}"],
            args.steady_seconds,
            args.peak_seconds,
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
            metrics = response.read().decode()
        primary = re.search(r'alphapulse_api_predictions_total\{source="primary"\} ([\d.e+]+)', metrics)
        shipped = re.search(r"alphapulse_api_audit_shipped_batches ([\d.e+]+)", metrics)
        print(
            f"  (the API's own count of primary decisions: {float(primary.group(1)):.0f}; audit on; "
            f"{float(shipped.group(1)):.0f} audit batches shipped during the load, every {args.audit_ship_seconds:g} s)"
        )
    finally:
        api.send_signal(signal.SIGINT)
        api.wait(30)
    audit_rows = root / "audit" / "audit.sqlite3"
    print(f"  audit database after the runs: {audit_rows.stat().st_size / 1e6:.1f} MB")

    if not args.skip_mlflow:
        model_dir = root / "mlflow-model"
        description = {
            "version": "bench",
            "sha256": manifest.sha256,
            "feature_names": NAMES,
            "model_format": manifest.model_format,
        }
        save_pyfunc_model(model_dir, artifact, description, "xgboost", dict.fromkeys(NAMES, 0.0))
        port = free_port()
        mlflow_bin = Path(sys.executable).parent / "mlflow"
        server = subprocess.Popen(
            [str(mlflow_bin), "models", "serve", "-m", str(model_dir), "-p", str(port), "--env-manager", "local"],
            cwd=root,
            # mlflow starts `uvicorn` from PATH: the one in this environment.
            env=dict(
                os.environ,
                MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
                PATH=f"{mlflow_bin.parent}{os.pathsep}{os.environ.get('PATH', '')}",
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_ready(f"http://127.0.0.1:{port}/ping", server)
            values = np.random.default_rng(1).standard_normal(N_FEATURES).tolist()
            body_file = root / "mlflow-body.json"
            body_file.write_text(json.dumps({"dataframe_split": {"columns": NAMES, "data": [values]}}))
            print(f"  mlflow body ({body_file.name}): dataframe_split, 1 row x {N_FEATURES} features")
            results["mlflow models serve"] = load(
                f"http://127.0.0.1:{port}/invocations", body_file, [], args.steady_seconds, args.peak_seconds
            )
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)

    print("HTTP, hey on the same machine:")
    for name, rows in results.items():
        report(name, rows)
    ours, reference = results["alphapulse_serving"], results["bare endpoint"]
    print(
        f"ratio to the bare endpoint, same run: peak {ours[1]['rps'] / reference[1]['rps']:.2f}x "
        f"({ours[1]['rps']:,.0f} / {reference[1]['rps']:,.0f} req/s); steady P99 {ours[0]['p99_ms']:.1f} ms "
        f"against {reference[0]['p99_ms']:.1f} ms"
    )
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
