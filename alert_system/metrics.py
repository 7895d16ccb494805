"""Alert System metrics beyond the shared HTTP ones (common.observability.metrics).

The counters are incremented in the worker, where events are evaluated
(prometheus_client's multiprocess mode adds them up for ``/metrics``). The
gauges are read at scrape time: the interests above and below their
thresholds from the database, the consumer's lag, the dead letters and the
outbox from the broker and the database (common.broker.observability), the
same seen from every replica.
"""

from prometheus_client import Counter
from sqlalchemy import func, select

from alert_system.models import OUTBOX, AlertState, db
from common.broker.messages import CONDITIONS
from common.broker.observability import Consumed, Pipeline, pipeline_collectors
from common.broker.streams import TO_ALERT_SYSTEM
from common.web.observability import DatabaseGauges

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


def interests_gauges():
    """Return the gauge of interests by condition (read from the database at each scrape)."""
    return [
        (
            "alert_interests",
            "Interests evaluated so far, by their condition now: inside their thresholds, "
            "above the upper one, below the lower one.",
            states_by_condition(),
        )
    ]


# Computed at every scrape of this service's /metrics (registered by the app factory).
SCRAPE_COLLECTORS = (
    *pipeline_collectors(PIPELINE),
    DatabaseGauges("alert states", interests_gauges, label="condition"),
)
