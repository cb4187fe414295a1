"""A dropped news export re-lands news and recomputes the features that look back at it. The sensor lives with the
features, the last assets it recomputes and the ones whose lookback it needs, so news never imports features."""

from datetime import timedelta
from pathlib import Path

import dagster as dg

from alphapulse_assets.features.catalog import HISTORY_HOURS, SENTIMENT
from alphapulse_assets.file_drops import DropScan, file_fingerprint
from alphapulse_assets.jobs import news_job
from alphapulse_assets.news.jsonl import drop_files, published_span
from alphapulse_assets.news.resources import JsonlDropFolder, NewsSource, SentimentModel


@dg.sensor(job=news_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def news_drop_sensor(context: dg.SensorEvaluationContext, newswire: NewsSource, sentiment: SentimentModel):
    """A new or changed JSONL export requests a news_job run over the hours its items reach: their own hours, and
    the later hours whose decayed sentiment and features look back at them."""
    if not isinstance(newswire, JsonlDropFolder):
        return dg.SkipReason("ALPHAPULSE_NEWS_SOURCE is not jsonl: no drop folder to watch")
    scan = DropScan(context.cursor, newswire.news_dir, "news_drop_sensor", "alphapulse/news_file")
    reach = sentiment.lookback() + timedelta(hours=HISTORY_HOURS[SENTIMENT])
    for path in drop_files(Path(newswire.news_dir)):
        version = file_fingerprint(path)
        if not scan.is_new(path.name, version):
            continue
        span = published_span(path)
        if span is None:
            scan.skip(path.name, "no line with a valid publication time")
            continue
        first, last = (t.replace(minute=0, second=0, microsecond=0) for t in span)
        scan.request(path.name, version, first, last + reach)
    return scan.result(context, "news files")
