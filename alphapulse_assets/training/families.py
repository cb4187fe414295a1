"""The model families behind one interface: XGBoost, CatBoost and a regularised logistic-regression baseline.

Pure: arrays in, a trained model and its artifact bytes out. Each family declares its Optuna search space, builds
its per-fold training data once (`prepare`, reused by every trial of a study) and fits with a seed. The same
inputs, parameters, seed and thread count give a byte-identical artifact, so a model's sha256 identifies it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from alphapulse_contract.predictors import (
    CATBOOST_CBM,
    LOGISTIC_JSON,
    XGBOOST_UBJ,
    LogisticPredictor,
    Predictor,
)

DEVICES = ("auto", "cpu", "cuda")


@cache
def gpu_present() -> bool:
    """A CUDA GPU that this XGBoost build can use."""
    import xgboost as xgb

    if not xgb.build_info().get("USE_CUDA") or shutil.which("nvidia-smi") is None:
        return False
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return listing.returncode == 0 and "GPU" in listing.stdout


def resolve_device(setting: str) -> str:
    """`auto` picks the GPU when one is present, the CPU otherwise."""
    if setting not in DEVICES:
        raise ValueError(f"device={setting!r}: expected one of {', '.join(DEVICES)}")
    if setting == "auto":
        return "cuda" if gpu_present() else "cpu"
    return setting


@dataclass(frozen=True)
class Trainer:
    """What every fit shares: the seed, the CPU threads and the device. Part of a model's identity."""

    seed: int
    threads: int = 2
    device: str = "cpu"


class TrainedModel(ABC):
    family: str
    model_format: str

    @abstractmethod
    def predict_proba(self, x: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def artifact(self) -> bytes:
        """The portable, deterministic serialisation the API loads (never pickle)."""

    @abstractmethod
    def importance(self, feature_names: list[str]) -> dict[str, float]:
        """Each feature's share of the model's importance (sums to 1 over the features that have any)."""


class ModelFamily(ABC):
    name: str
    model_format: str

    @abstractmethod
    def search_space(self, trial) -> dict[str, Any]:
        """Parameters for one Optuna trial."""

    @abstractmethod
    def prepare(self, x: np.ndarray, y: np.ndarray) -> Any:
        """Training data in the family's own form, built once per fold and reused by every trial."""

    @abstractmethod
    def fit(self, data: Any, params: dict[str, Any], trainer: Trainer) -> TrainedModel: ...


def _shares(raw: dict[str, float]) -> dict[str, float]:
    total = sum(v for v in raw.values() if v > 0)
    return {k: v / total for k, v in raw.items() if v > 0} if total > 0 else {}


# --- XGBoost -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _XGBoostData:
    matrix: Any  # xgboost.QuantileDMatrix: the quantile sketch is the costly part, computed once per fold
    n_rows: int


class _XGBoostModel(TrainedModel):
    family, model_format = "xgboost", XGBOOST_UBJ

    def __init__(self, booster):
        self.booster = booster

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.inplace_predict(x), dtype=np.float64)

    def artifact(self) -> bytes:
        return bytes(self.booster.save_raw(raw_format="ubj"))

    def importance(self, feature_names: list[str]) -> dict[str, float]:
        # Trained on unnamed columns: XGBoost calls them f0, f1, ... in column order.
        gain = self.booster.get_score(importance_type="total_gain")
        return _shares({name: float(gain.get(f"f{i}", 0.0)) for i, name in enumerate(feature_names)})


class XGBoostFamily(ModelFamily):
    name, model_format = "xgboost", XGBOOST_UBJ
    MAX_BIN = 128

    def search_space(self, trial) -> dict[str, Any]:
        return {
            "max_depth": trial.suggest_int("max_depth", 2, 6),
            "eta": trial.suggest_float("eta", 0.01, 0.3, log=True),
            "num_boost_round": trial.suggest_int("num_boost_round", 50, 300, step=25),
            "subsample": trial.suggest_float("subsample", 0.5, 1.0),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
            "lambda": trial.suggest_float("lambda", 0.1, 100.0, log=True),
            # A leaf must carry this share of the training rows' hessian (0.25 per row near p = 0.5): a fixed
            # weight would forbid every split on small windows and overfit big ones.
            "min_leaf_share": trial.suggest_float("min_leaf_share", 0.001, 0.1, log=True),
        }

    def prepare(self, x: np.ndarray, y: np.ndarray) -> _XGBoostData:
        import xgboost as xgb

        return _XGBoostData(xgb.QuantileDMatrix(x, label=y, missing=np.nan, max_bin=self.MAX_BIN), len(y))

    def fit(self, data: _XGBoostData, params: dict[str, Any], trainer: Trainer) -> _XGBoostModel:
        import xgboost as xgb

        booster_params = {
            "objective": "binary:logistic",
            "eval_metric": "logloss",
            "tree_method": "hist",
            "max_bin": self.MAX_BIN,
            "device": trainer.device,
            "nthread": trainer.threads,
            "seed": trainer.seed,
            "max_depth": params["max_depth"],
            "eta": params["eta"],
            "subsample": params["subsample"],
            "colsample_bytree": params["colsample_bytree"],
            "lambda": params["lambda"],
            "min_child_weight": max(1.0, params["min_leaf_share"] * 0.25 * data.n_rows),
        }
        booster = xgb.train(booster_params, data.matrix, num_boost_round=params["num_boost_round"])
        return _XGBoostModel(booster)


