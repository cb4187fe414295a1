import os

# The partitions definition reads ALPHAPULSE_HISTORY_START at import, so the test environment is fixed before any
# alphapulse_assets module loads. Small windows keep the in-process graph test fast.
TEST_ENV = {
    "ALPHAPULSE_HISTORY_START": "2025-03-01",
    "ALPHAPULSE_TRAIN_DAYS": "8",
    "ALPHAPULSE_VALIDATION_DAYS": "3",
    "ALPHAPULSE_EMBARGO_HOURS": "6",
    "ALPHAPULSE_NEWS_SIGNAL": "0.7",
    "ALPHAPULSE_DRIFT_WINDOW_HOURS": "48",
}
os.environ.update(TEST_ENV)
