"""Loading the promoted model through the MLflow model registry (ALPHAPULSE_API_MODEL_SOURCE=mlflow).

The manifest still decides which model is served: the graph's promotion decision is the only authority, and the
registry's `champion` alias is set from it. What changes is where the bytes come from: the registered model version
the manifest names, downloaded through the tracking server (which proxies its artifact store, S3 in production).
The version must have been logged by the run the manifest names, and its artifact must match the manifest's
sha256, so the registry and the graph either agree or nothing new is served.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from alphapulse_contract.predictors import ArtifactError, SourceUnreachable
from alphapulse_contract.scoring import ModelManifest, ScoringModel

# Inside the logged pyfunc model directory (training.resources.save_pyfunc_model): MLflow copies each entry of
# `artifacts` under artifacts/ by its file name.
ARTIFACT_IN_MODEL = "artifacts/model.bin"
# Registry answers that say the server is in trouble rather than that the model is wrong: tried again next poll.
TRANSIENT_ERROR_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "BAD_GATEWAY"}


class RegistryUnavailable(SourceUnreachable):
    """The MLflow tracking server could not be reached or did not answer."""

    source = "registry"
    label = "MLflow model registry"


def registered_version(manifest: ModelManifest) -> tuple[str, str]:
    """(name, version) from the manifest's `extra.registered_model` ("models:/<name>/<version>")."""
    registered = manifest.extra.get("registered_model")
    if not isinstance(registered, str) or not registered.startswith("models:/"):
        raise ArtifactError(
            f"model {manifest.version}: the manifest names no registered MLflow model version (extra.registered_model "
            f"is {registered!r}), so it cannot be loaded through the registry"
        )
    name, _, version = registered.removeprefix("models:/").rpartition("/")
    if not name or not version.isdigit():
        raise ArtifactError(f"model {manifest.version}: {registered!r} is not models:/<name>/<version>")
    return name, version


class MlflowRegistryLoader:
    """`load_model` for ServingState: the manifest's registered version, fetched through the tracking server."""

    def __init__(self, tracking_uri: str, timeout_seconds: float = 10.0):
        self.tracking_uri = tracking_uri
        # MLflow's client retries a failed request seven times with exponential backoff by default: minutes in
        # which a poll would hold the state lock. The API reports the registry unreachable and tries next poll.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(timeout_seconds)))
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    def __call__(self, manifest: ModelManifest) -> ScoringModel:
        import mlflow  # only an API configured for the registry pays the ~2 s import
        from mlflow.exceptions import MlflowException, RestException

        name, version = registered_version(manifest)
        client = mlflow.MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        where = f"models:/{name}/{version} at {self.tracking_uri}"
        try:
            model_version = client.get_model_version(name, version)
            run_id, path = self._run_artifact(model_version, manifest, where)
            with tempfile.TemporaryDirectory() as tmp:
                local = client.download_artifacts(run_id, f"{path}/{ARTIFACT_IN_MODEL}", tmp)
                data = Path(local).read_bytes()
        except RestException as exc:
            if exc.error_code in TRANSIENT_ERROR_CODES:
                raise RegistryUnavailable(f"{where}: {exc}") from exc
            raise ArtifactError(f"model {manifest.version}: cannot load {where}: {exc}") from exc
        except MlflowException as exc:  # the request itself failed: connection refused, timeout, ...
            raise RegistryUnavailable(f"{where}: {exc}") from exc
        except OSError as exc:
            raise RegistryUnavailable(f"{where}: {exc}") from exc
        return ScoringModel.from_artifact(
            data,
            manifest.sha256,
            manifest.feature_names,
            manifest.rule,
            manifest.version,
            manifest.model_format,
        )

    @staticmethod
    def _run_artifact(model_version, manifest: ModelManifest, where: str) -> tuple[str, str]:
        """(run id, artifact path) of the registered version, checked against the run the manifest names."""
        source = model_version.source or ""
        if not source.startswith("runs:/"):
            raise ArtifactError(f"model {manifest.version}: {where} has source {source!r}, expected runs:/<run>/<path>")
        run_id, _, path = source.removeprefix("runs:/").partition("/")
        if manifest.mlflow_run_id and run_id != manifest.mlflow_run_id:
            raise ArtifactError(
                f"model {manifest.version}: {where} was logged by run {run_id}, the manifest names run "
                f"{manifest.mlflow_run_id}"
            )
        return run_id, path or "model"
