"""The deploy files are checked here, since no Docker engine or cluster runs in CI: the Dockerfile against hadolint,
the production instance template against Dagster's own instance schema."""

import re
import subprocess
import sys
from pathlib import Path

import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config_schema

REPO = Path(__file__).resolve().parent.parent


def test_the_dockerfile_is_hadolint_clean():
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run([str(hadolint), "--no-color", str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_is_multi_stage_frozen_and_non_root():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", dockerfile, re.M)) >= 2
    assert "uv sync --frozen" in dockerfile
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")
    for path in ("infra/dagster", "alphapulse_contract", "alphapulse_assets", "alphapulse_serving", "workspace.yaml"):
        assert path in dockerfile, f"the image lacks {path}"


def test_the_production_instance_template_is_a_valid_dagster_instance():
    config = yaml.safe_load((REPO / "infra/dagster/dagster-postgres.yaml").read_text())
    result = process_config(dagster_instance_config_schema(), config)
    assert result.success, result.errors
    assert config["event_log_storage"]["class"] == "PooledPostgresEventLogStorage"
    assert config["run_retries"]["enabled"] and config["run_monitoring"]["enabled"]


# --- Kubernetes, Helm and Compose -------------------------------------------------------------------------------
# No cluster or Docker engine runs here, so the files are held to the schemas their tools apply: Kubernetes' OpenAPI
# schemas (kubernetes-validate, bundled offline, strict: unknown fields fail), Dagster's own config schemas for what
# the Helm chart turns into the instance and the run launcher, and the Compose specification (check-jsonschema).

K8S_VERSION = "1.30.0"  # the oldest minor still supported by the major managed services


def load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def strict_k8s(resource: dict) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(resource, K8S_VERSION, strict=True)


def names_the_code_reads() -> set[str]:
    """Every variable the graph and the API declare (the only ones they read: tests/test_layout.py)."""
    from alphapulse_assets.settings import Settings
    from alphapulse_contract.config import declared
    from alphapulse_serving.config import ServingConfig

    return {setting.variable for schema in (Settings, ServingConfig) for _, setting in declared(schema)}


def api_manifests() -> dict[str, dict]:
    docs = [doc for path in sorted((REPO / "infra/k8s").glob("api-*.yaml")) for doc in load_all(path)]
    return {doc["kind"]: doc for doc in docs}


def test_every_api_manifest_is_valid_kubernetes_and_listed_in_the_kustomization():
    k8s = REPO / "infra/k8s"
    kustomization = yaml.safe_load((k8s / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in k8s.glob("api-*.yaml"))
    for path in sorted(k8s.glob("api-*.yaml")):
        for doc in load_all(path):
            strict_k8s(doc)
    kinds = set(api_manifests())
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap"} <= kinds


def test_the_api_deployment_probes_real_routes_and_its_objects_select_its_pods(tmp_path):
    from api import serving_config

    from alphapulse_serving.app import create_app

    manifests = api_manifests()
    deployment = manifests["Deployment"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    [container] = pod["spec"]["containers"]
    app = create_app(serving_config(tmp_path, tmp_path / "audit"))
    routes = {route.path for route in app.routes}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] in routes, probe
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready", "traffic only once a model is loaded"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"]) and "memory" in container["resources"]["limits"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    for kind in ("Service", "PodDisruptionBudget"):
        selector = manifests[kind]["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        assert selector.items() <= labels.items(), kind
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = manifests["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert (
        manifests["PodDisruptionBudget"]["spec"]["minAvailable"]
        < manifests["HorizontalPodAutoscaler"]["spec"]["minReplicas"]
    ), "a drain must be able to evict a pod"
    configured = set(manifests["ConfigMap"]["data"])
    assert {n for n in configured if n.startswith("ALPHAPULSE_")} <= names_the_code_reads()


def helm_values() -> dict:
    return yaml.safe_load((REPO / "infra/helm/values.yaml").read_text())


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_the_helm_run_launcher_is_a_valid_k8s_run_launcher():
    """The chart renders `runLauncher.config.k8sRunLauncher` into the instance's run_launcher config (camelCase to
    snake_case, Secret names to a list), adding the instance ConfigMap, DAGSTER_HOME and the Postgres Secret."""
    from dagster_k8s import K8sRunLauncher

    values = helm_values()
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    config = {snake(k): v for k, v in launcher.items() if k not in ("envSecrets", "runK8sConfig")}
    config |= {
        "env_secrets": [s["name"] for s in launcher["envSecrets"]],
        "run_k8s_config": {snake(k): v for k, v in launcher["runK8sConfig"].items()},
        "instance_config_map": "dagster-instance",
        "dagster_home": "/opt/dagster/dagster_home",
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
    }
    result = process_config(K8sRunLauncher.config_type(), config)
    assert result.success, result.errors
    # What the run pods get must be valid Kubernetes: a Job with the run container and pod settings.
    run = launcher["runK8sConfig"]
    strict_k8s(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "dagster-run"},
            "spec": {
                "template": {
                    "spec": {
                        **run["podSpecConfig"],
                        "restartPolicy": "Never",
                        "containers": [{"name": "dagster", "image": "alphapulse", **run["containerConfig"]}],
                    }
                }
            },
        }
    )


def test_the_helm_instance_settings_are_a_valid_dagster_instance_like_the_template():
    """Run retries, run monitoring and concurrency, as the chart writes them into dagster.yaml, validate against
    Dagster's instance schema and agree with infra/dagster/dagster-postgres.yaml."""
    values = helm_values()
    daemon, concurrency = values["dagsterDaemon"], values["concurrency"]
    instance = {
        "run_retries": {snake(k): v for k, v in daemon["runRetries"].items()},
        "run_monitoring": {snake(k): v for k, v in daemon["runMonitoring"].items()},
        "concurrency": {
            "runs": {"max_concurrent_runs": concurrency["runs"]["maxConcurrentRuns"]},
            "pools": {"default_limit": concurrency["pools"]["defaultLimit"]},
        },
    }
    result = process_config(dagster_instance_config_schema(), instance)
    assert result.success, result.errors
    assert concurrency["enabled"] and values["postgresql"]["enabled"] is False
    template = yaml.safe_load((REPO / "infra/dagster/dagster-postgres.yaml").read_text())
    assert instance["concurrency"] == template["concurrency"]
    assert instance["run_retries"] == template["run_retries"]
    assert instance["run_monitoring"]["enabled"] and template["run_monitoring"]["enabled"]


def test_the_helm_code_location_serves_this_graph_with_known_settings():
    import importlib.util

    [deployment] = helm_values()["dagster-user-deployments"]["deployments"]
    args = deployment["dagsterApiGrpcArgs"]
    module = args[args.index("--module-name") + 1]
    assert importlib.util.find_spec(module) is not None
    assert deployment["includeConfigInLaunchedRuns"]["enabled"], "runs must see the code location's backends"
    env = {item["name"] for item in deployment["env"]}
    assert {n for n in env if n.startswith("ALPHAPULSE_")} <= names_the_code_reads()
    assert {"ALPHAPULSE_WAREHOUSE_URL", "ALPHAPULSE_OBJECT_STORE_URL", "MLFLOW_TRACKING_URI"} <= env
    # The container the chart builds from these values: valid Kubernetes, with the gRPC health check it adds.
    probe = {"exec": {"command": ["dagster", "api", "grpc-health-check", "-p", str(deployment["port"])]}}
    strict_k8s(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": deployment["name"]},
            "spec": {
                "selector": {"matchLabels": {"app": deployment["name"]}},
                "template": {
                    "metadata": {"labels": {"app": deployment["name"]}},
                    "spec": {
                        "securityContext": deployment["podSecurityContext"],
                        "containers": [
                            {
                                "name": deployment["name"],
                                "image": f"{deployment['image']['repository']}:{deployment['image']['tag']}",
                                "imagePullPolicy": deployment["image"]["pullPolicy"],
                                "args": ["dagster", "api", "grpc", *args],
                                "env": deployment["env"],
                                "envFrom": [{"secretRef": s} for s in deployment["envSecrets"]],
                                "resources": deployment["resources"],
                                "securityContext": deployment["securityContext"],
                                "readinessProbe": {**probe, **deployment["readinessProbe"]},
                                "startupProbe": {
                                    **probe,
                                    **{k: v for k, v in deployment["startupProbe"].items() if k != "enabled"},
                                },
                            }
                        ],
                    },
                },
            },
        }
    )


