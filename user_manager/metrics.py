"""User Manager metrics beyond the shared HTTP and gRPC ones (common.observability.metrics).

Counters are incremented where the behaviour happens, in whichever process
it happens (prometheus_client's multiprocess mode adds them up). The outbox
backlog is read from the database at scrape time instead: it is a fact of
the shared database, not of any one process, so every replica reports the
same value and no process has to keep a gauge up to date.
"""

from prometheus_client import Counter

from common.web.observability import DatabaseGauges
from user_manager import outbox

IDEMPOTENCY_REPLAYS = Counter(
    "idempotency_replays_total",
    "State-changing requests answered with the stored outcome of an earlier request "
    "with the same Idempotency-Key (Idempotent-Replayed: true), by method.",
    ["method"],
)
IDEMPOTENCY_CONFLICTS = Counter(
    "idempotency_conflicts_total",
    "Requests refused because of their Idempotency-Key, by status: 422 the key was used "
    "for a different request.",
    ["status"],
)


def outbox_gauges():
    """Return the outbox backlog's gauges (read from the database at each scrape)."""
    backlog = outbox.backlog()
    return [
        (
            "outbox_backlog_messages",
            "Calls to the Data Collector (DeleteUserInterests) committed but not yet delivered.",
            backlog.count,
        ),
        (
            "outbox_oldest_pending_seconds",
            "Age of the oldest undelivered outbox call (0 when there is none).",
            backlog.oldest_seconds or 0.0,
        ),
    ]


# Computed at every scrape of this service's /metrics (registered by the app factory).
SCRAPE_COLLECTORS = (DatabaseGauges("outbox backlog", outbox_gauges),)
