"""The containers' command run here as a plain process: the closest this machine gets to the image.

Each test takes a compose service's ``command`` and health check, the
image's environment and the one compose gives the container (with .env, as
compose reads it), and changes only what lies outside the container: the
in-network database URLs, peer addresses, the broker and the mail server
point at the suite's PostgreSQL, services, nats-server and mail catcher, and
the ports are free ones, so it runs beside the session's stack.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import psutil
import pytest
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.observability import MULTIPROC_DIR_VARIABLE
from devstack.stack import TOKEN_PATH, free_port
from tests.containers.deployment import (
    REPO_ROOT,
    app_services,
    dockerfile_env,
    dockerfile_instructions,
    http_port_variable,
    load_compose,
    migration_services,
    read_dotenv,
    service_command,
    service_environment,
    speaks_grpc,
)
from tests.utils import Api, create_user, new_key, unique_email, wait_until

COMPOSE = load_compose(read_dotenv())
SERVICES = app_services(COMPOSE)
MIGRATIONS = migration_services(COMPOSE)
# Worst case on a loaded CI machine: migrations, then gunicorn's workers and the gRPC server.
START_TIMEOUT = 60.0
# The launcher gives its children 20 s; a clean stop takes a fraction of that.
STOP_TIMEOUT = 30.0


class ContainerProcess:
    """One service started exactly as its container starts it, outside any container."""

    def __init__(self, name: str, env_changes: dict[str, str], workdir: Path):
        spec = COMPOSE["services"][name]
        instructions = dockerfile_instructions(REPO_ROOT / spec["build"]["dockerfile"])
        self.package, _ = service_command(spec)
        self.command = spec["command"]
        # Docker runs a `CMD` health check's arguments as they are.
        test = (spec.get("healthcheck") or {}).get("test") or ["CMD"]
        assert test[0] == "CMD", test
        self.healthcheck = test[1:]
        # The image's environment: its ENV lines, then what compose sets, then our changes.
        # `python` resolves, as in the image, to the interpreter that has the dependencies.
        self.env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        self.env.update(dockerfile_env(instructions))
        self.env.update(service_environment(spec))
        self.env.update(env_changes)
        self.log_path = workdir / f"{self.package}.log"
        self.workdir = workdir
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT
            )

    def exited(self) -> bool:
        return self.process.poll() is not None

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def run_healthcheck(self) -> subprocess.CompletedProcess:
        """Run the service's health check command as docker would, in the container's env."""
        return subprocess.run(
            self.healthcheck, env=self.env, cwd=self.workdir, capture_output=True, text=True
        )

    def terminate(self) -> tuple[int, float, list[psutil.Process]]:
        """Send SIGTERM as docker stop (through tini) does; return code, seconds, survivors."""
        children = self.descendants()
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=STOP_TIMEOUT)
        elapsed = time.monotonic() - started
        _, alive = psutil.wait_procs(children, timeout=1)
        return code, elapsed, [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]

    def kill(self) -> None:
        """Leave nothing behind, whatever happened in the test."""
        if self.process.poll() is None:
            for child in self.descendants():
                child.kill()
            self.process.kill()
            self.process.wait()


def grpc_serving(port: int) -> bool:
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=2
            )
        return reply.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


def rest_ping(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).json() == {
            "message": "pong"
        }
    except (requests.RequestException, ValueError):
        return False


def mounted_sources(spec: dict) -> dict[str, Path]:
    """Map each path a compose service mounts from this repository to the file here."""
    mounts = [str(volume).split(":") for volume in spec.get("volumes") or []]
    return {
        target: (REPO_ROOT / source).resolve()
        for source, target, *_ in mounts
        if source.startswith("./")
    }


def outside_the_container(
    name: str, local_stack, *, http: int = 0, grpc_port: int = 0, workdir: Path | None = None
) -> dict:
    """What changes when the container's network is this machine's loopback."""
    spec = COMPOSE["services"][name]
    package, _ = service_command(spec)
    changes = {}
    if name in SERVICES:
        changes = {"BIND_HOST": "127.0.0.1", http_port_variable(package): str(http)}
        if speaks_grpc(package):
            changes["GRPC_BIND_HOST"] = "127.0.0.1"
            changes[f"{package.upper()}_GRPC_PORT"] = str(grpc_port)
    compose_env = service_environment(COMPOSE["services"][name])
    if "NATS_URL" in compose_env:
        changes["NATS_URL"] = local_stack.broker_url
    if compose_env.get("SMTP_HOST") == "mail-catcher":
        # The suite's mail catcher, as the stack's is compose's.
        changes["SMTP_HOST"] = "127.0.0.1"
        changes["SMTP_PORT"] = str(local_stack.settings.mail_catcher_smtp_port)
    for variable, value in compose_env.items():
        # The suite's databases, with the same two roles: migrations as the owner, the rest
        # as the serving role.
        if variable.endswith("_MIGRATION_DATABASE_URL"):
            changes[variable] = local_stack.database_urls[variable.replace("_MIGRATION", "")]
        elif variable.endswith("_DATABASE_URL"):
            changes[variable] = local_stack.serving_database_urls[variable]
        scheme = "dns:///" if value.startswith("dns:///") else ""
        peer, _, _ = value.removeprefix(scheme).rpartition(":")
        if peer in SERVICES and peer != name:
            peer_port = getattr(local_stack.settings, f"{SERVICES[peer]}_grpc_port")
            changes[variable] = f"{scheme}127.0.0.1:{peer_port}"
    if MULTIPROC_DIR_VARIABLE in compose_env:
        # The container's own /tmp: a directory of this test's.
        changes[MULTIPROC_DIR_VARIABLE] = str(workdir / "metrics")
    if "PROMETHEUS_URL" in compose_env:
        # The suite's Prometheus, or none (a port nothing listens on): either way the service
        # runs, a Prometheus that does not answer is a degraded health.
        changes["PROMETHEUS_URL"] = local_stack.prometheus_url or f"http://127.0.0.1:{free_port()}"
    for variable, value in compose_env.items():
        # A file compose mounts from this repository (the shipped SLA configuration).
        if value in mounted_sources(spec):
            changes[variable] = str(mounted_sources(spec)[value])
    if "OPENSKY_API_URL" in compose_env:
        # The internet is outside too: OpenSky is the suite's simulator (credentials as in .env).
        changes["OPENSKY_API_URL"] = f"{local_stack.simulator_url}/api"
        changes["OPENSKY_TOKEN_URL"] = f"{local_stack.simulator_url}{TOKEN_PATH}"
    return changes


def in_network_names(value: str) -> list[str]:
    """The compose services a setting's value names as a host (``//nats:``, ``@user-db:``)."""
    return [name for name in COMPOSE["services"] if re.search(rf"(^|[/@]){name}(:\d|$)", value)]