def test_the_compose_stack_follows_the_compose_spec_and_wires_its_services():
    compose_file = REPO / "infra/compose.yaml"
    check = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(check), "--builtin-schema", "vendor.compose-spec", str(compose_file)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    compose = yaml.safe_load(compose_file.read_text())
    services = compose["services"]
    assert {"postgres", "s3", "mlflow", "code", "webserver", "daemon", "api", "reports"} <= set(services)
    # Every bind mount names a file in the repository.
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (compose_file.parent / source).exists() or source.endswith("api-keys"), (name, source)
    # The webserver and daemon find the code location where it listens.
    workspace = yaml.safe_load((REPO / "infra/compose/workspace.yaml").read_text())
    grpc = workspace["load_from"][0]["grpc_server"]
    code = services["code"]["command"]
    assert grpc["host"] in services and str(grpc["port"]) == code[code.index("-p") + 1]
    # Every database a URL names is created by the init script, and every setting is one the code reads.
    env = compose["x-alphapulse-env"]
    created = set(re.findall(r"CREATE DATABASE (\w+);", (REPO / "infra/compose/initdb.sql").read_text()))
    urls = [v for v in env.values() if str(v).startswith("postgresql://")]
    assert {url.rsplit("/", 1)[1] for url in urls} <= created
    configured = set(env) | set(services["api"]["environment"])
    assert {n for n in configured if n.startswith("ALPHAPULSE_")} <= names_the_code_reads()
    for name in ("mlflow", "dagster", "dagster-webserver", "dagster-daemon"):
        assert Path(sys.executable).with_name(name).exists(), f"the image has no {name} command"
