"""`python -m alphapulse_serving`: serve the API on ALPHAPULSE_API_HOST:ALPHAPULSE_API_PORT (one worker)."""

import sys

import uvicorn

from alphapulse_contract.config import ConfigError
from alphapulse_serving.app import create_app
from alphapulse_serving.config import ServingConfig


def main() -> None:
    try:
        config = ServingConfig.from_env()
        app = create_app(config)
    except ConfigError as exc:
        sys.exit(f"alphapulse_serving: {exc}")
    # uvloop and httptools (uvicorn[standard]); the access log is off by default because at 1,000 requests/s it
    # costs more than the request, and /metrics counts every request by route and status.
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        log_level="info",
        loop="uvloop",
        http="httptools",
        access_log=config.access_log,
    )


if __name__ == "__main__":
    main()
