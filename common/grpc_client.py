"""gRPC client side: one channel per process, created lazily, every call with a deadline.

grpcio is not fork-safe, and gunicorn forks its workers, so no channel may
exist before the fork: :class:`GrpcPeer` opens its channel on first use and
opens a new one if it finds itself in a different process than the one that
created it. The channel's service config retries only ``UNAVAILABLE`` (the
peer is not reachable, nothing was executed), a few times with backoff, and
always within the caller's deadline.

grpcio itself (~11 MB per process) is imported on first use too: a web
worker loads it with its first call to the peer or its first ``/health``
(which asks the peer's gRPC health service), not at start.
"""

import json
import logging
import os
import threading
from typing import Any

from common.metrics import GRPC_CLIENT_CALLS
from common.request_context import GRPC_METADATA_KEY, current_request_id

log = logging.getLogger(__name__)

RETRY_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


# The method label of health checks in grpc_client_calls_total.
HEALTH_CHECK = "Health.Check"


class PeerUnavailableError(Exception):
    """The peer could not answer (down, unreachable, deadline exceeded)."""


class GrpcPeer:
    """A lazily connected stub for one peer service, safe across gunicorn forks."""

    def __init__(self, address: str, stub: str, timeout: float):
        """Talk to ``address`` through ``common.rpc.flight_tracker_pb2_grpc.<stub>``."""
        self.address = address
        self.timeout = timeout
        self._stub_name = stub
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._channel: Any = None  # a grpc.Channel, opened in the process that uses it
        self._stub: Any = None
        self._health_stub: Any = None

    def _current_stub(self) -> Any:
        with self._lock:
            if self._pid != os.getpid():
                import grpc
                from grpc_health.v1 import health_pb2_grpc

                from common.rpc import flight_tracker_pb2_grpc

                # Never reuse a channel inherited through fork: its threads did not survive.
                self._channel = grpc.insecure_channel(
                    self.address,
                    options=[
                        ("grpc.service_config", RETRY_SERVICE_CONFIG),
                        ("grpc.enable_retries", 1),
                        ("grpc.keepalive_time_ms", 30_000),
                        # After a peer outage, reconnect within a second of its return
                        # (gRPC's default backoff grows to two minutes); a local peer
                        # is cheap to retry every second while it is down.
                        ("grpc.initial_reconnect_backoff_ms", 500),
                        ("grpc.max_reconnect_backoff_ms", 1_000),
                    ],
                )
                self._stub = getattr(flight_tracker_pb2_grpc, self._stub_name)(self._channel)
                self._health_stub = health_pb2_grpc.HealthStub(self._channel)
                self._pid = os.getpid()
            return self._stub

    def call(
        self,
        method: str,
        request: Any,
        *,
        timeout: float | None = None,
        wait_for_ready: bool = False,
    ) -> Any:
        """Call ``method`` with a deadline; raise :class:`PeerUnavailableError` if the peer is down.

        ``wait_for_ready``: a call made while the channel waits out its
        reconnect backoff (the peer has just come back) waits for the
        connection within the deadline instead of failing at once; a peer that
        stays down then fails at the deadline rather than immediately. Client
        requests use it; background retries (the outbox relay) fail fast.

        Errors other than unavailability (a bug on either side) propagate as
        ``grpc.RpcError`` so they are not mistaken for an outage.
        """
        import grpc

        stub = self._current_stub()
        request_id = current_request_id()
        metadata = ((GRPC_METADATA_KEY, request_id),) if request_id else None
        try:
            reply = getattr(stub, method)(
                request,
                timeout=timeout or self.timeout,
                metadata=metadata,
                wait_for_ready=wait_for_ready,
            )
        except grpc.RpcError as error:
            code = error.code() if hasattr(error, "code") else None
            GRPC_CLIENT_CALLS.labels(method, code.name if code else "UNKNOWN").inc()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise PeerUnavailableError(f"{self.address}: {code.name}") from error
            raise
        GRPC_CLIENT_CALLS.labels(method, "OK").inc()
        return reply

    def is_serving(self, *, timeout: float) -> bool:
        """Ask the peer's standard gRPC health service whether it serves; never raises."""
        import grpc
        from grpc_health.v1 import health_pb2

        self._current_stub()
        try:
            reply = self._health_stub.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except grpc.RpcError as error:
            code = error.code() if hasattr(error, "code") else None
            GRPC_CLIENT_CALLS.labels(HEALTH_CHECK, code.name if code else "UNKNOWN").inc()
            return False
        GRPC_CLIENT_CALLS.labels(HEALTH_CHECK, "OK").inc()
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def close(self) -> None:
        """Close the channel (used at shutdown and by tests)."""
        with self._lock:
            if self._channel is not None and self._pid == os.getpid():
                self._channel.close()
            self._channel = None
            self._stub = None
            self._health_stub = None
            self._pid = None
