"""Real servers for the production-path tests: PostgreSQL 15 and moto's standalone S3 server, started by the suite.

PostgreSQL: `ALPHAPULSE_TEST_POSTGRES_URL` (a role allowed to CREATE DATABASE) points the tests at a server you
run. Otherwise the machine's cluster is used, installed with apt where missing and started with
`pg_ctlcluster 15 main start`, which needs root (CI runs as root); a test role is created once. Every test gets a
database of its own, dropped afterwards.

S3: `moto_server` from the project's environment on a free loopback port, one per test session; every test gets a
bucket of its own.

MLflow: `mlflow server` from the project's environment with a PostgreSQL backend store and S3 artifacts
(`--artifacts-destination`), proxied, as docs/deploy.md runs it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
from psycopg2 import sql

PG_VERSION = "15"
TEST_ROLE = "alphapulse_test"
TEST_PASSWORD = "alphapulse_test"
ADMIN_URL = f"postgresql://{TEST_ROLE}:{TEST_PASSWORD}@127.0.0.1:5432/postgres"


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, check=False)


def _cluster_status() -> str | None:
    if not shutil.which("pg_lsclusters"):
        return None
    for line in _run("pg_lsclusters", "--no-header").stdout.splitlines():
        fields = line.split()
        if fields[:2] == [PG_VERSION, "main"]:
            return fields[3]
    return None


def _fail(message: str, result: subprocess.CompletedProcess | None = None) -> None:
    detail = f"\n{result.stdout}{result.stderr}" if result is not None else ""
    raise RuntimeError(f"{message}{detail}")


def can_apt_get() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def apt_get_install(package: str) -> None:
    for command in (("apt-get", "update", "-qq"), ("apt-get", "install", "-y", "-qq", package)):
        result = subprocess.run(
            command, capture_output=True, text=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        )
        if result.returncode:
            _fail(f"{' '.join(command)} failed", result)


def _install_postgres() -> None:
    if not can_apt_get():
        _fail(
            "PostgreSQL 15 is not installed and this process cannot apt-get it: install postgresql-15, or set "
            "ALPHAPULSE_TEST_POSTGRES_URL to a server where the role may CREATE DATABASE"
        )
    apt_get_install("postgresql")


CHROMIUM = "/usr/bin/chromium"


def chromium() -> str | None:
    """Debian's chromium for the browser test, installed with apt where missing and allowed (CI runs as root);
    None where it cannot be had. Playwright is only the driver: it never downloads a browser here."""
    if not Path(CHROMIUM).exists() and can_apt_get():
        apt_get_install("chromium")
    return CHROMIUM if Path(CHROMIUM).exists() else None


def _wait_for_postgres(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg2.connect(url, connect_timeout=2).close()
            return
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise


def start_postgres() -> str:
    """The admin URL of a running PostgreSQL whose role may create databases."""
    configured = os.environ.get("ALPHAPULSE_TEST_POSTGRES_URL", "").strip()
    if configured:
        _wait_for_postgres(configured, timeout=10)
        return configured
    status = _cluster_status()
    if status is None:
        _install_postgres()
        status = _cluster_status()
        if status is None:
            _fail(f"apt installed postgresql, but there is no {PG_VERSION}/main cluster (pg_lsclusters)")
    if status != "online":
        result = _run("pg_ctlcluster", PG_VERSION, "main", "start")
        if result.returncode and _cluster_status() != "online":
            _fail(f"pg_ctlcluster {PG_VERSION} main start failed", result)
    create_role = (
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{TEST_ROLE}') THEN "
        f"CREATE ROLE {TEST_ROLE} LOGIN CREATEDB PASSWORD '{TEST_PASSWORD}'; END IF; END $$;"
    )
    deadline = time.monotonic() + 30
    while True:
        result = _run("runuser", "-u", "postgres", "--", "psql", "-q", "-v", "ON_ERROR_STOP=1", "-c", create_role)
        if not result.returncode:
            break
        if time.monotonic() > deadline:
            _fail("could not create the test role (runuser -u postgres -- psql)", result)
        time.sleep(0.5)
    _wait_for_postgres(ADMIN_URL)
    return ADMIN_URL


def _with_database(url: str, database: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new, empty database on the server; its URL. Dropped (sessions and all) afterwards."""
    name = f"ap_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        yield _with_database(admin_url, name)
    finally:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for the block, then restore them (unset ones are unset again)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def _server(command: list[str], probe_url: str, log_path: Path, timeout: float, env: dict | None = None):
    """Run `command` until the context exits, once `probe_url` answers; its output goes to `log_path`."""
    log = log_path.open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(probe_url, timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{Path(command[0]).name} did not start; see {log_path}") from None
                time.sleep(0.1)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


@contextmanager
def s3_server(log_dir: Path) -> Iterator[str]:
    """moto's standalone S3-compatible server over real HTTP; yields its endpoint URL."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    command = [_tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with _server(command, f"{endpoint}/moto-api/", log_dir / "moto.log", timeout=30):
        yield endpoint


@contextmanager
def mlflow_server(log_dir: Path, backend_store_url: str, artifacts_destination: str, s3_endpoint: str) -> Iterator[str]:
    """An MLflow tracking server: runs and the registry in PostgreSQL, artifacts on S3 behind the server's proxy
    (clients never see the bucket). Yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        _tool("mlflow"),
        "server",
        "--backend-store-uri",
        backend_store_url,
        "--artifacts-destination",
        artifacts_destination,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = dict(os.environ, **S3_ENV, MLFLOW_S3_ENDPOINT_URL=s3_endpoint, AWS_ENDPOINT_URL_S3=s3_endpoint)
    with _server(command, f"{url}/health", log_dir / "mlflow.log", timeout=120, env=env):
        yield url


def create_bucket(endpoint: str) -> str:
    import boto3

    name = f"ap-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, **_credentials()).create_bucket(Bucket=name)
    return name


def _credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": S3_ENV["AWS_DEFAULT_REGION"],
    }


class TcpProxy:
    """Forwards a loopback port to an HTTP endpoint until closed: an S3 that can be made to vanish."""

    def __init__(self, target_url: str, port: int = 0):
        """`port`: listen where a closed proxy listened, to bring the same endpoint back."""
        host, target_port = target_url.removeprefix("http://").split(":")
        self.target = (host, int(target_port))
        self.server = socket.create_server(("127.0.0.1", port))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.open = True
        self.connections: list[socket.socket] = []

    def __enter__(self) -> TcpProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def close(self) -> None:
        """Refuse new connections and cut the open ones (boto3 would otherwise reuse its pooled keep-alives)."""
        self.open = False
        # close() alone leaves a thread blocked in accept() accepting; shutdown() wakes it with an error.
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()
        for sock in self.connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while self.open:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                return
            upstream = socket.create_connection(self.target)
            self.connections += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def stop_group(leader: subprocess.Popen, timeout: float = 30.0) -> None:
    """A process started with `start_new_session=True` and whatever it started: SIGTERM to the group, then SIGKILL
    to what is left once the leader has exited or `timeout` passed. Children were seen to outlive their parent
    (dagster-daemon's code server, ignoring SIGTERM for an hour) or to drain slowly (mlflow's uvicorn)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(leader.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        leader.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(leader.pid, signal.SIGKILL)
    leader.wait()
