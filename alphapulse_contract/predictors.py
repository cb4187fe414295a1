"""Loading a model artifact of any supported family into one predictor interface.

The graph scores with these same loaders (evaluation, champion re-scoring, `predictions`), so research and live
can never disagree about what an artifact predicts. No format here executes code on load: no pickle.
"""

from __future__ import annotations

import json
import math
from typing import Protocol

import numpy as np

from alphapulse_contract.compiled_trees import CompiledTrees, NotCompilable

XGBOOST_UBJ = "xgboost-ubj"
CATBOOST_CBM = "catboost-cbm"
LOGISTIC_JSON = "logistic-json"
MODEL_FORMATS = (XGBOOST_UBJ, CATBOOST_CBM, LOGISTIC_JSON)


class ArtifactError(RuntimeError):
    """A manifest, snapshot or model artifact is missing, malformed or fails its checksum."""


class SourceUnreachable(ArtifactError):
    """Where the API reads from (the object store, the model registry) could not be reached: nothing is known about
    the object, so nothing is concluded, and the next poll tries again. `source` names it in /health's errors."""

    source = "source"  # the key in ServingState.errors
    label = "source"  # what /health calls it


class Predictor(Protocol):
    n_features: int

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        """P(up) per row of a float64 matrix in the model's feature order; NaN means missing."""
        ...


class XGBoostPredictor:
    def __init__(self, data: bytes):
        import xgboost as xgb

        self.booster = xgb.Booster()
        try:
            self.booster.load_model(bytearray(data))
        except xgb.core.XGBoostError as exc:
            raise ArtifactError(f"xgboost cannot load the artifact: {exc}") from exc
        # One thread per prediction: the API serves many small requests, not one large batch. A model trained on
        # a GPU predicts on the CPU here.
        self.booster.set_param({"nthread": 1, "device": "cpu"})
        self.n_features = self.booster.num_features()
        try:
            self.compiled: CompiledTrees | None = CompiledTrees(bytes(self.booster.save_raw(raw_format="json")))
            self.not_compiled_because = None
        except NotCompilable as exc:
            self.compiled, self.not_compiled_because = None, str(exc)

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        if self.compiled is not None:
            return self.compiled.predict_proba(matrix)
        return np.asarray(self.booster.inplace_predict(matrix), dtype=np.float64)


class CatBoostPredictor:
    def __init__(self, data: bytes):
        from catboost import CatBoost, CatBoostError

        self.model = CatBoost()
        try:
            self.model.load_model(blob=data)
        except CatBoostError as exc:
            raise ArtifactError(f"catboost cannot load the artifact: {exc}") from exc
        self.n_features = len(self.model.feature_names_)

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        probabilities = self.model.predict(matrix, prediction_type="Probability", thread_count=1)
        return np.asarray(probabilities[:, 1], dtype=np.float64)


class LogisticPredictor:
    """Median imputation, standardisation and a logistic link, all from a JSON document of numbers."""

    def __init__(self, data: bytes):
        try:
            payload = json.loads(data)
            self.impute = np.asarray(payload["impute"], dtype=np.float64)
            self.mean = np.asarray(payload["mean"], dtype=np.float64)
            self.scale = np.asarray(payload["scale"], dtype=np.float64)
            self.coef = np.asarray(payload["coef"], dtype=np.float64)
            self.intercept = float(payload["intercept"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"not a logistic-json artifact: {exc}") from exc
        shapes = {a.shape for a in (self.impute, self.mean, self.scale, self.coef)}
        if len(shapes) != 1 or self.coef.ndim != 1:
            raise ArtifactError(f"logistic-json artifact: inconsistent vector shapes {sorted(shapes)}")
        if not (np.all(np.isfinite(self.coef)) and math.isfinite(self.intercept) and np.all(self.scale > 0)):
            raise ArtifactError("logistic-json artifact: coefficients must be finite and scales positive")
        self.n_features = len(self.coef)
        # Folded once: standardise-then-dot is one affine map.
        self._weights = self.coef / self.scale
        self._bias = self.intercept - float(self.mean @ self._weights)

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        filled = np.where(np.isnan(matrix), self.impute, matrix)
        return 1.0 / (1.0 + np.exp(-(filled @ self._weights + self._bias)))


_LOADERS = {XGBOOST_UBJ: XGBoostPredictor, CATBOOST_CBM: CatBoostPredictor, LOGISTIC_JSON: LogisticPredictor}


def load_predictor(model_format: str, data: bytes) -> Predictor:
    loader = _LOADERS.get(model_format)
    if loader is None:
        raise ArtifactError(f"unsupported model format {model_format!r}; supported: {', '.join(MODEL_FORMATS)}")
    return loader(data)
