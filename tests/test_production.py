"""The production stack, for real: a Dagster instance on PostgreSQL, the warehouse on PostgreSQL, the object store
on S3 (moto's server over HTTP) and an MLflow tracking server (PostgreSQL backend store, S3 artifacts), switched by
configuration alone. The same asset code backfills, retrains, serves and fails as it does on the laptop."""

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import boto3
import dagster as dg
import psycopg2
import pytest
import services
from api import api_client
from dagster._core.instance.ref import InstanceRef
from services import environment

from alphapulse_assets.definitions import build_definitions
from alphapulse_assets.instance import write_instance_config
from alphapulse_assets.monitoring.sensors import drift_retrain_sensor
from alphapulse_assets.runner import run_job
from alphapulse_assets.settings import Settings
from alphapulse_assets.storage.event_log import PooledPostgresEventLogStorage
from alphapulse_assets.storage.object_store import S3ObjectStore
from alphapulse_assets.storage.postgres import PostgresWarehouse
from alphapulse_contract.predictors import ArtifactError
from alphapulse_contract.scoring import MANIFEST_KEY, SNAPSHOT_KEY, ModelManifest
from alphapulse_serving.registry import MlflowRegistryLoader, RegistryUnavailable, registered_version

FIRST, LAST = "2025-03-01-00:00", "2025-03-13-23:00"
# The retrain decides an hour before the last, so its champion is in force at LAST (it serves the hours after it).
DECISION = "2025-03-13-22:00"
HOURS, SYMBOLS = 13 * 24, 2


def production_settings(home, warehouse_url: str, store_url: str, **env: str) -> Settings:
    return Settings.from_env(
        {
            **os.environ,
            "ALPHAPULSE_HOME": str(home),
            "ALPHAPULSE_WAREHOUSE_URL": warehouse_url,
            "ALPHAPULSE_OBJECT_STORE_URL": store_url,
            **env,
        }
    )


@contextmanager
def postgres_instance(home, url: str) -> Iterator[dg.DagsterInstance]:
    """An instance from the production template, exactly as `make demo` writes it when the URL is configured."""
    write_instance_config(home, env={"ALPHAPULSE_DAGSTER_PG_URL": url})
    with (
        environment(ALPHAPULSE_DAGSTER_PG_URL=url),
        dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as inst,
    ):
        yield inst


@contextmanager
def production(home, admin_url: str, s3_endpoint: str, bucket: str, **env: str):
    """A Postgres instance, a fresh Postgres warehouse and `bucket` on S3: (instance, settings, warehouse URL)."""
    with (
        services.fresh_database(admin_url) as dagster_url,
        services.fresh_database(admin_url) as warehouse_url,
        environment(AWS_ENDPOINT_URL_S3=s3_endpoint),
        postgres_instance(home / "dagster", dagster_url) as instance,
    ):
        yield instance, production_settings(home, warehouse_url, f"s3://{bucket}/alphapulse", **env), warehouse_url


@dataclass(frozen=True)
class Stack:
    defs: dg.Definitions
    instance: dg.DagsterInstance
    settings: Settings
    bucket: str
    s3_endpoint: str
    mlflow_url: str
    mlflow_db: str
    tuning_worker_run: str
    retrain_run: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory, postgres_admin_url, s3_endpoint):
    home = tmp_path_factory.mktemp("production")
    bucket = services.create_bucket(s3_endpoint)
    with (
        services.fresh_database(postgres_admin_url) as optuna_db,
        services.fresh_database(postgres_admin_url) as mlflow_db,
        services.mlflow_server(home, mlflow_db, f"s3://{bucket}/mlflow", s3_endpoint) as mlflow_url,
        production(
            home,
            postgres_admin_url,
            s3_endpoint,
            bucket,
            MLFLOW_TRACKING_URI=mlflow_url,
            ALPHAPULSE_OPTUNA_STORAGE=optuna_db,
        ) as (
            instance,
            settings,
            _,
        ),
    ):
        defs = build_definitions(settings)
        data = run_job(defs, instance, "data_job", partition_range=(FIRST, LAST))
        assert data.success, data.error
        # A tuning worker spends the hour's shared trial budget; trained_model then chooses from its trials.
        worker_config = {"ops": {"tune_shared_studies": {"config": {"worker_index": 1}}}}
        worker = run_job(defs, instance, "tuning_worker_job", partition_key=DECISION, run_config=worker_config)
        assert worker.success, worker.error
        retrain = run_job(defs, instance, "retrain_job", partition_key=DECISION)
        assert retrain.success, retrain.error
        hourly = run_job(defs, instance, "hourly_job", partition_key=LAST)
        assert hourly.success, hourly.error
        yield Stack(defs, instance, settings, bucket, s3_endpoint, mlflow_url, mlflow_db, worker.run_id, retrain.run_id)


