"""Real exchange history without news, brought the way a new user brings it: a Binance-format archive starting in
2018 (before the simulated market opens), no news source configured, one symbol delisted before the others. The
data side, a retrain, the hourly job and the API run end to end, and no step retries an error a retry cannot fix."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from api import TEST_KEY, predict_when_up
from kline_archive import write_archive
from services import free_port, stop_group

from alphapulse_assets.instance import write_instance_config

pytestmark = pytest.mark.timeout(900)

REPO = Path(__file__).resolve().parent.parent
SYMBOLS = ["BTCUSDT", "ETHUSDT", "LTCUSDT"]
START = datetime(2018, 1, 1, tzinfo=UTC)

DRIVER = r"""
import json
from datetime import timedelta

import dagster as dg

from alphapulse_assets.definitions import defs
from alphapulse_assets.market.binance_archive import last_covered_hour
from alphapulse_assets.partitions import partition_key
from alphapulse_assets.runner import run_job
from alphapulse_assets.settings import Settings

settings = Settings.from_env()
end = last_covered_hour(settings.archive_dir, settings.symbols)
decision = (end - timedelta(hours=12)).replace(hour=23) - timedelta(days=1)
out = {"news_source": settings.news_source, "end": partition_key(end), "decision": partition_key(decision)}
with dg.DagsterInstance.get() as instance:
    runs = {
        "data": run_job(defs, instance, "data_job", partition_range=("2018-01-01-00:00", partition_key(end))),
        "retrain": run_job(defs, instance, "retrain_job", partition_key=partition_key(decision)),
        "hourly": run_job(
            defs, instance, "hourly_job",
            partition_range=(partition_key(decision + timedelta(hours=1)), partition_key(end)),
        ),
    }
    out["runs"] = {name: {"success": o.success, "error": o.error} for name, o in runs.items()}
    retried = [
        record.event_log_entry.step_key
        for o in runs.values()
        for record in instance.get_records_for_run(o.run_id, limit=100_000).records
        if record.event_log_entry.dagster_event
        and record.event_log_entry.dagster_event.event_type
        in (dg.DagsterEventType.STEP_UP_FOR_RETRY, dg.DagsterEventType.STEP_RESTARTED)
    ]
    out["retried_steps"] = retried
warehouse = defs.resources["warehouse"]
out["news_rows"] = warehouse.query("SELECT count(*) AS n FROM news")["n"][0]
out["sentiment_counts_known"] = warehouse.query(
    "SELECT count(item_count) AS n FROM news_sentiment"
)["n"][0]
out["news_sent_decayed_known"] = warehouse.query("SELECT count(news_sent_decayed) AS n FROM features")["n"][0]
out["ret_1h_known"] = warehouse.query("SELECT count(ret_1h) AS n FROM features")["n"][0]
out["decision"] = warehouse.query("SELECT action, summary FROM promotion_decisions").to_dicts()
out["predictions"] = warehouse.query(
    "SELECT source, count(*) AS n, count(model_version) AS with_model FROM predictions GROUP BY source"
).to_dicts()
out["drift"] = warehouse.query(
    "SELECT reference_kind, drift_status, missing_rows FROM drift_summary ORDER BY ts DESC LIMIT 1"
).to_dicts()
print("RESULT " + json.dumps(out, default=str))
"""


def test_a_2018_archive_without_news_runs_end_to_end(tmp_path):
    archive = tmp_path / "archive"
    # 23 days; LTCUSDT is delisted after 21.5 days, in the middle of its last monthly file.
    write_archive(archive, SYMBOLS, START, 23 * 24, ends={"LTCUSDT": 21 * 24 + 12})
    home = tmp_path / "home"
    env = {
        **{k: v for k, v in os.environ.items() if k != "ALPHAPULSE_NEWS_SOURCE"},
        "ALPHAPULSE_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "ALPHAPULSE_MARKET_SOURCE": "binance_archive",
        "ALPHAPULSE_ARCHIVE_DIR": str(archive),
        "ALPHAPULSE_SYMBOLS": ",".join(SYMBOLS),
        "ALPHAPULSE_HISTORY_START": "2018-01-01",
        "ALPHAPULSE_EVIDENTLY_EVERY_HOURS": "0",
    }
    write_instance_config(home / "dagster")
    driver = subprocess.run(
        [sys.executable, "-c", DRIVER], cwd=REPO, env=env, capture_output=True, text=True, timeout=800
    )
    lines = [line for line in driver.stdout.splitlines() if line.startswith("RESULT ")]
    assert driver.returncode == 0 and lines, driver.stderr[-5000:]
    result = json.loads(lines[0][len("RESULT ") :])

    assert result["news_source"] == "none"
    assert result["end"] == "2018-01-22-11:00"  # the delisted symbol's last row, not its file's month end
    assert all(run["success"] for run in result["runs"].values()), result["runs"]
    assert result["retried_steps"] == []
    # Price-only: no headlines, and the news features are unknown, not zero; the price features are there.
    assert result["news_rows"] == 0 and result["sentiment_counts_known"] == 0
    assert result["news_sent_decayed_known"] == 0 and result["ret_1h_known"] > 0
    assert len(result["decision"]) == 1 and result["decision"][0]["action"] in ("promote", "keep")
    promoted = result["decision"][0]["action"] == "promote"
    # What the API served in every hour after the decision is recorded: the champion's scores, or the baseline's.
    sources = {row["source"]: row for row in result["predictions"]}
    assert sum(row["n"] for row in sources.values()) == 36 * len(SYMBOLS)  # 2018-01-21 00:00 .. 01-22 11:00
    if not promoted:
        assert set(sources) <= {"baseline", "abstain"} and sources["baseline"]["with_model"] == 0
    (drift,) = result["drift"]
    assert drift["missing_rows"] == 0 and drift["drift_status"] not in ("no_reference", None)

    port = free_port()
    api_env = {**env, "ALPHAPULSE_API_PORT": str(port), "ALPHAPULSE_API_KEYS": TEST_KEY}
    log = (tmp_path / "api.log").open("wb")
    api = subprocess.Popen(
        [sys.executable, "-m", "alphapulse_serving"], cwd=REPO, env=api_env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        answer = predict_when_up(port, api)
    finally:
        stop_group(api)
    assert answer["source"] in (("primary", "cache") if promoted else ("baseline", "abstain")), answer
    assert answer["feature_source"] == "online_snapshot" and answer["feature_timestamp"].startswith("2018-01-22")
