import json
from datetime import timedelta
from pathlib import Path

import dagster as dg

from alphapulse_assets.jobs import data_job
from alphapulse_assets.market.binance_archive import ALL_TIME, find_archive_files
from alphapulse_assets.market.resources import BinanceArchiveMarket, MarketSource
from alphapulse_assets.partitions import HOURLY, last_closed_hour, partition_key, range_run_request


def _fingerprint(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_mtime_ns}:{stat.st_size}"


@dg.sensor(job=data_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def archive_file_sensor(context: dg.SensorEvaluationContext, market: MarketSource):
    """New or changed Binance archive files request a data_job run for exactly the hours they cover."""
    if not isinstance(market, BinanceArchiveMarket):
        return dg.SkipReason("ALPHAPULSE_MARKET_SOURCE is not binance_archive: no archive directory to watch")
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    first = HOURLY.start
    last = last_closed_hour()
    requests, skipped = [], []
    for archive in find_archive_files(Path(market.archive_dir), market.symbols, *ALL_TIME):
        fingerprint = _fingerprint(archive.path)
        if archive.checksum_path.exists():
            # A checksum dropped after its zip changes what the zip's run would conclude: look at both together.
            fingerprint += ":" + _fingerprint(archive.checksum_path)
        if seen.get(archive.path.name) == fingerprint:
            continue
        seen[archive.path.name] = fingerprint
        start, end = max(archive.start, first), min(archive.end - timedelta(hours=1), last)
        if start > end:
            skipped.append(f"{archive.path.name} (outside {partition_key(first)} .. {partition_key(last)})")
            continue
        requests.append(
            range_run_request(
                f"{archive.path.name}:{fingerprint}",
                start,
                end,
                {"alphapulse/trigger": "archive_file_sensor", "alphapulse/archive_file": archive.path.name},
            )
        )
    if skipped:
        context.log.info(f"archive files outside the partitions, not requested: {', '.join(skipped)}")
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps(seen, sort_keys=True),
        skip_reason=None if requests else dg.SkipReason("no new or changed archive files"),
    )
