"""Run a gRPC server in its own process, beside gunicorn, with the standard health service.

The server process is started by the service launcher with a fresh
interpreter (never forked from a process that already used grpcio), binds
the service's gRPC port once, and answers health checks so that orchestrators
and the peer can tell it is ready. SIGTERM stops it gracefully: in-flight
calls get ``GRACE_SECONDS`` to finish.
"""

import logging
import signal
import threading
from collections.abc import Callable
from concurrent import futures

import grpc
from flask import Flask
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from common.logs import configure_logging

log = logging.getLogger(__name__)

# Long enough for a database round trip in flight, short enough for a rolling restart.
GRACE_SECONDS = 5


def run_grpc_server(app: Flask, register: Callable[[grpc.Server], list[str]]) -> None:
    """Serve until SIGTERM or SIGINT. ``register`` adds servicers and returns their full names.

    Port, bind address and thread count come from the app's configuration
    (``GRPC_PORT``, ``BIND_HOST``, ``GRPC_WORKERS``).
    """
    configure_logging(app.config["LOG_LEVEL"])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=app.config["GRPC_WORKERS"]))
    service_names = register(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = f"{app.config['BIND_HOST']}:{app.config['GRPC_PORT']}"
    if server.add_insecure_port(address) == 0:
        raise RuntimeError(f"cannot bind gRPC port {address}: is it already in use?")
    server.start()
    for name in ["", *service_names]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("gRPC server listening on %s (%s)", address, ", ".join(service_names))

    stopping = threading.Event()

    def request_stop(signum, _frame):
        log.info("gRPC server received %s, stopping", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    stopping.wait()
    health_servicer.enter_graceful_shutdown()
    server.stop(GRACE_SECONDS).wait()
    log.info("gRPC server stopped")