def test_the_instance_runs_on_postgres_with_the_pooled_event_log(stack):
    instance = stack.instance
    assert isinstance(instance.event_log_storage, PooledPostgresEventLogStorage)
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
    assert len(instance.get_materialized_partitions(dg.AssetKey("features"))) == HOURS
    assert {run.job_name for run in instance.get_runs()} >= {"data_job", "retrain_job", "hourly_job"}


def test_the_warehouse_is_postgres_and_holds_every_symbol_hour_once(stack):
    warehouse = stack.defs.resources["warehouse"]
    assert isinstance(warehouse, PostgresWarehouse)
    for table in ("prices", "news_sentiment", "features"):
        rows, distinct = warehouse.query(f"SELECT count(*) AS n, count(DISTINCT (ts, symbol)) AS d FROM {table}").row(0)
        assert rows == distinct == HOURS * SYMBOLS, table
    decisions = warehouse.query("SELECT kind, action FROM promotion_decisions")
    assert decisions.height >= 1


def test_artifacts_reports_and_serving_objects_are_on_s3(stack):
    assert isinstance(stack.defs.resources["object_store"], S3ObjectStore)
    keys = bucket_keys(stack)
    assert {f"alphapulse/{SNAPSHOT_KEY}", f"alphapulse/{MANIFEST_KEY}"} <= keys
    assert any(k.startswith("alphapulse/models/") for k in keys)
    assert any(k.startswith("alphapulse/reports/drift/") for k in keys)


def test_the_api_serves_the_champion_from_s3_and_degrades_when_s3_goes_away(stack, tmp_path):
    with (
        services.TcpProxy(stack.s3_endpoint) as proxy,
        environment(AWS_ENDPOINT_URL_S3=proxy.url),
        api_client(stack.settings.object_store_url, tmp_path / "audit") as client,
    ):
        assert client.get("/ready").status_code == 200
        served = client.post("/predict", json={"symbol": "BTCUSDT"}).json()
        assert served["source"] == "primary"
        proxy.close()  # S3 is gone: the API keeps its model and features in memory
        client.app.state.services.serving.refresh()
        health = client.get("/health").json()
        assert health["status"] == "degraded"
        assert any("object store unreachable" in reason for reason in health["reasons"])
        again = client.post("/predict", json={"symbol": "BTCUSDT"}).json()
        assert again["source"] == "primary" and again["probability"] == served["probability"]


