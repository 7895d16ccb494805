"""Probes of a running service: REST ``/ping``, gRPC health, its database, its worker.

``python -m <service> healthcheck [web] [grpc] [database] [worker]`` (the containers'
health checks; slim images have no curl) runs :func:`check` with the
service's own configuration, read from the same environment the service got,
so the ports and database it probes are always the service's. ``web`` and
``grpc`` (the default) say the servers answer: liveness. ``database`` says
the service's own database answers: with ``web`` or ``grpc``, readiness,
which needs no credential (``/health`` does when authentication is on) and
never looks at the peer service. The gRPC probe speaks exactly as the peers do
(the same TLS files, the same token). ``worker`` says every part of the
worker role made progress within its deadline (the heartbeats of
:mod:`common.process.heartbeat`, read from the service's metrics directory,
``PROMETHEUS_MULTIPROC_DIR``, which the probe must be given like the service):
the worker's liveness, and its readiness too, as it serves nothing else. Exit 1,
with one line on stderr saying what failed, marks the container unhealthy (or unready).
"""

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from common.settings import GrpcSecurity, ServiceSettings

# Docker runs the check every few seconds; a probe slower than this counts as a failure.
PROBE_TIMEOUT_SECONDS = 3
# Where a service bound to every interface can be reached from inside its own container.
WILDCARD_ADDRESSES = {"", "0.0.0.0", "::"}
HALVES = ("web", "grpc")
PARTS = (*HALVES, "database", "worker")


def probe_host(bind_host: str) -> str:
    """Return the address to probe a server bound to ``bind_host`` on."""
    return "127.0.0.1" if bind_host in WILDCARD_ADDRESSES else bind_host


def check_rest(host: str, port: int) -> None:
    """Raise unless ``GET /ping`` answers 200."""
    import urllib.request  # not with the module: the launcher imports it, and needs no HTTP

    url = f"http://{host}:{port}/ping"
    with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_SECONDS) as response:
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}")


def check_grpc(host: str, port: int, security: "GrpcSecurity | None" = None) -> None:
    """Raise unless the gRPC health service reports SERVING (asked with ``security``)."""
    # Imported here: the REST probe (and the launcher, which imports this module) need no grpcio.
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from common.rpc.security import open_channel
    from common.settings import GrpcSecurity

    security = security or GrpcSecurity()
    with open_channel(f"{host}:{port}", security) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""),
            timeout=PROBE_TIMEOUT_SECONDS,
            metadata=security.metadata,
        )
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        raise RuntimeError(f"gRPC health on {host}:{port} is {status}")


def check_database(url: str) -> None:
    """Raise unless the database at ``url`` (a SQLAlchemy URL) answers a query in time."""
    import psycopg2  # only readiness probes need it

    libpq_url = url.replace("postgresql+psycopg2://", "postgresql://", 1)
    connection = psycopg2.connect(
        libpq_url,
        connect_timeout=PROBE_TIMEOUT_SECONDS,
        options=f"-c statement_timeout={PROBE_TIMEOUT_SECONDS * 1000}",
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()


def check_worker() -> None:
    """Raise unless every part of the worker made progress within its deadline."""
    from common.observability import MULTIPROC_DIR_VARIABLE
    from common.process.heartbeat import stalled_parts

    directory = os.environ.get(MULTIPROC_DIR_VARIABLE)
    if not directory:
        raise RuntimeError(
            f"{MULTIPROC_DIR_VARIABLE} is not set: the worker's heartbeats are in its metrics "
            "directory; give the probe the same value as the service"
        )
    stalled = stalled_parts(Path(directory))
    if stalled:
        raise RuntimeError(f"the worker is stuck: {'; '.join(stalled)}")


def check(name: str, config: "ServiceSettings", parts: Sequence[str] = HALVES) -> int:
    """Probe the given parts of service ``name``; print why and return 1 when one fails."""
    try:
        if "web" in parts:
            check_rest(probe_host(config.BIND_HOST), config.HTTP_PORT)
        if "grpc" in parts:
            check_grpc(probe_host(config.GRPC_BIND_HOST), config.GRPC_PORT, config.GRPC_SECURITY)
        if "database" in parts:
            check_database(config.SQLALCHEMY_DATABASE_URI or "")
        if "worker" in parts:
            check_worker()
    except Exception as error:
        reason = " ".join(str(error).split())  # gRPC errors span several lines
        print(f"{name} is unhealthy: {reason}", file=sys.stderr)
        return 1
    return 0
