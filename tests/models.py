"""Small models for tests that need an artifact, not a tuned model."""

import numpy as np

from alphapulse_assets.training.families import Trainer, family

XGBOOST_PARAMS = {
    "max_depth": 3,
    "eta": 0.1,
    "subsample": 1.0,
    "colsample_bytree": 1.0,
    "lambda": 1.0,
    "min_leaf_share": 0.01,
}


def xgboost_artifact(x: np.ndarray, y: np.ndarray, seed: int, rounds: int) -> bytes:
    xgboost = family("xgboost")
    return xgboost.fit(xgboost.prepare(x, y), XGBOOST_PARAMS | {"num_boost_round": rounds}, Trainer(seed)).artifact()