def test_trained_model_chooses_from_the_tuning_workers_trials_in_the_shared_study(stack):
    warehouse = stack.defs.resources["warehouse"]
    trials = warehouse.query("SELECT family, trial, worker FROM tuning_trials")
    policy = stack.defs.resources["policy"]
    assert trials.height == policy.tuning_trials * len(policy.model_families)
    assert set(trials["worker"]) == {stack.tuning_worker_run}, "the budget was spent: trained_model read the study"
    [materialization] = stack.instance.get_records_for_run(
        stack.retrain_run, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records[:1]
    metadata = materialization.asset_materialization.metadata
    assert metadata["tuning_workers"].value == {stack.tuning_worker_run: trials.height}


def bucket_keys(stack: Stack) -> set[str]:
    pages = boto3.client("s3", endpoint_url=stack.s3_endpoint).get_paginator("list_objects_v2")
    return {item["Key"] for page in pages.paginate(Bucket=stack.bucket) for item in page.get("Contents", [])}


def test_training_logs_runs_to_the_mlflow_server_with_postgres_metadata_and_s3_artifacts(stack):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=stack.mlflow_url, registry_uri=stack.mlflow_url)
    tracking = stack.defs.resources["mlflow"]
    experiment = client.get_experiment_by_name(tracking.experiment_name)
    assert experiment.artifact_location.startswith("mlflow-artifacts:"), "the server proxies the artifact store"
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED", "model_evaluation closed the run trained_model opened"
    assert {"cv_log_loss", "dsr", "gates_passed"} <= set(run.data.metrics)
    model = client.get_registered_model(tracking.registered_model_name)
    assert model.latest_versions[0].run_id == run.info.run_id
    # The server keeps runs in PostgreSQL and writes their artifacts to the bucket, under its destination prefix.
    with psycopg2.connect(stack.mlflow_db) as conn, conn.cursor() as cur:
        cur.execute("SELECT run_uuid, status FROM runs")
        assert cur.fetchall() == [(run.info.run_id, "FINISHED")]
    keys = bucket_keys(stack)
    prefix = f"mlflow/{experiment.experiment_id}/{run.info.run_id}/artifacts/"
    assert {f"{prefix}model/MLmodel", f"{prefix}model/artifacts/model.bin", f"{prefix}plots/equity_curve.png"} <= keys


def test_the_api_loads_the_champion_through_the_mlflow_registry(stack, tmp_path):
    """Same manifest, bytes from the registered version: the same answer as from the object store. With the
    registry gone, a newly promoted manifest cannot be loaded, and the API keeps serving the model it has."""
    store_url = stack.settings.object_store_url
    with api_client(store_url, tmp_path / "store-audit") as client:
        from_store = client.post("/predict", json={"symbol": "BTCUSDT"}).json()
    with (
        services.TcpProxy(stack.mlflow_url) as proxy,
        api_client(store_url, tmp_path / "audit", model_source="mlflow", mlflow_tracking_uri=proxy.url) as client,
    ):
        assert client.get("/ready").status_code == 200
        health = client.get("/health").json()
        assert (health["status"], health["model_source"]) == ("ok", "mlflow")
        served = client.post("/predict", json={"symbol": "BTCUSDT"}).json()
        assert served["source"] == "primary"
        assert (served["model_version"], served["probability"]) == (
            from_store["model_version"],
            from_store["probability"],
        )
        proxy.close()
        store = stack.defs.resources["object_store"]
        manifest = ModelManifest.from_json(store.get_bytes(MANIFEST_KEY))
        store.put_bytes(MANIFEST_KEY, replace(manifest, promoted_at=datetime.now(UTC).isoformat()).to_json())
        try:
            client.app.state.services.serving.refresh()
            health = client.get("/health").json()
            assert health["status"] == "degraded"
            assert any("MLflow model registry unreachable" in reason for reason in health["reasons"])
            assert client.post("/predict", json={"symbol": "BTCUSDT"}).json()["source"] == "primary"
        finally:
            store.put_bytes(MANIFEST_KEY, manifest.to_json())


def test_the_registry_loader_refuses_a_version_the_manifest_does_not_describe(stack):
    loader = MlflowRegistryLoader(stack.mlflow_url)
    manifest = ModelManifest.from_json(stack.defs.resources["object_store"].get_bytes(MANIFEST_KEY))
    assert loader(manifest).version == manifest.version
    with pytest.raises(ArtifactError, match="artifact sha256 is"):
        loader(replace(manifest, sha256="0" * 64))
    with pytest.raises(ArtifactError, match="was logged by run"):
        loader(replace(manifest, mlflow_run_id="f" * 32))
    name, _ = registered_version(manifest)
    with pytest.raises(ArtifactError, match="RESOURCE_DOES_NOT_EXIST") as missing:
        loader(replace(manifest, extra=manifest.extra | {"registered_model": f"models:/{name}/999"}))
    assert not isinstance(missing.value, RegistryUnavailable), "a missing version is the model's problem"
    with pytest.raises(ArtifactError, match="names no registered MLflow model version"):
        loader(replace(manifest, extra={}))


