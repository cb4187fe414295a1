"""Decisions: one symbol, or a batch, each with its own decision id and audit packet."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Request
from starlette.responses import Response

from alphapulse_serving.audit import AuditBacklogFull, audit_packet, new_decision_id
from alphapulse_serving.chain import Decision, FeatureMismatch, UnknownSymbol
from alphapulse_serving.dependencies import Caller, Predicting, PredictingBatch, charge
from alphapulse_serving.responses import ERRORS, client_error, json_response, unprocessable
from alphapulse_serving.schemas import BatchRequest, BatchResponse, ErrorResponse, PredictRequest, PredictResponse

router = APIRouter()
_ANSWERS = {404: {"model": ErrorResponse}, 503: {"model": ErrorResponse}} | ERRORS


@router.post(
    "/predict",
    response_model=None,
    summary="One decision for one symbol",
    responses={200: {"model": PredictResponse}} | _ANSWERS,
)
async def predict(item: PredictRequest, request: Request, caller: Predicting) -> Response:
    return json_response(decide(caller, item, request.scope["state"], "predict"))


@router.post(
    "/predict/batch",
    response_model=None,
    summary="Decisions for several symbols (or feature sets), each with its own decision id",
    responses={200: {"model": BatchResponse}} | _ANSWERS,
)
async def predict_batch(batch: BatchRequest, request: Request, caller: PredictingBatch) -> Response:
    services, limit = caller.services, caller.services.config.max_batch
    if len(batch.requests) > limit:
        raise unprocessable(
            f"{len(batch.requests)} requests in a batch; the limit is {limit}", ("body", "requests"), "too_long"
        )
    charge(caller, len(batch.requests))
    for item in batch.requests:  # all or nothing: no decision is recorded for a batch that is refused
        try:
            services.chain.validate(item.symbol.upper(), item.features, earlier=item.earlier_features)
        except (UnknownSymbol, FeatureMismatch) as exc:
            raise client_error(exc, ("body", "requests", "features")) from None
    state = request.scope["state"]
    return json_response({"predictions": [decide(caller, item, state, "predict_batch") for item in batch.requests]})


def decide(caller: Caller, item: PredictRequest, request_state: dict, endpoint: str) -> dict:
    """One decision through the fallback chain, recorded in the audit trail before it is answered. `request_state`
    holds what the guard stamped: the start time and the request id."""
    services, started = caller.services, request_state["started"]
    decision_id = new_decision_id()
    try:
        decision = services.chain.decide(
            decision_id,
            item.symbol.upper(),
            item.features,
            started,
            item.budget_ms / 1e3 if item.budget_ms else None,
            item.earlier_features,
        )
    except (UnknownSymbol, FeatureMismatch) as exc:
        raise client_error(exc, ("body", "features")) from None
    latency_ms = round((time.perf_counter() - started) * 1e3, 3)
    try:
        services.audit.record(
            audit_packet(
                decision,
                item,
                caller.identity,
                request_state["request_id"],
                endpoint,
                latency_ms,
                services.baseline,
            )
        )
    except AuditBacklogFull as exc:
        raise HTTPException(
            503, detail=f"refusing to decide without an audit record: {exc}", headers={"Retry-After": "5"}
        ) from None
    services.metrics.decided(decision.source, decision.fallback_categories)
    return response_body(decision, latency_ms)


def response_body(decision: Decision, latency_ms: float) -> dict:
    """A decision as `PredictResponse` documents it."""
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
