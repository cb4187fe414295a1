"""A replay of the loop over `--days` of the simulated market, and where its time goes.

    uv run python bench/replay.py [--days 365] [--symbols BTCUSDT,ETHUSDT] [--retrain-every-hours 24]
                                  [--retrain-workers 0] [--keep DIR]

Runs `python -m alphapulse_assets.replay` in a fresh ALPHAPULSE_HOME with the loop's settings from the environment
(defaults: 90 training days, 30 out-of-sample days, 30 trials per family; e.g. ALPHAPULSE_TUNING_TRIALS=10 to
change one), on a history that starts early enough for the first retrain and its features' warm-up. Prints the
wall time, then per job the runs, their seconds and share, and the seconds per replayed day; one retrain's mean is
the reference the rest is measured against (machines differ; ratios in one run carry).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
END = datetime(2025, 12, 31, 23, tzinfo=UTC)
AHEAD = " (ahead)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--symbols", default="BTCUSDT,ETHUSDT")
    parser.add_argument("--retrain-every-hours", type=int, default=24)
    parser.add_argument("--retrain-workers", type=int, default=0)
    parser.add_argument("--keep", help="replay into this ALPHAPULSE_HOME (kept) instead of a temporary one")
    args = parser.parse_args()

    start = END - timedelta(days=args.days) + timedelta(hours=1)
    train_days = int(os.environ.get("ALPHAPULSE_TRAIN_DAYS", "90"))
    validation_days = int(os.environ.get("ALPHAPULSE_VALIDATION_DAYS", "30"))
    # The first retrain's windows, its embargo and the features' longest lookback (504 h) before them.
    history = start - timedelta(days=train_days + validation_days + 2 + 21 + 1)
    home = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-replay-"))
    env = dict(
        os.environ,
        ALPHAPULSE_HOME=str(home),
        ALPHAPULSE_HISTORY_START=f"{history:%Y-%m-%d}",
        ALPHAPULSE_SYMBOLS=args.symbols,
        DAGSTER_HOME=str(home / "dagster"),
    )
    command = [
        sys.executable,
        "-m",
        "alphapulse_assets.replay",
        f"{start:%Y-%m-%d-%H:%M}",
        f"{END:%Y-%m-%d-%H:%M}",
        "--retrain-every-hours",
        str(args.retrain_every_hours),
        "--retrain-workers",
        str(args.retrain_workers),
    ]
    print(
        f"replay {args.days} days ({args.symbols}), history from {history:%Y-%m-%d}, {args.retrain_workers} retrain "
        f"workers, home {home}",
        flush=True,
    )
    started = time.perf_counter()
    log = home / "bench-replay.log"
    home.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        finished = subprocess.run(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    if finished.returncode:
        sys.exit(f"replay failed ({finished.returncode}); see {log}")
    print(f"wall time {wall:.0f} s ({wall / args.days:.1f} s per replayed day)")
    summary = [line for line in log.read_text().splitlines() if line.startswith(("loop over", "  "))][-6:]
    print("\n".join(line for line in summary if not line.startswith("  ..")))
    _where_the_time_went(env, wall, args.days)


def _where_the_time_went(env: dict, wall: float, days: int) -> None:
    os.environ.update({k: env[k] for k in ("DAGSTER_HOME", "ALPHAPULSE_HOME", "ALPHAPULSE_HISTORY_START")})
    import dagster as dg

    seconds: dict[str, float] = defaultdict(float)
    runs: dict[str, int] = defaultdict(int)
    with dg.DagsterInstance.get() as instance:
        for record in instance.get_run_records():
            run = record.dagster_run
            if "alphapulse/replay" not in run.tags or record.start_time is None or record.end_time is None:
                continue
            job = run.job_name + (AHEAD if "alphapulse/retrain_ahead" in run.tags else "")
            seconds[job] += record.end_time - record.start_time
            runs[job] += 1
    reference = "retrain_job" + AHEAD if runs["retrain_job" + AHEAD] else "retrain_job"
    retrain = seconds[reference] / runs[reference] if runs[reference] else float("nan")
    print(f"\n{'job':<22}{'runs':>6}{'seconds':>10}{'share':>8}{'s/day':>8}{'x retrain':>11}")
    for job in sorted(seconds, key=lambda j: -seconds[j]):
        mean = seconds[job] / runs[job]
        print(
            f"{job:<22}{runs[job]:>6}{seconds[job]:>10.0f}{seconds[job] / wall:>8.0%}{seconds[job] / days:>8.1f}"
            f"{mean / retrain:>11.2f}"
        )
    in_loop = sum(v for job, v in seconds.items() if not job.endswith(AHEAD))
    print(
        f"one retrain ({reference} mean): {retrain:.1f} s; outside runs (planning, the driver): {wall - in_loop:.0f} s"
    )


if __name__ == "__main__":
    main()
