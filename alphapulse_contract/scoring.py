"""What the asset graph publishes for the API, and the scoring code both sides run.

The API knows exactly two things: the promoted-model manifest and the online feature snapshot, both JSON objects
in the object store. The `predictions` asset scores with the same `ScoringModel`, so what the API answers for an
hour is what the graph recorded for it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from alphapulse_contract.predictors import XGBOOST_UBJ, ArtifactError, Predictor, load_predictor
from alphapulse_contract.storage import read_uri

MANIFEST_KEY = "serving/promoted_model.json"
SNAPSHOT_KEY = "serving/online_features.json"
# The longest moving mean a trading rule may take: the online snapshot carries this many hours per symbol.
MAX_SMOOTHING_HOURS = 24
# The trading rules training chooses from by default: every band x smoothing pair (ALPHAPULSE_SIGNAL_BANDS,
# ALPHAPULSE_SMOOTHING_HOURS).
SIGNAL_BANDS = (0.0, 0.01, 0.02, 0.03, 0.05)
SMOOTHING_HOURS = (1, 3, 6, 12, 24)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def signal_from_probability(probability: float, band: float) -> int:
    """+1 long when P(up) > 0.5 + band, -1 short when < 0.5 - band, else 0 (flat)."""
    if probability > 0.5 + band:
        return 1
    if probability < 0.5 - band:
        return -1
    return 0


@dataclass(frozen=True)
class TradingRule:
    """How a model's probabilities become a position: the mean of its P(up) over the last `smoothing_hours` hours
    of a symbol (this hour included; hours without a feature row are skipped), long above 0.5 + `band`, short below
    0.5 - `band`, flat between.

    Training chooses it inside the walk-forward folds, for net Sharpe after costs; the manifest carries it, and the
    evaluation, `predictions`, the replay and the API all apply it through this class or its vectorised twin
    (`alphapulse_assets.training.metrics.smoothed_probability`). A moving mean rather than a holding period
    because it needs no memory of past positions: the model's scores of the recent hours, which the online snapshot
    carries, fix it, so every API replica answers the same without sharing state.
    """

    band: float
    smoothing_hours: int = 1

    def __post_init__(self):
        if not (0.0 <= self.band < 0.5) or not math.isfinite(self.band):
            raise ValueError(f"band={self.band}: must be in [0, 0.5)")
        if not isinstance(self.smoothing_hours, int) or not 1 <= self.smoothing_hours <= MAX_SMOOTHING_HOURS:
            raise ValueError(
                f"smoothing_hours={self.smoothing_hours}: must be an integer in [1, {MAX_SMOOTHING_HOURS}]"
            )

    def signal(self, probability: float) -> int:
        """The position for an (already smoothed) probability."""
        return signal_from_probability(probability, self.band)

    def position(self, newest_first: list[float]) -> tuple[int, float]:
        """(position, smoothed probability) from this hour's P(up) followed by those of the earlier hours within the
        rule's window, newest first: summed in that order, as the batch version sums, so both agree to the bit."""
        if not newest_first or len(newest_first) > self.smoothing_hours:
            raise ValueError(f"{len(newest_first)} probabilities for a {self.smoothing_hours}-hour rule")
        total = 0.0
        for probability in newest_first:
            total += probability
        smoothed = total / len(newest_first)
        return self.signal(smoothed), smoothed

    @classmethod
    def of_record(cls, band: float | None, smoothing_hours: int | None) -> TradingRule:
        """The rule a `trained_model` row records; rows from before rules were chosen traded FIXED_RULE."""
        return FIXED_RULE if band is None else cls(float(band), int(smoothing_hours or 1))

    def as_dict(self) -> dict[str, float | int]:
        return {"band": self.band, "smoothing_hours": self.smoothing_hours}

    def describe(self) -> str:
        mean = "P(up)" if self.smoothing_hours == 1 else f"the mean P(up) of the last {self.smoothing_hours} hours"
        return f"long when {mean} > {0.5 + self.band:g}, short when < {0.5 - self.band:g}"


# The one rule every model traded before training chose it: what rows and manifests without a chosen rule mean.
FIXED_RULE = TradingRule(0.02, 1)


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
    # With `signal_band`, the trading rule training chose (`TradingRule`); manifests from before it was chosen
    # traded every hour's own probability.
    smoothing_hours: int = 1

    @property
    def rule(self) -> TradingRule:
        return TradingRule(self.signal_band, self.smoothing_hours)

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
        optional = ("mlflow_run_id", "model_format", "extra", "smoothing_hours")
        required = [f for f in cls.__dataclass_fields__ if f not in optional]
        missing = [f for f in required if f not in payload]
        if missing:
            raise ArtifactError(f"manifest lacks {', '.join(missing)}")
        unknown = set(payload) - set(cls.__dataclass_fields__)
        if unknown:
            raise ArtifactError(f"manifest has unknown fields {', '.join(sorted(unknown))}")
        manifest = cls(**payload)
        try:
            manifest.rule  # noqa: B018 - validates band and smoothing_hours
        except (ValueError, TypeError) as exc:
            raise ArtifactError(f"manifest's trading rule is invalid: {exc}") from exc
        return manifest


class ScoringModel:
    """A verified, loaded model: P(next hour up) from a feature vector in `feature_names` order."""

    def __init__(self, predictor: Predictor, feature_names: list[str], rule: TradingRule, version: str):
        self.predictor = predictor
        self.feature_names = list(feature_names)
        self.rule = rule
        self.version = version
        self._index = {name: i for i, name in enumerate(self.feature_names)}

    @classmethod
    def load(cls, manifest: ModelManifest) -> ScoringModel:
        return cls.from_artifact(
            read_uri(manifest.model_uri),
            manifest.sha256,
            manifest.feature_names,
            manifest.rule,
            manifest.version,
            manifest.model_format,
        )

    @classmethod
    def from_artifact(
        cls,
        data: bytes,
        expected_sha256: str,
        feature_names: list[str],
        rule: TradingRule,
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
        return cls(predictor, feature_names, rule, version)

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
        """The position for an already smoothed probability (`TradingRule.position` smooths)."""
        return self.rule.signal(probability)
