"""The audit trail: one packet per decision, written by a background thread so the request path never waits for
storage, kept in SQLite (WAL, fsync on every commit), shipped to the archive in sealed batches and retrievable by
decision id from either.

Features from the online snapshot are stored by reference: the snapshot's bytes once, under their sha256, and each
packet names the digest and the symbol. `get()` puts the values back in, so a packet read back holds everything
needed to re-derive its decision: the exact feature values, the model's version and sha256, and the output.
A packet is readable from the moment its response is sent: until it is committed it is served from memory.

Local SQLite is the first copy, the archive (`audit_archive`) the lasting one. A second thread seals committed
packets into numbered batches, uploads each, and only after the archive confirms one does that batch's packets
become eligible for pruning (after `local_retention_seconds`). While the archive is down nothing is pruned: the
packets wait on local disk, and the next pass ships them, as does the next process on the same directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import sqlite3
import threading
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from alphapulse_contract.predictors import SourceUnreachable
from alphapulse_serving.audit_archive import PREFIX as ARCHIVE_PREFIX
from alphapulse_serving.audit_archive import AuditArchive, BatchName, batch_body, day_of

if TYPE_CHECKING:
    from alphapulse_contract.baseline import RulesBaseline
    from alphapulse_serving.chain import Decision
    from alphapulse_serving.schemas import PredictRequest

SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT PRIMARY KEY,
    decided_at TEXT NOT NULL,
    key_id TEXT NOT NULL,
    symbol TEXT NOT NULL,
    source TEXT NOT NULL,
    packet BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (sha256 TEXT PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    packets INTEGER NOT NULL,
    sealed_at TEXT NOT NULL,
    shipped_at TEXT,
    bytes INTEGER,
    sha256 TEXT,
    receipt TEXT
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# Columns added after the first release: a database written by an older API gains them on open.
ADDED_COLUMNS = {"batch": "INTEGER", "snapshot": "TEXT"}
INDEXES = """
CREATE INDEX IF NOT EXISTS decisions_by_batch ON decisions(batch);
CREATE INDEX IF NOT EXISTS decisions_by_snapshot ON decisions(snapshot);
"""


LAST_MS = int(datetime(9999, 12, 31, tzinfo=UTC).timestamp() * 1000)


def new_decision_id(now_ms: int | None = None) -> str:
    """A UUIDv7 as 32 hex digits: the first 48 bits are the Unix time in ms, the rest random (os.urandom). The time
    is what lets an id be found in the archive after its pod is gone; the order makes ids sort by time."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | (((rand >> 62) & 0xFFF) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return f"{value:032x}"


def decision_time_ms(decision_id: str) -> int | None:
    """When a UUIDv7 decision id was made (ms since the epoch); None for ids from before ids carried a time."""
    if len(decision_id) != 32 or decision_id[12] != "7" or decision_id[16] not in "89ab":
        return None
    ms = int(decision_id[:12], 16)
    # 48 bits of ms reach the year 10889; a datetime stops at 9999. Such an id was never issued: nothing to find.
    return ms if ms < LAST_MS else None


def iso_from_ms(ms: int) -> str:
    moment = datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=(ms % 1000) * 1000)
    return moment.isoformat(timespec="milliseconds")


def ms_from_iso(text: str) -> int:
    moment = datetime.fromisoformat(text)
    return int(moment.timestamp()) * 1000 + moment.microsecond // 1000


def _now(seconds: float | None = None) -> str:
    """A UTC time as stored in `batches`: fixed width, so that comparing the strings compares the times."""
    moment = datetime.now(UTC) if seconds is None else datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="microseconds")


def writer_host() -> str:
    """This host's name as an archive key part (in Kubernetes, the pod's name)."""
    name = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().lower()).strip("-")
    return name[:48] or "host"


