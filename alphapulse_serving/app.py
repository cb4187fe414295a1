"""The prediction API: the promoted model behind a fallback chain, with keys, rate limits, an audit trail and
Prometheus metrics.

Services are built once from the configuration (`services.py`) and started in the lifespan; the routes live in
`routers/` by what they are for, with their dependencies (`dependencies.py`) declared once. Hot paths are
`async def` (no thread-pool hop) and answer with orjson (`responses.json_response`).
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware

from alphapulse_serving.config import ServingConfig
from alphapulse_serving.middleware import GuardMiddleware
from alphapulse_serving.responses import validation_error
from alphapulse_serving.routers import audit, operations, predict
from alphapulse_serving.services import build_services

ROUTERS = (predict.router, audit.router, operations.router)
DESCRIPTION = (
    "Hourly P(up) and a long/flat/short signal per symbol from the promoted model, behind a fallback chain "
    "(primary model → cached score → rules baseline → abstain). Every decision has an audit packet. "
    "Send an API key in `X-API-Key`."
)


def create_app(config: ServingConfig) -> FastAPI:
    services = build_services(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        services.start()
        yield
        services.stop()

    app = FastAPI(title="AlphaPulse prediction API", version="0.2.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.services = services
    app.add_middleware(GuardMiddleware, max_body_bytes=config.max_body_bytes, metrics=services.metrics)
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Content-Type"],
        )
    app.add_exception_handler(RequestValidationError, validation_error)
    # The routers' routes are registered flat, as include_router did before FastAPI 0.137: since then an included
    # router stays a node every request resolves again, which cost ~12% of the peak decision rate here
    # (docs/benchmarks.md). Flat, app.dependency_overrides does not reach them; nothing here overrides.
    for router in ROUTERS:
        app.router.routes.extend(router.routes)
    return app
