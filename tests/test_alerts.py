"""Alerts reach people: records in the object store, posted to a webhook by a sensor that never holds up a run.

The webhook is a real HTTP server on localhost that records what it is sent, answers with a chosen status, or is
not there at all."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
from services import free_port

from alphapulse_assets.alerts import (
    Alert,
    AlertWebhook,
    WebhookRejected,
    WebhookUnavailable,
    alert_delivery_sensor,
    deliver,
    record_alert,
    webhook_message,
)
from alphapulse_assets.settings import ConfigError, Settings
from alphapulse_assets.storage.object_store import LocalObjectStore


class Webhook:
    """A local endpoint: `received` holds the JSON bodies; `status` is what it answers."""

    def __init__(self):
        self.received: list[dict] = []
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if hook.status == 200:
                    hook.received.append(json.loads(body))
                self.send_response(hook.status)
                self.end_headers()
                self.wfile.write(b"ok" if hook.status == 200 else b"no")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/alphapulse"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


def _tick(store, url, cursor=None, per_minute=10):
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance,
            cursor=cursor,
            resources={
                "object_store": store,
                "alert_webhook": AlertWebhook(url=url, ui_url="http://ui:3000", per_minute=per_minute),
            },
        )
        result = alert_delivery_sensor(context)
        return result, context.cursor


def _alert(store, n):
    return record_alert(store, Alert("critical_drift", f"drift {n}", {"hours": n}, run_id=f"run-{n}", partition="p"))


def test_the_message_is_slack_compatible_with_a_link_to_the_run():
    message = webhook_message(
        {"title": "promotion: a -> b", "partition": "2026-12-01-10:00", "run_id": "r1", "details": {"x": 1, "y": None}},
        "http://dagster:3000/",
    )
    lines = ["*AlphaPulse: promotion: a -> b*", "partition: 2026-12-01-10:00", "x: 1"]
    assert message == {"text": "\n".join([*lines, "<http://dagster:3000/runs/r1|run r1>"])}


def test_delivery_retries_what_a_retry_can_fix_and_nothing_else(webhook):
    waits = []
    webhook.status = 503
    with pytest.raises(WebhookUnavailable, match="HTTP 503"):
        deliver(webhook.url, {"text": "x"}, attempts=3, backoff_seconds=0.5, sleep=waits.append)
    assert waits == [0.5, 1.0]
    webhook.status = 404
    waits.clear()
    with pytest.raises(WebhookRejected, match="HTTP 404"):
        deliver(webhook.url, {"text": "x"}, sleep=waits.append)
    assert waits == []
    with pytest.raises(WebhookUnavailable, match="did not answer"):
        deliver(f"http://127.0.0.1:{free_port()}/", {"text": "x"}, attempts=2, sleep=waits.append)


def test_the_sensor_posts_new_alerts_in_order_rate_limited_and_waits_out_an_outage(tmp_path, webhook):
    store = LocalObjectStore(root=str(tmp_path / "objects"))
    _alert(store, 0)  # recorded before the webhook was configured: history, not news
    result, cursor = _tick(store, webhook.url)
    assert "first look" in result.skip_message and webhook.received == []
    for n in (1, 2, 3):
        _alert(store, n)
    result, cursor = _tick(store, webhook.url, cursor, per_minute=2)
    assert [m["text"].splitlines()[0] for m in webhook.received] == ["*AlphaPulse: drift 1*", "*AlphaPulse: drift 2*"]
    assert "sent 2 alerts; 1 wait" in result.skip_message
    assert "<http://ui:3000/runs/run-1|run run-1>" in webhook.received[0]["text"]
    # The webhook goes down: nothing is lost, the alert waits (and the sensor says so).
    webhook.status = 502
    _alert(store, 4)
    result, cursor = _tick(store, webhook.url, cursor)
    assert "unavailable" in result.skip_message and "2 alerts wait" in result.skip_message
    assert json.loads(cursor)["failing_since"] is not None
    webhook.status = 200
    result, cursor = _tick(store, webhook.url, cursor)
    assert [m["text"].splitlines()[0][len("*AlphaPulse: ") :] for m in webhook.received] == [
        "drift 1*",
        "drift 2*",
        "drift 3*",
        "drift 4*",
    ]
    assert json.loads(cursor)["failing_since"] is None and result.skip_message == "sent 2 alerts"
    # A webhook that refuses the message for good: logged, skipped, not retried on every tick.
    webhook.status = 400
    _alert(store, 5)
    result, cursor = _tick(store, webhook.url, cursor)
    assert "1 not deliverable" in result.skip_message
    webhook.status = 200
    result, _ = _tick(store, webhook.url, cursor)
    assert result.skip_message == "sent 0 alerts" and len(webhook.received) == 4


def test_without_a_webhook_the_records_are_the_alerts(tmp_path):
    store = LocalObjectStore(root=str(tmp_path / "objects"))
    key = _alert(store, 1)
    result, _ = _tick(store, None)
    assert "ALPHAPULSE_ALERT_WEBHOOK_URL is not set" in result.skip_message
    assert json.loads(store.get_bytes(key))["title"] == "drift 1"


def test_the_webhook_setting_is_a_url():
    settings = Settings.from_env({"ALPHAPULSE_ALERT_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x"})
    assert settings.alert_webhook_url.startswith("https://")
    with pytest.raises(ConfigError, match="ALPHAPULSE_ALERT_WEBHOOK_URL"):
        Settings.from_env({"ALPHAPULSE_ALERT_WEBHOOK_URL": "hooks.slack.com/services"})
    with pytest.raises(ConfigError, match="ALPHAPULSE_UI_URL"):
        Settings.from_env({"ALPHAPULSE_UI_URL": "localhost:3000"})