def audit_packet(
    decision: Decision,
    item: PredictRequest,
    identity: str,
    request_id: str,
    endpoint: str,
    latency_ms: float,
    baseline: RulesBaseline,
) -> dict:
    """The packet recorded for one decision (`schemas.AuditPacket` documents it): what was asked, the exact features
    (snapshot ones by reference, put back in on read), the model in service, the output and why sources fell back."""
    served = decision.served
    features = {
        "source": decision.feature_source,
        "timestamp": decision.feature_timestamp,
        "feature_version": decision.feature_version,
    }
    if decision.snapshot_sha256:
        features["snapshot_sha256"] = decision.snapshot_sha256
        if decision.earlier_timestamps:
            features["earlier_timestamps"] = decision.earlier_timestamps
    else:
        features["values"] = decision.values
        if item.earlier_features:
            features["earlier_values"] = item.earlier_features
    record = {
        "decision_id": decision.decision_id,
        "decided_at": iso_from_ms(decision_time_ms(decision.decision_id)),  # the id's own clock reading
        "key_id": identity,
        "request_id": request_id,
        "endpoint": endpoint,
        "symbol": decision.symbol,
        "source": decision.source,
        "request": {
            "symbol": item.symbol,
            "budget_ms": item.budget_ms,
            "features_given": item.features is not None,
            "earlier_features_given": len(item.earlier_features or ()),
        },
        "features": features,
        "model": None if served is None else _served_model(served),
        "output": {
            "probability": decision.probability,
            "smoothed_probability": decision.smoothed_probability,
            "smoothed_hours": decision.smoothed_hours,
            "signal": decision.signal,
            "model_version": decision.model_version,
            "model_sha256": decision.model_sha256,
        },
        "fallback_reasons": decision.fallback_reasons,
        "latency_ms": latency_ms,
    }
    if decision.cached_from:
        record["cached_from"] = decision.cached_from
    if decision.baseline_terms is not None:
        record["baseline"] = baseline.describe() | {"terms": decision.baseline_terms}
    return record


def _served_model(served) -> dict:
    return {
        "version": served.version,
        "sha256": served.sha256,
        "model_uri": served.model_uri,
        "model_format": served.model_format,
        "feature_version": served.feature_version,
        "signal_band": served.signal_band,
        "smoothing_hours": served.smoothing_hours,
    }


class AuditBacklogFull(RuntimeError):
    """Storage is not keeping up (or failing): refusing new decisions beats deciding without a record."""


