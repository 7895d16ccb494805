"""Probes of a running service: REST ``GET /ping`` and the gRPC health service.

``python -m <service> healthcheck [web|grpc]`` (the containers' health
check; slim images have no curl) runs :func:`check` with the service's own
configuration, read from the same environment the service got, so the ports
it probes are always the ones the service listens on, and the gRPC probe
speaks exactly as the peers do (the same TLS files, the same token). Exit 1,
with one line on stderr saying what failed, marks the container unhealthy.
"""

import sys
import urllib.request
from collections.abc import Sequence

from common.settings import BaseConfig, GrpcSecurity

# Docker runs the check every few seconds; a probe slower than this counts as a failure.
PROBE_TIMEOUT_SECONDS = 3
# Where a service bound to every interface can be reached from inside its own container.
WILDCARD_ADDRESSES = {"", "0.0.0.0", "::"}
HALVES = ("web", "grpc")


def probe_host(bind_host: str) -> str:
    """Return the address to probe a server bound to ``bind_host`` on."""
    return "127.0.0.1" if bind_host in WILDCARD_ADDRESSES else bind_host


def check_rest(host: str, port: int) -> None:
    """Raise unless ``GET /ping`` answers 200."""
    url = f"http://{host}:{port}/ping"
    with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_SECONDS) as response:
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}")


def check_grpc(host: str, port: int, security: GrpcSecurity | None = None) -> None:
    """Raise unless the gRPC health service reports SERVING (asked with ``security``)."""
    # Imported here: the REST probe (and the launcher, which imports this module) need no grpcio.
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from common.rpc.security import open_channel

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


def check(name: str, config: BaseConfig, halves: Sequence[str] = HALVES) -> int:
    """Probe the given halves of service ``name``; print why and return 1 when one fails."""
    try:
        if "web" in halves:
            check_rest(probe_host(config.BIND_HOST), config.HTTP_PORT)
        if "grpc" in halves:
            check_grpc(probe_host(config.GRPC_BIND_HOST), config.GRPC_PORT, config.GRPC_SECURITY)
    except Exception as error:
        reason = " ".join(str(error).split())  # gRPC errors span several lines
        print(f"{name} is unhealthy: {reason}", file=sys.stderr)
        return 1
    return 0
