"""The standard gRPC health service, safe to watch while watches end.

grpcio-health-checking's ``HealthServicer`` (1.85) sends a watcher its status
while holding its lock, and takes that same lock in the callback that runs
when a ``Watch`` ends. That callback runs on the server's one event thread,
and a send waits for that thread to complete it. So a ``Watch`` starting, or
a status changing, at the moment another ``Watch`` ends leaves the send
waiting for the event thread and the event thread waiting for the lock: the
server answers no call again, and its graceful stop hangs too. Clients'
health checking opens a ``Watch`` per connection and ends it with the
connection, so under churn it happens.

Here the event thread never waits for a lock: an ended ``Watch`` is
recorded (a queue's put never waits) and dropped at once if the lock is
free, else by the next ``Watch`` or status change. Sends still happen
under one lock, so every watcher sees the statuses in the order they were
set.
"""

import queue
import threading
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN

Send = Callable[[health_pb2.HealthCheckResponse | None], None]


class HealthServicer(health_pb2_grpc.HealthServicer):
    """``Check`` and ``Watch`` of each service's status; ``set`` changes one."""

    def __init__(self):
        # Status changes and the sends they cause, one at a time; never taken on the
        # server's event thread.
        self._lock = threading.Lock()
        self._statuses: dict[str, int] = {"": SERVING}
        self._watchers: dict[str, set[Send]] = {}
        self._ended: queue.SimpleQueue[tuple[str, Send]] = queue.SimpleQueue()
        self._shutting_down = False

    def Check(self, request, context):  # noqa: N802 - the .proto's name
        """Return the service's status now (NOT_FOUND for a service never set)."""
        status = self._statuses.get(request.service)
        if status is None:
            context.set_code(grpc.StatusCode.NOT_FOUND)
            return health_pb2.HealthCheckResponse()
        return health_pb2.HealthCheckResponse(status=status)

    def Watch(self, request, context, send_response_callback: Send):  # noqa: N802
        """Send the service's status now and at every change, until the client leaves."""
        service, send = request.service, send_response_callback
        with self._lock:
            self._drop_ended()
            send(
                health_pb2.HealthCheckResponse(status=self._statuses.get(service, SERVICE_UNKNOWN))
            )
            self._watchers.setdefault(service, set()).add(send)

        def ended():
            self._ended.put((service, send))
            send(None)
            # Drop it now if nobody holds the lock; never wait for it on this thread.
            if self._lock.acquire(blocking=False):
                try:
                    self._drop_ended()
                finally:
                    self._lock.release()

        if not context.add_callback(ended):
            ended()  # the call ended already: the callback would never run

    # Run without a thread of the pool held for each open Watch (grpcio passes the callback).
    Watch.experimental_non_blocking = True

    def set(self, service: str, status: int) -> None:
        """Set a service's status and send it to its watchers (ignored once shutting down)."""
        with self._lock:
            self._drop_ended()
            if not self._shutting_down:
                self._set(service, status)

    def enter_graceful_shutdown(self) -> None:
        """Say NOT_SERVING for every service, for good: later ``set`` calls change nothing."""
        with self._lock:
            self._drop_ended()
            if not self._shutting_down:
                for service in list(self._statuses):
                    self._set(service, NOT_SERVING)
                self._shutting_down = True

    def _set(self, service: str, status: int) -> None:
        self._statuses[service] = status
        for send in list(self._watchers.get(service, ())):
            send(health_pb2.HealthCheckResponse(status=status))

    def _drop_ended(self) -> None:
        while True:
            try:
                service, send = self._ended.get_nowait()
            except queue.Empty:
                return
            watchers = self._watchers.get(service, set())
            watchers.discard(send)
            if not watchers:
                # Watched names come from clients: keep none that nobody watches any more.
                self._watchers.pop(service, None)
