"""The compose stack on a real Docker engine, for ``make test-containers``.

:class:`ComposeStack` runs ``docker compose`` for one throw-away project:
docker-compose.yml plus ``deploy/compose/test-stack.yml`` (the OpenSky
simulator as a container), on free host ports, with a fresh simulator secret
and gRPC token. It builds, starts the services scaled, waits for health,
finds containers, runs commands in them, kills and restarts them, reads
their logs, and always removes everything it made (``down -v``).
"""

import functools
import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from devstack.stack import free_port
from opensky_sim.simulator import TOKEN_PATH
from tests.containers.deployment import COMPOSE_FILE, REPO_ROOT

TEST_STACK_FILE = REPO_ROOT / "deploy" / "compose" / "test-stack.yml"
SIMULATOR_CLIENT_ID = "sim-client"
SIMULATOR_IN_NETWORK = "http://opensky-sim:9000"
# Every container answers its health check within this after `up` (the image's
# start period is 60 s; migrations and three replicas on two cores take longer, and
# several minutes when other work shares the cores).
HEALTHY_TIMEOUT_SECONDS = 600
# How long `docker info` may take before the engine counts as absent.
ENGINE_PROBE_SECONDS = 20
# Seconds between two looks at the containers' health while waiting.
POLL_SECONDS = 1.0


class ComposeError(RuntimeError):
    """A docker or docker compose command failed; the message has its output."""


@functools.cache
def compose_command() -> tuple[str, ...] | None:
    """Return how to call Compose here (the v2 plugin, else the v1 binary), or None."""
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0:
            return ("docker", "compose")
    if shutil.which("docker-compose"):
        return ("docker-compose",)
    return None


def engine_problem() -> str | None:
    """Return why no Docker engine can be used here, or None when one answers."""
    if not shutil.which("docker"):
        return "the docker command is not installed"
    try:
        probe = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=ENGINE_PROBE_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"`docker info` did not answer within {ENGINE_PROBE_SECONDS} s"
    if probe.returncode != 0 or not probe.stdout.strip():
        reason = " ".join((probe.stderr or probe.stdout).split()) or "no answer"
        return f"`docker info` failed: {reason}"
    if compose_command() is None:
        return "neither `docker compose` nor `docker-compose` is installed"
    return None