@pytest.mark.local_stack
@pytest.mark.parametrize("name", sorted(SERVICES))
def test_container_command_serves_its_roles_then_stops_cleanly(local_stack, name, tmp_path):
    http, grpc_port = free_port(), free_port()
    changes = outside_the_container(
        name, local_stack, http=http, grpc_port=grpc_port, workdir=tmp_path
    )
    service = ContainerProcess(name, changes, tmp_path)
    grpc = speaks_grpc(service.package)
    try:
        unmapped = [v for v in service.env.values() if in_network_names(v)]
        assert not unmapped, f"an in-network address was not mapped: {unmapped}"
        wait_until(
            lambda: service.exited() or (rest_ping(http) and (not grpc or grpc_serving(grpc_port))),
            timeout=START_TIMEOUT,
            interval=0.2,
        )
        assert not service.exited(), service.log
        check = service.run_healthcheck()
        assert check.returncode == 0, check.stderr
        if grpc:
            assert_talks_to_its_peer_over_grpc(name, http, local_stack)
        else:
            assert_reaches_the_broker_and_the_mail_server(service.package, http)
        if name == "data-collector":
            # .env ships the placeholders: the collector must say it runs anonymously.
            assert "OpenSky credentials are not set" in service.log

        code, seconds, survivors = service.terminate()
        assert code == 0, service.log
        assert not survivors, f"left running after SIGTERM: {survivors}"
        assert "received SIGTERM" in service.log
        print(f"{name}: stopped in {seconds:.2f}s after SIGTERM")
        assert not rest_ping(http) and not (grpc and grpc_serving(grpc_port))
        unhealthy = service.run_healthcheck()
        assert unhealthy.returncode == 1 and "unhealthy" in unhealthy.stderr
    finally:
        service.kill()


