"""Clients of the two internal gRPC services, typed: one method per RPC, one error type.

:class:`UserDirectory` is the User Manager's ``UserService`` as the Data
Collector calls it; :class:`InterestsPeer` is the Data Collector's
``DataCollectorService`` as the User Manager calls it. Every call has a
deadline, and every failure raises :class:`PeerError` with the gRPC status,
so callers decide between "the peer is down" and "the peer refused" without
touching grpcio.

grpcio is not fork-safe, and gunicorn forks its workers, so no channel may
exist before the fork: a client opens its channel on first use, and opens a
new one if it finds itself in another process than the one that opened it.
The channel's service config retries only ``UNAVAILABLE`` (the peer is not
reachable, nothing was executed) and ``RESOURCE_EXHAUSTED`` (a replica had
too many calls in progress and refused this one before running it), a few
times with backoff, and always within the caller's deadline; round-robin
sends the retry to the next replica. The channel's transport and the token every call
sends come from the service's ``GRPC_SECURITY`` (:mod:`common.rpc.security`).

Several replicas of a peer: give an address that resolves to all of them
(``dns:///user-manager:50051``, the name of a compose service or of a
Kubernetes headless Service). The channel then balances calls round-robin over
every address the name resolves to, and watches each replica's standard health
service (client-side health checking), so a replica that stops serving or
dies is dropped before calls fail on it. The peer's servers end every
connection after a while (``grpc.max_connection_age_ms`` in
:mod:`common.rpc.server`), and the channel resolves the name again, so
replicas added later get their share. A plain ``host:port`` (``make run``)
is the same policy over one address.
"""

import json
import os
import threading
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.observability.metrics import GRPC_CLIENT_CALLS
from common.observability.request_ids import GRPC_METADATA_KEY, current_request_id
from common.rpc.generated import flight_tracker_pb2 as messages
from common.rpc.generated import flight_tracker_pb2_grpc as stubs
from common.rpc.security import open_channel
from common.settings import GrpcSecurity

SERVICE_CONFIG = json.dumps(
    {
        # Every replica the address resolves to, in turn (the default, pick_first, would send
        # every call of this process to one replica until it dies).
        "loadBalancingConfig": [{"round_robin": {}}],
        # Calls go only to replicas whose health service says SERVING (watched on each
        # connection): one shutting down or stuck is skipped, not called and timed out.
        "healthCheckConfig": {"serviceName": ""},
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
                },
            }
        ],
    }
)
CHANNEL_OPTIONS = [
    ("grpc.service_config", SERVICE_CONFIG),
    ("grpc.enable_retries", 1),
    ("grpc.keepalive_time_ms", 30_000),
    # After a peer outage, reconnect within a second of its return (gRPC's default backoff
    # grows to two minutes); a peer on the same network is cheap to retry every second.
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 1_000),
    # Resolve the name again at most every second when a connection ends (gRPC's default
    # waits 30 s): replicas that come back on new addresses are found within a second.
    ("grpc.dns_min_time_between_resolutions_ms", 1_000),
]
# Statuses that mean "the peer could not answer now", as opposed to "the peer answered no":
# down or unreachable, too slow, or too busy (its bound on calls in progress refused this one
# before running it; common/rpc/server.py).
UNAVAILABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
# The method label of health checks in grpc_client_calls_total.
HEALTH_CHECK = "Health.Check"


class PeerError(Exception):
    """A call to a peer service failed; ``code`` is the gRPC status it failed with."""

    def __init__(self, address: str, method: str, code: grpc.StatusCode, details: str | None):
        super().__init__(f"{method} on {address}: {code.name} ({details or 'no details'})")
        self.code = code

    @property
    def unavailable(self) -> bool:
        """True when the peer could not answer now (down, unreachable, too slow, too busy)."""
        return self.code in UNAVAILABLE_CODES


