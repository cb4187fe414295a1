"""What keeps answers coming when the primary model misbehaves: a circuit breaker and a cache of its scores."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


class CircuitBreaker:
    """Closed: calls go through. After `failures` consecutive failures (errors, or calls slower than the request's
    budget) it opens and calls are skipped for `cooldown` seconds; then one trial call is let through (half-open),
    and its outcome closes or reopens the circuit."""

    def __init__(self, failures: int, cooldown: float, clock=time.monotonic):
        self.threshold, self.cooldown, self._clock = failures, cooldown, clock
        self.consecutive_failures = 0
        self.opened_at: float | None = None
        self.last_failure: str | None = None
        self._trial_in_flight = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self._clock() - self.opened_at >= self.cooldown else "open"

    def allow(self) -> str | None:
        """None when a call may go ahead, else why not."""
        with self._lock:
            if self.opened_at is None:
                return None
            waited = self._clock() - self.opened_at
            if waited >= self.cooldown and not self._trial_in_flight:
                self._trial_in_flight = True
                return None
            retry = max(0.0, self.cooldown - waited)
            return (
                f"circuit open after {self.consecutive_failures} consecutive failures (last: {self.last_failure}); "
                + (f"next trial in {retry:.1f} s" if retry else "a trial call is in flight")
            )

    def success(self) -> None:
        with self._lock:
            self.consecutive_failures, self.opened_at, self._trial_in_flight = 0, None, False

    def failure(self, reason: str) -> None:
        with self._lock:
            self.consecutive_failures += 1
            self.last_failure = reason
            if self._trial_in_flight or self.consecutive_failures >= self.threshold:
                self.opened_at = self._clock()
            self._trial_in_flight = False


@dataclass(frozen=True)
class CachedScore:
    probability: float
    smoothed_probability: float
    smoothed_hours: int
    signal: int
    model_version: str
    model_sha256: str
    feature_version: str
    decision_id: str
    scored_at: float  # wall-clock seconds


class ScoreCache:
    """The last primary score per (symbol, feature hour), for the model that made it. Cleared when the served
    model changes: another model's score is not this model's answer."""

    def __init__(self, max_age_seconds: float, clock=time.time):
        self.max_age, self._clock = max_age_seconds, clock
        self._scores: dict[tuple[str, str], CachedScore] = {}

    def put(self, symbol: str, feature_ts: str, score: CachedScore) -> None:
        self._scores[(symbol, feature_ts)] = score
        if len(self._scores) > 50_000:  # a year of hours for a few symbols; old hours are useless anyway
            for key in sorted(self._scores, key=lambda k: self._scores[k].scored_at)[:10_000]:
                self._scores.pop(key, None)

    def get(self, symbol: str, feature_ts: str, model_sha256: str | None) -> tuple[CachedScore | None, str]:
        """The usable score, or None and why not."""
        score = self._scores.get((symbol, feature_ts))
        if score is None:
            return None, f"no primary score for {symbol} at {feature_ts}"
        if model_sha256 is not None and score.model_sha256 != model_sha256:
            return None, f"the cached score is from model {score.model_version}, which is no longer served"
        age = self._clock() - score.scored_at
        if age > self.max_age:
            return None, f"the cached score for {symbol} at {feature_ts} is {age:.0f} s old (max {self.max_age:.0f} s)"
        return score, ""

    def clear(self) -> None:
        self._scores.clear()
