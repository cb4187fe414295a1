"""API keys (held hashed, compared in constant time) and a per-key token-bucket rate limiter."""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from alphapulse_contract.config import ConfigError


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_id(key: str) -> str:
    """A short public fingerprint for logs, metrics and audit packets: never the key itself."""
    return "key-" + hashlib.sha256(b"alphapulse-key-id:" + key.encode()).hexdigest()[:10]


def parse_keys(raw: str, origin: str) -> list[str]:
    """Keys separated by commas or newlines; blank entries and `#` comment lines are skipped."""
    keys = []
    for line in raw.replace(",", "\n").splitlines():
        key = line.strip()
        if not key or key.startswith("#"):
            continue
        if len(key) < 16:
            raise ConfigError(
                f"{origin}: an API key is shorter than 16 characters; generate one with `openssl rand -hex 24`"
            )
        if any(c.isspace() for c in key):
            raise ConfigError(f"{origin}: an API key contains whitespace")
        keys.append(key)
    return keys


def load_keys(inline: str | None, file: str | None) -> list[str]:
    """ALPHAPULSE_API_KEYS and the file named by ALPHAPULSE_API_KEYS_FILE, together."""
    keys = parse_keys(inline or "", "ALPHAPULSE_API_KEYS")
    if file:
        path = Path(file).expanduser()
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"ALPHAPULSE_API_KEYS_FILE={file}: cannot read it ({exc.strerror or exc})") from exc
        keys += parse_keys(text, f"ALPHAPULSE_API_KEYS_FILE={file}")
    return keys


class ApiKeys:
    """Only SHA-256 digests are kept. Every check compares against every digest, so the time taken does not
    depend on which key (if any) matched or how much of it did."""

    def __init__(self, keys: list[str]):
        if not keys:
            raise ConfigError(
                "no API keys: set ALPHAPULSE_API_KEYS (comma-separated) or ALPHAPULSE_API_KEYS_FILE (one per line)"
            )
        self._entries = [(_digest(k), key_id(k)) for k in dict.fromkeys(keys)]

    def __len__(self) -> int:
        return len(self._entries)

    def identify(self, presented: str | None) -> str | None:
        """The key id of a valid key, else None."""
        if not presented:
            return None
        digest = _digest(presented)
        found = None
        for stored, identity in self._entries:
            if hmac.compare_digest(stored, digest):
                found = identity
        return found


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token bucket per key id: `rate` requests per second on average, bursts of up to `burst`."""

    def __init__(self, rate: float, burst: float, clock=time.monotonic):
        if rate <= 0 or burst < 1:
            raise ConfigError(f"rate limit must be positive with a burst of at least 1 (got {rate}/s, burst {burst})")
        self.rate, self.burst, self._clock = rate, burst, clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def acquire(self, identity: str, cost: float = 1.0) -> float:
        """Take `cost` tokens: 0.0 when allowed, else the seconds until they will be there (nothing is taken)."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(identity)
            if bucket is None:
                bucket = self._buckets[identity] = _Bucket(self.burst, now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if cost > self.burst:
                return math.inf
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return 0.0
            return (cost - bucket.tokens) / self.rate
