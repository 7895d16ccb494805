"""The connection of a process to NATS JetStream, for synchronous code.

nats-py speaks asyncio; the services' code (views, jobs, message handlers)
is synchronous. :class:`Broker` keeps one connection per process on an event
loop of its own, in a daemon thread, and each method blocks until the broker
answers or its timeout passes. Like the gRPC channels, the connection is
opened on first use in the process that uses it, and again in a process
that finds itself forked from the one that opened it: gunicorn forks its
workers, and a connection's threads do not survive a fork.

A broker that cannot be reached raises :class:`BrokerUnavailableError`; the next
call tries to connect again. Once connected, the client reconnects by
itself after an outage, and the streams are declared on every new
connection, so a broker that lost its state gets them back.
"""

import asyncio
import json
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from common.broker.streams import DEAD_LETTERS, ensure_streams, stream_of

log = logging.getLogger(__name__)
T = TypeVar("T")

# The broker is on the same network: a healthy one answers in milliseconds. Long enough for
# a JetStream write to disk under load, short enough that a caller is never stuck on it.
DEFAULT_TIMEOUT_SECONDS = 5.0
# After an outage the client tries again every half second, for as long as it takes.
RECONNECT_WAIT_SECONDS = 0.5
MSG_ID_HEADER = "Nats-Msg-Id"