def test_a_sensor_ticks_against_the_postgres_instance(stack):
    defs, instance = stack.defs, stack.instance
    # Critical drift an hour after the stack's retrain: that model is as fresh, so nothing is retrained.
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key="drift_report", partition=LAST, metadata={"drift_status": "critical"})
    )
    context = dg.build_sensor_context(instance=instance, definitions=defs)
    fresh = drift_retrain_sensor.evaluate_tick(context)
    assert fresh.run_requests == [] and f"a model was trained at {DECISION}" in fresh.skip_message
    # Half a day later it is not.
    later = "2025-03-14-11:00"
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key="drift_report", partition=later, metadata={"drift_status": "critical"})
    )
    context = dg.build_sensor_context(instance=instance, definitions=defs, cursor=fresh.cursor or context.cursor)
    result = drift_retrain_sensor.evaluate_tick(context)
    assert [r.partition_key for r in result.run_requests] == [later]
    assert result.run_requests[0].tags["alphapulse/trigger"] == "drift_retrain_sensor"


def test_an_unreachable_warehouse_fails_the_run_clearly_after_its_retries(tmp_path, postgres_admin_url, s3_bucket):
    settings = production_settings(
        tmp_path, "postgresql://alphapulse@127.0.0.1:9/warehouse", f"s3://{s3_bucket}/alphapulse"
    )
    with (
        services.fresh_database(postgres_admin_url) as dagster_url,
        postgres_instance(tmp_path / "d", dagster_url) as inst,
    ):
        outcome = run_job(build_definitions(settings), inst, "data_job", partition_range=(FIRST, "2025-03-01-05:00"))
        assert not outcome.success
        assert "warehouse postgresql://alphapulse@127.0.0.1:9/warehouse is unreachable" in outcome.error
        retries = inst.get_records_for_run(outcome.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY).records
        tries = {step: sum(r.event_log_entry.step_key == step for r in retries) for step in ("prices", "news")}
        assert tries == {"prices": 3, "news": 3}, "each source step was tried four times under its RetryPolicy"


def test_a_transient_s3_outage_is_retried_and_nothing_is_half_written(tmp_path, postgres_admin_url, s3_endpoint):
    """The bucket appears only after the first attempt failed: the retried step completes the run, and the
    windows it had already written once hold each symbol-hour exactly once."""
    bucket = f"late-{os.urandom(4).hex()}"
    with production(tmp_path, postgres_admin_url, s3_endpoint, bucket) as (inst, settings, warehouse_url):
        stop = threading.Event()

        def create_bucket_after_a_retry() -> None:
            while not stop.wait(0.05):
                if inst.get_event_records(dg.EventRecordsFilter(dg.DagsterEventType.STEP_UP_FOR_RETRY), limit=1):
                    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
                    return

        watcher = threading.Thread(target=create_bucket_after_a_retry, daemon=True)
        watcher.start()
        try:
            outcome = run_job(
                build_definitions(settings), inst, "data_job", partition_range=(FIRST, "2025-03-02-23:00")
            )
        finally:
            stop.set()
            watcher.join()
        assert outcome.success, outcome.error
        retried = inst.get_records_for_run(outcome.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY).records
        assert retried and all(
            "NoSuchBucket" in str(r.event_log_entry.dagster_event.event_specific_data) for r in retried
        )
        rows, distinct = (
            PostgresWarehouse(url=warehouse_url)
            .query("SELECT count(*) AS n, count(DISTINCT (ts, symbol)) AS d FROM features")
            .row(0)
        )
        assert rows == distinct == 48 * SYMBOLS
