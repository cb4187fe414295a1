"""The audit trail: one packet per decision, written by a background thread so the request path never waits for
storage, kept in SQLite (WAL, fsync on every commit) and retrievable by decision id.

Features from the online snapshot are stored by reference: the snapshot's bytes once, under their sha256, and each
packet names the digest and the symbol. `get()` puts the values back in, so a packet read back holds everything
needed to re-derive its decision: the exact feature values, the model's version and sha256, and the output.
A packet is readable from the moment its response is sent: until it is committed it is served from memory.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections import deque
from pathlib import Path

import orjson

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
"""


def new_decision_id() -> str:
    # uuid7 would sort by time; uuid4 from os.urandom is enough for an id and is in the standard library today.
    return uuid.uuid4().hex


class AuditBacklogFull(RuntimeError):
    """Storage is not keeping up (or failing): refusing new decisions beats deciding without a record."""


class AuditLog:
    def __init__(self, directory: Path, max_pending: int = 100_000, flush_seconds: float = 0.02):
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "audit.sqlite3"
        self.max_pending = max_pending
        self.flush_seconds = flush_seconds
        self.written = 0
        self.write_errors = 0
        self.last_error: str | None = None
        self._pending: dict[str, dict] = {}
        self._queue: deque[dict] = deque()
        self._snapshots: dict[str, bytes] = {}  # digest -> body, not yet committed
        self._known_snapshots: set[str] = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._read_lock = threading.Lock()
        self._writer_db = self._connect()
        self._writer_db.executescript(SCHEMA)
        self._reader_db = self._connect()
        self._known_snapshots = {row[0] for row in self._writer_db.execute("SELECT sha256 FROM snapshots")}
        self._thread: threading.Thread | None = None
        self.start()

    def start(self) -> None:
        """Start the writer (again, after `stop()`: an app's lifespan can run more than once in tests)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def remember_snapshot(self, digest: str, body: bytes) -> None:
        """Make a snapshot's bytes part of the trail (once per digest)."""
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
        self._pending[packet["decision_id"]] = packet
        self._queue.append(packet)
        if len(self._queue) == 1:
            self._wake.set()

    def get(self, decision_id: str) -> dict | None:
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
        reference = packet["features"].get("snapshot_sha256")
        if reference and "values" not in packet["features"]:
            body = self._snapshots.get(reference)
            if body is None:
                with self._read_lock:
                    row = self._reader_db.execute(
                        "SELECT body FROM snapshots WHERE sha256 = ?", (reference,)
                    ).fetchone()
                body = row[0] if row else None
            if body is not None:
                row = orjson.loads(body)["rows"].get(packet["symbol"], {})
                packet["features"]["values"] = row.get("values")
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
                (p["decision_id"], p["decided_at"], p["key_id"], p["symbol"], p["source"], orjson.dumps(p))
                for p in batch
            ]
            with self._writer_db:
                self._writer_db.execute("BEGIN")
                self._writer_db.executemany("INSERT OR IGNORE INTO snapshots VALUES (?, ?)", snapshots)
                self._writer_db.executemany("INSERT OR REPLACE INTO decisions VALUES (?, ?, ?, ?, ?, ?)", rows)
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

    def stop(self, timeout: float = 10.0) -> None:
        """Write everything queued, then stop the writer (packets stay readable)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self, timeout: float = 10.0) -> None:
        self.stop(timeout)
        self._writer_db.close()
        self._reader_db.close()
