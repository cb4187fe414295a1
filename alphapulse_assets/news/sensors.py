import json
from datetime import timedelta
from pathlib import Path

import dagster as dg

from alphapulse_assets.features.indicators import LOOKBACK_HOURS
from alphapulse_assets.jobs import news_job
from alphapulse_assets.news.jsonl import drop_files, fingerprint, published_span
from alphapulse_assets.news.resources import JsonlDropFolder, NewsSource, SentimentModel
from alphapulse_assets.partitions import HOURLY, last_closed_hour, partition_key, range_run_request


@dg.sensor(job=news_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def news_drop_sensor(context: dg.SensorEvaluationContext, newswire: NewsSource, sentiment: SentimentModel):
    """A new or changed JSONL export requests a news_job run over the hours its items reach: their own hours, and
    the later hours whose decayed sentiment and features look back at them."""
    if not isinstance(newswire, JsonlDropFolder):
        return dg.SkipReason("ALPHAPULSE_NEWS_SOURCE is not jsonl: no drop folder to watch")
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    last = last_closed_hour()
    reach = sentiment.lookback() + timedelta(hours=LOOKBACK_HOURS)
    requests, skipped = [], []
    for path in drop_files(Path(newswire.news_dir)):
        version = fingerprint(path)
        if seen.get(path.name) == version:
            continue
        seen[path.name] = version
        span = published_span(path)
        if span is None:
            skipped.append(f"{path.name} (no line with a valid publication time)")
            continue
        start = max(span[0].replace(minute=0, second=0, microsecond=0), HOURLY.start)
        end = min(span[1].replace(minute=0, second=0, microsecond=0) + reach, last)
        if start > end:
            skipped.append(f"{path.name} (outside {partition_key(HOURLY.start)} .. {partition_key(last)})")
            continue
        requests.append(
            range_run_request(
                f"{path.name}:{version}",
                start,
                end,
                {"alphapulse/trigger": "news_drop_sensor", "alphapulse/news_file": path.name},
            )
        )
    if skipped:
        context.log.info(f"news files not requested: {', '.join(skipped)}")
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps(seen, sort_keys=True),
        skip_reason=None if requests else dg.SkipReason("no new or changed news files"),
    )
