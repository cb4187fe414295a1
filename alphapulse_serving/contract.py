"""What the asset graph publishes for the API, and the scoring code both sides run.

The API knows exactly two things: the promoted-model manifest and the online feature snapshot, both JSON objects
in the object store. The `predictions` asset scores with the same `ScoringModel`, so what the API answers for an
hour is what the graph recorded for it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np

from alphapulse_serving.predictors import MODEL_FORMATS, XGBOOST_UBJ, ArtifactError, Predictor, load_predictor

__all__ = ["ArtifactError", "MODEL_FORMATS", "ModelManifest", "ScoringModel", "read_uri", "sha256_hex"]

MANIFEST_KEY = "serving/promoted_model.json"
SNAPSHOT_KEY = "serving/online_features.json"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def store_location(raw: str) -> str:
    """The object store as the graph and the API both name it (ALPHAPULSE_OBJECT_STORE_URL): an `s3://bucket/prefix`
    URL, kept as given, or a local directory (a path or `file://` URL), made absolute. ValueError otherwise."""
    parsed = urlparse(raw)
    if parsed.scheme == "s3":
        if not _BUCKET.match(parsed.netloc):
            raise ValueError(
                f"{raw!r}: an S3 URL names a bucket, like s3://alphapulse/prod (expected s3://<bucket>/<optional "
                "prefix> with a valid bucket name)"
            )
        return raw
    if parsed.scheme in ("", "file"):
        return str(Path(unquote(parsed.path) if parsed.scheme else raw).expanduser().resolve())
    raise ValueError(
        f"{raw!r}: the object store is a local directory or an s3:// URL (expected s3://<bucket>/<prefix> or a path)"
    )


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/key` as ("bucket", "some/key")."""
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.strip("/")


def read_uri(uri: str) -> bytes:
    """Bytes at a `file://` URI, a plain path or an `s3://bucket/key` URI (endpoint and credentials from boto3's
    usual environment: AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ... or an instance role)."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        path = Path(unquote(parsed.path) if parsed.scheme else uri)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ArtifactError(f"cannot read {uri}: {exc.strerror or exc}") from exc
    if parsed.scheme == "s3":
        from alphapulse_serving.s3 import read_s3_object

        try:
            return read_s3_object(*split_s3_uri(uri), uri)
        except FileNotFoundError:
            raise ArtifactError(f"cannot read {uri}: no such object") from None
    raise ArtifactError(f"unsupported URI scheme {parsed.scheme!r} in {uri}")


def signal_from_probability(probability: float, band: float) -> int:
    """+1 long when P(up) > 0.5 + band, -1 short when < 0.5 - band, else 0 (flat)."""
    if probability > 0.5 + band:
        return 1
    if probability < 0.5 - band:
        return -1
    return 0


@dataclass(frozen=True)
class ModelManifest:
    version: str
    model_uri: str
    sha256: str
    feature_names: list[str]
    feature_version: str
    signal_band: float
    symbols: list[str]
    training_window: dict[str, str]
    metrics: dict[str, float | None]
    trained_at: str
    promoted_at: str
    decision_partition: str
    mlflow_run_id: str | None = None
    model_format: str = XGBOOST_UBJ
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True, allow_nan=False).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ModelManifest:
        try:
            payload = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"manifest is not valid JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise ArtifactError("manifest must be a JSON object")
        required = [f for f in cls.__dataclass_fields__ if f not in ("mlflow_run_id", "model_format", "extra")]
        missing = [f for f in required if f not in payload]
        if missing:
            raise ArtifactError(f"manifest lacks {', '.join(missing)}")
        unknown = set(payload) - set(cls.__dataclass_fields__)
        if unknown:
            raise ArtifactError(f"manifest has unknown fields {', '.join(sorted(unknown))}")
        return cls(**payload)


class ScoringModel:
    """A verified, loaded model: P(next hour up) from a feature vector in `feature_names` order."""

    def __init__(self, predictor: Predictor, feature_names: list[str], signal_band: float, version: str):
        self.predictor = predictor
        self.feature_names = list(feature_names)
        self.signal_band = signal_band
        self.version = version
        self._index = {name: i for i, name in enumerate(self.feature_names)}

    @classmethod
    def load(cls, manifest: ModelManifest) -> ScoringModel:
        return cls.from_artifact(
            read_uri(manifest.model_uri),
            manifest.sha256,
            manifest.feature_names,
            manifest.signal_band,
            manifest.version,
            manifest.model_format,
        )

    @classmethod
    def from_artifact(
        cls,
        data: bytes,
        expected_sha256: str,
        feature_names: list[str],
        signal_band: float,
        version: str,
        model_format: str = XGBOOST_UBJ,
    ) -> ScoringModel:
        digest = sha256_hex(data)
        if digest != expected_sha256:
            raise ArtifactError(f"model {version}: artifact sha256 is {digest}, expected {expected_sha256}")
        try:
            predictor = load_predictor(model_format, data)
        except ArtifactError as exc:
            raise ArtifactError(f"model {version}: {exc}") from exc
        if predictor.n_features != len(feature_names):
            raise ArtifactError(
                f"model {version}: artifact expects {predictor.n_features} features, {len(feature_names)} are listed"
            )
        return cls(predictor, feature_names, signal_band, version)

    def vector(self, values: dict[str, float | None]) -> np.ndarray:
        """A feature dict as a row in model order; None and NaN mean missing (every family handles them)."""
        row = np.full((1, len(self.feature_names)), np.nan, dtype=np.float64)
        for name, value in values.items():
            i = self._index.get(name)
            if i is not None and value is not None and not (isinstance(value, float) and math.isnan(value)):
                row[0, i] = value
        return row

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        return self.predictor.predict_proba(matrix)

    def signal(self, probability: float) -> int:
        return signal_from_probability(probability, self.signal_band)
