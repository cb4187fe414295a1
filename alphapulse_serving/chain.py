"""The fallback chain: primary model -> cached score -> rules baseline -> abstain.

Each source either answers or says why it could not; the response carries those reasons in order. Nothing here
does I/O, so one decision costs the model's scoring plus a few microseconds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from alphapulse_contract.baseline import RulesBaseline
from alphapulse_contract.scoring import ModelManifest
from alphapulse_serving.resilience import CachedScore, CircuitBreaker, ScoreCache
from alphapulse_serving.state import ServingState

PRIMARY, CACHE, BASELINE, ABSTAIN = "primary", "cache", "baseline", "abstain"


class UnknownSymbol(LookupError):
    pass


class FeatureMismatch(ValueError):
    """Given features that are not exactly the model's (a client error, not a fallback)."""


@dataclass
class Decision:
    decision_id: str
    symbol: str
    source: str
    probability: float | None
    signal: int
    fallback_reasons: list[str]
    # (stage, category) per reason, for metrics
    fallback_categories: list[tuple[str, str]]
    model_version: str | None
    model_sha256: str | None
    feature_version: str | None
    feature_timestamp: str | None
    feature_source: str
    values: dict | None  # the features used (None only when there were none)
    snapshot_sha256: str | None
    cached_from: dict | None = None
    baseline_terms: dict | None = None
    # The manifest of the model in service when the decision was made (the poller may swap it a moment later).
    served: ModelManifest | None = None
    # What the signal thresholds: the mean P(up) over the trading rule's hours, and how many hours it averaged.
    smoothed_probability: float | None = None
    smoothed_hours: int | None = None
    # The earlier hours that mean took (snapshot timestamps; given feature sets are recorded as the request sent them).
    earlier_timestamps: list[str] | None = None

    def skip(self, stage: str, category: str, reason: str) -> None:
        """`stage` could not answer, for `reason`: the next one is asked."""
        self.fallback_reasons.append(f"{stage}: {reason}")
        self.fallback_categories.append((stage, category))


def _open_decision(decision_id: str, symbol: str, given: dict | None, loaded, snapshot, row: dict | None) -> Decision:
    """An abstention on the features the chain will use, to be answered by the first source that can."""
    manifest = loaded.manifest if loaded else None
    if given is not None:
        feature_version = manifest.feature_version if manifest else None
    else:
        feature_version = snapshot.features.feature_version if snapshot else None
    return Decision(
        decision_id=decision_id,
        symbol=symbol,
        source=ABSTAIN,
        probability=None,
        signal=0,
        fallback_reasons=[],
        fallback_categories=[],
        model_version=manifest.version if manifest else None,
        model_sha256=manifest.sha256 if manifest else None,
        feature_version=feature_version,
        feature_timestamp=row["ts"] if row else None,
        feature_source="request" if given is not None else "online_snapshot",
        values=given if given is not None else (row["values"] if row else None),
        snapshot_sha256=snapshot.sha256 if row else None,
        served=manifest,
    )


