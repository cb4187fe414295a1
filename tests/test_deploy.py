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
    for path in ("infra/dagster", "alphapulse_assets", "alphapulse_serving", "workspace.yaml"):
        assert path in dockerfile, f"the image lacks {path}"


def test_the_production_instance_template_is_a_valid_dagster_instance():
    config = yaml.safe_load((REPO / "infra/dagster/dagster-postgres.yaml").read_text())
    result = process_config(dagster_instance_config_schema(), config)
    assert result.success, result.errors
    assert config["event_log_storage"]["class"] == "PooledPostgresEventLogStorage"
    assert config["run_retries"]["enabled"] and config["run_monitoring"]["enabled"]
