"""Broker gauges of every service that publishes or consumes, read when Prometheus scrapes.

The skeleton registers them from the service's declaration: the outbox
backlog, from the service's database, under the same names as the User
Manager's own outbox (one alerting rule watches both); and, from the broker,
each consumed subject's backlog and its dead letters, the same seen from
every replica. The counters are where they count: the relay's published
messages in :mod:`common.broker.outbox`, the consumer's outcomes in
:mod:`common.broker.consumer`.
"""

import logging
from collections.abc import Callable, Sequence
from functools import cache

from prometheus_client.core import GaugeMetricFamily

from common.broker.connection import Broker, BrokerUnavailableError
from common.broker.outbox import backlog
from common.broker.streams import stream_of
from common.web.observability import DatabaseGauges

log = logging.getLogger(__name__)

# A scrape must not wait long for a broker that does not answer.
BROKER_SCRAPE_TIMEOUT_SECONDS = 0.5


def outbox_backlog(db, table) -> DatabaseGauges:
    """Return the gauges of the messages committed to the outbox and not yet published."""

    def read():
        waiting = backlog(db, table)
        return [
            (
                "outbox_backlog_messages",
                "Broker messages committed but not yet published (the broker is down or slow).",
                waiting.count,
            ),
            (
                "outbox_oldest_pending_seconds",
                "Age of the oldest unpublished message (0 when there is none).",
                waiting.oldest_seconds or 0.0,
            ),
        ]

    return DatabaseGauges("outbox backlog", read)


class ConsumerCollector:
    """Each consumed subject's backlog and dead letters, asked of the broker at every scrape.

    ``consumed`` returns the service's subscriptions (its ``worker.subscriptions``),
    asked once, at the first scrape.
    """

    def __init__(self, broker: Broker, consumed: Callable[[], Sequence]):
        self.broker = broker
        self.consumed = cache(consumed)

    def describe(self):
        """Declare nothing up front: registering must not call the broker."""
        return []

    def collect(self):
        """Yield the consumers' gauges, or nothing when the broker does not answer."""
        pending = GaugeMetricFamily(
            "broker_consumer_pending_messages",
            "Messages of a consumed subject not yet delivered to this service, by subject.",
            labels=["subject"],
        )
        unacknowledged = GaugeMetricFamily(
            "broker_consumer_unacknowledged_messages",
            "Messages delivered to this service and not yet settled, by subject.",
            labels=["subject"],
        )
        dead = GaugeMetricFamily(
            "broker_dead_letter_messages",
            "Messages of a consumed subject parked in the dead letters (kept for the "
            "streams' retention), by subject.",
            labels=["subject"],
        )
        if not self.broker.is_connected(timeout=BROKER_SCRAPE_TIMEOUT_SECONDS):
            return
        try:
            for subscription in self.consumed():
                subject = subscription.subject
                lag = self.broker.consumer_lag(stream_of(subject).name, subscription.durable)
                if lag is not None:
                    pending.add_metric([subject], lag["pending"])
                    unacknowledged.add_metric([subject], lag["unacknowledged"])
                dead.add_metric([subject], self.broker.dead_letters(subject))
        except BrokerUnavailableError as error:
            log.warning("metrics: consumers unknown, the broker does not answer: %s", error)
            return
        yield from (pending, unacknowledged, dead)
