"""Serve a service's gRPC API in its own process, with the standard health service.

The server process is started by the service launcher with a fresh
interpreter (never forked from a process that already used grpcio), binds
the service's gRPC port once, and answers health checks so that orchestrators
and the peer can tell it is ready. SIGTERM stops it gracefully: in-flight
calls get ``GRACE_SECONDS`` to finish. Each service's ``grpc_server.py``
holds its servicer (a :class:`AppServicer`) and a ``serve()`` that calls
:func:`run_grpc_server`.
"""

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
from flask import Flask
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from common.observability.logs import configure_logging
from common.observability.metrics import GRPC_SERVER_CALLS, GRPC_SERVER_LATENCY
from common.observability.request_ids import (
    GRPC_METADATA_KEY,
    accept_or_generate,
    bind_request_id,
    unbind_request_id,
)
from common.rpc.security import TokenInterceptor, add_port

log = logging.getLogger(__name__)
call_log = logging.getLogger("grpc.access")

HEALTH_METHOD_PREFIX = "/grpc.health.v1.Health/"


class ObservabilityInterceptor(grpc.ServerInterceptor):
    """Give each call the caller's request id, one log line and metrics, like HTTP requests."""

    def intercept_service(self, continuation, handler_call_details):
        """Wrap unary-unary handlers (all this contract has) with the bookkeeping."""
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        metadata = dict(handler_call_details.invocation_metadata or ())
        request_id = accept_or_generate(metadata.get(GRPC_METADATA_KEY))
        serve = handler.unary_unary

        def observed(request, context):
            token = bind_request_id(request_id)
            started = time.perf_counter()
            try:
                return serve(request, context)
            finally:
                elapsed = time.perf_counter() - started
                code = context.code() or grpc.StatusCode.OK
                if isinstance(code, grpc.StatusCode):
                    code = code.name
                GRPC_SERVER_CALLS.labels(method, code).inc()
                GRPC_SERVER_LATENCY.labels(method).observe(elapsed)
                # Probes call Health every few seconds; their lines would drown the rest.
                level = logging.DEBUG if method.startswith(HEALTH_METHOD_PREFIX) else logging.INFO
                call_log.log(level, "%s %s %.1fms", method, code, elapsed * 1000)
                unbind_request_id(token)

        return grpc.unary_unary_rpc_method_handler(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class AppServicer:
    """Base of both services' servicers: every call runs in the app's context.

    A call that fails on the service's side (its database does not answer)
    ends ``UNAVAILABLE``, which the caller's channel may retry and which the
    caller treats as "the peer cannot answer now", never as a "no".
    """

    def __init__(self, app: Flask):
        self.app = app

    @contextlib.contextmanager
    def serving(self, context: grpc.ServicerContext, method: str) -> Iterator[None]:
        """Run the block in the app's context; turn any failure into ``UNAVAILABLE``."""
        with self.app.app_context():
            try:
                yield
            except Exception:
                log.exception("%s failed", method)
                context.abort(grpc.StatusCode.UNAVAILABLE, f"{method} failed: database unavailable")


# Long enough for a database round trip in flight, short enough for a rolling restart.
GRACE_SECONDS = 5
SERVER_OPTIONS = [
    # Clients keep a connection for as long as it works, so a replica added later would get
    # no calls from channels opened before it started. Ending each connection after a
    # minute (a GOAWAY, then a new connection) makes the clients resolve the peer's name
    # again and spread over every replica it now names; calls in flight get the grace.
    ("grpc.max_connection_age_ms", 60_000),
    ("grpc.max_connection_age_grace_ms", 10_000),
]


def run_grpc_server(
    app: Flask, *, add_servicer: Callable[[grpc.Server], None], service_name: str
) -> None:
    """Serve until SIGTERM or SIGINT; ``add_servicer`` adds the service named ``service_name``.

    Port, bind address, thread count and security come from the app's
    configuration (``GRPC_PORT``, ``GRPC_BIND_HOST``, ``GRPC_WORKERS``,
    ``GRPC_SECURITY``). With a token, the token check sits inside the
    observability interceptor, so refused calls are logged and counted too
    (as ``UNAUTHENTICATED``); it guards every method but the health service's
    ``Check`` and ``Watch``, which clients' health checking calls without it
    (:mod:`common.rpc.security`).
    """
    configure_logging(app.config["LOG_LEVEL"])
    security = app.config["GRPC_SECURITY"]
    interceptors: list[grpc.ServerInterceptor] = [ObservabilityInterceptor()]
    if security.token:
        interceptors.append(TokenInterceptor(security.token))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=app.config["GRPC_WORKERS"]),
        interceptors=interceptors,
        options=SERVER_OPTIONS,
    )
    add_servicer(server)
    service_names = [service_name]
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = f"{app.config['GRPC_BIND_HOST']}:{app.config['GRPC_PORT']}"
    if add_port(server, address, security) == 0:
        raise RuntimeError(f"cannot bind gRPC port {address}: is it already in use?")
    server.start()
    for name in ["", *service_names]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "gRPC server listening on %s (%s; %s)",
        address,
        ", ".join(service_names),
        security.describe(),
    )

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
