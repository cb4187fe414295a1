"""`python -m alphapulse_assets.replay START END [--retrain-every-hours N] [--retrain-workers N]`: `replay_job`
from the shell.

Uses the same instance and warehouse as `make demo` ($ALPHAPULSE_HOME), so the replay's runs and loop_performance
show in the UI. Times are partition keys, YYYY-MM-DD-HH:MM (UTC), both inclusive.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m alphapulse_assets.replay",
        description="Replay the AlphaPulse loop over [START, END], point in time, and report loop_performance.",
    )
    parser.add_argument("start", help="first hour, YYYY-MM-DD-HH:MM (UTC)")
    parser.add_argument("end", help="last hour, YYYY-MM-DD-HH:MM (UTC)")
    parser.add_argument("--retrain-every-hours", type=int, default=24, help="scheduled retrain cadence (24)")
    parser.add_argument(
        "--retrain-workers",
        type=int,
        default=0,
        help="processes computing scheduled retrains ahead of the loop (0: the loop retrains itself); same decisions",
    )
    args = parser.parse_args(argv)

    from alphapulse_assets.instance import code_location, prepare_instance
    from alphapulse_assets.settings import ConfigError, Settings

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    settings.home.mkdir(parents=True, exist_ok=True)
    prepare_instance(settings)

    import dagster as dg

    from alphapulse_assets.runner import run_job

    config = {
        "start": args.start,
        "end": args.end,
        "retrain_every_hours": args.retrain_every_hours,
        "retrain_workers": args.retrain_workers,
    }
    with dg.DagsterInstance.get() as instance:
        outcome = run_job(
            code_location(), instance, "replay_job", run_config={"ops": {"replay": {"config": config}}}, progress=False
        )
    if not outcome.success:
        print(f"replay failed (run {outcome.run_id}): {outcome.error}", file=sys.stderr)
        return 1
    print(f"replay finished in {outcome.seconds:.0f}s (run {outcome.run_id}); see loop_performance in the UI")
    return 0


if __name__ == "__main__":
    sys.exit(main())
