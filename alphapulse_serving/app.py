"""The prediction API: the promoted model behind a fallback chain, with keys, rate limits, an audit trail and
Prometheus metrics.

Hot paths are `async def` (no thread-pool hop) and build their JSON with orjson: at a few hundred microseconds a
request, FastAPI's response validation would be a large share of the cost. The pydantic models still define the
OpenAPI schema, and the tests validate responses against them.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import datetime

import orjson
from fastapi import FastAPI, HTTPException, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from alphapulse_serving.audit import AuditBacklogFull, AuditLog, decision_time_ms, iso_from_ms, new_decision_id
from alphapulse_serving.audit_archive import archive_for
from alphapulse_serving.baseline import RulesBaseline
from alphapulse_serving.chain import Decision, FallbackChain, FeatureMismatch, UnknownSymbol
from alphapulse_serving.config import ServingConfig
from alphapulse_serving.contract import ScoringModel
from alphapulse_serving.metrics import ApiMetrics, route_of
from alphapulse_serving.predictors import SourceUnreachable
from alphapulse_serving.registry import MlflowRegistryLoader
from alphapulse_serving.resilience import CircuitBreaker, ScoreCache
from alphapulse_serving.schemas import (
    AuditPacket,
    BatchRequest,
    BatchResponse,
    ErrorResponse,
    HealthResponse,
    ModelResponse,
    PredictRequest,
    PredictResponse,
    ReadyResponse,
)
from alphapulse_serving.security import ApiKeys, RateLimiter
from alphapulse_serving.state import ServingState, poll_forever

API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key from ALPHAPULSE_API_KEYS")
ERRORS = {
    400: {"model": ErrorResponse, "description": "the body is not parseable (bad encoding, bad Content-Length)"},
    401: {"model": ErrorResponse, "description": "missing or invalid X-API-Key"},
    413: {"model": ErrorResponse, "description": "request body over ALPHAPULSE_API_MAX_BODY_BYTES"},
    429: {
        "model": ErrorResponse,
        "description": "rate limit exceeded; Retry-After says when to retry",
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
    },
}


def unprocessable(message: str, loc: tuple, kind: str) -> HTTPException:
    """A 422 in the shape FastAPI gives its own validation errors, so clients parse one format."""
    return HTTPException(422, detail=[{"type": kind, "loc": list(loc), "msg": message}])


def client_error(exc: UnknownSymbol | FeatureMismatch, features_loc: tuple) -> HTTPException:
    if isinstance(exc, UnknownSymbol):
        return HTTPException(404, detail=str(exc))
    return unprocessable(str(exc), features_loc, "feature_mismatch")


def _json(payload, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json", headers=headers)


class GuardMiddleware:
    """Pure ASGI (Starlette's BaseHTTPMiddleware costs a task per request): stamps the start time, refuses bodies
    over the size limit before the app reads them, and records latency and status per route."""

    def __init__(self, app, max_body_bytes: int, metrics: ApiMetrics):
        self.app, self.max_body, self.metrics = app, max_body_bytes, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        scope.setdefault("state", {})["started"] = started
        status_holder = [500]

        async def send_and_record(message):
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.metrics.observe_request(route_of(scope["path"]), status_holder[0], time.perf_counter() - started)

        declared = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                break
        if declared is not None and declared < 0:
            return await _json({"detail": "invalid Content-Length"}, 400)(scope, receive, send_and_record)
        if declared is not None and declared > self.max_body:
            return await _json({"detail": f"request body is {declared} bytes; the limit is {self.max_body}"}, 413)(
                scope, receive, send_and_record
            )
        if declared is None and scope["method"] in ("POST", "PUT", "PATCH"):
            # No length given (chunked): read it here, up to the limit, and hand the app a replay.
            chunks, size = [], 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body:
                    return await _json({"detail": f"request body is over the {self.max_body}-byte limit"}, 413)(
                        scope, receive, send_and_record
                    )
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
            replayed = False

            async def replay():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            return await self.app(scope, replay, send_and_record)
        return await self.app(scope, receive, send_and_record)


def create_app(config: ServingConfig) -> FastAPI:
    keys = ApiKeys(config.api_keys)
    limiter = RateLimiter(config.rate_limit_per_second, config.rate_limit_burst)
    metrics = ApiMetrics()
    cache = ScoreCache(config.cache_max_age_seconds)
    breaker = CircuitBreaker(config.breaker_failures, config.breaker_cooldown_seconds)
    baseline = RulesBaseline()

    def on_model(loaded) -> None:
        cache.clear()
        metrics.model_reloads.inc()
        m = loaded.manifest
        metrics.serving(m.version, m.sha256, m.feature_version)

    def on_snapshot(snapshot) -> None:
        audit.remember_snapshot(snapshot.sha256, snapshot.body)
        if snapshot.newest_ts:
            metrics.snapshot_timestamp.set(datetime.fromisoformat(snapshot.newest_ts).timestamp())

    state = ServingState(
        config.store,
        load_model=MlflowRegistryLoader(config.mlflow_tracking_uri)
        if config.model_source == "mlflow"
        else ScoringModel.load,
        on_model=on_model,
        on_snapshot=on_snapshot,
        on_load_failure=lambda _: metrics.model_load_failures.inc(),
    )
    audit = AuditLog(
        config.audit_dir,
        max_pending=config.audit_max_pending,
        archive=archive_for(config.audit_archive),
        ship_seconds=config.audit_ship_seconds,
        local_retention_seconds=config.audit_local_retention_hours * 3600,
        max_unshipped=config.audit_max_unshipped,
    )
    chain = FallbackChain(state, breaker, cache, baseline, config.time_budget_ms / 1e3)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        audit.start()
        state.refresh()
        stop = threading.Event()
        poller = threading.Thread(target=poll_forever, args=(state, config.poll_seconds, stop), daemon=True)
        poller.start()
        yield
        stop.set()
        poller.join(timeout=5)
        audit.stop()  # everything accepted is committed, and shipped if the archive answers, before the exit

    app = FastAPI(
        title="AlphaPulse prediction API",
        version="0.2.0",
        description=(
            "Hourly P(up) and a long/flat/short signal per symbol from the promoted model, behind a fallback chain "
            "(primary model → cached score → rules baseline → abstain). Every decision has an audit packet. "
            "Send an API key in `X-API-Key`."
        ),
        lifespan=lifespan,
    )
    app.state.serving, app.state.chain, app.state.audit, app.state.metrics = state, chain, audit, metrics
    app.state.breaker, app.state.cache, app.state.limiter = breaker, cache, limiter
    app.add_middleware(GuardMiddleware, max_body_bytes=config.max_body_bytes, metrics=metrics)
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Content-Type"],
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        # The default handler echoes the offending input back; an input can hold a key pasted in the wrong place.
        errors = [{k: e[k] for k in ("type", "loc", "msg") if k in e} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": errors})

    # async: a plain `def` dependency would be run on the thread pool, a hop that costs more than the check.
    async def authorised(api_key: str | None = Security(API_KEY_HEADER)) -> str:
        identity = keys.identify(api_key)
        if identity is None:
            raise HTTPException(
                401, detail="missing or invalid API key (X-API-Key)", headers={"WWW-Authenticate": "ApiKey"}
            )
        return identity

    def charge(identity: str, cost: int) -> None:
        wait = limiter.acquire(identity, cost)
        if wait:
            if math.isinf(wait):
                raise HTTPException(429, detail=f"a batch of {cost} exceeds the burst of {limiter.burst:.0f}")
            raise HTTPException(
                429,
                detail=f"rate limit of {limiter.rate:g} requests/s (burst {limiter.burst:g}) exceeded for this key",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )

    def decide(item: PredictRequest, identity: str, started: float, endpoint: str) -> dict:
        decision_id = new_decision_id()
        symbol = item.symbol.upper()
        try:
            decision = chain.decide(
                decision_id,
                symbol,
                item.features,
                started,
                item.budget_ms / 1e3 if item.budget_ms else None,
                item.earlier_features,
            )
        except (UnknownSymbol, FeatureMismatch) as exc:
            raise client_error(exc, ("body", "features")) from None
        latency_ms = round((time.perf_counter() - started) * 1e3, 3)
        try:
            audit.record(packet(decision, item, identity, endpoint, latency_ms))
        except AuditBacklogFull as exc:
            raise HTTPException(
                503, detail=f"refusing to decide without an audit record: {exc}", headers={"Retry-After": "5"}
            ) from None
        metrics.decided(decision.source, decision.fallback_categories)
        return response_body(decision, latency_ms)

    def packet(decision: Decision, item: PredictRequest, identity: str, endpoint: str, latency_ms: float) -> dict:
        served = decision.served
        features = {
            "source": decision.feature_source,
            "timestamp": decision.feature_timestamp,
            "feature_version": decision.feature_version,
        }
        if decision.snapshot_sha256:
            features["snapshot_sha256"] = decision.snapshot_sha256  # values are put back in on read
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
            "model": None
            if served is None
            else {
                "version": served.version,
                "sha256": served.sha256,
                "model_uri": served.model_uri,
                "model_format": served.model_format,
                "feature_version": served.feature_version,
                "signal_band": served.signal_band,
                "smoothing_hours": served.smoothing_hours,
            },
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

    def response_body(decision: Decision, latency_ms: float) -> dict:
        return {
            "decision_id": decision.decision_id,
            "symbol": decision.symbol,
            "signal": decision.signal,
            "probability": decision.probability,
            "smoothed_probability": decision.smoothed_probability,
            "smoothed_hours": decision.smoothed_hours,
            "source": decision.source,
            "fallback_reasons": decision.fallback_reasons,
            "model_version": decision.model_version,
            "model_sha256": decision.model_sha256,
            "feature_version": decision.feature_version,
            "feature_timestamp": decision.feature_timestamp,
            "feature_source": decision.feature_source,
            "cached_from": decision.cached_from,
            "latency_ms": latency_ms,
        }

    @app.post(
        "/predict",
        response_model=None,
        summary="One decision for one symbol",
        responses={200: {"model": PredictResponse}, 404: {"model": ErrorResponse}, 503: {"model": ErrorResponse}}
        | ERRORS,
    )
    async def predict(item: PredictRequest, request: Request, identity: str = Security(authorised)) -> Response:
        charge(identity, 1)
        return _json(decide(item, identity, request.scope["state"]["started"], "predict"))

    @app.post(
        "/predict/batch",
        response_model=None,
        summary="Decisions for several symbols (or feature sets), each with its own decision id",
        responses={200: {"model": BatchResponse}, 404: {"model": ErrorResponse}, 503: {"model": ErrorResponse}}
        | ERRORS,
    )
    async def predict_batch(batch: BatchRequest, request: Request, identity: str = Security(authorised)) -> Response:
        if len(batch.requests) > config.max_batch:
            raise unprocessable(
                f"{len(batch.requests)} requests in a batch; the limit is {config.max_batch}",
                ("body", "requests"),
                "too_long",
            )
        charge(identity, len(batch.requests))
        for item in batch.requests:  # all or nothing: no decision is recorded for a batch that is refused
            try:
                chain.validate(item.symbol.upper(), item.features, earlier=item.earlier_features)
            except (UnknownSymbol, FeatureMismatch) as exc:
                raise client_error(exc, ("body", "requests", "features")) from None
        started = request.scope["state"]["started"]
        return _json({"predictions": [decide(item, identity, started, "predict_batch") for item in batch.requests]})

    @app.get("/model", response_model=ModelResponse, responses={503: {"model": ErrorResponse}} | ERRORS)
    async def model(identity: str = Security(authorised)) -> Response:
        """The model in service: its manifest, how it is scored here, and the rules baseline behind it."""
        charge(identity, 1)
        loaded = state.active
        if loaded is None:
            raise HTTPException(503, detail=state.errors.get("model", "no model loaded"))
        m, predictor = loaded.manifest, loaded.scorer.predictor
        compiled = getattr(predictor, "compiled", None)
        how = type(predictor).__name__ + (
            f" (compiled: {compiled.n_trees} trees, depth {compiled.depth})" if compiled is not None else ""
        )
        return _json(
            {
                "version": m.version,
                "sha256": m.sha256,
                "feature_version": m.feature_version,
                "feature_names": m.feature_names,
                "signal_band": m.signal_band,
                "smoothing_hours": m.smoothing_hours,
                "trading_rule": m.rule.describe(),
                "symbols": m.symbols,
                "loaded_at": loaded.loaded_at,
                "predictor": how,
                "baseline": baseline.describe(),
                "manifest": asdict(m),
            }
        )

    @app.get(
        "/audit/{decision_id}",
        response_model=AuditPacket,
        responses={
            404: {"model": ErrorResponse},
            503: {"model": ErrorResponse, "description": "the packet is not here and the audit archive is down"},
        }
        | ERRORS,
    )
    async def audit_packet(decision_id: str, identity: str = Security(authorised)) -> Response:
        """Everything needed to re-derive one decision: request, exact features, model version and sha256, output.
        Recent packets come from this process; older ones, or another pod's, from the audit archive."""
        charge(identity, 1)
        if len(decision_id) != 32 or any(c not in "0123456789abcdef" for c in decision_id):
            raise HTTPException(404, detail="decision ids are 32 lowercase hex characters")
        found = audit.get(decision_id)
        if found is None:
            try:
                found = await asyncio.to_thread(audit.get_archived, decision_id)
            except SourceUnreachable as exc:
                raise HTTPException(
                    503,
                    detail=f"decision {decision_id} is not held by this process and the {exc.label} is unreachable: "
                    f"{exc}",
                    headers={"Retry-After": "30"},
                ) from None
        if found is None:
            raise HTTPException(404, detail=f"no decision {decision_id} here or in {audit.archive_uri}")
        return _json(found)

    @app.get("/health", response_model=HealthResponse)
    async def health() -> Response:
        """Liveness and what is degraded (always 200 while the process serves: the body says how well)."""
        loaded, snapshot = state.active, state.snapshot
        reasons = state.problems()
        if breaker.state != "closed":
            reasons.append(f"primary model circuit {breaker.state}: {breaker.last_failure}")
        if not audit.alive:
            reasons.append("the audit writer has stopped")
        if audit.last_error:
            reasons.append(f"audit writes failing ({audit.pending} waiting): {audit.last_error}")
        if audit.last_ship_error:
            reasons.append(
                f"audit shipping failing ({audit.unshipped} packets kept locally until it works): "
                f"{audit.last_ship_error}"
            )
        status = "unavailable" if loaded is None else ("degraded" if reasons else "ok")
        return _json(
            {
                "status": status,
                "reasons": reasons,
                "model_version": loaded.manifest.version if loaded else None,
                "model_loaded_at": loaded.loaded_at if loaded else None,
                "model_source": config.model_source,
                "pending_model_version": state.pending.manifest.version if state.pending else None,
                "feature_snapshot_ts": snapshot.newest_ts if snapshot else None,
                "feature_version": snapshot.features.feature_version if snapshot else None,
                "circuit": breaker.state,
                "reloads": state.reloads,
                "audit_pending": audit.pending,
                "audit_unshipped": audit.unshipped,
                "audit_archive": audit.archive_uri,
            }
        )

    @app.get("/ready", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
    async def ready() -> Response:
        """Readiness probe: 200 once a model and online features of its version are loaded and audit works."""
        loaded, snapshot = state.active, state.snapshot
        reasons = []
        if loaded is None:
            reasons.append(state.errors.get("model", "no model loaded"))
        if snapshot is None:
            reasons.append(state.errors.get("features", "no online features loaded"))
        if loaded and snapshot and not loaded.fits(snapshot):
            reasons.append("the online features are not the model's feature version")
        if not audit.alive:
            reasons.append("the audit writer has stopped")
        return _json({"ready": not reasons, "reasons": reasons}, 200 if not reasons else 503)

    @app.get(
        "/metrics",
        include_in_schema=True,
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    )
    async def prometheus_metrics() -> Response:
        """Prometheus exposition: latency, requests by status and source, fallbacks, model info, reloads."""
        metrics.circuit_open.set(0 if breaker.state == "closed" else 1)
        metrics.audit_pending.set(audit.pending)
        metrics.audit_write_errors.set(audit.write_errors)
        metrics.audit_unshipped.set(audit.unshipped)
        metrics.audit_ship_errors.set(audit.ship_errors)
        metrics.audit_shipped_batches.set(audit.shipped_batches)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
