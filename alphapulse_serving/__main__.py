"""`python -m alphapulse_serving`: serve the API on ALPHAPULSE_API_HOST:ALPHAPULSE_API_PORT (one worker)."""

import os
import sys

import uvicorn

from alphapulse_serving.app import create_app
from alphapulse_serving.config import ServingConfig
from alphapulse_serving.security import ConfigError


def main() -> None:
    host = os.environ.get("ALPHAPULSE_API_HOST", "127.0.0.1")
    raw_port = os.environ.get("ALPHAPULSE_API_PORT", "8000")
    try:
        port = int(raw_port)
        if not 0 < port < 65536:
            raise ValueError
        app = create_app(ServingConfig.from_env())
    except ConfigError as exc:  # before ValueError, which it subclasses
        sys.exit(f"alphapulse_serving: {exc}")
    except ValueError:
        sys.exit(f"ALPHAPULSE_API_PORT={raw_port!r}: expected a port number 1-65535")
    # uvloop and httptools (uvicorn[standard]); the access log is off because at 1,000 requests/s it costs more
    # than the request, and /metrics counts every request by route and status.
    access_log = os.environ.get("ALPHAPULSE_API_ACCESS_LOG", "").strip().lower() in ("1", "true", "yes")
    uvicorn.run(app, host=host, port=port, log_level="info", loop="uvloop", http="httptools", access_log=access_log)


if __name__ == "__main__":
    main()
