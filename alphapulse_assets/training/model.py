"""Fitting the gradient-boosted direction model. Pure: arrays in, artifact bytes out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

XGBOOST_PARAMS: dict[str, object] = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "tree_method": "hist",
    "max_depth": 2,
    "eta": 0.03,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "lambda": 5.0,
    # Two threads with a fixed seed: the same inputs give a byte-identical artifact.
    "nthread": 2,
}
NUM_BOOST_ROUND = 120
# A leaf must carry this share of the training set's hessian (0.25 per row near p = 0.5): about 50 for the
# default 60 days of two symbols. A fixed weight would forbid every split on small windows and overfit big ones.
MIN_LEAF_SHARE = 0.07


@dataclass(frozen=True)
class FittedModel:
    booster: object
    artifact: bytes  # XGBoost's UBJSON format: portable, and loading it never executes code (unlike pickle)
    params: dict[str, object]
    num_boost_round: int


def fit_xgboost(
    x: np.ndarray, y: np.ndarray, feature_names: list[str], seed: int, num_boost_round: int = NUM_BOOST_ROUND
) -> FittedModel:
    import xgboost as xgb

    if len(np.unique(y)) < 2:
        raise ValueError("training labels contain a single class: nothing to learn")
    params = dict(XGBOOST_PARAMS, seed=seed, min_child_weight=round(max(1.0, MIN_LEAF_SHARE * 0.25 * len(y)), 2))
    matrix = xgb.DMatrix(x, label=y, feature_names=list(feature_names), missing=np.nan)
    booster = xgb.train(params, matrix, num_boost_round=num_boost_round)
    return FittedModel(booster, bytes(booster.save_raw(raw_format="ubj")), params, num_boost_round)


def predict(booster, x: np.ndarray) -> np.ndarray:
    return np.asarray(booster.inplace_predict(x), dtype=np.float64)
