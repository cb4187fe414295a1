import warnings

import dagster as dg

from alphapulse_assets.features.assets import features
from alphapulse_assets.market.assets import prices
from alphapulse_assets.monitoring.assets import drift_report
from alphapulse_assets.news.assets import news, news_sentiment
from alphapulse_assets.signals.assets import predictions

# Dagster 1.13 marks these builders superseded by FreshnessPolicy on the asset. The roadmap (issue #7) names them,
# and they give a visible check per asset with its own sensor; revisit when freshness is reworked there.
warnings.filterwarnings(
    "ignore", message=r"Function `build_(time_partition_freshness_checks|sensor_for_freshness_checks)`"
)

# The hourly schedule materializes the just-closed hour at :05 (drift_report with an Evidently page takes ~15 s):
# by :20 every hourly asset the loop serves from must have its newest closed hour, or the check fails.
HOURLY_ASSETS = [prices, news, news_sentiment, features, predictions, drift_report]
hourly_freshness_checks = dg.build_time_partition_freshness_checks(
    assets=HOURLY_ASSETS, deadline_cron="20 * * * *", timezone="UTC"
)
freshness_checks_sensor = dg.build_sensor_for_freshness_checks(
    freshness_checks=hourly_freshness_checks, default_status=dg.DefaultSensorStatus.RUNNING
)