# --- CatBoost ------------------------------------------------------------------------------------------------------


class _CatBoostModel(TrainedModel):
    family, model_format = "catboost", CATBOOST_CBM

    def __init__(self, model):
        self.model = model

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(x, prediction_type="Probability")[:, 1], dtype=np.float64)

    def artifact(self) -> bytes:
        # CatBoost stamps a random model GUID and the finish time into every model; without them the same inputs
        # and seed give the same bytes.
        metadata = self.model.get_metadata()
        for volatile in ("model_guid", "train_finish_time"):
            if volatile in metadata:
                del metadata[volatile]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.cbm"
            self.model.save_model(str(path), format="cbm")
            return path.read_bytes()

    def importance(self, feature_names: list[str]) -> dict[str, float]:
        values = self.model.get_feature_importance()
        return _shares({name: float(v) for name, v in zip(feature_names, values, strict=True)})


class CatBoostFamily(ModelFamily):
    name, model_format = "catboost", CATBOOST_CBM
    BORDER_COUNT = 128

    def search_space(self, trial) -> dict[str, Any]:
        return {
            "depth": trial.suggest_int("depth", 2, 6),
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "iterations": trial.suggest_int("iterations", 50, 300, step=25),
            "l2_leaf_reg": trial.suggest_float("l2_leaf_reg", 1.0, 30.0, log=True),
            "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        }

    def prepare(self, x: np.ndarray, y: np.ndarray):
        from catboost import Pool

        # Quantised once per fold: otherwise every trial re-quantises the same rows.
        pool = Pool(x, label=y)
        pool.quantize(border_count=self.BORDER_COUNT)
        return pool

    def fit(self, data, params: dict[str, Any], trainer: Trainer) -> _CatBoostModel:
        from catboost import CatBoostClassifier

        model = CatBoostClassifier(
            **params,
            bootstrap_type="Bernoulli",
            # CatBoost picks ordered boosting for small data sets: several times slower, and the walk-forward
            # folds already guard against the target leakage it is meant to prevent.
            boosting_type="Plain",
            random_seed=trainer.seed,
            thread_count=trainer.threads,
            task_type="GPU" if trainer.device == "cuda" else "CPU",
            verbose=False,
            allow_writing_files=False,
        )
        model.fit(data)
        return _CatBoostModel(model)


# --- Regularised logistic regression ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _LogisticData:
    x: np.ndarray  # imputed and standardised with this fold's training statistics only
    y: np.ndarray
    impute: np.ndarray
    mean: np.ndarray
    scale: np.ndarray


class _LogisticModel(TrainedModel):
    family, model_format = "logistic", LOGISTIC_JSON

    def __init__(self, document: dict[str, Any]):
        self._bytes = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
        self.predictor: Predictor = LogisticPredictor(self._bytes)
        self._coef = np.asarray(document["coef"])

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.predictor.predict_proba(x)

    def artifact(self) -> bytes:
        return self._bytes

    def importance(self, feature_names: list[str]) -> dict[str, float]:
        # Coefficients of standardised features: comparable magnitudes.
        return _shares({name: float(abs(c)) for name, c in zip(feature_names, self._coef, strict=True)})


class LogisticFamily(ModelFamily):
    """The baseline the trees must beat: L2-regularised logistic regression on median-imputed, standardised
    features."""

    name, model_format = "logistic", LOGISTIC_JSON

    def search_space(self, trial) -> dict[str, Any]:
        return {"C": trial.suggest_float("C", 1e-4, 10.0, log=True)}

    def prepare(self, x: np.ndarray, y: np.ndarray) -> _LogisticData:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-missing columns: handled below
            impute = np.nanmedian(x, axis=0)
        impute = np.where(np.isfinite(impute), impute, 0.0)
        filled = np.where(np.isnan(x), impute, x)
        mean = filled.mean(axis=0)
        scale = filled.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)  # a constant column carries no information: weight stays ~0
        return _LogisticData((filled - mean) / scale, np.asarray(y), impute, mean, scale)

    def fit(self, data: _LogisticData, params: dict[str, Any], trainer: Trainer) -> _LogisticModel:
        from sklearn.linear_model import LogisticRegression

        # lbfgs is deterministic, and the features are few: the seed and device have nothing to act on. The default
        # tolerance: the 70 features are strongly correlated, and a tighter one costs 10x the iterations (measured:
        # 60 vs 800 at C = 10) for coefficients that differ far below the noise of any fold score.
        model = LogisticRegression(C=params["C"], solver="lbfgs", max_iter=1000, tol=1e-4)
        model.fit(data.x, data.y)
        return _LogisticModel(
            {
                "format": "alphapulse-logistic/1",
                "impute": data.impute.tolist(),
                "mean": data.mean.tolist(),
                "scale": data.scale.tolist(),
                "coef": model.coef_[0].tolist(),
                "intercept": float(model.intercept_[0]),
                "C": params["C"],
            }
        )


FAMILIES: dict[str, ModelFamily] = {f.name: f for f in (XGBoostFamily(), CatBoostFamily(), LogisticFamily())}


def family(name: str) -> ModelFamily:
    if name not in FAMILIES:
        raise ValueError(f"model family {name!r}: supported are {', '.join(FAMILIES)}")
    return FAMILIES[name]


__all__ = ["FAMILIES", "ModelFamily", "TrainedModel", "Trainer", "family", "resolve_device"]
