"""What operators and orchestrators ask: the model in service, liveness, readiness, Prometheus metrics."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, HTTPException
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from alphapulse_serving.dependencies import Administering, ServicesDep
from alphapulse_serving.responses import ERRORS, json_response
from alphapulse_serving.schemas import ErrorResponse, HealthResponse, ModelResponse, ReadyResponse

router = APIRouter()


@router.get("/model", response_model=ModelResponse, responses={503: {"model": ErrorResponse}} | ERRORS)
async def model(caller: Administering) -> Response:
    """The model in service: its manifest, how it is scored here, and the rules baseline behind it."""
    services = caller.services
    loaded = services.serving.active
    if loaded is None:
        raise HTTPException(503, detail=services.serving.errors.get("model", "no model loaded"))
    m, predictor = loaded.manifest, loaded.scorer.predictor
    compiled = getattr(predictor, "compiled", None)
    how = type(predictor).__name__ + (
        f" (compiled: {compiled.n_trees} trees, depth {compiled.depth})" if compiled is not None else ""
    )
    return json_response(
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
            "baseline": services.baseline.describe(),
            "manifest": asdict(m),
        }
    )


@router.get("/health", response_model=HealthResponse)
async def health(services: ServicesDep) -> Response:
    """Liveness and what is degraded (always 200 while the process serves: the body says how well)."""
    state, audit, breaker = services.serving, services.audit, services.breaker
    loaded, snapshot = state.active, state.snapshot
    reasons = state.problems()
    if breaker.state != "closed":
        reasons.append(f"primary model circuit {breaker.state}: {breaker.last_failure}")
    if not audit.alive:
        reasons.append("the audit writer has stopped")
    if audit.last_error:
        reasons.append(f"audit writes failing ({audit.pending} waiting): {audit.last_error}")
    if services.keys_file.error:
        reasons.append(services.keys_file.error)
    if audit.last_ship_error:
        reasons.append(
            f"audit shipping failing ({audit.unshipped} packets kept locally until it works): {audit.last_ship_error}"
        )
    status = "unavailable" if loaded is None else ("degraded" if reasons else "ok")
    return json_response(
        {
            "status": status,
            "reasons": reasons,
            "model_version": loaded.manifest.version if loaded else None,
            "model_loaded_at": loaded.loaded_at if loaded else None,
            "model_source": services.config.model_source,
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


@router.get("/ready", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
async def ready(services: ServicesDep) -> Response:
    """Readiness probe: 200 once a model and online features of its version are loaded and audit works."""
    state = services.serving
    loaded, snapshot = state.active, state.snapshot
    reasons = []
    if loaded is None:
        reasons.append(state.errors.get("model", "no model loaded"))
    if snapshot is None:
        reasons.append(state.errors.get("features", "no online features loaded"))
    if loaded and snapshot and not loaded.fits(snapshot):
        reasons.append("the online features are not the model's feature version")
    if not services.audit.alive:
        reasons.append("the audit writer has stopped")
    return json_response({"ready": not reasons, "reasons": reasons}, 200 if not reasons else 503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def prometheus_metrics(services: ServicesDep) -> Response:
    """Prometheus exposition: latency, requests by status and source, fallbacks, model info, reloads."""
    metrics, audit = services.metrics, services.audit
    metrics.circuit_open.set(0 if services.breaker.state == "closed" else 1)
    metrics.audit_pending.set(audit.pending)
    metrics.audit_write_errors.set(audit.write_errors)
    metrics.audit_unshipped.set(audit.unshipped)
    metrics.audit_ship_errors.set(audit.ship_errors)
    metrics.audit_shipped_batches.set(audit.shipped_batches)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
