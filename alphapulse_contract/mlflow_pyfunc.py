"""An MLflow pyfunc wrapper around an AlphaPulse artifact, so `mlflow models serve -m models:/<name>/<version>`
serves exactly the bytes the graph evaluated and the API loads.

Imported only by MLflow (when it loads a logged model) and by training when it logs one: the API never needs it.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd

from alphapulse_contract.predictors import ArtifactError, load_predictor
from alphapulse_contract.scoring import sha256_hex


class AlphaPulsePyfunc(mlflow.pyfunc.PythonModel):
    """Input: a frame with one column per feature (missing values as NaN/null). Output: `probability_up`."""

    def load_context(self, context) -> None:
        description = json.loads(Path(context.artifacts["description"]).read_text())
        data = Path(context.artifacts["model"]).read_bytes()
        if sha256_hex(data) != description["sha256"]:
            raise ArtifactError(f"model {description['version']}: artifact does not match its sha256")
        self.feature_names = list(description["feature_names"])
        self.predictor = load_predictor(description["model_format"], data)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        missing = [name for name in self.feature_names if name not in model_input.columns]
        if missing:
            raise ValueError(f"input lacks features {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        matrix = model_input[self.feature_names].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
        return pd.DataFrame({"probability_up": self.predictor.predict_proba(matrix)})
