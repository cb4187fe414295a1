"""`python -m alphapulse_serving`: serve the API on ALPHAPULSE_API_HOST:ALPHAPULSE_API_PORT."""

import os
import sys

import uvicorn

from alphapulse_serving.app import create_app


def main() -> None:
    host = os.environ.get("ALPHAPULSE_API_HOST", "127.0.0.1")
    raw_port = os.environ.get("ALPHAPULSE_API_PORT", "8000")
    raw_poll = os.environ.get("ALPHAPULSE_API_POLL_SECONDS", "2")
    try:
        port, poll = int(raw_port), float(raw_poll)
    except ValueError:
        sys.exit(f"ALPHAPULSE_API_PORT={raw_port!r} / ALPHAPULSE_API_POLL_SECONDS={raw_poll!r}: expected numbers")
    if not 0 < port < 65536 or poll <= 0:
        sys.exit(f"ALPHAPULSE_API_PORT must be 1-65535 and ALPHAPULSE_API_POLL_SECONDS positive (got {port}, {poll})")
    uvicorn.run(create_app(poll_seconds=poll), host=host, port=port, log_level="info")


if __name__ == "__main__":
    main()
