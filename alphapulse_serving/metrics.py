"""Prometheus metrics for the API, in a registry of its own (one per app, so tests can build several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Sub-millisecond resolution where the API lives, up to the seconds a stalled request would take.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# Paths become a fixed set of route labels: an unbounded label (an audit id, a scanner's URL) would grow the
# metric without limit.
ROUTES = {
    "/predict": "predict",
    "/predict/batch": "predict_batch",
    "/model": "model",
    "/health": "health",
    "/ready": "ready",
    "/metrics": "metrics",
}


def route_of(path: str) -> str:
    if path in ROUTES:
        return ROUTES[path]
    if path.startswith("/audit/"):
        return "audit"
    if path in ("/docs", "/openapi.json", "/redoc", "/docs/oauth2-redirect"):
        return "docs"
    return "other"


class ApiMetrics:
    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.latency = Histogram(
            "alphapulse_api_request_duration_seconds",
            "Time from request start to the end of the response, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "alphapulse_api_requests", "HTTP requests by route and status code", ["route", "status"], registry=r
        )
        self.predictions = Counter(
            "alphapulse_api_predictions", "Decisions by the source that answered", ["source"], registry=r
        )
        self.fallbacks = Counter(
            "alphapulse_api_fallbacks",
            "A source that could not answer, by source and reason category",
            ["stage", "reason"],
            registry=r,
        )
        self.model_info = Gauge(
            "alphapulse_api_model_info",
            "The served model (value 1)",
            ["version", "sha256", "feature_version"],
            registry=r,
        )
        self.model_reloads = Counter("alphapulse_api_model_reloads", "Models loaded and put into service", registry=r)
        self.model_load_failures = Counter(
            "alphapulse_api_model_load_failures", "Promoted models that failed to load or were refused", registry=r
        )
        self.circuit_open = Gauge(
            "alphapulse_api_circuit_open", "1 while the primary model's circuit breaker is open", registry=r
        )
        self.audit_pending = Gauge(
            "alphapulse_api_audit_pending", "Audit packets accepted but not yet committed", registry=r
        )
        self.audit_write_errors = Gauge(
            "alphapulse_api_audit_write_errors", "Failed audit commits since start (retried)", registry=r
        )
        self.audit_unshipped = Gauge(
            "alphapulse_api_audit_unshipped",
            "Audit packets committed locally whose batch the archive has not confirmed",
            registry=r,
        )
        self.audit_ship_errors = Gauge(
            "alphapulse_api_audit_ship_errors", "Failed audit shipping passes since start (retried)", registry=r
        )
        self.audit_shipped_batches = Gauge(
            "alphapulse_api_audit_shipped_batches", "Audit batches the archive confirmed since start", registry=r
        )
        self.snapshot_timestamp = Gauge(
            "alphapulse_api_feature_snapshot_timestamp_seconds",
            "Newest hour in the online feature snapshot, as a Unix time",
            registry=r,
        )
        self._children: dict[tuple, object] = {}

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        # Label lookups are the expensive part of a Prometheus call: bind each child once.
        key = (route, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = (self.latency.labels(route), self.requests.labels(route, str(status)))
        child[0].observe(seconds)
        child[1].inc()

    def decided(self, source: str, fallbacks: list[tuple[str, str]]) -> None:
        key = ("source", source)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.predictions.labels(source)
        child.inc()
        for stage, reason in fallbacks:
            self.fallbacks.labels(stage, reason).inc()

    def serving(self, version: str, sha256: str, feature_version: str) -> None:
        self.model_info.clear()
        self.model_info.labels(version, sha256, feature_version).set(1)
