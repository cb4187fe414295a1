"""`make demo`: materialize the demo window end to end, promote a champion, then serve the UI, daemon and API.

Progress is printed as it goes (step, partitions, elapsed). Everything lands in the Dagster instance under
$ALPHAPULSE_HOME/dagster, so the UI shows these runs like any other. Re-running resumes: hours already
materialized are not backfilled again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

from alphapulse_assets.instance import REPO, prepare_instance
from alphapulse_contract.config import API_KEYS, API_KEYS_FILE, generate_api_key

# Each retrain tunes three families (~50 s on 2 cores with the default 30 trials each): three days of the loop show
# a first promotion and the champion being challenged without making the demo wait minutes more.
LOOP_REPLAY_DAYS = 3


def say(message: str) -> None:
    print(message, flush=True)


def send_library_output_to(log_path: Path) -> None:
    """The console carries our progress and outcomes; what libraries say on the way (MLflow's notes on the
    environment it records, deprecation warnings) goes to `log_path`, for whoever debugs a run."""
    # MLflow attaches its own stderr handler when imported unless told not to; its records then reach the root.
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    for name in ("mlflow", "py.warnings"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)


def _free(port: int, name: str) -> int:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise SystemExit(f"port {port} on 127.0.0.1 is already in use: set {name} to a free port")
    return port


def materialize(settings) -> bool:
    import dagster as dg

    from alphapulse_assets.definitions import defs
    from alphapulse_assets.features.catalog import WARMUP_HOURS
    from alphapulse_assets.jobs import DATA_ASSETS
    from alphapulse_assets.partitions import last_closed_hour, partition_key
    from alphapulse_assets.replay.driver import history_needed, scheduled_decision_hours
    from alphapulse_assets.runner import first_missing_hour, run_job

    instance = dg.DagsterInstance.get()
    end = last_closed_hour()
    if settings.market_source == "binance_archive":
        from alphapulse_assets.market.binance_archive import last_covered_hour

        try:
            covered = last_covered_hour(settings.archive_dir, settings.symbols)
        except ValueError as exc:
            raise SystemExit(f"ALPHAPULSE_ARCHIVE_DIR: {exc}") from None
        if covered < end:
            say(
                f"      the archive reaches {partition_key(covered)}: the demo window ends there, "
                "not at the last closed hour"
            )
            end = covered
    replay_start = end - timedelta(days=LOOP_REPLAY_DAYS) + timedelta(hours=1)
    first_decision = scheduled_decision_hours(replay_start, end, 24)[0]
    # The window reaches back as far as the replay's first retrain needs (its training window and its features'
    # longest lookback), so the replay finds every hour there and backfills nothing a second time.
    history = history_needed(defs.resources["policy"], first_decision)
    start = max(min(end - timedelta(days=settings.demo_days) + timedelta(hours=1), history), settings.history_start)
    needed = first_decision - timedelta(hours=settings.min_training_hours + WARMUP_HOURS)
    if needed < start:
        raise SystemExit(
            f"the first retrain at {first_decision:%Y-%m-%d %H:00} needs data from {needed:%Y-%m-%d %H:00} "
            f"(ALPHAPULSE_TRAIN_DAYS={settings.train_days}, ALPHAPULSE_VALIDATION_DAYS={settings.validation_days}, "
            f"ALPHAPULSE_EMBARGO_HOURS={settings.embargo_hours}), before ALPHAPULSE_HISTORY_START "
            f"({settings.history_start:%Y-%m-%d %H:00}): move ALPHAPULSE_HISTORY_START earlier"
        )

    resume = first_missing_hour(instance, DATA_ASSETS, start, end)
    n_hours = 0 if resume is None else int((end - resume) / timedelta(hours=1)) + 1
    say(f"[1/3] data backfill {partition_key(start)} .. {partition_key(end)} ({len(settings.symbols)} symbols)")
    if resume is None:
        say("      every hour is already materialized: nothing to backfill")
    else:
        say(f"      {n_hours} hourly partitions x {len(DATA_ASSETS)} assets in one run (from {partition_key(resume)})")
        outcome = run_job(
            defs,
            instance,
            "data_job",
            partition_range=(partition_key(resume), partition_key(end)),
            label="data backfill",
            expected_materializations=n_hours * len(DATA_ASSETS),
        )
        if not outcome.success:
            raise SystemExit(f"data backfill failed: {outcome.error}")
        say(f"      done in {outcome.seconds:.0f}s ({outcome.materializations} asset partitions)")

    from alphapulse_assets.promotion.assets import current_champion
    from alphapulse_assets.storage.object_store import LocalObjectStore

    say(
        f"[2/3] the loop over the last {LOOP_REPLAY_DAYS} days, replayed hour by hour as the schedules and sensors "
        f"would have run it (python -m alphapulse_assets.replay {partition_key(replay_start)} {partition_key(end)})"
    )
    config = {"start": partition_key(replay_start), "end": partition_key(end)}
    outcome = run_job(defs, instance, "replay_job", run_config={"ops": {"replay": {"config": config}}}, progress=False)
    if not outcome.success:
        raise SystemExit(f"the replay failed: {outcome.error}")
    say(f"      done in {outcome.seconds:.0f}s; Assets -> loop_performance shows it, with the equity curves")
    champion = current_champion(LocalObjectStore(root=str(settings.object_store_root)))
    if champion is None:
        say(
            "      !! no challenger passed the gates, so there is no champion. Until one does, POST /predict answers "
            'from the rules baseline ("source": "baseline", its terms in the audit packet) and abstains (signal 0) '
            'for a symbol without fresh features; GET /health says "status": "unavailable" and /ready answers 503. '
            "Why each retrain was refused: "
            "Assets -> model_evaluation (gates) and drift_report (the newest data against the last trained model)"
        )
        return False
    say(
        f"      champion {champion.version} ({champion.extra.get('family', 'model')}) trades its chosen rule: "
        f"{champion.rule.describe()}"
    )
    return True


def wait_http(url: str, process: subprocess.Popen, name: str, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited with code {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers: a 503 from /health before the first champion still means it is up
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{name} did not answer {url} within {timeout:.0f}s; see {log}")


def service_commands(ui_port: int, reports_port: int) -> dict[str, list[str]]:
    """The long-running processes: Dagster webserver and daemon, the prediction API (its port from the env) and
    the server of plots and reports the asset pages show."""
    bin_dir = Path(sys.executable).parent
    workspace = str(REPO / "workspace.yaml")
    return {
        "webserver": [str(bin_dir / "dagster-webserver"), "-w", workspace, "-h", "127.0.0.1", "-p", str(ui_port)],
        "daemon": [str(bin_dir / "dagster-daemon"), "run", "-w", workspace],
        "api": [sys.executable, "-m", "alphapulse_serving"],
        "reports": [
            sys.executable,
            "-m",
            "alphapulse_assets.reports",
            "--host",
            "127.0.0.1",
            "--port",
            str(reports_port),
        ],
    }


def _leads_a_group(process: subprocess.Popen) -> bool:
    try:
        return os.getpgid(process.pid) == process.pid
    except ProcessLookupError:
        return False


def _alive(process: subprocess.Popen, group: bool) -> bool:
    if not group:
        return process.poll() is None
    process.poll()  # reap a leader that exited, or its group never empties
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal(process: subprocess.Popen, group: bool, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(process.pid, signum)
        elif process.poll() is None:
            process.send_signal(signum)


def stop_processes(processes: dict[str, subprocess.Popen], timeout: float = 15.0) -> None:
    """SIGTERM to each service's whole process group (the demo starts each in its own session; a process that
    leads no group gets it alone), then SIGKILL to what is left after `timeout`: a service's children (the
    daemon's and the webserver's code servers, the run workers they start) were seen to outlive it, ignoring
    SIGTERM."""
    groups = {name: _leads_a_group(process) for name, process in processes.items()}
    for name, process in processes.items():
        _signal(process, groups[name], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p, groups[n]) for n, p in processes.items()):
        time.sleep(0.2)
    for name, process in processes.items():
        _signal(process, groups[name], signal.SIGKILL)
        process.wait()


IN_FLIGHT = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")


def runs_in_flight(instance) -> list:
    import dagster as dg

    return instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus[s] for s in IN_FLIGHT]))


def cancel_runs(instance) -> int:
    """Stop every run the daemon has in flight the way the UI's Terminate does: a queued run is canceled at once, a
    running one is terminated through the run launcher. Returns how many were in flight."""
    import dagster as dg

    runs = runs_in_flight(instance)
    for run in runs:
        if run.status in (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED):
            instance.report_run_canceled(run, message="the demo was stopped before this run started")
        else:
            with contextlib.suppress(Exception):  # a run whose worker is already gone is marked below
                instance.run_launcher.terminate(run.run_id)
    return len(runs)


def mark_left_runs_canceled(instance) -> None:
    """Runs still in flight once their processes are gone can never finish: say so in the instance. What they
    wrote is what an interrupted run leaves (crash safety: nothing half-written)."""
    for run in runs_in_flight(instance):
        instance.report_run_canceled(run, message="the demo stopped, and with it the processes running this run")


def stop_services(processes: dict[str, subprocess.Popen], grace: float = 20.0) -> None:
    """Runs in flight are terminated and given `grace` seconds to end as canceled, then every service's process
    group is stopped, then whatever run is left is marked canceled. The processes are stopped even when the
    instance cannot be read: a stop must never leave services behind."""
    import dagster as dg

    try:
        with dg.DagsterInstance.get() as instance:
            if cancel_runs(instance):
                deadline = time.monotonic() + grace
                while runs_in_flight(instance) and time.monotonic() < deadline:
                    time.sleep(0.5)
            stop_processes(processes)
            mark_left_runs_canceled(instance)
    finally:
        stop_processes(processes)  # at once when they are already gone


def demo_api_key(settings, env: dict) -> str | None:
    """The key to print, when the demo made it: ALPHAPULSE_API_KEYS / _FILE win when set; otherwise a key is made
    once, kept in a 0600 secrets file under the home (so a restart keeps it), and handed to the API by file name,
    never on a command line."""
    if API_KEYS.read(env) or API_KEYS_FILE.read(env):
        return None

    path = settings.home / "secrets" / "demo-api-key"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(generate_api_key() + "\n")
    env["ALPHAPULSE_API_KEYS_FILE"] = str(path)
    return path.read_text().strip()


def serve(settings, ui_port: int, api_port: int, reports_port: int, have_champion: bool) -> None:
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, DAGSTER_HOME=str(settings.dagster_home), ALPHAPULSE_API_PORT=str(api_port))
    # Alert messages link to their run in the UI the demo starts (unless the user named another).
    env.setdefault("ALPHAPULSE_UI_URL", f"http://127.0.0.1:{ui_port}")
    env.setdefault("ALPHAPULSE_REPORTS_URL", f"http://127.0.0.1:{reports_port}")
    printed_key = demo_api_key(settings, env)
    # The instance's SQLite storage is created here, by one process: the webserver and the daemon starting together
    # on a fresh home race to create it (seen: two alembic heads in schedules.db, after which no process can open
    # the instance, the stop included).
    import dagster as dg

    with dg.DagsterInstance.get():
        pass
    commands = service_commands(ui_port, reports_port)
    say("[3/3] starting the Dagster webserver, the Dagster daemon, the prediction API and the plots server")
    processes: dict[str, subprocess.Popen] = {}

    stopped = []

    def stop() -> None:
        # A terminal's Ctrl-C reaches every process in the group, and uv forwards it again: once shutting down,
        # further interrupts must not cut the wait for the children short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if not stopped:
            stopped.append(True)
            stop_services(processes)

    try:
        for name, command in commands.items():
            log = (logs / f"{name}.log").open("ab")
            # Own session: a terminal's Ctrl-C reaches only this script, which then stops the services in order,
            # instead of racing them (a service that dies on its own is then a real failure).
            processes[name] = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_http(
            f"http://127.0.0.1:{ui_port}/server_info", processes["webserver"], "webserver", logs / "webserver.log"
        )
        wait_http(f"http://127.0.0.1:{api_port}/health", processes["api"], "API", logs / "api.log")
        # Any answer will do (the root is no report: 404): the server is listening.
        wait_http(f"http://127.0.0.1:{reports_port}/", processes["reports"], "plots server", logs / "reports.log")
        say("")
        say("AlphaPulse is up.")
        say(f"  Dagster UI      http://127.0.0.1:{ui_port}   (assets, runs, schedules, sensors; the daemon is running)")
        say(f"  Prediction API  http://127.0.0.1:{api_port}/docs")
        say(f"  Plots, reports  {env['ALPHAPULSE_REPORTS_URL']}   (shown in the asset pages)")
        if printed_key:
            say(f"  API key         {printed_key}   (send it as X-API-Key; kept in {env['ALPHAPULSE_API_KEYS_FILE']})")
        else:
            say("  API key         yours, from ALPHAPULSE_API_KEYS / ALPHAPULSE_API_KEYS_FILE (send it as X-API-Key)")
        say(f"  Logs            {logs}")
        say(
            "  The loop runs by itself: hourly_schedule at hh:05 (data, predictions, drift_report; the challenger's "
            "shadow_predictions follow), daily_retrain_schedule at 00:30 UTC, drift_retrain_sensor, "
            "live_performance_sensor (rollback), run_failure_alert_sensor. Decisions: Assets -> promotion_decision."
        )
        webhook = settings.alert_webhook_url
        say(
            f"  Alerts          {settings.object_store_location.rstrip('/')}/alerts"
            + (" and your webhook" if webhook else " (set ALPHAPULSE_ALERT_WEBHOOK_URL to have them posted)")
        )
        say("  Try:" if have_champion else "  Try (answered by the rules baseline until a model is promoted):")
        key = printed_key or "$ALPHAPULSE_API_KEY"
        say(
            f"    curl -s -X POST http://127.0.0.1:{api_port}/predict -H 'Content-Type: application/json' "
            f"-H 'X-API-Key: {key}' " + '-d \'{"symbol": "' + settings.symbols[0] + "\"}'"
        )
        say("Press Ctrl-C to stop.")
        while all(p.poll() is None for p in processes.values()):
            time.sleep(1)
        dead = [n for n, p in processes.items() if p.poll() is not None]
        raise SystemExit(f"{', '.join(dead)} stopped unexpectedly; see {logs}")
    except KeyboardInterrupt:
        say("\nstopping ...")
    finally:
        stop()


def _interrupt(*_) -> None:
    """SIGINT or SIGTERM to the demo: unwind whatever phase is running. No I/O here: a handler runs between any
    two bytecodes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def start(settings) -> None:
    """Before either phase: the home, the log of what libraries say, the instance, and how the demo is stopped."""
    settings.home.mkdir(parents=True, exist_ok=True)
    send_library_output_to(settings.home / "logs" / "demo.log")
    prepare_instance(settings)
    # SIGTERM (`kill`, a supervisor, a container stop) stops the demo as Ctrl-C does, in either phase. Ctrl-C must
    # work even when this script inherited SIGINT as ignored (started in the background by a shell).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)


