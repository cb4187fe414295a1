"""How models are trained and judged (`ModelPolicy`), and where training runs are tracked (`MlflowTracking`)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import dagster as dg

from alphapulse_assets.training.dataset import TrainingWindows, training_windows


class ModelPolicy(dg.ConfigurableResource):
    """Windows, costs and promotion margins shared by training, evaluation, promotion and drift monitoring."""

    train_days: int
    validation_days: int
    embargo_hours: int
    cost_bps: float
    seed: int
    drift_window_hours: int
    signal_band: float = 0.02
    # A window with less than this share of its (symbol, hour) rows labelled is a data problem, not a model.
    min_label_coverage: float = 0.9
    min_oos_rows: int = 100
    champion_log_loss_margin: float = 0.0
    # A challenger's log-loss gain over the baseline must be positive at one-sided 95% confidence (t >= 1.645).
    min_log_loss_gain_t: float = 1.645

    def windows(self, decision_hour: datetime) -> TrainingWindows:
        return training_windows(decision_hour, self.train_days, self.validation_days, self.embargo_hours)


class MlflowTracking(dg.ConfigurableResource):
    """MLflow tracking through the client API.

    Not dagster-mlflow's `mlflow_tracking`: that resource is the legacy function style and ends the MLflow run
    when its first op finishes, while one model's run here spans `trained_model` and `model_evaluation`. The
    client API also keeps no process-global "active run", which matters when a run executes in-process.
    """

    tracking_uri: str
    artifact_root: str
    experiment_name: str = "alphapulse"

    def _client(self):
        import mlflow  # ~2 s to import: only runs that train pay for it

        return mlflow.MlflowClient(tracking_uri=self.tracking_uri)

    def _experiment_id(self, client) -> str:
        experiment = client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        Path(self.artifact_root).mkdir(parents=True, exist_ok=True)
        return client.create_experiment(
            self.experiment_name, artifact_location=Path(self.artifact_root).resolve().as_uri()
        )

    def start_run(self, run_name: str, params: dict[str, object], tags: dict[str, str]) -> str:
        from mlflow.entities import Param, RunTag

        client = self._client()
        run = client.create_run(self._experiment_id(client), run_name=run_name, tags=tags)
        client.log_batch(
            run.info.run_id,
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        return run.info.run_id

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        self._client().log_artifact(run_id, local_path, artifact_path)

    def log_metrics(self, run_id: str, metrics: dict[str, float], finish: bool = False) -> None:
        import math
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        finite = [Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None and math.isfinite(v)]
        client = self._client()
        client.log_batch(run_id, metrics=finite)
        if finish:
            client.set_terminated(run_id)
