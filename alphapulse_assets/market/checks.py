import dagster as dg

from alphapulse_assets.market.assets import prices

# Stale source: the newest closed hour must be materialized by a quarter past (the hourly schedule runs at :05).
prices_freshness_checks = dg.build_time_partition_freshness_checks(
    assets=[prices], deadline_cron="15 * * * *", timezone="UTC"
)
freshness_checks_sensor = dg.build_sensor_for_freshness_checks(
    freshness_checks=prices_freshness_checks, default_status=dg.DefaultSensorStatus.RUNNING
)
