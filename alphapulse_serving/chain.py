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

from alphapulse_serving.baseline import RulesBaseline
from alphapulse_serving.contract import ModelManifest
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
        decision = Decision(
            decision_id=decision_id,
            symbol=symbol,
            source=ABSTAIN,
            probability=None,
            signal=0,
            fallback_reasons=[],
            fallback_categories=[],
            model_version=loaded.manifest.version if loaded else None,
            model_sha256=loaded.manifest.sha256 if loaded else None,
            feature_version=(loaded.manifest.feature_version if loaded else None)
            if given is not None
            else (snapshot.features.feature_version if snapshot else None),
            feature_timestamp=row["ts"] if row else None,
            feature_source="request" if given is not None else "online_snapshot",
            values=given if given is not None else (row["values"] if row else None),
            snapshot_sha256=snapshot.sha256 if row else None,
            served=loaded.manifest if loaded else None,
        )

        def skip(stage: str, category: str, reason: str) -> None:
            decision.fallback_reasons.append(f"{stage}: {reason}")
            decision.fallback_categories.append((stage, category))

        # 1. The primary model.
        if loaded is None:
            skip(PRIMARY, "no_model", self.state.errors.get("model", "no model loaded"))
        elif decision.values is None:
            skip(PRIMARY, "no_features", self._why_no_features(symbol))
        elif given is None and not loaded.fits(snapshot):
            skip(
                PRIMARY,
                "feature_version",
                f"online features are version {snapshot.features.feature_version}, model "
                f"{loaded.manifest.version} needs {loaded.manifest.feature_version}",
            )
        elif (left := budget - (time.perf_counter() - started)) < self.primary_cost:
            skip(
                PRIMARY,
                "time_budget",
                f"{max(left, 0) * 1e3:.2f} ms left of the {budget * 1e3:.0f} ms budget; scoring takes "
                f"~{self.primary_cost * 1e3:.2f} ms",
            )
        elif (refusal := self.breaker.allow()) is not None:
            skip(PRIMARY, "circuit_open", refusal)
        else:
            scoring_started = time.perf_counter()
            try:
                probability = float(loaded.scorer.predict_proba(self._vector(loaded, snapshot, symbol, decision))[0])
                if not math.isfinite(probability):
                    raise ValueError(f"non-finite probability {probability}")
                before, stamps = self._earlier_scores(loaded, snapshot, symbol, decision, earlier)
            except Exception as exc:  # any failure of the model must fall back, and is counted by the breaker
                self.breaker.failure(f"{type(exc).__name__}: {exc}")
                skip(PRIMARY, "error", f"the model failed: {type(exc).__name__}: {exc}")
            else:
                elapsed = time.perf_counter() - scoring_started
                self.primary_cost = elapsed if not self.primary_cost else 0.9 * self.primary_cost + 0.1 * elapsed
                # The answer is correct, so it is returned; a call that blew the budget counts against the
                # model all the same, so a model that is consistently slow gets skipped.
                if time.perf_counter() - started > budget:
                    self.breaker.failure(f"scoring took {elapsed * 1e3:.1f} ms, over the {budget * 1e3:.0f} ms budget")
                else:
                    self.breaker.success()
                decision.source, decision.probability = PRIMARY, probability
                decision.signal, decision.smoothed_probability = loaded.scorer.rule.position([probability, *before])
                decision.smoothed_hours, decision.earlier_timestamps = 1 + len(before), stamps
                if row is not None:
                    self.cache.put(
                        symbol,
                        row["ts"],
                        CachedScore(
                            probability,
                            decision.smoothed_probability,
                            decision.smoothed_hours,
                            decision.signal,
                            loaded.manifest.version,
                            loaded.manifest.sha256,
                            loaded.manifest.feature_version,
                            decision_id,
                            time.time(),
                        ),
                    )
                return decision

        # 2. The last primary score for this symbol and hour.
        if row is None:
            skip(CACHE, "not_cacheable", "only scores of the online snapshot are cached")
        else:
            cached, why = self.cache.get(symbol, row["ts"], loaded.manifest.sha256 if loaded else None)
            if cached is None:
                skip(CACHE, "miss", why)
            else:
                decision.source, decision.probability, decision.signal = CACHE, cached.probability, cached.signal
                decision.smoothed_probability, decision.smoothed_hours = (
                    cached.smoothed_probability,
                    cached.smoothed_hours,
                )
                decision.model_version, decision.model_sha256 = cached.model_version, cached.model_sha256
                decision.cached_from = {
                    "decision_id": cached.decision_id,
                    "scored_at": datetime.fromtimestamp(cached.scored_at, UTC).isoformat(),
                    "age_seconds": round(time.time() - cached.scored_at, 3),
                    "feature_version": cached.feature_version,
                }
                return decision

        # 3. The rules baseline.
        if decision.values is None:
            skip(BASELINE, "no_features", self._why_no_features(symbol))
        else:
            probability, terms, why = self.baseline.score(decision.values)
            if probability is None:
                skip(BASELINE, "missing_input", why)
            else:
                decision.source, decision.probability = BASELINE, probability
                decision.signal = self.baseline.signal(probability)
                decision.smoothed_probability, decision.smoothed_hours = probability, 1  # it trades each hour alone
                decision.baseline_terms = terms
                decision.model_version = decision.model_sha256 = None
                return decision

        # 4. Nobody could answer: flat.
        decision.model_version = decision.model_sha256 = None
        return decision

    def _vector(self, loaded, snapshot, symbol: str, decision: Decision) -> np.ndarray:
        if decision.snapshot_sha256 is None:  # features given with the request
            return loaded.scorer.vector(decision.values)
        key = (snapshot.sha256, loaded.manifest.sha256, symbol)
        vector = self._vectors.get(key)
        if vector is None:
            if len(self._vectors) > 10_000:
                self._vectors.clear()
            vector = self._vectors[key] = loaded.scorer.vector(decision.values)
            vector.setflags(write=False)
        return vector

    def _earlier_scores(
        self, loaded, snapshot, symbol: str, decision: Decision, given: list[dict] | None
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
        key = (snapshot.sha256, loaded.manifest.sha256, symbol, window)
        found = self._earlier.get(key)
        if found is None:
            row = snapshot.features.rows[symbol]
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
