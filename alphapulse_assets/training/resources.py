"""How models are trained and judged (`ModelPolicy`), and where training runs are tracked (`MlflowTracking`)."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

import dagster as dg

from alphapulse_assets.settings import DEFAULTS
from alphapulse_assets.thresholds import GateThresholds, Margins
from alphapulse_assets.training.dataset import TrainingWindows, training_windows
from alphapulse_assets.training.evaluation import EvaluationConfig
from alphapulse_assets.training.families import Trainer, resolve_device
from alphapulse_assets.training.tuning import TuningConfig, rule_grid
from alphapulse_contract.scoring import TradingRule

# The MLflow model ships the scoring contract only (no FastAPI, no Dagster): what `mlflow models serve` needs.
CONTRACT_PACKAGE = Path(__file__).resolve().parents[2] / "alphapulse_contract"
# The libraries each family's logged MLflow model needs beyond MLflow itself.
FAMILY_REQUIREMENTS = {"xgboost": ["xgboost"], "catboost": ["catboost"], "logistic": []}


class ModelPolicy(dg.ConfigurableResource):
    """Labels, validation layout, tuning budget, costs and gate thresholds shared by training, evaluation,
    promotion and drift monitoring."""

    train_days: int
    validation_days: int  # the final out-of-sample segment
    embargo_hours: int
    cost_bps: float
    seed: int
    horizon_hours: int = DEFAULTS.label_horizon_hours
    dead_band_bps: float = DEFAULTS.label_dead_band_bps
    cv_folds: int = DEFAULTS.cv_folds
    cv_window: str = DEFAULTS.cv_window
    tuning_trials: int = DEFAULTS.tuning_trials
    # Hours a tuned configuration is refitted on each new window before the search runs again (0: every retrain
    # tunes). The refitted model's deflated Sharpe counts the trials of the search that chose its configuration.
    retune_every_hours: int = DEFAULTS.retune_every_hours
    model_families: list[str] = list(DEFAULTS.model_families)
    placebo_runs: int = DEFAULTS.placebo_runs
    placebo_block_hours: int = 24
    device: str = DEFAULTS.training_device
    threads: int = DEFAULTS.training_threads
    # The trading rules tuning tries on each configuration's walk-forward predictions: every (band, smoothing)
    # pair (`rule_grid`). Each pair is a trial the deflated Sharpe pays for, so a longer grid must find more to pass.
    signal_bands: list[float] = list(DEFAULTS.signal_bands)
    smoothing_hours: list[int] = list(DEFAULTS.smoothing_hours)
    # A window with less than this share of its (symbol, hour) rows labelled is a data problem, not a model.
    min_label_coverage: float = 0.9
    # Gate thresholds by GateThresholds field name (ALPHAPULSE_GATES); the rest keep their defaults.
    gate_thresholds: dict[str, float] = {}
    # A challenger must beat the champion on the same rows by these margins (log loss; annualised Sharpe).
    promotion_log_loss_margin: float = DEFAULTS.promotion_log_loss_margin
    promotion_sharpe_margin: float = DEFAULTS.promotion_sharpe_margin
    # Live hours (outcomes known) a shadowing challenger needs before its live record can promote it.
    min_shadow_hours: int = DEFAULTS.min_shadow_hours
    # Optuna storage shared by tuning workers (ALPHAPULSE_OPTUNA_STORAGE); None tunes in the run's own process.
    optuna_storage: str | None = None

    def rules(self) -> tuple[TradingRule, ...]:
        return rule_grid(self.signal_bands, self.smoothing_hours)

    def margins(self) -> Margins:
        return Margins(log_loss=self.promotion_log_loss_margin, sharpe=self.promotion_sharpe_margin)

    @property
    def dead_band(self) -> float:
        """The dead band as a log return."""
        return self.dead_band_bps / 10_000.0

    def windows(self, decision_hour: datetime) -> TrainingWindows:
        return training_windows(
            decision_hour, self.train_days, self.validation_days, self.embargo_hours, self.horizon_hours
        )

    def trainer(self) -> Trainer:
        return Trainer(seed=self.seed, threads=self.threads, device=resolve_device(self.device))

    def tuning(
        self, decision_hour: datetime, worker: str | None = None, sampler_stream: str | None = None
    ) -> TuningConfig:
        """The search for the model decided at `decision_hour`. With a shared storage, `worker` (a run id) joins the
        hour's studies, proposing from `sampler_stream` (None: the run's own stream)."""
        return TuningConfig(
            families=tuple(self.model_families),
            n_trials=self.tuning_trials,
            n_folds=self.cv_folds,
            window=self.cv_window,
            horizon_hours=self.horizon_hours,
            embargo_hours=self.embargo_hours,
            rules=self.rules(),
            cost_bps=self.cost_bps,
            trainer=self.trainer(),
            storage=self.optuna_storage,
            study_prefix=f"alphapulse/{decision_hour:%Y-%m-%dT%H}",
            worker=worker if self.optuna_storage else None,
            sampler_stream=sampler_stream if self.optuna_storage else None,
        )

    def evaluation(self) -> EvaluationConfig:
        return EvaluationConfig(
            cost_bps=self.cost_bps,
            placebo_runs=self.placebo_runs,
            placebo_block_hours=self.placebo_block_hours,
            thresholds=GateThresholds(**self.gate_thresholds),
        )


def save_pyfunc_model(
    target: Path, artifact: bytes, description: dict[str, object], family_name: str, example: dict[str, float | None]
) -> None:
    """An MLflow pyfunc model directory: code (alphapulse_contract/mlflow_model.py) plus the exact artifact bytes,
    so `mlflow models serve` serves what the graph evaluated, verified by sha256."""
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    names = list(description["feature_names"])
    signature = ModelSignature(
        inputs=Schema([ColSpec("double", name, required=False) for name in names]),
        outputs=Schema([ColSpec("double", "probability_up")]),
    )
    requirements = [f"{p}=={version(p)}" for p in ("mlflow", "numpy", "pandas", *FAMILY_REQUIREMENTS[family_name])]
    with tempfile.TemporaryDirectory() as tmp:
        artifact_path = Path(tmp) / "model.bin"
        artifact_path.write_bytes(artifact)
        description_path = Path(tmp) / "description.json"
        description_path.write_text(json.dumps(description, indent=2, sort_keys=True))
        mlflow.pyfunc.save_model(
            str(target),
            python_model=str(CONTRACT_PACKAGE / "mlflow_model.py"),
            artifacts={"model": str(artifact_path), "description": str(description_path)},
            code_paths=[str(CONTRACT_PACKAGE)],
            pip_requirements=requirements,
            signature=signature,
            input_example=pd.DataFrame([example], columns=names).astype("float64"),
        )


class MlflowTracking(dg.ConfigurableResource):
    """MLflow tracking through the client API.

    Not dagster-mlflow's `mlflow_tracking`: that resource is the legacy function style and ends the MLflow run
    when its first op finishes, while one model's run here spans `trained_model` and `model_evaluation`. The
    client API also keeps no process-global "active run", which matters when a run executes in-process.
    """

    tracking_uri: str
    # Where a new experiment keeps its artifacts: a local directory, or s3://...; None lets a tracking server
    # decide (`mlflow server --artifacts-destination`), which is the production set-up.
    artifact_root: str | None = None
    experiment_name: str = "alphapulse"
    registered_model_name: str = DEFAULTS.mlflow_model_name

    def _client(self):
        # A progress bar per artifact download fills the run logs with carriage returns.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        import mlflow  # ~2 s to import: only runs that train pay for it

        return mlflow.MlflowClient(tracking_uri=self.tracking_uri)

    def _experiment_id(self, client) -> str:
        experiment = client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        location = self.artifact_root
        if location and "://" not in location:
            Path(location).mkdir(parents=True, exist_ok=True)
            location = Path(location).resolve().as_uri()
        return client.create_experiment(self.experiment_name, artifact_location=location)

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

    def log_bytes(self, run_id: str, data: bytes, artifact_file: str) -> None:
        """`artifact_file` is a path inside the run's artifacts, e.g. "plots/equity_curve.png"."""
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / Path(artifact_file).name
            local.write_bytes(data)
            parent = str(Path(artifact_file).parent)
            self._client().log_artifact(run_id, str(local), None if parent == "." else parent)

    def log_json(self, run_id: str, payload: object, artifact_file: str) -> None:
        self.log_bytes(run_id, json.dumps(payload, indent=2, sort_keys=True, default=str).encode(), artifact_file)

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        import math
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        finite = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None and math.isfinite(v)]
        client = self._client()
        for start in range(0, len(finite), 1000):  # MLflow's batch limit
            client.log_batch(run_id, metrics=finite[start : start + 1000])

    def finish(self, run_id: str) -> None:
        """Mark the run finished: its evaluation, the last writer, is done."""
        self._client().set_terminated(run_id, status="FINISHED")

    def log_model(
        self,
        run_id: str,
        artifact: bytes,
        description: dict[str, object],
        family_name: str,
        example: dict[str, float | None],
    ) -> tuple[str, str]:
        """Log the artifact as an MLflow pyfunc model (`save_pyfunc_model`) and register it, so that
        `mlflow models serve -m models:/<name>/<version>` serves it; returns (registered name, version)."""
        from mlflow.exceptions import MlflowException

        client = self._client()
        with tempfile.TemporaryDirectory() as tmp:
            save_pyfunc_model(Path(tmp) / "model", artifact, description, family_name, example)
            client.log_artifacts(run_id, str(Path(tmp) / "model"), "model")
        try:
            client.create_registered_model(self.registered_model_name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        model_version = client.create_model_version(
            self.registered_model_name, source=f"runs:/{run_id}/model", run_id=run_id
        )
        return self.registered_model_name, str(model_version.version)

    def tag_model_version(self, name: str, model_version: str, tags: dict[str, str]) -> None:
        client = self._client()
        for key, value in tags.items():
            client.set_model_version_tag(name, model_version, key, value)

    def set_alias(self, alias: str, registered: str | None) -> None:
        """Point `alias` ("champion", "challenger") at a registered version ("models:/<name>/<version>"), or
        remove it (None). The registry then answers `models:/<name>@champion` as the decisions left it."""
        client = self._client()
        if registered is None:
            from mlflow.exceptions import MlflowException

            try:
                client.delete_registered_model_alias(self.registered_model_name, alias)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
            return
        name, _, model_version = registered.removeprefix("models:/").rpartition("/")
        client.set_registered_model_alias(name, alias, model_version)

    def aliases(self) -> dict[str, str]:
        """alias -> registered version of the registered model (empty before the first model)."""
        from mlflow.exceptions import MlflowException

        try:
            model = self._client().get_registered_model(self.registered_model_name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return {}
            raise
        return dict(model.aliases)
