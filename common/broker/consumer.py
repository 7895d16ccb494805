"""Durable consumers: a service's replicas share each subject's messages, acked once handled.

A :class:`Subscription` names a subject, the durable consumer (shared by
every replica of the service: the broker gives each message to one of them)
and the handler: a synchronous function that takes a batch of
:class:`Delivery` and returns one :class:`Outcome` per message, after its
effect is committed. The :class:`Consumer` (on a thread of the worker
process) fetches batches, runs the handler in the app's context (a handler
that works through a long batch may call
:func:`common.process.heartbeat.progress` per message), and then:

- :data:`DONE`: acknowledges the message: the broker forgets it for this consumer;
- :class:`Retry`: asks the broker to deliver it again after a delay. A retry
  caused by the world (the mail server or the database is down) is retried
  for as long as it takes; one caused by the message itself (a recipient the
  mail server refuses for now) is parked after ``MAX_ATTEMPTS`` deliveries;
- :class:`Park`: publishes it to the dead-letter stream
  (``dead-letter.<subject>``, with the reason) and stops its delivery.

A handler that raises because the database is unavailable leaves every
message of its batch to be delivered again after a delay, for as long as it
takes. Raising for any other reason, it is given each message of the batch
alone: the others are handled, and one that fails alone beside them (or for
its values) is retried as a failure of its own, parked after
``MAX_ATTEMPTS``, so that a message no handler can take never holds back the
ones beside it; a failure every message meets alike blames none.

A consumer that dies mid-batch acknowledges nothing, and the broker
delivers the batch again after the ack wait; while a batch is being handled
the consumer tells the broker it is still working on it, so a slow batch is
not delivered twice. Handlers therefore make a second delivery of a message
change nothing.

The ack wait and the retry delays are the app's ``CONSUMER_*`` settings
(:class:`common.settings.BrokerSettings`; the constants here when the app
has none). The durable consumer is created, or brought to these settings,
each time a consumer connects: a changed ack wait applies at the next start.
"""

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from prometheus_client import Counter
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from common.broker.connection import MSG_ID_HEADER, RECONNECT_WAIT_SECONDS, Broker
from common.broker.streams import dead_letter_subject, ensure_streams, stream_of
from common.process.heartbeat import Heartbeat, progress

log = logging.getLogger(__name__)

CONSUMED = Counter(
    "broker_messages_consumed_total",
    "Messages the consumer settled, by subject and outcome: done (acknowledged), retried "
    "(delivered again later), parked (moved to the dead letters).",
    ["subject", "outcome"],
)

# Messages handed to one call of a handler: large enough that a burst (an airport followed
# by thousands) is handled in few transactions, small enough to redo quickly.
BATCH_SIZE = 100
# How long a fetch waits for messages before asking again (also how soon a stop is seen).
FETCH_WAIT_SECONDS = 1.0
# A delivered message not acknowledged within this is delivered again (to any replica):
# the time a consumer that died mid-batch delays its messages.
ACK_WAIT_SECONDS = 30
# While a batch is handled, the broker is told that it is still in progress this many times
# per ack wait (every 10 s of 30), so one late tick never lets the wait run out.
PROGRESS_PER_ACK_WAIT = 3
# Deliveries of a message that fails because of itself before it is parked.
MAX_ATTEMPTS = 5
# Waits between deliveries of a failing message: 1, 2, 4 ... seconds, up to a minute.
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 60.0
# While the broker cannot be reached, the log says so this often.
CLIENT_ERROR_LOG_SECONDS = 60.0


@dataclass(frozen=True)
class Delivery:
    """One message as a handler sees it."""

    subject: str
    msg_id: str
    payload: dict[str, Any]
    attempt: int  # 1 on the first delivery


@dataclass(frozen=True)
class Done:
    """The message's effect is committed (or there was nothing to do)."""


@dataclass(frozen=True)
class Retry:
    """Deliver the message again later: ``because_of_message`` counts towards parking it."""

    reason: str
    because_of_message: bool = False
    delay_seconds: float | None = None


@dataclass(frozen=True)
class Park:
    """The message can never succeed: park it in the dead-letter stream."""

    reason: str


DONE = Done()
Outcome = Done | Retry | Park
Handler = Callable[[Sequence[Delivery]], Sequence[Outcome]]


@dataclass(frozen=True)
class Subscription:
    """A subject this service consumes, under the durable name its replicas share."""

    subject: str
    durable: str
    handle: Handler
    batch_size: int = BATCH_SIZE


def retry_delay(
    attempt: int, *, first: float = FIRST_RETRY_SECONDS, longest: float = MAX_RETRY_SECONDS
) -> float:
    """Return the wait before delivering again a message that failed ``attempt`` times."""
    return min(first * 2 ** (attempt - 1), longest)


@dataclass
class Counts:
    """What a consumer did since it started (for metrics and tests)."""

    handled: int = 0
    retried: int = 0
    parked: int = 0
    by_subject: dict[str, int] = field(default_factory=dict)