class Peer:
    """A lazily connected stub for one peer, safe across gunicorn forks.

    Subclasses name their generated stub class in ``STUB`` and add one typed
    method per RPC. ``security``: the transport and token (default:
    plaintext, no token).
    """

    STUB: Any = None

    def __init__(self, address: str, *, timeout: float, security: GrpcSecurity | None = None):
        self.address = address
        self.timeout = timeout
        self.security = security or GrpcSecurity()
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._stub: Any = None
        self._health: health_pb2_grpc.HealthStub | None = None

    def _connect(self) -> None:
        with self._lock:
            if self._pid != os.getpid():
                # Never reuse a channel inherited through fork: its threads did not survive.
                channel = open_channel(self.address, self.security, options=CHANNEL_OPTIONS)
                self._stub = self.STUB(channel)
                self._health = health_pb2_grpc.HealthStub(channel)
                self._pid = os.getpid()

    def _service(self) -> Any:
        """Return the stub of this process's channel (opened on first use)."""
        self._connect()
        return self._stub

    def _call(self, method: str, rpc, request, *, wait_for_ready: bool = False) -> Any:
        """Call ``rpc`` (a method of the stub) with the deadline; raise PeerError on failure.

        ``method`` names the call in metrics and errors. ``wait_for_ready``: a
        call made while the channel waits out its reconnect backoff (the peer
        has just come back) waits for the connection within the deadline
        instead of failing at once. Client requests use it; background retries
        (the outbox relay) fail fast.
        """
        return self._start(method, rpc, request, wait_for_ready=wait_for_ready).reply()

    def _start(self, method: str, rpc, request, *, wait_for_ready: bool = False) -> "PendingCall":
        """Send ``rpc`` as :meth:`_call` does, without waiting for its answer."""
        request_id = current_request_id()
        metadata = self.security.metadata
        if request_id:
            metadata = ((GRPC_METADATA_KEY, request_id), *metadata)
        future = rpc.future(
            request, timeout=self.timeout, metadata=metadata, wait_for_ready=wait_for_ready
        )
        return PendingCall(self.address, method, future)

    def is_serving(self, *, timeout: float) -> bool:
        """Ask the peer's standard gRPC health service whether it serves; never raises."""
        self._connect()
        try:
            reply = self._health.Check(
                health_pb2.HealthCheckRequest(service=""),
                timeout=timeout,
                metadata=self.security.metadata,
            )
        except grpc.RpcError as error:
            GRPC_CLIENT_CALLS.labels(HEALTH_CHECK, error.code().name).inc()
            return False
        GRPC_CLIENT_CALLS.labels(HEALTH_CHECK, "OK").inc()
        return reply.status == health_pb2.HealthCheckResponse.SERVING


class PendingCall:
    """A call sent to a peer whose answer is still to come (:meth:`Peer._start`)."""

    def __init__(self, address: str, method: str, future: grpc.Future):
        self._address = address
        self._method = method
        self._future = future

    def reply(self) -> Any:
        """Wait for the answer (within the call's deadline); raise PeerError on failure."""
        try:
            reply = self._future.result()
        except grpc.RpcError as error:
            GRPC_CLIENT_CALLS.labels(self._method, error.code().name).inc()
            raise PeerError(self._address, self._method, error.code(), error.details()) from error
        GRPC_CLIENT_CALLS.labels(self._method, "OK").inc()
        return reply


class UserDirectory(Peer):
    """The User Manager's ``UserService``: the authority on which users exist."""

    STUB = stubs.UserServiceStub

    def check_user_exists(self, email: str, *, wait_for_ready: bool = False) -> bool:
        """Tell whether a user with this email exists."""
        return self.start_check_user_exists(email, wait_for_ready=wait_for_ready).reply().exists

    def start_check_user_exists(self, email: str, *, wait_for_ready: bool = False) -> PendingCall:
        """Ask whether a user with this email exists; the reply's ``exists`` tells."""
        return self._start(
            "CheckUserExists",
            self._service().CheckUserExists,
            messages.UserRequest(email=email),
            wait_for_ready=wait_for_ready,
        )


class InterestsPeer(Peer):
    """The Data Collector's ``DataCollectorService``: it owns the users' airport interests."""

    STUB = stubs.DataCollectorServiceStub

    def delete_user_interests(self, email: str) -> int:
        """Delete every interest of the user (idempotent); return how many there were."""
        reply = self._call(
            "DeleteUserInterests",
            self._service().DeleteUserInterests,
            messages.UserRequest(email=email),
        )
        return reply.deleted_count


# The client of each service's gRPC API, by the service's name (a declaration's ``peer``).
CLIENTS: dict[str, type[Peer]] = {"user_manager": UserDirectory, "data_collector": InterestsPeer}
