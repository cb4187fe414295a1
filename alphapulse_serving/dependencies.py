"""The routers' dependencies, declared once: the services, the API key check and the rate-limit charge.

All are `async def`: a plain `def` dependency runs on the thread pool, a hop that costs more than the check.
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from alphapulse_serving.services import Services

API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key from ALPHAPULSE_API_KEYS")


async def _services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(_services)]


async def _identity(services: ServicesDep, api_key: Annotated[str | None, Security(API_KEY_HEADER)]) -> str:
    identity = services.keys.identify(api_key)
    if identity is None:
        raise HTTPException(
            401, detail="missing or invalid API key (X-API-Key)", headers={"WWW-Authenticate": "ApiKey"}
        )
    return identity


# The caller's key id, once the key is checked; the route charges the rate limit itself (a batch costs its size).
Identity = Annotated[str, Security(_identity)]


def charge(services: Services, identity: str, cost: int) -> None:
    """Take `cost` requests from the key's bucket, or refuse with 429 (and Retry-After when waiting helps)."""
    limiter = services.limiter
    wait = limiter.acquire(identity, cost)
    if wait:
        if math.isinf(wait):
            raise HTTPException(429, detail=f"a batch of {cost} exceeds the burst of {limiter.burst:.0f}")
        raise HTTPException(
            429,
            detail=f"rate limit of {limiter.rate:g} requests/s (burst {limiter.burst:g}) exceeded for this key",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


async def _caller(services: ServicesDep, identity: Identity) -> str:
    charge(services, identity, 1)
    return identity


# The caller's key id, its key checked and one request charged to it.
Caller = Annotated[str, Security(_caller)]
