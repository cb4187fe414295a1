"""The routers' dependencies, declared once: the services, the API key check with the route's scope, and the
rate-limit charge.

All are `async def`: a plain `def` dependency runs on the thread pool, a hop that costs more than the check. The key
check hands the route its services with the caller, so a decision resolves two dependencies (the key header and the
check), as it did when the routes were closures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, SecurityScopes

from alphapulse_serving.services import Services

API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key from ALPHAPULSE_API_KEYS")
ApiKey = Annotated[str | None, Security(API_KEY_HEADER)]


@dataclass(frozen=True, slots=True)
class Caller:
    identity: str  # the key's id (never the key)
    services: Services


async def _services(request: Request) -> Services:
    return request.app.state.services


# For the routes that need no key (health, readiness, metrics).
ServicesDep = Annotated[Services, Depends(_services)]


def _identify(request: Request, api_key: str | None, scopes: list[str]) -> Caller:
    services: Services = request.app.state.services
    found = services.keys.lookup(api_key)
    if found is None:
        raise HTTPException(
            401, detail="missing or invalid API key (X-API-Key)", headers={"WWW-Authenticate": "ApiKey"}
        )
    identity, granted = found
    for scope in scopes:
        if scope not in granted:
            raise HTTPException(403, detail=f"this key may not {scope} (its scopes: {', '.join(sorted(granted))})")
    return Caller(identity, services)


def charge(caller: Caller, cost: int) -> None:
    """Take `cost` requests from the key's bucket, or refuse with 429 (and Retry-After when waiting helps)."""
    limiter = caller.services.limiter
    wait = limiter.acquire(caller.identity, cost)
    if wait:
        if math.isinf(wait):
            raise HTTPException(429, detail=f"a batch of {cost} exceeds the burst of {limiter.burst:.0f}")
        raise HTTPException(
            429,
            detail=f"rate limit of {limiter.rate:g} requests/s (burst {limiter.burst:g}) exceeded for this key",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


async def _authorised(request: Request, api_key: ApiKey, required: SecurityScopes) -> Caller:
    return _identify(request, api_key, required.scopes)


async def _charged(request: Request, api_key: ApiKey, required: SecurityScopes) -> Caller:
    caller = _identify(request, api_key, required.scopes)
    charge(caller, 1)
    return caller


# The caller, its key checked for the route's scope (security.SCOPES), one request charged to it.
Predicting = Annotated[Caller, Security(_charged, scopes=["predict"])]
Auditing = Annotated[Caller, Security(_charged, scopes=["audit"])]
Administering = Annotated[Caller, Security(_charged, scopes=["admin"])]
# The same check, nothing charged: a batch charges its size itself.
PredictingBatch = Annotated[Caller, Security(_authorised, scopes=["predict"])]
