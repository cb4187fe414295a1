"""The ASGI guard in front of every route: the start stamp, the request id, the body-size limit, and per-route
metrics."""

from __future__ import annotations

import os
import re
import time

from alphapulse_serving.metrics import ApiMetrics, route_of
from alphapulse_serving.responses import json_response

# A caller's X-Request-ID is kept when it is a plain token; otherwise (or when absent) one is made.
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


def _length_and_request_id(scope) -> tuple[int | None, bytes]:
    """The declared Content-Length (None: not given; -1: not a number) and the request id to use."""
    declared, request_id = None, None
    for name, value in scope.get("headers", ()):
        if name == b"content-length" and declared is None:
            try:
                declared = int(value)
            except ValueError:
                declared = -1
        elif name == b"x-request-id" and _REQUEST_ID.match(value):
            request_id = value
    return declared, request_id or os.urandom(16).hex().encode()


class GuardMiddleware:
    """Pure ASGI (Starlette's BaseHTTPMiddleware costs a task per request): stamps the start time and the request
    id (X-Request-ID, the caller's or a new one, echoed in the response and kept in each decision's audit packet),
    refuses bodies over the size limit before the app reads them, and records latency and status per route."""

    def __init__(self, app, max_body_bytes: int, metrics: ApiMetrics):
        self.app, self.max_body, self.metrics = app, max_body_bytes, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        declared, request_id = _length_and_request_id(scope)
        state = scope.setdefault("state", {})
        state["started"], state["request_id"] = started, request_id.decode()
        status_holder = [500]

        async def send_and_record(message):
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id)]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.metrics.observe_request(route_of(scope["path"]), status_holder[0], time.perf_counter() - started)

        if declared is not None and declared < 0:
            return await json_response({"detail": "invalid Content-Length"}, 400)(scope, receive, send_and_record)
        if declared is not None and declared > self.max_body:
            return await json_response(
                {"detail": f"request body is {declared} bytes; the limit is {self.max_body}"}, 413
            )(scope, receive, send_and_record)
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
                    return await json_response({"detail": f"request body is over the {self.max_body}-byte limit"}, 413)(
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
