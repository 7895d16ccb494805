"""SLA detector metrics beyond the shared HTTP ones (common.observability.metrics).

The counters are incremented in the worker, where checks run (prometheus_client's
multiprocess mode adds them up for ``/metrics``). The gauges are read from the
database at scrape time: the breaches open and the metrics the last check could
not sample are facts of the shared database, the same seen from every replica;
so is its outbox (common.broker.observability), where breach events wait for
the broker.
"""

from prometheus_client import Counter
from sqlalchemy import func, or_, select

from common.broker.observability import Pipeline, pipeline_collectors
from common.web.observability import DatabaseGauges
from sla_detector import configuration
from sla_detector.models import OUTBOX, OUTCOME_OK, DetectorState, MetricState, db

BREACHES = Counter(
    "sla_breaches_total",
    "SLA breaches raised, by metric and the limit violated (min or max).",
    ["metric", "violated"],
)
QUERIES = Counter(
    "sla_queries_total",
    "Queries the checks sent to Prometheus, by outcome: ok (a sample), no_data (nothing "
    "matched), refused (Prometheus refused the query), unavailable (no answer).",
    ["outcome"],
)


def detector_gauges():
    """Return the detector's gauges (read from the database at each scrape)."""
    open_breaches = db.session.scalar(
        select(func.count()).where(
            or_(MetricState.open_min_breach.is_not(None), MetricState.open_max_breach.is_not(None))
        )
    )
    blind = db.session.scalar(
        select(func.count()).where(
            MetricState.last_outcome.is_not(None), MetricState.last_outcome != OUTCOME_OK
        )
    )
    state = db.session.get(DetectorState, 1)
    gauges = [
        (
            "sla_metrics_with_open_breach",
            "Configured metrics with a breach open (not yet back in range for a whole window).",
            open_breaches,
        ),
        (
            "sla_metrics_without_sample",
            "Configured metrics whose last check got no sample: Prometheus did not answer, "
            "refused the query, or nothing matched.",
            blind,
        ),
        (
            "sla_check_interval_seconds",
            "T_check: the seconds between two checks.",
            configuration.check_seconds(configuration.current()),
        ),
    ]
    if state is not None and state.last_check_at is not None:
        gauges.append(
            (
                "sla_last_check_timestamp_seconds",
                "When the last check started, in Unix seconds.",
                state.last_check_at.timestamp(),
            )
        )
    return gauges


# It consumes nothing; its outbox holds the breach events until the broker has them.
PIPELINE = Pipeline(consumes=(), db=db, outbox=OUTBOX)

# Computed at every scrape of this service's /metrics (registered by the app factory).
SCRAPE_COLLECTORS = (
    DatabaseGauges("SLA detector state", detector_gauges),
    *pipeline_collectors(PIPELINE),
)