class Consumer:
    """Fetch and handle each subscription's messages on a thread of the worker process."""

    def __init__(self, app: Flask, broker: Broker, subscriptions: Sequence[Subscription]):
        self.app = app
        self.broker = broker
        self.subscriptions = list(subscriptions)
        self.counts = Counts()
        self.ack_wait = app.config.get("CONSUMER_ACK_WAIT_SECONDS", ACK_WAIT_SECONDS)
        self.first_retry = app.config.get("CONSUMER_RETRY_FIRST_SECONDS", FIRST_RETRY_SECONDS)
        self.longest_retry = app.config.get("CONSUMER_RETRY_MAX_SECONDS", MAX_RETRY_SECONDS)
        self._error_said_at = -CLIENT_ERROR_LOG_SECONDS
        self._loop = asyncio.new_event_loop()
        self._stopping: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="broker-consumer", daemon=True)

    def start(self) -> None:
        """Start consuming on a thread of its own."""
        self._thread.start()
        names = ", ".join(s.subject for s in self.subscriptions)
        log.info("consuming %s from NATS at %s", names, self.broker.shown_url)

    def stop(self) -> None:
        """Finish the batches in hand, acknowledge them, and stop."""
        if self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=self.ack_wait)
        log.info("consumer stopped")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._consume_all())

    async def _consume_all(self) -> None:
        self._stopping = asyncio.Event()
        await asyncio.gather(*(self._consume(s) for s in self.subscriptions))

    async def _consume(self, subscription: Subscription) -> None:
        """Fetch and handle ``subscription``'s messages until stopped, reconnecting as needed."""
        import nats
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        stream = stream_of(subscription.subject).name
        heartbeat = Heartbeat(f"consume:{subscription.subject}")
        while not self._stopping.is_set():
            heartbeat.beat()
            client = None
            try:
                client = await nats.connect(
                    servers=[self.broker.url],
                    name=f"{self.broker.name}-{subscription.durable}",
                    connect_timeout=self.broker.timeout,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=RECONNECT_WAIT_SECONDS,
                    # Without it nats-py logs each failed try with its traceback (a broker
                    # down for a day: gigabytes of them).
                    error_cb=self._client_error,
                )
                js = client.jetstream(timeout=self.broker.timeout)
                await ensure_streams(js, replicas=self.broker.stream_replicas)
                # Created, or updated when it exists with other settings (pull_subscribe
                # alone would keep an existing consumer's old ack wait for ever).
                await js.add_consumer(
                    stream,
                    ConsumerConfig(
                        name=subscription.durable,
                        durable_name=subscription.durable,
                        filter_subject=subscription.subject,
                        ack_policy=AckPolicy.EXPLICIT,
                        deliver_policy=DeliverPolicy.ALL,
                        ack_wait=self.ack_wait,
                        max_ack_pending=subscription.batch_size * 10,
                    ),
                )
                pull = await js.pull_subscribe_bind(subscription.durable, stream=stream)
                while not self._stopping.is_set():
                    heartbeat.beat()
                    try:
                        messages = await pull.fetch(subscription.batch_size, FETCH_WAIT_SECONDS)
                    except (TimeoutError, nats.errors.TimeoutError):
                        continue
                    with heartbeat.current():
                        await self._handle(js, subscription, messages)
            except Exception as error:
                if self._stopping.is_set():
                    break
                log.warning(
                    "consumer of %s: %s; connecting again in %.1fs",
                    subscription.subject,
                    error,
                    RECONNECT_WAIT_SECONDS * 2,
                )
                await asyncio.sleep(RECONNECT_WAIT_SECONDS * 2)
            finally:
                if client is not None and not client.is_closed:
                    await client.close()

    async def _client_error(self, error: Exception) -> None:
        """Say that the broker cannot be reached: at once, then once a minute while it lasts."""
        now = time.monotonic()
        if now - self._error_said_at >= CLIENT_ERROR_LOG_SECONDS:
            self._error_said_at = now
            log.warning("NATS at %s: %s; trying again", self.broker.shown_url, error or type(error))

    async def _handle(self, js, subscription: Subscription, messages: list) -> None:
        """Handle one batch in a worker thread, telling the broker it is in progress meanwhile."""
        deliveries = [_delivery(message) for message in messages]
        keeping = asyncio.ensure_future(
            _keep_in_progress(messages, self.ack_wait / PROGRESS_PER_ACK_WAIT)
        )
        try:
            outcomes = await asyncio.to_thread(self._in_app_context, subscription, deliveries)
        except Exception as error:
            log.exception("handling %d messages of %s failed", len(messages), subscription.subject)
            outcomes = await self._one_by_one(subscription, deliveries, error)
        finally:
            keeping.cancel()
        for message, delivery, outcome in zip(messages, deliveries, outcomes, strict=True):
            await self._settle(js, message, delivery, outcome)

    async def _one_by_one(
        self, subscription: Subscription, deliveries: list[Delivery], error: Exception
    ) -> list[Outcome]:
        """Return the outcomes of a batch whose handler raised ``error``, each message alone.

        A message is blamed only on evidence: it fails alone while another of its batch
        is handled, or with an error about its values (one the database or a check
        refuses). A failure every message meets alike otherwise (a database outage, a
        schema an older replica does not know yet, a bug) blames none: the batch waits,
        whole, for as long as it takes. A message whose outcome says the world is down
        (the mail server, the database) settles the rest of the batch alike, untried.
        """
        world = Retry(f"the handler failed: {type(error).__name__}")
        if _is_outage(error):
            return [world] * len(deliveries)
        if len(deliveries) == 1:
            return [_blame(error) if _is_about_values(error) else world]
        outcomes: list[Outcome | Exception] = []
        for delivery in deliveries:
            progress()
            try:
                alone = [delivery]
                (outcome,) = await asyncio.to_thread(self._in_app_context, subscription, alone)
            except Exception as failure:
                if _is_outage(failure):
                    break
                # The type only: a message's values (addresses) stay out of the log.
                log.warning(
                    "%s %s fails its handler alone (%s)",
                    delivery.subject,
                    delivery.msg_id,
                    type(failure).__name__,
                )
                outcome = failure
            outcomes.append(outcome)
            if _says_the_world_is_down(outcome):
                world = outcome
                break
        others_handled = any(
            not isinstance(outcome, Exception) and not _says_the_world_is_down(outcome)
            for outcome in outcomes
        )
        settled: list[Outcome] = []
        for outcome in outcomes:
            if not isinstance(outcome, Exception):
                settled.append(outcome)
            elif others_handled or _is_about_values(outcome):
                settled.append(_blame(outcome))
            else:
                settled.append(world)
        return settled + [world] * (len(deliveries) - len(settled))

    def _in_app_context(self, subscription: Subscription, deliveries: list[Delivery]) -> list:
        with self.app.app_context():
            return list(subscription.handle(deliveries))

    async def _settle(self, js, message, delivery: Delivery, outcome: Outcome) -> None:
        """Acknowledge, delay or park one message as its outcome says."""
        too_often = delivery.attempt >= MAX_ATTEMPTS
        if isinstance(outcome, Retry) and outcome.because_of_message and too_often:
            outcome = Park(f"failed {delivery.attempt} times: {outcome.reason}")
        kind = {Done: "done", Retry: "retried", Park: "parked"}[type(outcome)]
        CONSUMED.labels(delivery.subject, kind).inc()
        if isinstance(outcome, Done):
            self.counts.handled += 1
            await message.ack()
        elif isinstance(outcome, Retry):
            self.counts.retried += 1
            delay = outcome.delay_seconds or retry_delay(
                delivery.attempt, first=self.first_retry, longest=self.longest_retry
            )
            log.info(
                "%s %s: retrying in %.1fs (%s)",
                delivery.subject,
                delivery.msg_id,
                delay,
                outcome.reason,
            )
            await message.nak(delay=delay)
        else:
            self.counts.parked += 1
            await js.publish(
                dead_letter_subject(delivery.subject),
                message.data,
                headers={
                    MSG_ID_HEADER: f"dead:{delivery.msg_id}",
                    "Reason": outcome.reason[:500],
                    "Deliveries": str(delivery.attempt),
                },
            )
            log.error("%s %s parked: %s", delivery.subject, delivery.msg_id, outcome.reason)
            await message.term()