def versions() -> dict[str, str]:
    """Return the engine's and Compose's versions, for the report."""
    engine = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    compose = subprocess.run(
        [*(compose_command() or ("docker-compose",)), "version", "--short"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {"engine": engine or "unknown", "compose": compose or "unknown"}


@dataclass
class ComposeStack:
    """One compose project made for a test run, on free ports, removed at the end.

    ``replicas``: of the User Manager and the Data Collector; ``alert_replicas``:
    of the Alert System and the Alert Notifier.
    """

    replicas: int = 3
    alert_replicas: int = 2
    project: str = field(default_factory=lambda: f"flight-tracker-test-{secrets.token_hex(3)}")
    user_manager_port: int = field(default_factory=free_port)
    data_collector_port: int = field(default_factory=free_port)
    alert_system_port: int = field(default_factory=free_port)
    alert_notifier_port: int = field(default_factory=free_port)
    mail_catcher_port: int = field(default_factory=free_port)
    sla_detector_port: int = field(default_factory=free_port)
    prometheus_port: int = field(default_factory=free_port)
    simulator_port: int = field(default_factory=free_port)
    simulator_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    grpc_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    # Documented settings the run changes (docs/performance.md, "The scaled compose stack").
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def user_manager_url(self) -> str:
        return f"http://127.0.0.1:{self.user_manager_port}"

    @property
    def data_collector_url(self) -> str:
        return f"http://127.0.0.1:{self.data_collector_port}"

    @property
    def alert_system_url(self) -> str:
        return f"http://127.0.0.1:{self.alert_system_port}"

    @property
    def alert_notifier_url(self) -> str:
        return f"http://127.0.0.1:{self.alert_notifier_port}"

    @property
    def sla_detector_url(self) -> str:
        return f"http://127.0.0.1:{self.sla_detector_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def mail_catcher_url(self) -> str:
        return f"http://127.0.0.1:{self.mail_catcher_port}"

    @property
    def simulator_url(self) -> str:
        return f"http://127.0.0.1:{self.simulator_port}"

    def environment(self) -> dict[str, str]:
        """The environment compose reads: ports, the simulator, the run's settings."""
        return {
            **os.environ,
            "PUBLISH_HOST": "127.0.0.1",
            "USER_MANAGER_HTTP_PORT": str(self.user_manager_port),
            "DATA_COLLECTOR_HTTP_PORT": str(self.data_collector_port),
            "ALERT_SYSTEM_HTTP_PORT": str(self.alert_system_port),
            "ALERT_NOTIFIER_HTTP_PORT": str(self.alert_notifier_port),
            "MAIL_CATCHER_HTTP_PORT": str(self.mail_catcher_port),
            "SLA_HTTP_PORT": str(self.sla_detector_port),
            "PROMETHEUS_PORT": str(self.prometheus_port),
            "OPENSKY_SIMULATOR_PORT": str(self.simulator_port),
            "SIMULATOR_CLIENT_SECRET": self.simulator_secret,
            "OPENSKY_API_URL": f"{SIMULATOR_IN_NETWORK}/api",
            "OPENSKY_TOKEN_URL": f"{SIMULATOR_IN_NETWORK}{TOKEN_PATH}",
            "OPENSKY_CLIENT_ID": SIMULATOR_CLIENT_ID,
            "OPENSKY_CLIENT_SECRET": self.simulator_secret,
            # gRPC between the services with a token: the replicas' health watches run
            # without it, every call with it.
            "GRPC_AUTH_TOKEN": self.grpc_token,
            **self.settings,
        }

    def compose(
        self, *args: str, timeout: float = 600, check: bool = True
    ) -> subprocess.CompletedProcess:
        """Run ``docker compose`` for this project; raise ComposeError when it fails."""
        command = [
            *(compose_command() or ("docker-compose",)),
            "-p",
            self.project,
            "-f",
            str(COMPOSE_FILE),
            "-f",
            str(TEST_STACK_FILE),
            *args,
        ]
        result = subprocess.run(
            command,
            cwd=REPO_ROOT,
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise ComposeError(
                f"{' '.join(command[:2])} {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def build(self) -> None:
        self.compose("build", timeout=1800)

    def up(self, **scale: int) -> None:
        """Start (or rescale) the stack in the background; ``scale``: replicas by service."""
        counts = {
            "user-manager": self.replicas,
            "data-collector": self.replicas,
            "alert-system": self.alert_replicas,
            "alert-notifier": self.alert_replicas,
            **scale,
        }
        flags = [f"--scale={name}={count}" for name, count in counts.items()]
        self.compose("up", "-d", "--no-build", *flags, timeout=600)

    def down(self) -> None:
        """Remove the project's containers, networks and volumes (never raises)."""
        self.compose("down", "-v", "--remove-orphans", "--timeout", "30", timeout=300, check=False)

    def containers(self, service: str, *, running_only: bool = True) -> list[str]:
        """Return the ids of a service's containers, ordered by name (replica number)."""
        flags = ["ps", "-q"] if running_only else ["ps", "-a", "-q"]
        ids = self.compose(*flags, service).stdout.split()
        return sorted(ids, key=self.name_of)

    def name_of(self, container: str) -> str:
        return docker("inspect", "-f", "{{.Name}}", container).strip().lstrip("/")

    def state(self, container: str) -> dict:
        return json.loads(docker("inspect", "-f", "{{json .State}}", container))

    def all_containers(self) -> list[str]:
        return self.compose("ps", "-q").stdout.split()

    def wait_healthy(self, timeout: float = HEALTHY_TIMEOUT_SECONDS) -> float:
        """Wait until every container with a health check is healthy; return seconds waited."""
        started = time.monotonic()
        while True:
            states = [self.state(c) for c in self.all_containers()]
            waiting = [
                s for s in states if s.get("Health", {}).get("Status", "healthy") != "healthy"
            ]
            if states and not waiting and self._gateway_ready():
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise ComposeError(
                    f"not healthy within {timeout:.0f} s:\n{self.compose('ps').stdout}"
                )
            time.sleep(POLL_SECONDS)

    def _gateway_ready(self) -> bool:
        """Tell whether every service answers /health through the gateway (peers, broker)."""
        urls = (
            self.user_manager_url,
            self.data_collector_url,
            self.alert_system_url,
            self.alert_notifier_url,
        )
        for url in urls:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                    if json.load(response).get("status") != "ok":
                        return False
            except (OSError, ValueError, urllib.error.URLError):
                return False
        return True

    def logs(self, container: str, *, since: str | None = None) -> str:
        """Return a container's output (stdout and stderr), optionally since a timestamp."""
        args = ["logs", *(["--since", since] if since else []), container]
        result = subprocess.run(
            ["docker", *args], capture_output=True, text=True, errors="replace", check=False
        )
        return result.stdout + result.stderr

    def exec(self, container: str, *command: str, stdin: str | None = None) -> str:
        """Run a command in a container; return its output."""
        args = ["exec", *(["-i"] if stdin is not None else []), container, *command]
        return docker(*args, stdin=stdin)

    def crash(self, container: str) -> None:
        """SIGKILL every process of the container but its init, as in a crash.

        Its init (tini) then exits and the restart policy starts the container
        again, as after any crash; ``docker kill`` would count as a deliberate
        stop and leave it down.
        """
        # The exec itself dies with the container, and then reports a failure: ignored.
        subprocess.run(
            ["docker", "exec", container, "sh", "-c", "kill -KILL -1"],
            capture_output=True,
            timeout=60,
            check=False,
        )

    def sql(self, database_service: str, database: str, statement: str) -> list[list[str]]:
        """Run SQL as the database container's superuser; return the rows (text fields)."""
        (container,) = self.containers(database_service)
        output = self.exec(
            container, "psql", "-U", "postgres", "-d", database, "-At", "-F", "\t", "-c", statement
        )
        return [line.split("\t") for line in output.splitlines() if line]


def docker(*args: str, stdin: str | None = None, timeout: float = 120) -> str:
    """Run a docker command; return its stdout, raise ComposeError when it fails."""
    result = subprocess.run(
        ["docker", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise ComposeError(f"docker {' '.join(args[:3])} failed: {result.stderr.strip()}")
    return result.stdout


def wait_for(url: str, *, timeout: float) -> float:
    """Wait until ``url`` answers 200; return how long it took (raise when it never does)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    raise ComposeError(f"{url} did not answer within {timeout:.0f} s")
