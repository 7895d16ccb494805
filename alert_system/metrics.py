"""Alert System metrics beyond the shared HTTP ones (common.observability.metrics).

The counters are incremented in the worker, where events are evaluated
(prometheus_client's multiprocess mode adds them up for ``/metrics``). The
gauges are read at scrape time: the interests above and below their
thresholds from the database, the consumer's lag, the dead letters and the
outbox from the broker and the database (common.broker.observability), the
same seen from every replica.
"""

import functools

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from alert_system.models import OUTBOX, AlertState, db
from common.broker.messages import CONDITIONS
from common.broker.observability import Consumed, Pipeline, PipelineCollector
from common.broker.streams import TO_ALERT_SYSTEM
from common.web.observability import read_at_scrape

# The durable consumer every replica shares: each event is evaluated by one of them.
PIPELINE = Pipeline(consumes=(Consumed(TO_ALERT_SYSTEM, "alert_system"),), db=db, outbox=OUTBOX)

EVENTS = Counter(
    "alert_events_total",
    "Events from the collector applied, by kind: flights (an airport's figure, or a "
    "follower's new thresholds) and removed (interests deleted).",
    ["kind"],
)
EVALUATIONS = Counter(
    "alert_evaluations_total",
    "Interests evaluated against a flights event, by outcome: changed (the condition "
    "changed), unchanged, removed (a deleted interest, skipped) and older (an event older "
    "than one already applied, skipped).",
    ["outcome"],
)
CROSSINGS = Counter(
    "alert_crossings_total",
    "Threshold crossings sent to the notifier, by condition: above the upper threshold or "
    "below the lower one (each is one email).",
    ["condition"],
)


def states_by_condition() -> dict[str, int]:
    """Count the interests inside, above and below their thresholds now."""
    counts = dict(
        db.session.execute(
            select(AlertState.condition, func.count()).group_by(AlertState.condition)
        ).all()
    )
    return {condition: counts.get(condition, 0) for condition in CONDITIONS}


class AlertStatesCollector:
    """Read how many interests are above and below their thresholds when Prometheus scrapes."""

    def describe(self):
        """Declare nothing up front: registering must not query the database."""
        return []

    def collect(self):
        """Yield the gauge, or nothing when the database does not answer."""
        counts = read_at_scrape(db, states_by_condition, "alert states")
        if counts is None:
            return
        gauge = GaugeMetricFamily(
            "alert_interests",
            "Interests evaluated so far, by their condition now: inside their thresholds, "
            "above the upper one, below the lower one.",
            labels=["condition"],
        )
        for condition, count in counts.items():
            gauge.add_metric([condition], count)
        yield gauge


# Computed at every scrape of this service's /metrics (registered by the app factory).
SCRAPE_COLLECTORS = (AlertStatesCollector, functools.partial(PipelineCollector, PIPELINE))
