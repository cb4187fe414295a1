"""Audit packets outlive their pod: sealed batches shipped to the archive (a directory, or S3 through moto's server
over HTTP), pruned locally only after the archive confirmed them, and read back through GET /audit/{id}.
An archive that is down costs nothing: packets wait on local disk and ship when it is back, from the same process
or the next one on the same directory."""

import gzip
import hashlib
import json
import sqlite3
import time
from pathlib import Path

import boto3
import orjson
import pytest
import services
from api import api_client
from test_serving import published_store

from alphapulse_serving.audit import AuditLog, decision_time_ms, iso_from_ms, ms_from_iso, new_decision_id
from alphapulse_serving.audit_archive import (
    ArchiveUnavailable,
    BatchName,
    LocalAuditArchive,
    S3AuditArchive,
    batch_body,
    find_packet,
)
from alphapulse_serving.config import ServingConfig
from alphapulse_serving.security import ConfigError

LIFECYCLE = Path(__file__).parent.parent / "infra" / "s3" / "audit-lifecycle.json"
SYMBOLS = ("BTCUSDT", "ETHUSDT")


@pytest.fixture
def store(tmp_path):
    return published_store(tmp_path / "objects")


def decide(client, n: int) -> list[str]:
    ids = []
    for i in range(n):
        response = client.post("/predict", json={"symbol": SYMBOLS[i % 2]})
        assert response.status_code == 200, response.text
        ids.append(response.json()["decision_id"])
    return ids


def local_ids(audit_dir: Path) -> set[str]:
    with sqlite3.connect(audit_dir / "audit.sqlite3") as db:
        return {row[0] for row in db.execute("SELECT decision_id FROM decisions")}


def archived_packets(archive) -> list[dict]:
    packets = []
    for key in sorted(archive.keys("audit/")):
        packets += [orjson.loads(line) for line in gzip.decompress(archive.get(key)).splitlines()]
    return packets


# -- ids and names ---------------------------------------------------------------------------------------------------


def test_decision_ids_are_uuid7_carrying_their_time_and_sorting_by_it():
    ids = [new_decision_id(now_ms=1_763_800_000_000 + i) for i in range(100)]
    assert ids == sorted(ids) and len(set(ids)) == 100
    assert all(len(i) == 32 and set(i) <= set("0123456789abcdef") for i in ids)
    assert [decision_time_ms(i) for i in ids] == [1_763_800_000_000 + i for i in range(100)]
    assert decision_time_ms("0" * 32) is None, "a uuid4-era id has no time to look it up by"
    assert decision_time_ms("f" * 12 + "7" + "0" * 3 + "8" + "0" * 15) is None, "past what a datetime holds"
    for ms in (0, 999, 1_763_800_000_123, 1_763_855_999_999):
        assert ms_from_iso(iso_from_ms(ms)) == ms


def test_batch_names_round_trip_with_dashes_in_the_pod_name():
    name = BatchName("2026-11-22", "alphapulse-api-5d9f7-x2kq-3fa9c1d2", 42, 1_763_800_000_000, 1_763_800_059_999)
    assert name.key == (
        "audit/2026-11-22/alphapulse-api-5d9f7-x2kq-3fa9c1d2-00000042-1763800000000-1763800059999.jsonl.gz"
    )
    assert BatchName.parse(name.key) == name
    assert BatchName.parse("audit/2026-11-22/.x.jsonl.gz.123.tmp") is None
    assert BatchName.parse("audit/2026-11-22/notes.txt") is None
    assert name.covers(1_763_800_000_000) and not name.covers(1_763_800_060_000)


def test_find_packet_takes_one_line_out_of_a_batch():
    packets = [{"decision_id": f"{i:032x}", "n": i} for i in range(1000)]
    body = b"".join(orjson.dumps(p) + b"\n" for p in packets)
    assert find_packet(body, f"{537:032x}") == packets[537]
    assert find_packet(body, f"{999:032x}") == packets[999]
    assert find_packet(body, f"{5000:032x}") is None


# -- one contract, two archives --------------------------------------------------------------------------------------


@pytest.fixture(params=["directory", "s3"])
def archive(request, tmp_path):
    if request.param == "directory":
        return LocalAuditArchive(tmp_path / "archive")
    request.getfixturevalue("monkeypatch").setenv("AWS_ENDPOINT_URL_S3", request.getfixturevalue("s3_endpoint"))
    return S3AuditArchive(f"s3://{request.getfixturevalue('s3_bucket')}/prod")


