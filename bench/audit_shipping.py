"""How fast the audit shipper drains, and how long an archived decision takes to read back.

    uv run python bench/audit_shipping.py [--packets 100000] [--skip-s3]

Packets have the API's shape: features by reference to an online snapshot of 4 symbols x 50 features (written
into every archived line, as the shipper does), the served model, output, latency. They are committed to the local
database first; then one `ship()` pass seals, uploads and prunes them all (retention 0), timed, against a local
directory and against moto's S3 server over HTTP on this machine. Drain rate must stay well above the decision
rate (the serving bench peaks near 2,850 decisions/s on this machine), or an outage's backlog never clears.
Lookups: `get_archived` for ids spread over the batches, first read (list + GET + gunzip) and cached.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alphapulse_serving.audit import AuditLog, decision_time_ms, iso_from_ms, new_decision_id  # noqa: E402
from alphapulse_serving.audit_archive import LocalAuditArchive, S3AuditArchive  # noqa: E402

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"]
FEATURES = [f"f{i:02d}" for i in range(50)]


def snapshot() -> tuple[str, bytes]:
    rows = {
        symbol: {
            "ts": "2026-11-22T10:00:00+00:00",
            "values": {f: (i + 1) * 0.0137 * (j + 1) for j, f in enumerate(FEATURES)},
        }
        for i, symbol in enumerate(SYMBOLS)
    }
    return "c0ffee" * 10 + "beef", orjson.dumps({"feature_version": "bench", "rows": rows})


def packet(i: int, start_ms: int, digest: str) -> dict:
    decision_id = new_decision_id(start_ms + i // 3)  # ~3,000 decisions a second
    return {
        "decision_id": decision_id,
        "decided_at": iso_from_ms(decision_time_ms(decision_id)),
        "key_id": "key-3f2a9c1b0d",
        "endpoint": "predict",
        "symbol": SYMBOLS[i % 4],
        "source": "primary",
        "request": {"symbol": SYMBOLS[i % 4].lower(), "budget_ms": None, "features_given": False},
        "features": {
            "source": "online_snapshot",
            "timestamp": "2026-11-22T10:00:00+00:00",
            "feature_version": "bench",
            "snapshot_sha256": digest,
        },
        "model": {
            "version": "20261122T0900-xgboost-7f3a",
            "sha256": "ab" * 32,
            "model_uri": "s3://alphapulse-prod/v1/models/20261122T0900-xgboost-7f3a/model.ubj",
            "model_format": "xgboost-ubj",
            "feature_version": "bench",
            "signal_band": 0.02,
        },
        "output": {
            "probability": 0.5 + (i % 97) / 1000,
            "signal": i % 3 - 1,
            "model_version": "v",
            "model_sha256": "a",
        },
        "fallback_reasons": [],
        "latency_ms": 0.21 + (i % 13) / 100,
    }


def run(label: str, archive, packets: int, directory: Path) -> None:
    audit = AuditLog(directory, archive=archive, ship_seconds=3600, local_retention_seconds=0)
    digest, body = snapshot()
    audit.remember_snapshot(digest, body)
    start_ms = time.time_ns() // 1_000_000
    ids = []
    for i in range(packets):
        p = packet(i, start_ms, digest)
        ids.append(p["decision_id"])
        audit.record(p)
        if audit.pending > 50_000:
            time.sleep(0.05)
    while audit.pending:
        time.sleep(0.05)
    started = time.perf_counter()
    batches = audit.ship()
    seconds = time.perf_counter() - started
    assert audit.unshipped == 0 and audit.last_ship_error is None, audit.last_ship_error
    archived = sum(len(archive.get(k)) for k in archive.keys("audit/"))
    print(
        f"{label}: {packets:,} packets in {batches} batches shipped and pruned in {seconds:.2f} s = "
        f"{packets / seconds:,.0f} packets/s; archive {archived / packets:.0f} bytes/packet (gzip'd, values inlined)"
    )
    probes = ids[:: max(1, packets // 20)]
    first = []
    for decision_id in probes:
        archive._batch_lines.cache_clear()
        t = time.perf_counter()
        assert audit.get_archived(decision_id)["decision_id"] == decision_id
        first.append((time.perf_counter() - t) * 1e3)
    cached = []
    for decision_id in probes:
        t = time.perf_counter()
        audit.get_archived(decision_id)
        cached.append((time.perf_counter() - t) * 1e3)
    print(
        f"{label}: lookup of an archived decision: first read median {statistics.median(first):.1f} ms "
        f"(max {max(first):.1f}), batch cached median {statistics.median(cached):.2f} ms"
    )
    audit.close()


def moto(directory: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tool = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    with open(directory / "moto.log", "wb") as log:
        server = subprocess.Popen([tool, "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url, timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    return server, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=100_000)
    parser.add_argument("--skip-s3", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    try:
        run("local directory", LocalAuditArchive(work / "archive"), args.packets, work / "local")
        if not args.skip_s3:
            server, url = moto(work)
            try:
                os.environ.update(
                    AWS_ENDPOINT_URL_S3=url,
                    AWS_ACCESS_KEY_ID="bench",
                    AWS_SECRET_ACCESS_KEY="bench",
                    AWS_DEFAULT_REGION="us-east-1",
                )
                import boto3

                boto3.client("s3", endpoint_url=url).create_bucket(Bucket="bench")
                run("moto S3 over HTTP", S3AuditArchive("s3://bench/v1"), args.packets, work / "s3")
            finally:
                server.terminate()
                server.wait(10)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
