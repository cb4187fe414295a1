"""The Dagster instance's configuration under $ALPHAPULSE_HOME, and the code location by the name Dagster loads it.

Both `make demo` and the replay's command line open the same instance; the replay drives runs of the code
location's own jobs, and loads it by module name as Dagster does, so no module under it imports the definitions.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the demo's parent process imports this and never needs Dagster itself
    import dagster as dg

REPO = Path(__file__).resolve().parent.parent
# As pyproject.toml's [tool.dagster] and workspace.yaml name it.
LOCATION_MODULE = "alphapulse_assets.definitions"


def code_location() -> dg.Definitions:
    """The code location's definitions, built now from this process's environment (which may have changed since
    the module was first imported: the replay's command line, a test)."""
    from alphapulse_assets.settings import Settings

    return importlib.import_module(LOCATION_MODULE).build_definitions(Settings.from_env())


_EVENT_LOG_CLASS_LINE = "  class: BatchingSqliteEventLogStorage\n"


POSTGRES_INSTANCE_TEMPLATE = REPO / "infra" / "dagster" / "dagster-postgres.yaml"


def write_instance_config(dagster_home: Path, env: Mapping[str, str] | None = None) -> None:
    """Write the instance's dagster.yaml: the Postgres template when ALPHAPULSE_DAGSTER_PG_URL is set (in `env`, by
    default the process's), else the repo's embedded dagster.yaml with the event log's directory named explicitly,
    so the instance opens the same way with or without DAGSTER_HOME (e.g. `InstanceRef.from_dir`)."""
    from alphapulse_assets.settings import DAGSTER_PG_URL

    dagster_home.mkdir(parents=True, exist_ok=True)
    if DAGSTER_PG_URL.read(env) is not None:
        (dagster_home / "dagster.yaml").write_text(POSTGRES_INSTANCE_TEMPLATE.read_text())
        return
    template = (REPO / "dagster.yaml").read_text()
    if _EVENT_LOG_CLASS_LINE not in template:
        raise SystemExit("dagster.yaml: the event_log_storage block was changed; update write_instance_config")
    base_dir = dagster_home.resolve() / "history" / "runs"
    config = f"{_EVENT_LOG_CLASS_LINE}  config:\n    base_dir: {json.dumps(str(base_dir) + os.sep)}\n"
    (dagster_home / "dagster.yaml").write_text(template.replace(_EVENT_LOG_CLASS_LINE, config))


def prepare_instance(settings) -> None:
    write_instance_config(settings.dagster_home)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
