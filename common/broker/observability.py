"""What a service's ``/health`` and ``/metrics`` say about its part of the message pipeline.

A service that consumes or publishes declares its :class:`Pipeline`: the
subjects it consumes (and under which durable name), and its outbox. From
that, :func:`pipeline_facts` (for ``/health``; :class:`PipelineFacts` is
its model in the API document) and :func:`pipeline_collectors` (for
``/metrics``, computed at each scrape) read the same facts:

- each consumer's lag: messages not yet delivered (``pending``), delivered
  and not yet acknowledged (``unacknowledged``), delivered more than once
  (``redelivered``), as the broker counts them for the durable consumer
  every replica shares, so every replica reports the same;
- the messages of each consumed subject parked in the dead-letter stream;
- the outbox: messages committed and not yet published, and the oldest one's age.

A broker that does not answer within :data:`PROBE_TIMEOUT_SECONDS` leaves
its facts out (``null`` in ``/health``, no samples in ``/metrics``); the
outbox is read from the database either way.
"""

import logging
from dataclasses import dataclass
from typing import Any

from flask import current_app
from flask_sqlalchemy import SQLAlchemy
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import Table

from common.broker.connection import Broker, BrokerUnavailableError
from common.broker.outbox import backlog
from common.broker.streams import stream_of
from common.web.observability import DatabaseGauges
from common.web.openapi import Answer

log = logging.getLogger(__name__)

# A probe must answer even when the broker hangs: the broker is on the same network.
PROBE_TIMEOUT_SECONDS = 0.5


@dataclass(frozen=True)
class Consumed:
    """A subject the service consumes, under the durable name its replicas share."""

    subject: str
    durable: str


@dataclass(frozen=True)
class Pipeline:
    """A service's part of the pipeline: what it consumes, and its outbox (when it publishes)."""

    consumes: tuple[Consumed, ...]
    db: SQLAlchemy
    outbox: Table | None = None


class ConsumerLag(Answer):
    """A durable consumer's backlog, as the broker counts it for every replica together."""

    pending: int
    unacknowledged: int
    redelivered: int


class OutboxFacts(Answer):
    """Messages committed and not yet published, and the oldest one's age in seconds."""

    waiting: int
    oldest_seconds: float | None


class PipelineFacts(Answer):
    """What ``/health`` shows of the pipeline: ``null`` where the broker did not answer.

    ``consumers``: each consumed subject's lag (``null`` before its consumer
    first connected); ``dead_letters``: each consumed subject's messages
    parked after failing; ``outbox``: what waits to be published.
    """

    consumers: dict[str, ConsumerLag | None] | None
    dead_letters: dict[str, int] | None
    outbox: OutboxFacts | None


def broker_facts(pipeline: Pipeline, broker: Broker) -> dict[str, Any] | None:
    """Return each consumed subject's lag and dead letters (None when the broker is silent)."""
    try:
        consumers = {
            consumed.subject: broker.consumer_lag(
                stream_of(consumed.subject).name, consumed.durable, timeout=PROBE_TIMEOUT_SECONDS
            )
            for consumed in pipeline.consumes
        }
        dead_letters = {
            consumed.subject: broker.dead_letters(consumed.subject, timeout=PROBE_TIMEOUT_SECONDS)
            for consumed in pipeline.consumes
        }
    except BrokerUnavailableError as error:
        log.warning("the broker's facts are unknown: %s", error)
        return None
    return {"consumers": consumers, "dead_letters": dead_letters}


def outbox_facts(pipeline: Pipeline) -> dict[str, Any] | None:
    """Return the outbox's waiting messages and the oldest one's age (None: no outbox)."""
    if pipeline.outbox is None:
        return None
    waiting = backlog(pipeline.db, pipeline.outbox)
    return {"waiting": waiting.count, "oldest_seconds": waiting.oldest_seconds}


def pipeline_facts(pipeline: Pipeline) -> dict[str, Any]:
    """Return what ``/health`` shows of the pipeline (in the app context and its transaction)."""
    facts = broker_facts(pipeline, current_app.extensions["broker"])
    return {
        "consumers": None if facts is None else facts["consumers"],
        "dead_letters": None if facts is None else facts["dead_letters"],
        "outbox": outbox_facts(pipeline),
    }


class BrokerGauges:
    """The consumers' lag and the dead letters, read from the broker when Prometheus scrapes."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline

    def describe(self):
        """Declare nothing up front: registering must not ask the broker."""
        return []

    def collect(self):
        """Yield whether the broker answered, and its facts when it did."""
        facts = broker_facts(self.pipeline, current_app.extensions["broker"])
        yield GaugeMetricFamily(
            "broker_up",
            "1 when the broker answered this scrape within its probe's timeout, else 0.",
            value=0 if facts is None else 1,
        )
        if facts is not None:
            yield from _broker_gauges(facts)


def pipeline_collectors(pipeline: Pipeline) -> tuple:
    """Return the scrape collectors of a pipeline: the broker's gauges, the outbox's."""

    def outbox_gauges():
        outbox = outbox_facts(pipeline)
        return [
            (
                "broker_outbox_messages",
                "Messages committed to the outbox and not yet published to the broker.",
                outbox["waiting"],
            ),
            (
                "broker_outbox_oldest_seconds",
                "Age of the oldest message waiting in the outbox (0 when there is none).",
                outbox["oldest_seconds"] or 0.0,
            ),
        ]

    if pipeline.outbox is None:
        return (BrokerGauges(pipeline),)
    return BrokerGauges(pipeline), DatabaseGauges("outbox backlog", outbox_gauges)


LAG_GAUGES = {
    "pending": "Messages of the subject not yet delivered to the service's durable consumer.",
    "unacknowledged": "Messages delivered to the service and not yet acknowledged.",
    "redelivered": "Messages delivered to the service more than once (and not yet acknowledged).",
}


def _broker_gauges(facts: dict[str, Any]):
    for name, help_text in LAG_GAUGES.items():
        gauge = GaugeMetricFamily(f"broker_consumer_{name}_messages", help_text, labels=["subject"])
        for subject, lag in facts["consumers"].items():
            gauge.add_metric([subject], (lag or {}).get(name, 0))
        yield gauge
    parked = GaugeMetricFamily(
        "broker_dead_letter_messages",
        "Messages of the subject parked in the dead-letter stream (they kept failing).",
        labels=["subject"],
    )
    for subject, count in facts["dead_letters"].items():
        parked.add_metric([subject], count)
    yield parked
