"""Responses and errors in the shapes the API documents."""

from __future__ import annotations

import orjson
from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.responses import Response

from alphapulse_serving.chain import FeatureMismatch, UnknownSymbol
from alphapulse_serving.schemas import ErrorResponse

# The errors every authenticated route can answer, for the OpenAPI schema.
ERRORS = {
    400: {"model": ErrorResponse, "description": "the body is not parseable (bad encoding, bad Content-Length)"},
    401: {"model": ErrorResponse, "description": "missing or invalid X-API-Key"},
    403: {"model": ErrorResponse, "description": "the key lacks this route's scope (predict, audit or admin)"},
    413: {"model": ErrorResponse, "description": "request body over ALPHAPULSE_API_MAX_BODY_BYTES"},
    429: {
        "model": ErrorResponse,
        "description": "rate limit exceeded; Retry-After says when to retry",
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
    },
}


def json_response(payload, status: int = 200, headers: dict | None = None) -> Response:
    """orjson straight to bytes: at a few hundred microseconds a request, FastAPI's response validation would be a
    large share of the cost. The pydantic models still define the OpenAPI schema; the tests validate against them."""
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json", headers=headers)


def unprocessable(message: str, loc: tuple, kind: str) -> HTTPException:
    """A 422 in the shape FastAPI gives its own validation errors, so clients parse one format."""
    return HTTPException(422, detail=[{"type": kind, "loc": list(loc), "msg": message}])


def client_error(exc: UnknownSymbol | FeatureMismatch, features_loc: tuple) -> HTTPException:
    if isinstance(exc, UnknownSymbol):
        return HTTPException(404, detail=str(exc))
    return unprocessable(str(exc), features_loc, "feature_mismatch")


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    # The default handler echoes the offending input back; an input can hold a key pasted in the wrong place.
    errors = [{k: e[k] for k in ("type", "loc", "msg") if k in e} for e in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": errors})
