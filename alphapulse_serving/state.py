"""What the API holds in memory: the loaded champion and the online features, refreshed from the object store.

A refresh that fails leaves the previous good state in place and records why, so a broken promotion degrades the
API instead of taking it down.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from alphapulse_serving.contract import (
    MANIFEST_KEY,
    SNAPSHOT_KEY,
    ArtifactError,
    ModelManifest,
    ScoringModel,
    sha256_hex,
)


@dataclass(frozen=True)
class OnlineFeatures:
    feature_version: str
    rows: dict[str, dict]  # symbol -> {"ts": iso, "values": {feature: value}}

    @classmethod
    def from_json(cls, data: bytes) -> OnlineFeatures:
        try:
            payload = json.loads(data)
            return cls(str(payload["feature_version"]), dict(payload["rows"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"online feature snapshot is malformed: {exc}") from exc


@dataclass
class ServingState:
    store_root: Path
    model: ScoringModel | None = None
    manifest: ModelManifest | None = None
    model_loaded_at: str | None = None
    features: OnlineFeatures | None = None
    errors: dict[str, str] = field(default_factory=dict)
    reloads: int = 0
    _manifest_digest: str | None = None
    _snapshot_digest: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def refresh(self) -> None:
        """Reload whatever changed since the last refresh. Never raises: failures are kept in `errors`."""
        with self._lock:
            self._refresh_model()
            self._refresh_features()

    def _read(self, key: str) -> bytes | None:
        path = self.store_root / key
        return path.read_bytes() if path.is_file() else None

    def _refresh_model(self) -> None:
        data = self._read(MANIFEST_KEY)
        if data is None:
            self.errors["model"] = "no promoted model yet (the promoted_model asset has not been materialized)"
            return
        digest = sha256_hex(data)
        if digest == self._manifest_digest:
            return
        try:
            manifest = ModelManifest.from_json(data)
            model = ScoringModel.load(manifest)
        except (ArtifactError, OSError, TypeError, ValueError) as exc:
            kept = f"; still serving {self.manifest.version}" if self.manifest else ""
            self.errors["model"] = f"failed to load the promoted model: {exc}{kept}"
            self._manifest_digest = digest  # do not retry the same broken manifest on every poll
            return
        # One assignment each: a request in flight sees the old model or the new one, never a mix.
        self.model, self.manifest = model, manifest
        self.model_loaded_at = datetime.now(UTC).isoformat()
        self._manifest_digest = digest
        self.reloads += 1
        self.errors.pop("model", None)

    def _refresh_features(self) -> None:
        data = self._read(SNAPSHOT_KEY)
        if data is None:
            self.errors["features"] = "no online feature snapshot yet (the features asset has not been materialized)"
            return
        digest = sha256_hex(data)
        if digest == self._snapshot_digest:
            return
        try:
            self.features = OnlineFeatures.from_json(data)
            self.errors.pop("features", None)
        except ArtifactError as exc:
            self.errors["features"] = str(exc)
        self._snapshot_digest = digest

    def problems(self) -> list[str]:
        problems = list(self.errors.values())
        if self.manifest and self.features and self.manifest.feature_version != self.features.feature_version:
            problems.append(
                f"online features are version {self.features.feature_version}, the model needs "
                f"{self.manifest.feature_version}: only requests that bring their own features can be served"
            )
        return problems


def poll_forever(state: ServingState, interval: float, stop: threading.Event) -> None:
    while not stop.wait(interval):
        state.refresh()
