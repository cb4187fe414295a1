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


# What a key may do: `predict` (/predict, /predict/batch), `audit` (/audit/*), `admin` (/model and admin routes).
SCOPES = ("predict", "audit", "admin")
ALL_SCOPES = frozenset(SCOPES)


def _checked(key: str, origin: str) -> str:
    if len(key) < 16:
        raise ConfigError(
            f"{origin}: an API key is shorter than 16 characters; generate one with `openssl rand -hex 24`"
        )
    if any(c.isspace() for c in key):
        raise ConfigError(f"{origin}: an API key contains whitespace")
    return key


def parse_keys(raw: str, origin: str) -> list[str]:
    """Keys separated by commas or newlines; blank entries and `#` comment lines are skipped."""
    keys = []
    for line in raw.replace(",", "\n").splitlines():
        key = line.strip()
        if key and not key.startswith("#"):
            keys.append(_checked(key, origin))
    return keys


def parse_key_file(text: str, origin: str) -> dict[str, frozenset[str]]:
    """A keys file: a key per line, optionally followed by whitespace and its scopes (`ap_… predict,audit`); a key
    with no scope list has every scope. A line of comma-separated keys (the older form) gives each every scope."""
    keys: dict[str, frozenset[str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) > 2:
            raise ConfigError(f"{origin}, line {number}: expected a key and, optionally, its scopes (predict,audit)")
        if len(parts) == 1:
            keys.update(dict.fromkeys(parse_keys(parts[0], origin), ALL_SCOPES))
            continue
        scopes = frozenset(s for s in parts[1].split(",") if s)
        unknown = sorted(scopes - ALL_SCOPES)
        if unknown or not scopes:
            raise ConfigError(
                f"{origin}, line {number}: unknown scope {', '.join(unknown) or '(none)'}; scopes are "
                f"{', '.join(SCOPES)}"
            )
        keys[_checked(parts[0], origin)] = scopes
    return keys


def read_keys(inline: str | None, file: str | None) -> dict[str, frozenset[str]]:
    """Every key and its scopes: ALPHAPULSE_API_KEYS (every scope) and the file named by ALPHAPULSE_API_KEYS_FILE."""
    keys = dict.fromkeys(parse_keys(inline or "", "ALPHAPULSE_API_KEYS"), ALL_SCOPES)
    if file:
        path = Path(file).expanduser()
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"ALPHAPULSE_API_KEYS_FILE={file}: cannot read it ({exc.strerror or exc})") from exc
        keys |= parse_key_file(text, f"ALPHAPULSE_API_KEYS_FILE={file}")
    return keys


def load_keys(inline: str | None, file: str | None) -> list[str]:
    """ALPHAPULSE_API_KEYS and the file named by ALPHAPULSE_API_KEYS_FILE, together."""
    return list(read_keys(inline, file))


class ApiKeys:
    """Only SHA-256 digests are kept. Every check compares against every digest, so the time taken does not
    depend on which key (if any) matched or how much of it did. `replace` swaps the whole set at once (a rotated
    keys file): a request sees the old set or the new one, never a mixture."""

    def __init__(self, keys: list[str] | dict[str, frozenset[str]]):
        self._entries = self._entries_of(keys)

    @staticmethod
    def _entries_of(keys: list[str] | dict[str, frozenset[str]]) -> list[tuple[bytes, str, frozenset[str]]]:
        if not keys:
            raise ConfigError(
                "no API keys: set ALPHAPULSE_API_KEYS (comma-separated) or ALPHAPULSE_API_KEYS_FILE (one per line)"
            )
        scoped = keys if isinstance(keys, dict) else dict.fromkeys(keys, ALL_SCOPES)
        return [(_digest(k), key_id(k), frozenset(scopes)) for k, scopes in scoped.items()]

    def replace(self, keys: dict[str, frozenset[str]]) -> None:
        self._entries = self._entries_of(keys)

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, presented: str | None) -> tuple[str, frozenset[str]] | None:
        """(key id, scopes) of a valid key, else None."""
        if not presented:
            return None
        digest = _digest(presented)
        found = None
        for stored, identity, scopes in self._entries:
            if hmac.compare_digest(stored, digest):
                found = (identity, scopes)
        return found

    def identify(self, presented: str | None) -> str | None:
        """The key id of a valid key, else None."""
        found = self.lookup(presented)
        return None if found is None else found[0]


class KeysFile:
    """ALPHAPULSE_API_KEYS_FILE, re-read when it changes, so a rotated key takes effect without a restart."""

    def __init__(self, inline: str | None, file: str | None, keys: ApiKeys):
        self.inline, self.file, self.keys = inline, file, keys
        self.error: str | None = None
        self._seen = self._stamp()

    def _stamp(self) -> bytes | None:
        """The file's digest (a few hundred bytes read each poll: a rewrite within one mtime tick is seen too)."""
        try:
            return _digest(Path(self.file).expanduser().read_text()) if self.file else None
        except OSError:
            return None

    def refresh(self) -> bool:
        """Re-read the file if it changed: True when the keys were replaced. A file that cannot be read or parsed
        leaves the keys as they were and says why in `error` (shown by /health)."""
        if not self.file:
            return False
        stamp = self._stamp()
        if stamp == self._seen and self.error is None:
            return False
        try:
            self.keys.replace(read_keys(self.inline, self.file))
        except ConfigError as exc:
            self.error = f"the API keys were kept as they were: {exc}"
            return False
        self._seen, self.error = stamp, None
        return True


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