def without_credentials(url: str) -> str:
    """Return ``url`` without the user and password it may carry, for logs and errors."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


class BrokerUnavailableError(Exception):
    """The broker could not be reached, or did not answer in time."""


@dataclass(frozen=True)
class Message:
    """A message to publish: its subject, its id (the broker drops a repeat), its payload."""

    subject: str
    msg_id: str
    payload: dict[str, Any]

    def encode(self) -> bytes:
        """Return the payload as JSON bytes (what travels)."""
        return json.dumps(self.payload, separators=(",", ":")).encode()


class Broker:
    """One NATS connection per process, used from synchronous code.

    ``name`` appears in the broker's connection list (the service and its
    role); ``stream_replicas`` is how many copies a clustered broker keeps of
    each stream.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        stream_replicas: int = 1,
    ):
        self.url = url
        # What logs and errors say: a URL may carry a user and password (nats://u:p@host).
        self.shown_url = without_credentials(url)
        self.name = name
        self.timeout = timeout
        self.stream_replicas = stream_replicas
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client = None
        self._connecting: asyncio.Lock | None = None

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._pid != os.getpid():
                # A loop inherited through fork has no thread running it: start our own.
                self._loop = asyncio.new_event_loop()
                self._client = None
                self._connecting = None
                thread = threading.Thread(
                    target=self._loop.run_forever, name=f"broker-{self.name}", daemon=True
                )
                thread.start()
                self._pid = os.getpid()
            return self._loop

    def call(
        self, operation: Callable[..., Awaitable[T]], *args: Any, timeout: float | None = None
    ) -> T:
        """Run ``operation(js, *args)`` on the connection's loop; return its result.

        ``js`` is the JetStream context. Raise :class:`BrokerUnavailableError` when
        the broker cannot be reached or does not answer within ``timeout``
        (default: the broker's).
        """
        loop = self._event_loop()
        wait = timeout or self.timeout

        async def on_connection():
            client = await self._connected()
            return await operation(client.jetstream(timeout=wait), *args)

        future = asyncio.run_coroutine_threadsafe(on_connection(), loop)
        try:
            return future.result(wait + 1)
        except BrokerUnavailableError:
            raise
        except Exception as error:
            future.cancel()
            if _is_broker_error(error):
                raise BrokerUnavailableError(
                    f"NATS at {self.shown_url}: {type(error).__name__} {error}"
                ) from error
            raise

    async def _connected(self):
        """Return the open connection, connecting (and declaring the streams) if needed."""
        import nats

        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._client is not None and not self._client.is_closed:
                return self._client
            try:
                client = await nats.connect(
                    servers=[self.url],
                    name=self.name,
                    connect_timeout=self.timeout,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=RECONNECT_WAIT_SECONDS,
                    disconnected_cb=self._disconnected,
                    reconnected_cb=self._reconnected,
                    error_cb=self._failed,
                )
            except Exception as error:
                raise BrokerUnavailableError(
                    f"cannot connect to NATS at {self.shown_url}: {error}"
                ) from error
            await ensure_streams(
                client.jetstream(timeout=self.timeout), replicas=self.stream_replicas
            )
            self._client = client
            log.info("connected to NATS at %s as %s", self.shown_url, self.name)
            return client

    async def _disconnected(self) -> None:
        log.warning("lost the connection to NATS at %s; reconnecting", self.shown_url)

    async def _reconnected(self) -> None:
        log.info("reconnected to NATS at %s", self.shown_url)
        client = self._client
        if client is not None:
            # A broker that restarted empty (no volume) gets its streams back.
            await ensure_streams(
                client.jetstream(timeout=self.timeout), replicas=self.stream_replicas
            )

    async def _failed(self, error: Exception) -> None:
        log.debug("NATS client error: %s", error)

    def publish(self, message: Message) -> bool:
        """Publish and wait for the broker to store it; return False when it was a duplicate."""
        return self.publish_many([message])[0]

    def publish_many(self, messages: Sequence[Message]) -> list[bool]:
        """Publish every message, pipelined, and wait until the broker stored each.

        Return, for each, whether it was new (False: the broker already had
        its id). Raise :class:`BrokerUnavailableError` unless all were stored.
        """

        async def publish_all(js) -> list[bool]:
            futures = [
                await js.publish_async(
                    message.subject,
                    message.encode(),
                    stream=stream_of(message.subject).name,
                    headers={MSG_ID_HEADER: message.msg_id},
                )
                for message in messages
            ]
            acks = await asyncio.wait_for(asyncio.gather(*futures), self.timeout)
            return [not ack.duplicate for ack in acks]

        if not messages:
            return []
        return self.call(publish_all)

    def is_connected(self, *, timeout: float | None = None) -> bool:
        """Tell whether the broker answers now (connecting if needed) within ``timeout``."""
        try:
            self.call(_account_info, timeout=timeout)
        except BrokerUnavailableError:
            return False
        return True

    def consumer_lag(
        self, stream: str, durable: str, *, timeout: float | None = None
    ) -> dict[str, int] | None:
        """Return a durable consumer's backlog (pending, unacknowledged, redelivered), if any.

        ``timeout``: as for :meth:`call` (a probe asks with a short one).
        """
        from nats.js.errors import NotFoundError

        async def lag(js):
            try:
                info = await js.consumer_info(stream, durable)
            except NotFoundError:
                return None
            return {
                "pending": info.num_pending or 0,
                "unacknowledged": info.num_ack_pending or 0,
                "redelivered": info.num_redelivered or 0,
            }

        return self.call(lag, timeout=timeout)

    def dead_letters(self, subject: str, *, timeout: float | None = None) -> int:
        """Return how many messages of ``subject`` are parked in the dead-letter stream."""
        from common.broker.streams import dead_letter_subject

        parked = dead_letter_subject(subject)

        async def count(js):
            info = await js.stream_info(DEAD_LETTERS.name, subjects_filter=parked)
            return (info.state.subjects or {}).get(parked, 0)

        return self.call(count, timeout=timeout)

    def close(self) -> None:
        """Drain and close the connection (what was published stays published)."""
        if self._pid != os.getpid() or self._client is None or self._loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._client.drain(), self._loop)
        try:
            future.result(self.timeout)
        except Exception as error:
            log.warning("closing the NATS connection: %s", error)
        self._client = None


async def _account_info(js):
    return await js.account_info()


def _is_broker_error(error: Exception) -> bool:
    """Tell whether ``error`` means the broker is unreachable or slow (not a bug of ours)."""
    import nats.errors

    return isinstance(error, (TimeoutError, asyncio.TimeoutError, nats.errors.Error, OSError))
