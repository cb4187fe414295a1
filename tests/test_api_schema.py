"""Schemathesis against the API's own OpenAPI schema: generated requests, valid and not, never get a 5xx, and
every response conforms to the schema (status codes, content types, bodies)."""

import tempfile
from pathlib import Path

import schemathesis
from api import TEST_KEY, serving_config
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance
from test_serving import publish_model, publish_snapshot

from alphapulse_assets.storage.object_store import LocalObjectStore
from alphapulse_serving.app import create_app

_root = Path(tempfile.mkdtemp(prefix="alphapulse-schemathesis-"))
_store = LocalObjectStore(root=str(_root / "objects"))
publish_model(_store, 1, "v1")
publish_snapshot(_store)
app = create_app(serving_config(_root / "objects", _root / "audit"))
app.state.services.serving.refresh()  # what the lifespan does: schemathesis drives the ASGI app without starting it

schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case):
    # Which feature names a request may give is the served model's list, not something a static schema can state,
    # so a schema-valid feature dict can rightly be refused (422): that one check is left out; every other one,
    # no 5xx included, runs.
    case.call_and_validate(headers={"X-API-Key": TEST_KEY}, excluded_checks=[positive_data_acceptance])
