"""What the API decides with, built once from its configuration and held by the app for the routers."""

from __future__ import annotations

import gc
import threading
from dataclasses import dataclass, field
from datetime import datetime

from alphapulse_contract.baseline import RulesBaseline
from alphapulse_contract.scoring import ScoringModel
from alphapulse_serving.audit import AuditLog
from alphapulse_serving.audit_archive import archive_for
from alphapulse_serving.chain import FallbackChain
from alphapulse_serving.config import ServingConfig
from alphapulse_serving.metrics import ApiMetrics
from alphapulse_serving.registry import MlflowRegistryLoader
from alphapulse_serving.resilience import CircuitBreaker, ScoreCache
from alphapulse_serving.security import ApiKeys, KeysFile, RateLimiter, read_keys
from alphapulse_serving.state import ServingState


@dataclass
class Services:
    config: ServingConfig
    keys: ApiKeys
    keys_file: KeysFile  # re-read each poll: a rotated key works, a removed one stops, without a restart
    limiter: RateLimiter
    metrics: ApiMetrics
    cache: ScoreCache
    breaker: CircuitBreaker
    baseline: RulesBaseline
    audit: AuditLog
    serving: ServingState  # the promoted model and the online feature snapshot, as last polled
    chain: FallbackChain
    _stop: threading.Event = field(default_factory=threading.Event)
    _poller: threading.Thread | None = None

    def start(self) -> None:
        """Open the audit trail, load what the store holds, and poll the store and the keys file from a thread."""
        self.audit.start()
        self.serving.refresh()
        # What start-up made (imports, the app, the first model and snapshot) lives as long as the process: frozen
        # out of the collector's sight, a full collection no longer walks it. Under load that walk was a pause of
        # ~200 ms in the request path (tests/test_serving_live.py: one decision in ~1,700 reached the chain 210 ms
        # after it arrived; frozen, the longest wait was 10-18 ms).
        gc.collect()
        gc.freeze()
        self._poller = threading.Thread(target=self._poll, daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.config.poll_seconds):
            self.serving.refresh()
            self.keys_file.refresh()

    def stop(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
        self.audit.stop()  # everything accepted is committed, and shipped if the archive answers, before the exit


def build_services(config: ServingConfig) -> Services:
    metrics = ApiMetrics()
    cache = ScoreCache(config.cache_max_age_seconds)
    breaker = CircuitBreaker(config.breaker_failures, config.breaker_cooldown_seconds)
    baseline = RulesBaseline()
    audit = AuditLog(
        config.audit_dir,
        max_pending=config.audit_max_pending,
        archive=archive_for(config.audit_archive),
        ship_seconds=config.audit_ship_seconds,
        local_retention_seconds=config.audit_local_retention_hours * 3600,
        max_unshipped=config.audit_max_unshipped,
    )

    def on_model(loaded) -> None:
        cache.clear()
        metrics.model_reloads.inc()
        m = loaded.manifest
        metrics.serving(m.version, m.sha256, m.feature_version)

    def on_snapshot(snapshot) -> None:
        audit.remember_snapshot(snapshot.sha256, snapshot.body)
        if snapshot.newest_ts:
            metrics.snapshot_timestamp.set(datetime.fromisoformat(snapshot.newest_ts).timestamp())

    serving = ServingState(
        config.store,
        load_model=MlflowRegistryLoader(config.mlflow_tracking_uri)
        if config.model_source == "mlflow"
        else ScoringModel.load,
        on_model=on_model,
        on_snapshot=on_snapshot,
        on_load_failure=lambda _: metrics.model_load_failures.inc(),
    )
    # The file's scopes; keys given directly (tests, ALPHAPULSE_API_KEYS) have every scope.
    keys = ApiKeys(read_keys(config.api_keys_inline, config.api_keys_file) if config.api_keys_file else config.api_keys)
    return Services(
        config=config,
        keys=keys,
        keys_file=KeysFile(config.api_keys_inline, config.api_keys_file, keys),
        limiter=RateLimiter(config.rate_limit_per_second, config.rate_limit_burst),
        metrics=metrics,
        cache=cache,
        breaker=breaker,
        baseline=baseline,
        audit=audit,
        serving=serving,
        chain=FallbackChain(serving, breaker, cache, baseline, config.time_budget_ms / 1e3),
    )