def test_both_archives_keep_the_same_contract(archive):
    ids = [new_decision_id(1_763_800_000_000 + i) for i in range(3)]
    body = batch_body([packet(i) for i in ids])
    name = BatchName("2025-11-22", "pod-1-abcd0123", 1, decision_time_ms(ids[0]), decision_time_ms(ids[-1]))
    assert archive.put(name.key, body, {"packets": "3", "sha256": hashlib.sha256(body).hexdigest()})
    archive.put(name.key, body, {"packets": "3", "sha256": hashlib.sha256(body).hexdigest()})  # a retry: same object
    assert archive.get(name.key) == body
    assert archive.keys("audit/") == archive.keys("audit/2025-11-22/") == [name.key]
    assert archive.keys("audit/2025-11-21/") == []
    with pytest.raises(FileNotFoundError):
        archive.get("audit/2025-11-22/absent.jsonl.gz")
    assert archive.find(ids[1], decision_time_ms(ids[1])) == packet(ids[1])
    assert archive.find(new_decision_id(decision_time_ms(ids[1])), decision_time_ms(ids[1])) is None
    assert archive.uri(name.key).endswith(name.key)


def test_an_unreachable_s3_archive_says_so(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{services.free_port()}")
    archive = S3AuditArchive("s3://alphapulse/prod")
    for attempt in (
        lambda: archive.put("audit/2025-11-22/x.jsonl.gz", b"x", {"sha256": "x"}),
        lambda: archive.get("audit/2025-11-22/x.jsonl.gz"),
        lambda: archive.keys("audit/"),
    ):
        with pytest.raises(ArchiveUnavailable, match="s3://alphapulse/prod/audit"):
            attempt()


# -- shipping to a directory (the laptop) -----------------------------------------------------------------------------


def test_packets_ship_in_sealed_batches_and_are_read_back_from_the_archive_after_pruning(store, tmp_path):
    audit_dir = tmp_path / "audit"
    with api_client(store.root, audit_dir, audit_ship_seconds=3600, audit_local_retention_hours=0) as client:
        audit = client.app.state.services.audit
        ids = decide(client, 40)
        local = {i: client.get(f"/audit/{i}").json() for i in ids}
        time.sleep(0.2)  # the writer commits every ~20 ms
        assert audit.unshipped == 40
        assert audit.ship() == 1 and audit.unshipped == 0
        assert local_ids(audit_dir) == set(), "retention 0: pruned as soon as the archive confirmed the batch"
        for i in ids:
            assert client.get(f"/audit/{i}").json() == local[i], "the archived packet is the packet"
        health = client.get("/health").json()
        assert health["audit_unshipped"] == 0 and health["audit_archive"] == f"{store.root}/audit"
        assert health["status"] == "ok", health["reasons"]

    archive = LocalAuditArchive(Path(store.root))
    [key] = archive.keys("audit/")
    name = BatchName.parse(key)
    assert name.writer == audit.writer and name.seq == 1
    assert name.first_ms == decision_time_ms(ids[0]) and name.last_ms == decision_time_ms(ids[-1])
    packets = archived_packets(archive)
    assert [p["decision_id"] for p in packets] == ids, "one line per decision, in order, no duplicates"
    assert all(p["features"]["values"] for p in packets), "self-contained: feature values are inlined"
    with sqlite3.connect(audit_dir / "audit.sqlite3") as db:
        [(shipped, count, digest)] = db.execute("SELECT shipped_at, packets, sha256 FROM batches").fetchall()
        assert shipped and count == 40
    assert hashlib.sha256(archive.get(key)).hexdigest() == digest


def test_the_shipper_runs_by_itself_and_a_retention_keeps_recent_packets_local(store, tmp_path):
    audit_dir = tmp_path / "audit"
    with api_client(store.root, audit_dir, audit_ship_seconds=0.05, audit_local_retention_hours=1) as client:
        audit = client.app.state.services.audit
        ids = decide(client, 10)
        deadline = time.monotonic() + 30
        while audit.shipped_packets < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert audit.shipped_packets == 10 and audit.unshipped == 0
        assert local_ids(audit_dir) == set(ids), "shipped, but within the retention: still local"
        assert audit.pruned_packets == 0


def test_another_pod_reads_a_decision_it_did_not_make(store, tmp_path):
    with api_client(store.root, tmp_path / "pod-a", audit_ship_seconds=3600) as pod_a:
        ids = decide(pod_a, 6)
        expected = pod_a.get(f"/audit/{ids[3]}").json()
    # pod-a shipped on shutdown; pod-b has its own (empty) database and the same archive.
    with api_client(store.root, tmp_path / "pod-b", audit_ship_seconds=3600) as pod_b:
        assert pod_b.app.state.services.audit.writer != pod_a.app.state.services.audit.writer
        assert pod_b.get(f"/audit/{ids[3]}").json() == expected
        missing = new_decision_id()
        response = pod_b.get(f"/audit/{missing}")
        assert response.status_code == 404 and "audit" in response.json()["detail"]
        assert pod_b.get(f"/audit/{'f' * 12}7000{'8' + '0' * 15}").status_code == 404, "a time no datetime holds"


def test_an_upload_that_succeeded_but_was_not_confirmed_is_rewritten_not_duplicated(store, tmp_path):
    class LostReceipt(LocalAuditArchive):
        """Stores the batch, then fails as a timed-out PUT would: the caller cannot know it landed."""

        failures = 1

        def put(self, key, body, metadata):
            super().put(key, body, metadata)
            if self.failures:
                self.failures -= 1
                raise ArchiveUnavailable("read timeout after the body was sent")
            return metadata["sha256"]

    archive = LostReceipt(tmp_path / "archive")
    audit = AuditLog(tmp_path / "audit", archive=archive, ship_seconds=3600, local_retention_seconds=0)
    try:
        for _ in range(5):
            audit.record(packet(new_decision_id()))
        audit.stop()  # commits, then its final ship meets the lost receipt
        assert audit.last_ship_error and "read timeout" in audit.last_ship_error
        assert audit.unshipped == 5 and len(local_ids(tmp_path / "audit")) == 5
        first = archive.get(archive.keys("audit/")[0])
        assert audit.ship() == 1 and audit.unshipped == 0 and audit.last_ship_error is None
        [key] = archive.keys("audit/")
        assert archive.get(key) == first, "the same sealed batch, byte for byte"
        assert len(archived_packets(archive)) == 5
    finally:
        audit.close()


def packet(decision_id: str, features: dict | None = None) -> dict:
    return {
        "decision_id": decision_id,
        "decided_at": iso_from_ms(decision_time_ms(decision_id)),
        "key_id": "k1",
        "symbol": "BTCUSDT",
        "source": "baseline",
        "features": features or {"values": {"ret_24h": 0.01}},
    }


def test_batches_are_one_utc_day_each(tmp_path):
    archive = LocalAuditArchive(tmp_path / "archive")
    audit = AuditLog(tmp_path / "audit", archive=archive, ship_seconds=3600, batch_max=3)
    midnight = 1_763_856_000_000  # 2025-11-23T00:00:00Z
    ids = [new_decision_id(midnight + offset) for offset in (-2000, -1000, 0, 1000, 2000, 3000, 4000)]
    try:
        for i in ids:
            audit.record(packet(i))
        audit.stop()
        names = sorted(BatchName.parse(k) for k in archive.keys("audit/"))
        assert [(n.day, n.seq) for n in names] == [("2025-11-22", 1), ("2025-11-23", 2), ("2025-11-23", 3)]
        assert [n.covers(decision_time_ms(ids[2])) for n in names] == [False, True, False]
        assert all(audit.get_archived(i)["decision_id"] == i for i in ids)
    finally:
        audit.close()


def test_a_database_from_before_shipping_is_migrated_and_shipped(tmp_path):
    audit_dir = tmp_path / "audit"
    audit_dir.mkdir()
    old = new_decision_id()
    with sqlite3.connect(audit_dir / "audit.sqlite3") as db:
        db.executescript(
            "CREATE TABLE decisions (decision_id TEXT PRIMARY KEY, decided_at TEXT NOT NULL, key_id TEXT NOT NULL,"
            " symbol TEXT NOT NULL, source TEXT NOT NULL, packet BLOB NOT NULL);"
            "CREATE TABLE snapshots (sha256 TEXT PRIMARY KEY, body BLOB NOT NULL);"
        )
        body = {"rows": {"BTCUSDT": {"values": {"ret_24h": 0.5}}}}
        db.execute("INSERT INTO snapshots VALUES ('abc', ?)", (json.dumps(body).encode(),))
        row = packet(old, {"snapshot_sha256": "abc"})
        db.execute(
            "INSERT INTO decisions VALUES (?, ?, 'k1', 'BTCUSDT', 'baseline', ?)",
            (old, row["decided_at"], orjson.dumps(row)),
        )
    archive = LocalAuditArchive(tmp_path / "archive")
    audit = AuditLog(audit_dir, archive=archive, ship_seconds=3600, local_retention_seconds=0)
    try:
        assert audit.unshipped == 1 and audit.ship() == 1
        assert audit.get(old) is None
        assert audit.get_archived(old)["features"]["values"] == {"ret_24h": 0.5}
        with sqlite3.connect(audit_dir / "audit.sqlite3") as db:
            assert db.execute("SELECT count(*) FROM snapshots").fetchone() == (0,), "no packet refers to it now"
    finally:
        audit.close()


def test_pruning_keeps_the_snapshot_in_use_and_stores_it_again_if_it_returns(tmp_path):
    archive = LocalAuditArchive(tmp_path / "archive")
    audit = AuditLog(tmp_path / "audit", archive=archive, ship_seconds=3600, local_retention_seconds=0)
    bodies = {d: orjson.dumps({"rows": {"BTCUSDT": {"values": {"v": d}}}}) for d in ("s1", "s2", "s3")}
    try:
        ids = []
        for digest in ("s1", "s2", "s3"):
            audit.remember_snapshot(digest, bodies[digest])
            ids.append(new_decision_id())
            audit.record(packet(ids[-1], {"snapshot_sha256": digest}))
            time.sleep(0.1)
        time.sleep(0.2)
        assert audit.ship() == 1
        with sqlite3.connect(tmp_path / "audit" / "audit.sqlite3") as db:
            kept = {row[0] for row in db.execute("SELECT sha256 FROM snapshots")}
        assert kept == {"s2", "s3"}, "the newest two stay: a decision can be in flight with the one just replaced"
        # s1's bytes are published again: they must be stored again for the packets that will refer to them.
        audit.remember_snapshot("s1", bodies["s1"])
        again = new_decision_id()
        audit.record(packet(again, {"snapshot_sha256": "s1"}))
        time.sleep(0.2)
        assert audit.get(again)["features"]["values"] == {"v": "s1"}
        assert [audit.get_archived(i)["features"]["values"]["v"] for i in ids] == ["s1", "s2", "s3"]
    finally:
        audit.close()


# -- shipping to S3 ---------------------------------------------------------------------------------------------------


def test_batches_land_in_s3_with_their_checksum_and_are_read_back(store, tmp_path, s3_bucket, s3_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    location = f"s3://{s3_bucket}/prod"
    options = dict(audit_archive=location, audit_ship_seconds=3600, audit_local_retention_hours=0)
    with api_client(store.root, tmp_path / "audit", **options) as client:
        ids = decide(client, 30)
        packets = {i: client.get(f"/audit/{i}").json() for i in ids}
        time.sleep(0.2)
        assert client.app.state.services.audit.ship() == 1
        assert local_ids(tmp_path / "audit") == set()
        assert {i: client.get(f"/audit/{i}").json() for i in ids} == packets
        assert client.get("/health").json()["audit_archive"] == f"{location}/audit"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    [item] = s3.list_objects_v2(Bucket=s3_bucket, Prefix="prod/audit/")["Contents"]
    assert BatchName.parse(item["Key"].removeprefix("prod/")) is not None
    head = s3.head_object(Bucket=s3_bucket, Key=item["Key"])
    body = s3.get_object(Bucket=s3_bucket, Key=item["Key"])["Body"].read()
    assert head["Metadata"]["sha256"] == hashlib.sha256(body).hexdigest() and head["Metadata"]["packets"] == "30"
    assert [orjson.loads(line)["decision_id"] for line in gzip.decompress(body).splitlines()] == ids


def test_with_s3_down_packets_stay_local_and_ship_when_it_is_back(store, tmp_path, s3_bucket, s3_endpoint, monkeypatch):
    audit_dir = tmp_path / "audit"
    location = f"s3://{s3_bucket}/prod"
    options = dict(
        audit_archive=location, audit_ship_seconds=3600, audit_local_retention_hours=0, audit_max_unshipped=30
    )
    with services.TcpProxy(s3_endpoint) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
        port = int(proxy.url.rsplit(":", 1)[1])
        with api_client(store.root, audit_dir, **options) as client:
            audit = client.app.state.services.audit
            shipped = decide(client, 10)
            time.sleep(0.2)
            assert audit.ship() == 1
            proxy.close()  # S3 goes away
            kept = decide(client, 25)
            assert all(client.get(f"/audit/{i}").status_code == 200 for i in kept), "still served from local"
            time.sleep(0.2)
            assert audit.ship() == 0 and audit.ship_errors == 1
            health = client.get("/health").json()
            assert health["status"] == "degraded" and health["audit_unshipped"] == 25
            assert any("audit shipping failing (25 packets kept locally" in r for r in health["reasons"])
            kept += decide(client, 5)  # up to ALPHAPULSE_API_AUDIT_MAX_UNSHIPPED, then refusals, not eviction
            refused = client.post("/predict", json={"symbol": "BTCUSDT"})
            assert refused.status_code == 503 and "30 audit packets are waiting to be shipped" in refused.text
            unreachable = client.get(f"/audit/{shipped[0]}")
            assert unreachable.status_code == 503 and "audit archive" in unreachable.json()["detail"]
            assert client.get("/ready").status_code == 200, "deciding goes on: every packet is on local disk"
        # The process ended with S3 still down: its last attempt failed and pruned nothing.
        assert local_ids(audit_dir) == set(kept)

    # The next process on the same directory, with S3 back at the same endpoint, ships what the last one could not.
    with services.TcpProxy(s3_endpoint, port=port), api_client(store.root, audit_dir, **options) as client:
        audit = client.app.state.services.audit
        assert audit.unshipped == 30
        assert audit.ship() == 2, "the batch sealed during the outage, then one for the packets after it"
        assert audit.unshipped == 0
        assert local_ids(audit_dir) == set()
        assert all(client.get(f"/audit/{i}").status_code == 200 for i in shipped + kept)
        packets = archived_packets(S3AuditArchive(location))
        assert sorted(p["decision_id"] for p in packets) == sorted(shipped + kept), "every decision, exactly once"


def test_the_bucket_lifecycle_applies_to_the_archive_prefix(s3_bucket, s3_endpoint):
    rules = json.loads(LIFECYCLE.read_text())
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.put_bucket_lifecycle_configuration(Bucket=s3_bucket, LifecycleConfiguration=rules)
    [rule] = s3.get_bucket_lifecycle_configuration(Bucket=s3_bucket)["Rules"]
    assert rule["Filter"]["Prefix"] == "audit/" and rule["Status"] == "Enabled"
    # Only classes GetObject reads without a restore: GET /audit/{id} keeps working for the whole retention.
    assert {t["StorageClass"] for t in rule["Transitions"]} <= {"STANDARD_IA", "GLACIER_IR"}
    assert rule["Expiration"]["Days"] >= 5 * 365


def test_archive_configuration_is_checked():
    env = {"ALPHAPULSE_API_KEYS": "ap_test_key_0123456789abcdef"}
    config = ServingConfig.from_env(env | {"ALPHAPULSE_OBJECT_STORE_URL": "s3://alphapulse/prod"})
    assert config.audit_archive == "s3://alphapulse/prod", "by default the object store"
    assert config.audit_ship_seconds == 60 and config.audit_local_retention_hours == 1
    config = ServingConfig.from_env(
        env
        | {
            "ALPHAPULSE_API_AUDIT_ARCHIVE_URL": "s3://alphapulse-audit/api",
            "ALPHAPULSE_API_AUDIT_SHIP_SECONDS": "15",
            "ALPHAPULSE_API_AUDIT_LOCAL_RETENTION_HOURS": "0",
            "ALPHAPULSE_API_AUDIT_MAX_UNSHIPPED": "5000",
        }
    )
    assert config.audit_archive == "s3://alphapulse-audit/api"
    assert (config.audit_ship_seconds, config.audit_local_retention_hours, config.audit_max_unshipped) == (15, 0, 5000)
    with pytest.raises(ConfigError, match="ALPHAPULSE_API_AUDIT_ARCHIVE_URL"):
        ServingConfig.from_env(env | {"ALPHAPULSE_API_AUDIT_ARCHIVE_URL": "gs://bucket/audit"})
    with pytest.raises(ConfigError, match="ALPHAPULSE_API_AUDIT_SHIP_SECONDS"):
        ServingConfig.from_env(env | {"ALPHAPULSE_API_AUDIT_SHIP_SECONDS": "soon"})
