"""Request and response bodies: the OpenAPI schema, with examples, that clients are generated from."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from alphapulse_contract.scoring import MAX_SMOOTHING_HOURS

SymbolField = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9]{2,20}$", description="Exchange symbol, case-insensitive", examples=["BTCUSDT"]),
]
FeatureValue = Annotated[float, Field(allow_inf_nan=False)] | None
Source = Literal["primary", "cache", "baseline", "abstain"]

PREDICTION_EXAMPLE = {
    "decision_id": "5b0c8f0e6f2a4d1e9b7c3a2d1e0f4a5b",
    "symbol": "BTCUSDT",
    "signal": 1,
    "probability": 0.5473,
    "smoothed_probability": 0.5281,
    "smoothed_hours": 6,
    "source": "primary",
    "fallback_reasons": [],
    "model_version": "v20250315T1200-3f2a",
    "model_sha256": "9f2c1e4b5a6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f",
    "feature_version": "b6a4f3e2d1c0b9a8",
    "feature_timestamp": "2025-03-15T12:00:00+00:00",
    "feature_source": "online_snapshot",
    "cached_from": None,
    "latency_ms": 0.21,
}


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"symbol": "BTCUSDT"}, {"symbol": "ETHUSDT", "budget_ms": 20}]},
    )
    symbol: SymbolField
    features: dict[str, FeatureValue] | None = Field(
        default=None,
        max_length=1000,
        description=(
            "Every feature the model uses, by name (null for missing). Omit to score the online snapshot: the "
            "features the graph computed for the newest hour."
        ),
    )
    earlier_features: list[dict[str, FeatureValue]] | None = Field(
        default=None,
        max_length=MAX_SMOOTHING_HOURS - 1,
        description=(
            "With `features`: the features of the hours before, newest first, each like `features`. The model's "
            "trading rule (GET /model: `smoothing_hours`) trades the mean P(up) of that many hours; give up to "
            "smoothing_hours - 1 earlier hours (fewer average fewer: `smoothed_hours` in the response says how "
            "many). Without `features` the online snapshot supplies them."
        ),
    )
    budget_ms: float | None = Field(
        default=None,
        gt=0,
        le=10_000,
        description="Time budget for this decision (default ALPHAPULSE_API_TIME_BUDGET_MS). When too little of it "
        "is left for the model, the chain moves on to the cache, the rules baseline, or abstains.",
    )


class BatchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"requests": [{"symbol": "BTCUSDT"}, {"symbol": "ETHUSDT"}]}]}
    )
    requests: list[PredictRequest] = Field(
        min_length=1, description="Up to ALPHAPULSE_API_MAX_BATCH requests (256 by default)"
    )


class CachedFrom(BaseModel):
    decision_id: str = Field(description="The primary decision whose score this is (see GET /audit/{id})")
    scored_at: str
    age_seconds: float
    feature_version: str


class PredictResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [PREDICTION_EXAMPLE]})
    decision_id: str = Field(description="Id of this decision's audit packet: GET /audit/{decision_id}")
    symbol: str
    signal: Literal[-1, 0, 1] = Field(description="+1 long, -1 short, 0 flat (also when abstaining)")
    probability: float | None = Field(description="P(next hour's close > this hour's close); null when abstaining")
    smoothed_probability: float | None = Field(
        description="what the signal thresholds: the mean P(up) over the trading rule's hours (this one and the "
        "earlier ones); equal to probability for a one-hour rule and the baseline; null when abstaining"
    )
    smoothed_hours: int | None = Field(
        description="how many hours smoothed_probability averaged (the rule's smoothing_hours unless earlier hours "
        "are missing); null when abstaining"
    )
    source: Source = Field(
        description="who answered: the promoted model (primary), its last score for this symbol and hour (cache), "
        "the rules baseline, or nobody (abstain, flat)"
    )
    fallback_reasons: list[str] = Field(
        description="why each source before the one that answered could not, in order ('primary: ...')"
    )
    model_version: str | None = Field(description="the model whose score this is; null for baseline and abstain")
    model_sha256: str | None
    feature_version: str | None = Field(description="version of the features the decision used")
    feature_timestamp: str | None = Field(description="hour (UTC) the online features describe; null for given ones")
    feature_source: Literal["online_snapshot", "request"]
    cached_from: CachedFrom | None = Field(description="for source=cache: where the cached score came from")
    latency_ms: float = Field(description="time spent deciding, in milliseconds")


class BatchResponse(BaseModel):
    predictions: list[PredictResponse]


class ErrorResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"detail": "missing or invalid API key (X-API-Key)"}]})
    detail: Any


class HealthResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "degraded",
                    "reasons": ["failed to load the promoted model: artifact sha256 is ..., still serving v1"],
                    "model_version": "v1",
                    "model_loaded_at": "2025-03-15T12:01:02+00:00",
                    "model_source": "store",
                    "pending_model_version": None,
                    "feature_snapshot_ts": "2025-03-15T12:00:00+00:00",
                    "feature_version": "b6a4f3e2d1c0b9a8",
                    "circuit": "closed",
                    "reloads": 3,
                    "audit_pending": 0,
                    "audit_unshipped": 1840,
                    "audit_archive": "s3://alphapulse/prod/audit",
                }
            ]
        }
    )
    status: Literal["ok", "degraded", "unavailable"] = Field(
        description="ok; degraded (serving, with reasons); unavailable (no model: only the baseline can answer)"
    )
    reasons: list[str]
    model_version: str | None
    model_loaded_at: str | None
    model_source: Literal["store", "mlflow"] = Field(
        description="where model bytes are loaded from: the object store, or the MLflow registry"
    )
    pending_model_version: str | None = Field(description="a verified model waiting for features of its version")
    feature_snapshot_ts: str | None
    feature_version: str | None
    circuit: Literal["closed", "open", "half_open"]
    reloads: int
    audit_pending: int = Field(description="audit packets accepted but not yet committed to the local database")
    audit_unshipped: int = Field(description="audit packets committed locally that the archive has not confirmed")
    audit_archive: str | None = Field(description="where sealed audit batches are shipped")


class ReadyResponse(BaseModel):
    ready: bool
    reasons: list[str]


class ModelResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    version: str
    sha256: str
    feature_version: str
    feature_names: list[str]
    signal_band: float
    smoothing_hours: int = Field(description="the trading rule's moving mean: P(up) averaged over this many hours")
    trading_rule: str = Field(description="the trading rule training chose, in words")
    symbols: list[str]
    loaded_at: str
    predictor: str = Field(description="how the artifact is scored in this process")
    baseline: dict = Field(description="the rules baseline's definition and parameters")
    manifest: dict = Field(description="the promoted-model manifest as published by the graph")


class AuditPacket(BaseModel):
    model_config = ConfigDict(extra="allow")
    decision_id: str
    decided_at: str
    key_id: str = Field(description="fingerprint of the API key that asked (never the key)")
    request_id: str | None = Field(
        None, description="the request's X-Request-ID (the caller's, or the one the API made and echoed)"
    )
    symbol: str
    source: Source
    request: dict
    features: dict = Field(description="source, timestamp, version, snapshot sha256 and the exact values used")
    model: dict | None = Field(description="version, sha256, feature version and signal band of the served model")
    output: dict
    fallback_reasons: list[str]
    latency_ms: float