def _is_about_values(error: Exception) -> bool:
    """Tell whether ``error`` refuses a message's values (so that message is the cause)."""
    # ValueError covers pydantic's ValidationError and psycopg2's "cannot contain NUL".
    return isinstance(error, (ValueError, TypeError, RecursionError, DataError, IntegrityError))


def _says_the_world_is_down(outcome: Outcome | Exception) -> bool:
    """Tell whether ``outcome`` is a retry for a cause outside the message (a server down)."""
    return isinstance(outcome, Retry) and not outcome.because_of_message


def _blame(error: Exception) -> Retry:
    """Return the retry of a message that fails its handler (parked after MAX_ATTEMPTS)."""
    return Retry(f"the handler fails on it: {type(error).__name__}", because_of_message=True)


def _is_outage(error: Exception) -> bool:
    """Tell whether ``error`` says the database cannot be used now (it fails every message)."""
    outage = (OperationalError, InterfaceError, PoolTimeoutError)
    return isinstance(error, outage) or getattr(error, "connection_invalidated", False)


def _delivery(message) -> Delivery:
    try:
        payload = json.loads(message.data)
    except (ValueError, RecursionError):
        # RecursionError: brackets nested deeper than the parser goes.
        payload = {"undecodable": message.data.decode(errors="replace")[:1000]}
    if not isinstance(payload, dict):
        payload = {"undecodable": payload}
    headers = message.headers or {}
    return Delivery(
        subject=message.subject,
        msg_id=headers.get(MSG_ID_HEADER, ""),
        payload=payload,
        attempt=message.metadata.num_delivered,
    )


async def _keep_in_progress(messages: list, every_seconds: float) -> None:
    while True:
        await asyncio.sleep(every_seconds)
        for message in messages:
            await message.in_progress()
