"""Serve a service's gRPC API, with the standard health service.

The launcher runs the server on threads of its own process (a process that
never forks after grpcio started), binds the service's gRPC port once, and
answers health checks so that orchestrators and the peer can tell it is
ready. Stopping is graceful: in-flight calls get ``GRACE_SECONDS`` to finish.
Each service's ``grpc_server.py`` holds its servicer (an :class:`AppServicer`
naming its service in the .proto); its declaration names the servicer, and the
launcher's ``grpc`` role builds the :class:`GrpcServer` around it.
"""

import contextlib
import logging
import time
import unicodedata
from collections.abc import Iterator
from concurrent import futures

import grpc
from flask import Flask
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.emails import EMAIL_MAX_LENGTH
from common.observability.metrics import GRPC_SERVER_CALLS, GRPC_SERVER_LATENCY
from common.observability.request_ids import (
    GRPC_METADATA_KEY,
    accept_or_generate,
    bind_request_id,
    unbind_request_id,
)
from common.rpc.generated import flight_tracker_pb2 as messages
from common.rpc.generated import flight_tracker_pb2_grpc as stubs
from common.rpc.health import HealthServicer
from common.rpc.security import TokenInterceptor, add_port

log = logging.getLogger(__name__)
call_log = logging.getLogger("grpc.access")

HEALTH_METHOD_PREFIX = "/grpc.health.v1.Health/"
SERVED_METHODS = frozenset(
    f"/{service.full_name}/{method.name}"
    for descriptor in (messages.DESCRIPTOR, health_pb2.DESCRIPTOR)
    for service in descriptor.services_by_name.values()
    for method in service.methods
)


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
                # Metrics only for the methods served: a caller may name any method.
                label = method if method in SERVED_METHODS else "unknown"
                GRPC_SERVER_CALLS.labels(label, code).inc()
                GRPC_SERVER_LATENCY.labels(label).observe(elapsed)
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
    """Base of every service's servicer: every call runs in the app's context.

    A subclass names its service in the .proto (``SERVICE``, e.g.
    ``"UserService"``) and derives from that service's generated servicer
    class. A call that fails on the service's side (its database does not
    answer) ends ``UNAVAILABLE``, which the caller's channel may retry and
    which the caller treats as "the peer cannot answer now", never as a "no".
    """

    SERVICE = ""

    def __init__(self, app: Flask):
        self.app = app

    @classmethod
    def full_name(cls) -> str:
        """Return the service's full name in the .proto (what health checks and clients name)."""
        return messages.DESCRIPTOR.services_by_name[cls.SERVICE].full_name

    def add_to(self, server: grpc.Server) -> None:
        """Register this servicer with ``server`` (the generated ``add_..._to_server``)."""
        getattr(stubs, f"add_{self.SERVICE}Servicer_to_server")(self, server)

    @staticmethod
    def email_argument(context: grpc.ServicerContext, email: str) -> str:
        """Return ``email``, or end the call ``INVALID_ARGUMENT`` if no stored address could be it.

        The peers send addresses they have checked; anything else is a caller's
        mistake, which no retry mends (a NUL would reach the database as one).
        """
        if len(email) > EMAIL_MAX_LENGTH or any(unicodedata.category(c) == "Cc" for c in email):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "email: not an address")
        return email

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
# Calls in progress or waiting for a thread, per thread (GRPC_WORKERS): the server refuses
# more at once with RESOURCE_EXHAUSTED. A call is one indexed statement (milliseconds) and
# its client waits GRPC_TIMEOUT_SECONDS (2 s) at most, so three waiting per thread drain in
# milliseconds while the database is well; when it is slow (calls take seconds), a longer
# queue only holds calls whose clients have given up, each later taking a thread and a
# database connection for an answer nobody reads. A refused call never ran: the client
# retries it on another replica within its deadline, else it is "the peer cannot answer
# now" (common/rpc/peers.py). Health checks are calls too, quick ones; the Watch streams
# of clients' health checking do not count (they hold no thread).
CALLS_PER_WORKER = 4
SERVER_OPTIONS = [
    # Clients keep a connection for as long as it works, so a replica added later would get
    # no calls from channels opened before it started. Ending each connection after a
    # minute (a GOAWAY, then a new connection) makes the clients resolve the peer's name
    # again and spread over every replica it now names; calls in flight get the grace.
    ("grpc.max_connection_age_ms", 60_000),
    ("grpc.max_connection_age_grace_ms", 10_000),
    # gRPC binds with SO_REUSEPORT by default: a server would then share its port with an
    # old process still listening there (one that did not stop), which takes part of the
    # calls. Without it, a taken port stops the start with a clear error instead.
    ("grpc.so_reuseport", 0),
]


class GrpcServer:
    """A service's gRPC server with the standard health service: started, then stopped.

    Port, bind address, thread count and security come from the app's
    configuration (``GRPC_PORT``, ``GRPC_BIND_HOST``, ``GRPC_WORKERS``,
    ``GRPC_SECURITY``). At most :data:`CALLS_PER_WORKER` calls per thread are
    in progress or queued; more are refused with ``RESOURCE_EXHAUSTED``. With a
    token, the token check sits inside the observability interceptor, so
    refused calls are logged and counted too (as ``UNAUTHENTICATED``); it
    guards every method but the health service's ``Check`` and ``Watch``,
    which clients' health checking calls without it (:mod:`common.rpc.security`).
    The server runs on threads of its own, so it shares a process with other
    roles (the launcher's) without forking.
    """

    def __init__(self, app: Flask, servicer: type[AppServicer]):
        self.app = app
        self.service_name = servicer.full_name()
        security = app.config["GRPC_SECURITY"]
        self.security = security
        interceptors: list[grpc.ServerInterceptor] = [ObservabilityInterceptor()]
        if security.token:
            interceptors.append(TokenInterceptor(security.token))
        workers = app.config["GRPC_WORKERS"]
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers),
            interceptors=interceptors,
            options=SERVER_OPTIONS,
            maximum_concurrent_rpcs=workers * CALLS_PER_WORKER,
        )
        servicer(app).add_to(self.server)
        self.health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.address = f"{app.config['GRPC_BIND_HOST']}:{app.config['GRPC_PORT']}"

    def start(self) -> None:
        """Bind the port and serve (raise when the port is taken)."""
        if add_port(self.server, self.address, self.security) == 0:
            raise RuntimeError(f"cannot bind gRPC port {self.address}: is it already in use?")
        self.server.start()
        for name in ("", self.service_name):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "gRPC server listening on %s (%s; %s)",
            self.address,
            self.service_name,
            self.security.describe(),
        )

    def stop(self) -> None:
        """Say NOT_SERVING, give in-flight calls ``GRACE_SECONDS``, then stop."""
        self.health.enter_graceful_shutdown()
        self.server.stop(GRACE_SECONDS).wait()
        log.info("gRPC server stopped")