class FallbackChain:
    def __init__(
        self,
        state: ServingState,
        breaker: CircuitBreaker,
        cache: ScoreCache,
        baseline: RulesBaseline,
        budget_seconds: float,
    ):
        self.state, self.breaker, self.cache, self.baseline = state, breaker, cache, baseline
        self.budget_seconds = budget_seconds
        # Moving average of the primary's cost: a request with less budget left than this skips straight on.
        self.primary_cost = 0.0
        # A snapshot row in the model's feature order, built once per (snapshot, model, symbol): every request for
        # that symbol in that hour scores the same row.
        self._vectors: dict[tuple[str, str, str], np.ndarray] = {}
        # The model's P(up) of the snapshot's earlier hours that its trading rule averages, newest first, with their
        # timestamps: scored once per (snapshot, model, symbol), like the vectors.
        self._earlier: dict[tuple[str, str, str, int], tuple[list[float], list[str]]] = {}

    def validate(
        self, symbol: str, given: dict | None, loaded=None, snapshot=None, earlier: list[dict] | None = None
    ) -> None:
        """Raise for what is the caller's mistake (an unknown symbol, features that are not the model's, earlier
        hours without this hour's features or more of them than the model's trading rule averages)."""
        if loaded is None and snapshot is None:
            loaded, snapshot = self.state.active, self.state.snapshot
        in_model = loaded is not None and symbol in loaded.manifest.symbols
        if not in_model and (snapshot is None or symbol not in snapshot.features.rows):
            # The set of served symbols is only built for the error message, never on the way to an answer.
            served = set(loaded.manifest.symbols if loaded else ()) | set(snapshot.features.rows if snapshot else ())
            raise UnknownSymbol(f"unknown symbol {symbol}; served symbols: {', '.join(sorted(served)) or 'none yet'}")
        if earlier is not None and given is None:
            raise FeatureMismatch("earlier_features are the hours before the given features: give features too")
        if given is not None and loaded is not None:
            for which, values in [("", given)] + [(f"earlier_features[{i}]: ", e) for i, e in enumerate(earlier or [])]:
                _check_names(which, values, loaded)
            window = loaded.scorer.rule.smoothing_hours
            if earlier and len(earlier) > window - 1:
                raise FeatureMismatch(
                    f"{len(earlier)} earlier_features; model {loaded.manifest.version}'s trading rule averages "
                    f"{window} hours, so at most {window - 1} earlier hours count"
                )

    def decide(
        self,
        decision_id: str,
        symbol: str,
        given: dict[str, float | None] | None,
        started: float,
        budget_seconds: float | None = None,
        earlier: list[dict[str, float | None]] | None = None,
    ) -> Decision:
        loaded, snapshot = self.state.active, self.state.snapshot  # one read each: a consistent view
        budget = self.budget_seconds if budget_seconds is None else budget_seconds
        self.validate(symbol, given, loaded, snapshot, earlier)
        row = None if given is not None or snapshot is None else snapshot.features.rows.get(symbol)
        decision = _open_decision(decision_id, symbol, given, loaded, snapshot, row)
        if self._primary(decision, loaded, snapshot, row, earlier, started, budget):
            return decision
        if self._cached(decision, loaded, row):
            return decision
        if not self._baseline(decision):
            decision.model_version = decision.model_sha256 = None  # nobody could answer: flat
        return decision

    def _primary(self, decision: Decision, loaded, snapshot, row, earlier, started: float, budget: float) -> bool:
        """1. The primary model: True when it answered."""
        if loaded is None:
            decision.skip(PRIMARY, "no_model", self.state.errors.get("model", "no model loaded"))
        elif decision.values is None:
            decision.skip(PRIMARY, "no_features", self._why_no_features(decision.symbol))
        elif decision.feature_source != "request" and not loaded.fits(snapshot):
            decision.skip(
                PRIMARY,
                "feature_version",
                f"online features are version {snapshot.features.feature_version}, model "
                f"{loaded.manifest.version} needs {loaded.manifest.feature_version}",
            )
        elif (left := budget - (time.perf_counter() - started)) < self.primary_cost:
            decision.skip(
                PRIMARY,
                "time_budget",
                f"{max(left, 0) * 1e3:.2f} ms left of the {budget * 1e3:.0f} ms budget; scoring takes "
                f"~{self.primary_cost * 1e3:.2f} ms",
            )
        elif (refusal := self.breaker.allow()) is not None:
            decision.skip(PRIMARY, "circuit_open", refusal)
        else:
            return self._score(decision, loaded, snapshot, row, earlier, started, budget)
        return False

    def _score(self, decision: Decision, loaded, snapshot, row, earlier, started: float, budget: float) -> bool:
        scoring_started = time.perf_counter()
        try:
            probability = float(loaded.scorer.predict_proba(self._vector(loaded, snapshot, decision))[0])
            if not math.isfinite(probability):
                raise ValueError(f"non-finite probability {probability}")
            before, stamps = self._earlier_scores(loaded, snapshot, decision, earlier)
        except Exception as exc:  # any failure of the model must fall back, and is counted by the breaker
            self.breaker.failure(f"{type(exc).__name__}: {exc}")
            decision.skip(PRIMARY, "error", f"the model failed: {type(exc).__name__}: {exc}")
            return False
        elapsed = time.perf_counter() - scoring_started
        self.primary_cost = elapsed if not self.primary_cost else 0.9 * self.primary_cost + 0.1 * elapsed
        # The answer is correct, so it is returned; a call that blew the budget counts against the model all the
        # same, so a model that is consistently slow gets skipped.
        if time.perf_counter() - started > budget:
            self.breaker.failure(f"scoring took {elapsed * 1e3:.1f} ms, over the {budget * 1e3:.0f} ms budget")
        else:
            self.breaker.success()
        decision.source, decision.probability = PRIMARY, probability
        decision.signal, decision.smoothed_probability = loaded.scorer.rule.position([probability, *before])
        decision.smoothed_hours, decision.earlier_timestamps = 1 + len(before), stamps
        if row is not None:
            manifest = loaded.manifest
            self.cache.put(
                decision.symbol,
                row["ts"],
                CachedScore(
                    probability,
                    decision.smoothed_probability,
                    decision.smoothed_hours,
                    decision.signal,
                    manifest.version,
                    manifest.sha256,
                    manifest.feature_version,
                    decision.decision_id,
                    time.time(),
                ),
            )
        return True

    def _cached(self, decision: Decision, loaded, row) -> bool:
        """2. The last primary score for this symbol and hour: True when there was one."""
        if row is None:
            decision.skip(CACHE, "not_cacheable", "only scores of the online snapshot are cached")
            return False
        cached, why = self.cache.get(decision.symbol, row["ts"], loaded.manifest.sha256 if loaded else None)
        if cached is None:
            decision.skip(CACHE, "miss", why)
            return False
        decision.source, decision.probability, decision.signal = CACHE, cached.probability, cached.signal
        decision.smoothed_probability, decision.smoothed_hours = cached.smoothed_probability, cached.smoothed_hours
        decision.model_version, decision.model_sha256 = cached.model_version, cached.model_sha256
        decision.cached_from = {
            "decision_id": cached.decision_id,
            "scored_at": datetime.fromtimestamp(cached.scored_at, UTC).isoformat(),
            "age_seconds": round(time.time() - cached.scored_at, 3),
            "feature_version": cached.feature_version,
        }
        return True

    def _baseline(self, decision: Decision) -> bool:
        """3. The rules baseline: True when its inputs were there."""
        if decision.values is None:
            decision.skip(BASELINE, "no_features", self._why_no_features(decision.symbol))
            return False
        probability, terms, why = self.baseline.score(decision.values)
        if probability is None:
            decision.skip(BASELINE, "missing_input", why)
            return False
        decision.source, decision.probability = BASELINE, probability
        decision.signal = self.baseline.signal(probability)
        decision.smoothed_probability, decision.smoothed_hours = probability, 1  # it trades each hour alone
        decision.baseline_terms = terms
        decision.model_version = decision.model_sha256 = None
        return True

    def _vector(self, loaded, snapshot, decision: Decision) -> np.ndarray:
        if decision.snapshot_sha256 is None:  # features given with the request
            return loaded.scorer.vector(decision.values)
        key = (snapshot.sha256, loaded.manifest.sha256, decision.symbol)
        vector = self._vectors.get(key)
        if vector is None:
            if len(self._vectors) > 10_000:
                self._vectors.clear()
            vector = self._vectors[key] = loaded.scorer.vector(decision.values)
            vector.setflags(write=False)
        return vector

    def _earlier_scores(
        self, loaded, snapshot, decision: Decision, given: list[dict] | None
    ) -> tuple[list[float], list[str] | None]:
        """The model's P(up) of the hours before this one that its trading rule averages, newest first, and their
        snapshot timestamps (None for hours the request gave)."""
        window = loaded.scorer.rule.smoothing_hours
        if window == 1:
            return [], None
        if decision.snapshot_sha256 is None:  # features given with the request: the earlier hours are its own
            if not given:
                return [], None
            matrix = np.vstack([loaded.scorer.vector(values) for values in given])
            return [float(p) for p in loaded.scorer.predict_proba(matrix)], None
        # The window is in the key: one artifact may be promoted again with another rule.
        key = (snapshot.sha256, loaded.manifest.sha256, decision.symbol, window)
        found = self._earlier.get(key)
        if found is None:
            row = snapshot.features.rows[decision.symbol]
            now = datetime.fromisoformat(row["ts"])
            # The snapshot carries MAX_SMOOTHING_HOURS; this rule takes the ones within its own window.
            rows = [
                r
                for r in row.get("earlier", ())
                if (now - datetime.fromisoformat(r["ts"])).total_seconds() < window * 3600
            ]
            scores = (
                [
                    float(p)
                    for p in loaded.scorer.predict_proba(np.vstack([loaded.scorer.vector(r["values"]) for r in rows]))
                ]
                if rows
                else []
            )
            if len(self._earlier) > 10_000:
                self._earlier.clear()
            found = self._earlier[key] = (scores, [r["ts"] for r in rows])
        return found

    def _why_no_features(self, symbol: str) -> str:
        if self.state.snapshot is None:
            return self.state.errors.get("features", "no online feature snapshot loaded")
        return f"the online snapshot has no row for {symbol}"


def _check_names(which: str, values: dict, loaded) -> None:
    names = loaded.scorer.feature_names
    missing = [n for n in names if n not in values]
    unknown = sorted(set(values) - set(names))
    if missing or unknown:
        parts = [f"missing features: {', '.join(missing)}"] if missing else []
        parts += [f"unknown features: {', '.join(unknown)}"] if unknown else []
        raise FeatureMismatch(
            which + "; ".join(parts) + f" (model {loaded.manifest.version} needs exactly {len(names)})"
        )