# Steps 1-2 run in a child process, started with this flag; it exits with one of these codes.
MATERIALIZE_FLAG = "--materialize"
WITH_CHAMPION, WITHOUT_CHAMPION, INTERRUPTED = 0, 10, 130
# How long a stopped child may take to end its run as canceled before it is killed.
CHILD_GRACE_SECONDS = 20.0


def materialize_in_child() -> bool:
    """Steps 1-2 in a child process; True when they ended with a champion.

    Why a child: the runs execute in-process, where Dagster holds SIGINT and SIGTERM itself and a library may
    swallow the interrupt it raises (Optuna records a KeyboardInterrupt in a trial as that trial's failure, and the
    run goes on), so a process running them cannot promise to stop. This one only waits: stopped, it interrupts
    the child as Ctrl-C would, gives it CHILD_GRACE_SECONDS to end its run as canceled, then kills it; the runs it
    left open are then marked canceled."""
    child = subprocess.Popen([sys.executable, "-m", "alphapulse_assets.demo", MATERIALIZE_FLAG], cwd=REPO)
    try:
        code = child.wait()
    except KeyboardInterrupt:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
            try:
                child.wait(timeout=CHILD_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        raise
    if code == INTERRUPTED:  # interrupted by someone else (its own Ctrl-C): this demo stops too
        raise KeyboardInterrupt
    if code < 0:  # killed from outside (the OOM killer, say): nothing of it said why, or closed its runs
        import dagster as dg

        with dg.DagsterInstance.get() as instance:
            mark_left_runs_canceled(instance)
        raise SystemExit(f"steps 1-2 were killed by signal {-code}; re-running make demo continues from there")
    if code not in (WITH_CHAMPION, WITHOUT_CHAMPION):
        raise SystemExit(code)  # the child said why
    return code == WITH_CHAMPION


def materialize_here() -> None:
    """The child's side of `materialize_in_child`."""
    from alphapulse_assets.settings import Settings

    settings = Settings.from_env()
    send_library_output_to(settings.home / "logs" / "demo.log")
    # The parent stops it with SIGINT, which a shell may have left ignored for background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        have_champion = materialize(settings)
    except KeyboardInterrupt:
        raise SystemExit(INTERRUPTED) from None
    raise SystemExit(WITH_CHAMPION if have_champion else WITHOUT_CHAMPION)


def main() -> None:
    from alphapulse_assets.settings import ConfigError, Settings

    if sys.argv[1:] == [MATERIALIZE_FLAG]:
        materialize_here()
    started = time.monotonic()
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise SystemExit(f"configuration error: {exc}") from None
    ui_port = _free(settings.ui_port, "ALPHAPULSE_UI_PORT")
    api_port = _free(settings.api_port, "ALPHAPULSE_API_PORT")
    reports_port = _free(settings.reports_port, "ALPHAPULSE_REPORTS_PORT")
    # The asset pages show plots through the plots server the demo starts (unless the user named another); set
    # before steps 1-2, so their plots link there too.
    os.environ.setdefault("ALPHAPULSE_REPORTS_URL", f"http://127.0.0.1:{reports_port}")
    start(settings)
    say(
        f"AlphaPulse demo: home {settings.home}, symbols {', '.join(settings.symbols)}, {settings.demo_days} days, "
        f"market={settings.market_source}, news={settings.news_source}"
    )
    try:
        have_champion = materialize_in_child()
    except KeyboardInterrupt:
        import dagster as dg

        with dg.DagsterInstance.get() as instance:
            mark_left_runs_canceled(instance)
        say("\nstopped: the run in flight was canceled (its hours are left as an interrupted run leaves them)")
        raise SystemExit(130) from None
    say(f"      materialized in {time.monotonic() - started:.0f}s since start")
    serve(settings, ui_port, api_port, reports_port, have_champion)


if __name__ == "__main__":
    main()
