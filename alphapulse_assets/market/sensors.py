from datetime import timedelta
from pathlib import Path

import dagster as dg

from alphapulse_assets.file_drops import DropScan, file_fingerprint
from alphapulse_assets.jobs import data_job
from alphapulse_assets.market.binance_archive import ALL_TIME, find_archive_files
from alphapulse_assets.market.resources import BinanceArchiveMarket, MarketSource


@dg.sensor(job=data_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def archive_file_sensor(context: dg.SensorEvaluationContext, market: MarketSource):
    """New or changed Binance archive files request a data_job run for exactly the hours they cover."""
    if not isinstance(market, BinanceArchiveMarket):
        return dg.SkipReason("ALPHAPULSE_MARKET_SOURCE is not binance_archive: no archive directory to watch")
    scan = DropScan(context.cursor, market.archive_dir, "archive_file_sensor", "alphapulse/archive_file")
    for archive in find_archive_files(Path(market.archive_dir), market.symbols, *ALL_TIME):
        version = file_fingerprint(archive.path)
        if archive.checksum_path.exists():
            # A checksum dropped after its zip changes what the zip's run would conclude: look at both together.
            version += ":" + file_fingerprint(archive.checksum_path)
        if scan.is_new(archive.path.name, version):
            scan.request(archive.path.name, version, archive.start, archive.end - timedelta(hours=1))
    return scan.result(context, "archive files")
