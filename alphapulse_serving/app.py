"""The prediction API: the latest promoted model, scored on the online feature snapshot or on given features."""

from __future__ import annotations

import math
import os
import threading
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Literal

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from alphapulse_serving.state import ServingState, poll_forever

SymbolField = Annotated[str, Field(pattern=r"^[A-Za-z0-9]{2,20}$", examples=["BTCUSDT"])]
FeatureValue = Annotated[float, Field(allow_inf_nan=False)] | None


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    symbol: SymbolField
    features: dict[str, FeatureValue] | None = Field(
        default=None,
        description="Every feature the model uses, by name (null for missing). Omit to use the online snapshot.",
    )


class PredictResponse(BaseModel):
    symbol: str
    signal: Literal[-1, 0, 1] = Field(description="+1 long, -1 short, 0 flat (also when abstaining)")
    probability: float | None = Field(description="P(next hour's close > this hour's close); null when abstaining")
    source: Literal["primary", "abstain"] = Field(
        description="who answered: the promoted model, or nobody (flat) because the model could not be used"
    )
    fallback_reasons: list[str] = Field(
        default_factory=list, description="why each source before the one that answered could not answer"
    )
    model_version: str
    feature_timestamp: str | None = Field(
        description="Hour (UTC) the online features describe; null for given features"
    )
    feature_source: Literal["online_snapshot", "request"]
    feature_version: str


def default_store_root() -> Path:
    home = Path(os.environ.get("ALPHAPULSE_HOME", "").strip() or ".alphapulse").expanduser().resolve()
    return home / "objects"


def create_app(store_root: Path | None = None, poll_seconds: float = 2.0) -> FastAPI:
    state = ServingState(store_root or default_store_root())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.refresh()
        stop = threading.Event()
        poller = threading.Thread(target=poll_forever, args=(state, poll_seconds, stop), daemon=True)
        poller.start()
        yield
        stop.set()
        poller.join(timeout=5)

    app = FastAPI(title="AlphaPulse prediction API", version="0.1.0", lifespan=lifespan)
    app.state.serving = state

    @app.get("/health")
    def health():
        problems = state.problems()
        if state.model is None:
            return JSONResponse(
                status_code=503, content={"status": "unavailable", "model_version": None, "reasons": problems}
            )
        snapshot_ts = None
        if state.features:
            snapshot_ts = max((row["ts"] for row in state.features.rows.values()), default=None)
        return {
            "status": "degraded" if problems else "ok",
            "model_version": state.manifest.version,
            "model_loaded_at": state.model_loaded_at,
            "feature_snapshot_ts": snapshot_ts,
            "reloads": state.reloads,
            "reasons": problems,
        }

    @app.get("/model")
    def model():
        if state.manifest is None:
            raise HTTPException(503, detail=state.errors.get("model", "no model loaded"))
        return asdict(state.manifest)

    @app.post("/predict", response_model=PredictResponse)
    def predict(request: PredictRequest) -> PredictResponse:
        scorer, manifest, online = state.model, state.manifest, state.features
        if scorer is None or manifest is None:
            raise HTTPException(503, detail=state.errors.get("model", "no model loaded"))
        symbol = request.symbol.upper()
        known = set(manifest.symbols) | (set(online.rows) if online else set())
        if symbol not in known:
            raise HTTPException(404, detail=f"unknown symbol {symbol}; this model serves {', '.join(sorted(known))}")
        if request.features is not None:
            missing = [n for n in scorer.feature_names if n not in request.features]
            unknown = sorted(set(request.features) - set(scorer.feature_names))
            if missing or unknown:
                parts = []
                if missing:
                    parts.append(f"missing features: {', '.join(missing)}")
                if unknown:
                    parts.append(f"unknown features: {', '.join(unknown)}")
                raise HTTPException(
                    422,
                    detail="; ".join(parts) + f" (model {manifest.version} needs exactly {len(scorer.feature_names)})",
                )
            values, feature_ts, source = request.features, None, "request"
        else:
            if online is None:
                raise HTTPException(503, detail=state.errors.get("features", "no online features loaded"))
            row = online.rows.get(symbol)
            if row is None:
                raise HTTPException(404, detail=f"no online features for {symbol}")
            if online.feature_version != manifest.feature_version:
                # Scoring features computed by other code than the model was trained on gives a wrong answer with
                # no error: the model abstains instead, and says why.
                return PredictResponse(
                    symbol=symbol,
                    signal=0,
                    probability=None,
                    source="abstain",
                    fallback_reasons=[
                        f"primary: online features are version {online.feature_version}, model {manifest.version} "
                        f"needs {manifest.feature_version} (retrain on the current features, or send features "
                        "explicitly)"
                    ],
                    model_version=manifest.version,
                    feature_timestamp=row["ts"],
                    feature_source="online_snapshot",
                    feature_version=online.feature_version,
                )
            values, feature_ts, source = row["values"], row["ts"], "online_snapshot"
        probability = float(scorer.predict_proba(scorer.vector(values))[0])
        if not math.isfinite(probability):
            raise HTTPException(500, detail="the model returned a non-finite probability")
        return PredictResponse(
            symbol=symbol,
            signal=scorer.signal(probability),
            probability=probability,
            source="primary",
            model_version=manifest.version,
            feature_timestamp=feature_ts,
            feature_source=source,
            feature_version=manifest.feature_version,
        )

    return app