def assert_talks_to_its_peer_over_grpc(name: str, http: int, local_stack) -> None:
    """Use the link the compose environment configured: a wrong peer address fails here."""
    here = Api(f"http://127.0.0.1:{http}")
    um, dc = Api(local_stack.user_manager_url), Api(local_stack.data_collector_url)
    if name == "data-collector":
        email = create_user(um)
        # CheckUserExists goes to the User Manager named by USER_MANAGER_GRPC_ADDR.
        added = here.post("/interests", json={"email": email, "airport_code": "LIRF"})
        assert added.status_code == 201, added.text
        stranger = here.post("/interests", json={"email": unique_email(), "airport_code": "LIRF"})
        assert stranger.status_code == 404, stranger.text
    else:
        email = create_user(here)
        assert dc.post("/interests", json={"email": email, "airport_code": "LIRF"}).ok
        # DeleteUserInterests goes to the Data Collector named by DATA_COLLECTOR_GRPC_ADDR.
        assert here.delete(f"/users/{email}", headers=new_key()).status_code == 200
        wait_until(lambda: dc.get(f"/interests/{email}").json() == [])


def assert_reaches_the_broker_and_the_mail_server(package: str, http: int) -> None:
    """The broker (and the notifier's mail server) compose names, as /health sees them."""
    health = Api(f"http://127.0.0.1:{http}").get("/health").json()
    if "prometheus" not in health:
        # The SLA detector's health also says whether Prometheus has every sample it watches,
        # which the suite's Prometheus (if any) decides, not compose.
        assert health["status"] == "ok", health
    assert health["broker"]["status"] == "ok", health
    if "emails" in health:
        assert health["emails"]["smtp"]["status"] == "ok", health


@pytest.mark.local_stack
@pytest.mark.parametrize("name", sorted(MIGRATIONS))
def test_the_migration_step_migrates_as_the_owner_and_exits(local_stack, name, tmp_path):
    """Run on a migrated database (the suite's), it finds nothing to do and exits 0 at once."""
    changes = outside_the_container(name, local_stack, workdir=tmp_path)
    step = ContainerProcess(name, changes, tmp_path)
    try:
        code = step.process.wait(timeout=START_TIMEOUT)
        assert code == 0, step.log
        assert not step.healthcheck, "a one-shot step has no health check"
    finally:
        step.kill()


@pytest.mark.local_stack
@pytest.mark.parametrize("name", sorted(MIGRATIONS))
def test_sigterm_while_waiting_for_the_database_stops_at_once(name, tmp_path):
    """A docker stop during start-up (database not up yet) must not hang or leave a migrator.

    Stopped, the step has not succeeded, so its service's containers do not start.
    """
    package = MIGRATIONS[name]
    nowhere = f"postgresql://flight_tracker:pw@127.0.0.1:{free_port()}/{package}"
    changes = {
        f"{package.upper()}_DATABASE_URL": nowhere,
        f"{package.upper()}_MIGRATION_DATABASE_URL": nowhere,
    }
    step = ContainerProcess(name, changes, tmp_path)
    try:
        wait_until(lambda: "database not ready" in step.log, timeout=START_TIMEOUT)
        code, seconds, survivors = step.terminate()
        assert code != 0, "a stopped migration must not count as done"
        assert not survivors, f"left running after SIGTERM: {survivors}"
        assert seconds < 5, f"took {seconds:.1f}s to stop"
    finally:
        step.kill()