class AuditLog:
    def __init__(
        self,
        directory: Path,
        max_pending: int = 100_000,
        flush_seconds: float = 0.02,
        archive: AuditArchive | None = None,
        ship_seconds: float = 60.0,
        local_retention_seconds: float = 3600.0,
        batch_max: int = 5000,
        max_unshipped: int = 1_000_000,
    ):
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "audit.sqlite3"
        self.max_pending = max_pending
        self.flush_seconds = flush_seconds
        self.archive = archive
        self.ship_seconds = ship_seconds
        self.local_retention_seconds = local_retention_seconds
        self.batch_max = batch_max
        self.max_unshipped = max_unshipped
        self.written = 0
        self.write_errors = 0
        self.last_error: str | None = None
        self.shipped_batches = 0
        self.shipped_packets = 0
        self.pruned_packets = 0
        self.ship_errors = 0
        self.last_ship_error: str | None = None
        self._pending: dict[str, dict] = {}
        self._queue: deque[dict] = deque()
        self._snapshots: dict[str, bytes] = {}  # digest -> body, not yet committed
        self._snapshot_lock = threading.Lock()
        self._recent_snapshots: deque[str] = deque(maxlen=2)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._read_lock = threading.Lock()
        self._ship_lock = threading.Lock()
        self._writer_db = self._connect()
        self._migrate(self._writer_db)
        self._reader_db = self._connect()
        self._shipper_db = self._connect()
        self._known_snapshots = {row[0] for row in self._writer_db.execute("SELECT sha256 FROM snapshots")}
        self.writer = f"{writer_host()}-{self._database_id()}"
        self._unshipped_at_open = self._count_unshipped()
        self._thread: threading.Thread | None = None
        self._shipper: threading.Thread | None = None
        self.start()

    def start(self) -> None:
        """Start the writer and the shipper (again, after `stop()`: an app's lifespan can run more than once in
        tests)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()
        if self.archive is not None:
            self._shipper = threading.Thread(target=self._ship_forever, name="audit-shipper", daemon=True)
            self._shipper.start()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=10000")  # the writer and the shipper take turns at the write lock
        return db

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        db.executescript(SCHEMA)
        present = {row[1] for row in db.execute("PRAGMA table_info(decisions)")}
        for column, kind in ADDED_COLUMNS.items():
            if column not in present:
                db.execute(f"ALTER TABLE decisions ADD COLUMN {column} {kind}")
        if "snapshot" not in present:
            db.execute(
                "UPDATE decisions SET snapshot = json_extract(CAST(packet AS TEXT), '$.features.snapshot_sha256')"
            )
        db.executescript(INDEXES)

    def _database_id(self) -> str:
        db = self._writer_db
        db.execute("INSERT OR IGNORE INTO meta VALUES ('database_id', ?)", (os.urandom(4).hex(),))
        return db.execute("SELECT value FROM meta WHERE name = 'database_id'").fetchone()[0]

    def _count_unshipped(self) -> int:
        return self._writer_db.execute(
            "SELECT count(*) FROM decisions WHERE batch IS NULL "
            "OR batch IN (SELECT seq FROM batches WHERE shipped_at IS NULL)"
        ).fetchone()[0]

    @property
    def pending(self) -> int:
        """Packets accepted but not yet committed to the local database."""
        return len(self._pending)

    @property
    def unshipped(self) -> int:
        """Packets committed locally whose batch the archive has not yet confirmed."""
        return self._unshipped_at_open + self.written - self.shipped_packets

    @property
    def archive_uri(self) -> str | None:
        return self.archive.uri(ARCHIVE_PREFIX) if self.archive is not None else None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def remember_snapshot(self, digest: str, body: bytes) -> None:
        """Make a snapshot's bytes part of the trail (once per digest)."""
        with self._snapshot_lock:
            if digest not in self._recent_snapshots:
                self._recent_snapshots.append(digest)
            if digest not in self._known_snapshots:
                self._known_snapshots.add(digest)
                self._snapshots[digest] = body

    def record(self, packet: dict) -> None:
        """Queue a packet (it must carry decision_id, decided_at, key_id, symbol, source). Never blocks."""
        if len(self._pending) >= self.max_pending:
            raise AuditBacklogFull(
                f"{len(self._pending)} audit packets are waiting to be written"
                + (f" (last write error: {self.last_error})" if self.last_error else "")
            )
        # An archive outage fills the local disk; in Kubernetes a full emptyDir gets the pod evicted, packets and all.
        # Refusing first keeps the promise that every decision has a record.
        waiting = self.unshipped + len(self._pending)
        if self.archive is not None and waiting >= self.max_unshipped:
            raise AuditBacklogFull(
                f"{waiting} audit packets are waiting to be shipped to {self.archive_uri}"
                + (f" (last shipping error: {self.last_ship_error})" if self.last_ship_error else "")
            )
        self._pending[packet["decision_id"]] = packet
        self._queue.append(packet)
        if len(self._queue) == 1:
            self._wake.set()

    def get(self, decision_id: str) -> dict | None:
        """A packet from memory or the local database (never the archive: see `get_archived`)."""
        packet = self._pending.get(decision_id)
        if packet is None:
            with self._read_lock:
                row = self._reader_db.execute(
                    "SELECT packet FROM decisions WHERE decision_id = ?", (decision_id,)
                ).fetchone()
            if row is None:
                return None
            packet = orjson.loads(row[0])
        else:
            packet = orjson.loads(orjson.dumps(packet))  # a copy, so that inlining does not touch the queue
        return self._inline(packet, self._reader_db, self._read_lock, {})

    def get_archived(self, decision_id: str) -> dict | None:
        """A packet from the archive (network I/O: call it off the event loop). None when there is no archive,
        the id carries no time, or no batch of its day holds it; ArchiveUnavailable when the archive is down."""
        decided_ms = decision_time_ms(decision_id)
        if self.archive is None or decided_ms is None:
            return None
        return self.archive.find(decision_id, decided_ms)

    def _inline(self, packet: dict, db: sqlite3.Connection, lock, parsed: dict) -> dict:
        """The packet with its snapshot's feature values put back in, read through `db` while holding `lock`
        (`parsed` caches parsed snapshots across the packets of one batch)."""
        reference = packet["features"].get("snapshot_sha256")
        if not reference or "values" in packet["features"]:
            return packet
        if reference not in parsed:
            body = self._snapshots.get(reference)
            if body is None:
                with lock:
                    row = db.execute("SELECT body FROM snapshots WHERE sha256 = ?", (reference,)).fetchone()
                body = row[0] if row else None
            parsed[reference] = orjson.loads(body)["rows"] if body is not None else None
        rows = parsed[reference]
        if rows is not None:
            row = rows.get(packet["symbol"], {})
            packet["features"]["values"] = row.get("values")
            used = set(packet["features"].get("earlier_timestamps", ()))
            if used:  # the earlier hours the trading rule averaged, newest first
                packet["features"]["earlier_values"] = [e["values"] for e in row.get("earlier", ()) if e["ts"] in used]
        return packet

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            time.sleep(self.flush_seconds)  # let a batch gather: one commit (one fsync) per batch
            self._flush()
        self._flush()

    def _flush(self) -> None:
        batch = []
        while self._queue and len(batch) < 10_000:
            batch.append(self._queue.popleft())
        snapshots = list(self._snapshots.items())
        if not batch and not snapshots:
            return
        try:
            rows = [
                (
                    p["decision_id"],
                    p["decided_at"],
                    p["key_id"],
                    p["symbol"],
                    p["source"],
                    orjson.dumps(p),
                    p["features"].get("snapshot_sha256"),
                )
                for p in batch
            ]
            with self._writer_db:
                self._writer_db.execute("BEGIN")
                self._writer_db.executemany("INSERT OR IGNORE INTO snapshots VALUES (?, ?)", snapshots)
                # IGNORE, not REPLACE: a packet's row, once sealed into a batch, must never be reset to unsealed.
                self._writer_db.executemany(
                    "INSERT OR IGNORE INTO decisions (decision_id, decided_at, key_id, symbol, source, packet, "
                    "snapshot) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
        except (sqlite3.Error, OSError, TypeError) as exc:
            self.write_errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._queue.extendleft(reversed(batch))  # kept, in order, for the next attempt
            time.sleep(min(5.0, 0.1 * 2 ** min(self.write_errors, 6)))
            self._wake.set()
            return
        for digest, _ in snapshots:
            self._snapshots.pop(digest, None)
        for packet in batch:
            self._pending.pop(packet["decision_id"], None)
        self.written += len(batch)
        self.last_error = None
        if self._queue:
            self._wake.set()

    # -- shipping ---------------------------------------------------------------------------------------------------

    def _ship_forever(self) -> None:
        while not self._stop.wait(self.ship_seconds):
            try:
                self.ship()
            except Exception as exc:  # a bug must show in /health and be retried, not end the thread unseen
                self._ship_failed(exc)

    def _ship_failed(self, exc: Exception) -> None:
        self.ship_errors += 1
        self.last_ship_error = f"{type(exc).__name__}: {exc}"

    def ship(self) -> int:
        """Seal what is committed into batches, upload every batch the archive has not confirmed (oldest first),
        then prune what the archive holds and retention lets go. Returns the number of batches confirmed; on an
        archive or disk failure records it (`last_ship_error`) and leaves everything in place for the next pass."""
        if self.archive is None:
            return 0
        with self._ship_lock:
            shipped = 0
            try:
                self._seal()
                for seq, key in self._shipper_db.execute(
                    "SELECT seq, key FROM batches WHERE shipped_at IS NULL ORDER BY seq"
                ).fetchall():
                    self._upload(seq, key)
                    shipped += 1
                self._prune()
            except (SourceUnreachable, sqlite3.Error, OSError) as exc:
                self._ship_failed(exc)
                return shipped
            self.last_ship_error = None
            return shipped

    def _seal(self) -> None:
        """Number committed, unsealed packets into batches of one UTC day each, in commit order."""
        db = self._shipper_db
        while True:
            rows = db.execute(
                "SELECT rowid, decided_at FROM decisions WHERE batch IS NULL ORDER BY rowid LIMIT ?",
                (self.batch_max,),
            ).fetchall()
            if not rows:
                return
            times = [(rowid, ms_from_iso(decided_at)) for rowid, decided_at in rows]
            day = day_of(times[0][1])
            members = [(rowid, ms) for rowid, ms in times if day_of(ms) == day]
            with db:
                db.execute("BEGIN IMMEDIATE")
                seq = db.execute("SELECT coalesce(max(seq), 0) + 1 FROM batches").fetchone()[0]
                name = BatchName(day, self.writer, seq, min(ms for _, ms in members), max(ms for _, ms in members))
                db.execute(
                    "INSERT INTO batches (seq, key, packets, sealed_at) VALUES (?, ?, ?, ?)",
                    (seq, name.key, len(members), _now()),
                )
                db.executemany("UPDATE decisions SET batch = ? WHERE rowid = ?", [(seq, r) for r, _ in members])

    def _upload(self, seq: int, key: str) -> None:
        db = self._shipper_db
        parsed: dict = {}
        packets = [
            self._inline(orjson.loads(row[0]), db, contextlib.nullcontext(), parsed)
            for row in db.execute("SELECT packet FROM decisions WHERE batch = ? ORDER BY rowid", (seq,))
        ]
        body = batch_body(packets)
        digest = hashlib.sha256(body).hexdigest()
        receipt = self.archive.put(key, body, {"packets": str(len(packets)), "sha256": digest, "writer": self.writer})
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "UPDATE batches SET shipped_at = ?, bytes = ?, sha256 = ?, receipt = ? WHERE seq = ?",
                (_now(), len(body), digest, receipt, seq),
            )
        self.shipped_batches += 1
        self.shipped_packets += len(packets)

    def _prune(self) -> None:
        """Delete packets whose batch the archive confirmed more than the retention ago, then snapshots no packet
        left here refers to, except the newest two: a decision can be in flight with the one just replaced."""
        db = self._shipper_db
        horizon = _now(time.time() - self.local_retention_seconds)
        with db:
            db.execute("BEGIN IMMEDIATE")
            pruned = db.execute(
                "DELETE FROM decisions WHERE batch IN "
                "(SELECT seq FROM batches WHERE shipped_at IS NOT NULL AND shipped_at <= ?)",
                (horizon,),
            ).rowcount
        self.pruned_packets += pruned
        if not pruned:
            return
        with self._snapshot_lock:
            keep = set(self._recent_snapshots) | {
                p["features"].get("snapshot_sha256") for p in list(self._pending.values())
            }
            with db:
                db.execute("BEGIN IMMEDIATE")
                unused = [
                    digest
                    for (digest,) in db.execute(
                        "SELECT sha256 FROM snapshots WHERE sha256 NOT IN "
                        "(SELECT snapshot FROM decisions WHERE snapshot IS NOT NULL)"
                    )
                    if digest not in keep
                ]
                db.executemany("DELETE FROM snapshots WHERE sha256 = ?", [(d,) for d in unused])
            # Forgotten, so that if the same bytes are published again they are stored again.
            self._known_snapshots.difference_update(unused)

    def stop(self, timeout: float = 10.0) -> None:
        """Write everything queued, make one last attempt to ship it, then stop (packets stay readable)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._shipper is not None:
            self._shipper.join(timeout)
            self.ship()

    def close(self, timeout: float = 10.0) -> None:
        self.stop(timeout)
        self._writer_db.close()
        self._reader_db.close()
        self._shipper_db.close()
