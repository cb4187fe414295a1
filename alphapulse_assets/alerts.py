"""Alerts people see. Each alert is first a JSON record in the object store (`alerts/`); with
`ALPHAPULSE_ALERT_WEBHOOK_URL` set, `alert_delivery_sensor` then posts it as a Slack-compatible incoming-webhook
message (`{"text": ...}`, which Slack, Mattermost, Rocket.Chat and any HTTP endpoint accept).

Writing the record is all a run does: a webhook that is slow or down never blocks or fails the run an alert
reports on. The sensor posts new records in order from the daemon, retries a transient failure with backoff within
a tick and again on later ticks, gives up on one alert after `GIVE_UP_AFTER` (saying so in its log), sends at most
`per_minute` messages a minute (the rest wait, in order), and does not retry what a retry cannot fix (a 4xx other
than 429: a wrong URL or a rejected payload).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from alphapulse_assets.storage.object_store import ObjectStore

ALERTS_PREFIX = "alerts"
# Runs a replay makes carry this tag (replay/driver.py): a replay decides history, nobody is to be paged for it.
REPLAY_TAG = "alphapulse/replay"
GIVE_UP_AFTER = timedelta(hours=1)
RUN_FAILURE, FAILED_BLOCKING_CHECK, CRITICAL_DRIFT, PROMOTION, ROLLBACK, ROLLBACK_REFUSED = (
    "run_failure",
    "failed_blocking_check",
    "critical_drift",
    "promotion",
    "rollback",
    "rollback_refused",
)


@dataclass(frozen=True)
class Alert:
    kind: str  # one of the names above
    title: str  # one line, what happened
    details: dict[str, Any] = field(default_factory=dict)  # what a person needs to act, shown as "key: value"
    run_id: str | None = None
    partition: str | None = None


def record_alert(object_store: ObjectStore, alert: Alert) -> str:
    """Write `alert` under alerts/ (keys sort by the time they were recorded) and return its key."""
    now = datetime.now(UTC)
    key = f"{ALERTS_PREFIX}/{now:%Y%m%dT%H%M%S%f}-{alert.kind}-{uuid.uuid4().hex[:8]}.json"
    record = asdict(alert) | {"recorded_at": now.isoformat()}
    object_store.put_bytes(key, json.dumps(record, indent=2, default=str).encode())
    return key


def in_replay(context: dg.AssetExecutionContext) -> bool:
    return REPLAY_TAG in context.run.tags


def webhook_message(record: dict, ui_url: str | None) -> dict:
    """The Slack-compatible message of an alert record: its title, its details, and a link to the run."""
    lines = [f"*AlphaPulse: {record['title']}*"]
    if record.get("partition"):
        lines.append(f"partition: {record['partition']}")
    lines += [f"{key}: {value}" for key, value in record.get("details", {}).items() if value not in (None, "")]
    if ui_url and record.get("run_id"):
        lines.append(f"<{ui_url.rstrip('/')}/runs/{record['run_id']}|run {record['run_id']}>")
    return {"text": "\n".join(lines)}


class WebhookRejected(Exception):
    """The endpoint refused the message for good (4xx other than 429): retrying cannot fix it."""


class WebhookUnavailable(Exception):
    """No answer, a 5xx or a 429: worth trying again later."""


def post(url: str, message: dict, timeout: float = 5.0) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(message).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 429 or exc.code >= 500:
            raise WebhookUnavailable(f"HTTP {exc.code} from the webhook") from None
        raise WebhookRejected(f"HTTP {exc.code} from the webhook: {exc.read()[:200]!r}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise WebhookUnavailable(f"the webhook did not answer: {getattr(exc, 'reason', exc)}") from None


def deliver(
    url: str, message: dict, attempts: int = 3, backoff_seconds: float = 0.5, sleep: Callable = time.sleep
) -> None:
    """Post `message`, retrying a transient failure `attempts` times with doubling waits; raises the last
    WebhookUnavailable, or WebhookRejected at once."""
    for attempt in range(attempts):
        try:
            return post(url, message)
        except WebhookUnavailable:
            if attempt == attempts - 1:
                raise
            sleep(backoff_seconds * 2**attempt)


class AlertWebhook(dg.ConfigurableResource):
    """Where alerts go besides the object store (ALPHAPULSE_ALERT_WEBHOOK_URL; none: the records only), and the
    Dagster UI address their run links use (ALPHAPULSE_UI_URL)."""

    url: str | None = None
    ui_url: str | None = None
    per_minute: int = 10


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def alert_delivery_sensor(
    context: dg.SensorEvaluationContext, object_store: ObjectStore, alert_webhook: AlertWebhook
) -> dg.SkipReason:
    """Posts alerts recorded since it first looked to ALPHAPULSE_ALERT_WEBHOOK_URL, in order, retried, rate-limited."""
    if not alert_webhook.url:
        return dg.SkipReason("ALPHAPULSE_ALERT_WEBHOOK_URL is not set: alerts stay as JSON under alerts/")
    cursor = json.loads(context.cursor) if context.cursor else None
    if cursor is None:
        # Alerts from before anyone pointed us at a webhook are history, not news: start from now.
        start = f"{ALERTS_PREFIX}/{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
        context.update_cursor(json.dumps({"after": start, "failing_since": None}))
        return dg.SkipReason(f"first look: alerts recorded from now on go to the webhook (from {start})")
    pending = object_store.list_keys(f"{ALERTS_PREFIX}/", after=cursor["after"])
    sent, skipped = 0, []
    for key in pending[: alert_webhook.per_minute]:
        record = json.loads(object_store.get_bytes(key))
        try:
            deliver(alert_webhook.url, webhook_message(record, alert_webhook.ui_url))
        except WebhookRejected as exc:
            context.log.error(f"alert {key} not delivered, and not retried: {exc}")
            skipped.append(key)
        except WebhookUnavailable as exc:
            since = cursor["failing_since"] or datetime.now(UTC).isoformat()
            if datetime.now(UTC) - datetime.fromisoformat(since) < GIVE_UP_AFTER:
                cursor["failing_since"] = since
                context.update_cursor(json.dumps(cursor))
                return dg.SkipReason(
                    f"sent {sent}; the webhook is unavailable ({exc}): {len(pending) - sent - len(skipped)} alerts "
                    f"wait, from {key}, retried on the next ticks"
                )
            context.log.error(f"alert {key} given up after {GIVE_UP_AFTER} of failed deliveries: {exc}")
            skipped.append(key)
        else:
            sent += 1
        cursor = {"after": key, "failing_since": None}
        context.update_cursor(json.dumps(cursor))
    waiting = max(0, len(pending) - alert_webhook.per_minute)
    return dg.SkipReason(
        f"sent {sent} alerts"
        + (f", {len(skipped)} not deliverable (see the log)" if skipped else "")
        + (f"; {waiting} wait for the next ticks (at most {alert_webhook.per_minute} a minute)" if waiting else "")
    )
