"""Container health check: ``python -m common.healthcheck <service>`` exits 0 when it serves.

Slim images have no curl, so each Dockerfile's ``HEALTHCHECK`` runs this
module instead. It reads the service's own configuration (the same
environment the service got), so the ports it probes are always the ones the
service listens on, and it checks both halves of the service: REST
(``GET /ping``) and gRPC (the standard health service). Exit 1, with one line
on stderr saying what failed, marks the container unhealthy.
"""

import importlib
import sys
import urllib.request
from collections.abc import Sequence

# Docker runs the check every few seconds; a probe slower than this counts as a failure.
PROBE_TIMEOUT_SECONDS = 3
# Where a service bound to every interface can be reached from inside its own container.
WILDCARD_ADDRESSES = {"", "0.0.0.0", "::"}


def probe_host(bind_host: str) -> str:
    """Return the address to probe a server bound to ``bind_host`` on."""
    return "127.0.0.1" if bind_host in WILDCARD_ADDRESSES else bind_host


def check_rest(host: str, port: int) -> None:
    """Raise unless ``GET /ping`` answers 200."""
    url = f"http://{host}:{port}/ping"
    with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_SECONDS) as response:
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}")


def check_grpc(host: str, port: int) -> None:
    """Raise unless the gRPC health service reports SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"{host}:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=PROBE_TIMEOUT_SECONDS
        )
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        raise RuntimeError(f"gRPC health on {host}:{port} is {status}")


def main(argv: Sequence[str]) -> int:
    """Command line: ``python -m common.healthcheck user_manager|data_collector``."""
    if len(argv) != 2:
        print("usage: python -m common.healthcheck <service package>", file=sys.stderr)
        return 2
    package = argv[1]
    try:
        config = importlib.import_module(f"{package}.config").Config()
        host = probe_host(config.BIND_HOST)
        check_rest(host, config.HTTP_PORT)
        check_grpc(host, config.GRPC_PORT)
    except Exception as error:
        reason = " ".join(str(error).split())  # gRPC errors span several lines
        print(f"{package} is unhealthy: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
