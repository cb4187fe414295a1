"""A local stand-in for `GET /api/v3/klines`, written from the documented format, with injectable failures."""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlparse

from http_stub import ServedStub


@dataclass
class Failure:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = '{"code": -1003, "msg": "Too many requests."}'
    delay: float = 0.0  # seconds before answering (a timeout when longer than the client's)


class KlinesStub(ServedStub):
    def __init__(self, klines: dict[str, list[list]], page_cap: int = 1000):
        self.klines = {s: sorted(rows, key=lambda r: r[0]) for s, rows in klines.items()}
        self.page_cap = page_cap
        self.failures: deque[Failure] = deque()
        self.requests: list[dict[str, str]] = []
        self._serve()

    @property
    def url(self) -> str:
        return self.base_url

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body.encode())

            def do_GET(self) -> None:
                url = urlparse(self.path)
                params = {k: v[0] for k, v in parse_qs(url.query).items()}
                stub.requests.append(params)
                if url.path != "/api/v3/klines":
                    return self._send(404, '{"code": -1, "msg": "not found"}')
                if stub.failures:
                    failure = stub.failures.popleft()
                    time.sleep(failure.delay)
                    return self._send(failure.status, failure.body, failure.headers)
                rows = stub.klines.get(params.get("symbol", ""))
                if rows is None:
                    return self._send(400, '{"code": -1121, "msg": "Invalid symbol."}')
                start, end = int(params.get("startTime", 0)), int(params.get("endTime", 2**62))
                limit = min(int(params.get("limit", 500)), 1000, stub.page_cap)
                page = [r for r in rows if start <= r[0] <= end][:limit]
                used = str(2 * len(stub.requests))
                self._send(200, json.dumps(page), {"X-MBX-USED-WEIGHT-1M": used})

        return Handler
