"""A trained model as the rest of the graph uses it: where its artifact is stored, how it is loaded from its
`trained_model` row (checked against the recorded sha256), and how it scores a frame."""

from __future__ import annotations

import numpy as np
import polars as pl

from alphapulse_assets.storage.object_store import ObjectStore
from alphapulse_contract.predictors import CATBOOST_CBM, LOGISTIC_JSON, XGBOOST_UBJ
from alphapulse_contract.scoring import ScoringModel, TradingRule

ARTIFACT_EXTENSIONS = {XGBOOST_UBJ: "ubj", CATBOOST_CBM: "cbm", LOGISTIC_JSON: "json"}


def artifact_key(model_version: str, model_format: str) -> str:
    return f"models/{model_version}/model.{ARTIFACT_EXTENSIONS[model_format]}"


def record_rule(record: dict) -> TradingRule:
    """The trading rule a `trained_model` row's tuning chose."""
    return TradingRule.of_record(record.get("signal_band"), record.get("smoothing_hours"))


def load_model(object_store: ObjectStore, record: dict) -> ScoringModel:
    """A model from its `trained_model` row, with its trading rule, its artifact checked against the recorded
    sha256."""
    return ScoringModel.from_artifact(
        object_store.get_bytes(artifact_key(record["model_version"], record["model_format"])),
        record["sha256"],
        list(record["feature_names"]),
        record_rule(record),
        record["model_version"],
        record["model_format"],
    )


def score_frame(model: ScoringModel, frame: pl.DataFrame) -> pl.DataFrame:
    matrix = frame.select(model.feature_names).to_numpy().astype(np.float64)
    return frame.with_columns(pl.Series("probability", model.predict_proba(matrix)))
