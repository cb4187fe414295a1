"""What the API holds in memory: the served model and the online features, followed from the object store.

A refresh that fails leaves the previous good state in place and records why, so a broken promotion degrades the
API instead of taking it down. A promoted model built for another feature version than the online snapshot is
loaded and verified but not put into service until the snapshot catches up: a model scored on features it was not
trained on is wrong without any error.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from alphapulse_contract.predictors import ArtifactError, SourceUnreachable
from alphapulse_contract.scoring import MANIFEST_KEY, SNAPSHOT_KEY, ModelManifest, ScoringModel, sha256_hex
from alphapulse_contract.storage import StoreUnavailable, read_s3_object, split_s3_uri
from alphapulse_serving.registry import RegistryUnavailable

# Where the API reads from; an unreachable one is reported under its `source` key until a poll succeeds.
SOURCES = (StoreUnavailable, RegistryUnavailable)


@dataclass(frozen=True)
class OnlineFeatures:
    feature_version: str
    rows: dict[str, dict]  # symbol -> {"ts": iso, "values": {feature: value}}

    @classmethod
    def from_json(cls, data: bytes) -> OnlineFeatures:
        try:
            payload = json.loads(data)
            features = cls(str(payload["feature_version"]), dict(payload["rows"]))
            for symbol, row in features.rows.items():
                if not isinstance(row.get("ts"), str) or not isinstance(row.get("values"), dict):
                    raise ValueError(f"row {symbol} needs a string ts and a values object")
                # The hours before, newest first, that trading rules average (absent in older snapshots).
                earlier = row.get("earlier", [])
                if not isinstance(earlier, list) or not all(
                    isinstance(e, dict) and isinstance(e.get("ts"), str) and isinstance(e.get("values"), dict)
                    for e in earlier
                ):
                    raise ValueError(f"row {symbol}: earlier must be a list of {{ts, values}} objects")
            return features
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ArtifactError(f"online feature snapshot is malformed: {exc}") from exc


@dataclass(frozen=True)
class LoadedModel:
    """A verified model with the manifest that describes it: swapped as one reference, so a request sees one
    model and its own manifest, never a mix."""

    scorer: ScoringModel
    manifest: ModelManifest
    loaded_at: str

    def fits(self, snapshot: Snapshot) -> bool:
        """Whether the online features are of the version this model was trained on."""
        return self.manifest.feature_version == snapshot.features.feature_version


@dataclass(frozen=True)
class Snapshot:
    features: OnlineFeatures
    sha256: str
    body: bytes
    newest_ts: str | None
    loaded_at: str


@dataclass
class ServingState:
    store: str  # a directory, or s3://bucket/prefix
    # How a manifest's model is fetched and verified: from the URI it names (the default) or through the MLflow
    # registry (alphapulse_serving.registry); either way the artifact must match the manifest's sha256.
    load_model: Callable[[ModelManifest], ScoringModel] = ScoringModel.load
    on_model: Callable[[LoadedModel], None] | None = None
    on_snapshot: Callable[[Snapshot], None] | None = None
    on_load_failure: Callable[[str], None] | None = None
    active: LoadedModel | None = None
    pending: LoadedModel | None = None  # verified, waiting for online features of its version
    snapshot: Snapshot | None = None
    errors: dict[str, str] = field(default_factory=dict)
    reloads: int = 0
    _manifest_digest: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def refresh(self) -> None:
        """Reload whatever changed since the last refresh. Never raises: failures are kept in `errors`."""
        with self._lock:
            try:
                self._refresh_features()
                self._refresh_model()
            except SourceUnreachable as exc:
                # Keep serving what is in memory; the next poll tries again.
                self.errors[exc.source] = f"{exc.label} unreachable, serving what was loaded before: {exc}"
            else:
                for source in SOURCES:
                    self.errors.pop(source.source, None)
            self._activate_pending()

    def _read(self, key: str) -> bytes | None:
        """The object's bytes, or None when it is not there (yet); StoreUnavailable when the store cannot say."""
        try:
            if self.store.startswith("s3://"):
                uri = f"{self.store.rstrip('/')}/{key}"
                return read_s3_object(*split_s3_uri(uri), uri)
            return (Path(self.store) / key).read_bytes()
        except FileNotFoundError:
            return None

    def _refresh_features(self) -> None:
        data = self._read(SNAPSHOT_KEY)
        if data is None:
            self.errors["features"] = "no online feature snapshot yet (the features asset has not been materialized)"
            return
        digest = sha256_hex(data)
        if self.snapshot is not None and digest == self.snapshot.sha256:
            return
        try:
            features = OnlineFeatures.from_json(data)
        except ArtifactError as exc:
            kept = f"; still serving the snapshot of {self.snapshot.newest_ts}" if self.snapshot else ""
            self.errors["features"] = f"{exc}{kept}"
            return
        newest = max((row["ts"] for row in features.rows.values()), default=None)
        self.snapshot = Snapshot(features, digest, data, newest, datetime.now(UTC).isoformat())
        self.errors.pop("features", None)
        if self.on_snapshot:
            self.on_snapshot(self.snapshot)

    def _refresh_model(self) -> None:
        data = self._read(MANIFEST_KEY)
        if data is None:
            kept = f"; still serving {self.active.manifest.version}" if self.active else ""
            self.errors["model"] = f"no promoted model (the promoted_model asset has not been materialized){kept}"
            return
        digest = sha256_hex(data)
        if digest == self._manifest_digest:
            return
        try:
            manifest = ModelManifest.from_json(data)
            scorer = self.load_model(manifest)
        except SourceUnreachable:
            raise  # says nothing about the model: tried again at the next poll
        except (ArtifactError, OSError, TypeError, ValueError) as exc:
            self._manifest_digest = digest  # a broken manifest is tried once, not on every poll
            kept = f"; still serving {self.active.manifest.version}" if self.active else ""
            self.errors["model"] = f"failed to load the promoted model: {exc}{kept}"
            if self.on_load_failure:
                self.on_load_failure(str(exc))
            return
        self._manifest_digest = digest
        if self.active and self.active.manifest == manifest:
            self.pending = None
            self.errors.pop("model", None)
            return
        self.pending = LoadedModel(scorer, manifest, datetime.now(UTC).isoformat())

    def _activate_pending(self) -> None:
        candidate = self.pending
        if candidate is None:
            return
        if self.snapshot is not None and not candidate.fits(self.snapshot):
            online = self.snapshot.features.feature_version
            kept = f"; still serving {self.active.manifest.version}" if self.active else ""
            message = (
                f"refused model {candidate.manifest.version}: it needs features of version "
                f"{candidate.manifest.feature_version}, the online features are {online} (it goes into service "
                f"when the snapshot is recomputed at its version){kept}"
            )
            if self.errors.get("model") != message and self.on_load_failure:
                self.on_load_failure(message)
            self.errors["model"] = message
            return
        self.active, self.pending = candidate, None
        self.reloads += 1
        self.errors.pop("model", None)
        if self.on_model:
            self.on_model(candidate)

    def problems(self) -> list[str]:
        problems = list(self.errors.values())
        active, snapshot = self.active, self.snapshot
        if active and snapshot and not active.fits(snapshot):
            problems.append(
                f"online features are version {snapshot.features.feature_version}, model "
                f"{active.manifest.version} needs {active.manifest.feature_version}: requests without their own "
                "features fall back to the cache, the rules baseline or abstain"
            )
        return problems
