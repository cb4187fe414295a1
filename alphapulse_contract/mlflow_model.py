"""MLflow "model from code": the logged model is this file, not a pickled object (see AlphaPulsePyfunc)."""

import mlflow.models

from alphapulse_contract.mlflow_pyfunc import AlphaPulsePyfunc

mlflow.models.set_model(AlphaPulsePyfunc())
