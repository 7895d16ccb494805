"""Data Collector metrics beyond the shared HTTP and gRPC ones (common.observability.metrics).

Collection runs in the ``worker`` process, not in the web workers that serve
``/metrics``: prometheus_client's multiprocess mode writes the worker's
samples to the service's metrics directory, where every web worker reads
them. Counters add up across processes; the credits gauge uses
``mostrecent``, so ``/metrics`` shows the last balance OpenSky reported to
any process (also after that worker restarted), not a sum or a stale maximum.
The ranges waiting for a retry, the outcome of the last interest
reconciliation, when a cycle last ended and the day's credits are read from
the database at scrape time (:func:`collection_state_gauges`): facts of the
shared database, the same seen from every replica, whichever process wrote
them. So are the alerts pipeline's (common.broker.observability): the
consumer of ``to-data-collector``, its dead letters, the outbox of
``to-alert-system``.
"""

import time

from flask import current_app
from prometheus_client import Counter, Gauge

from common.broker.observability import Consumed, Pipeline, pipeline_collectors
from common.broker.streams import TO_DATA_COLLECTOR
from common.timeutil import utc_now
from common.web.observability import DatabaseGauges
from data_collector.collection import retries
from data_collector.models import OUTBOX, CollectorState, db

# The durable consumer every replica shares: each report is applied by one of them.
PIPELINE = Pipeline(consumes=(Consumed(TO_DATA_COLLECTOR, "data_collector"),), db=db, outbox=OUTBOX)

COLLECTION_CYCLES = Counter(
    "collection_cycles_total",
    "Collection cycles by outcome: done, partial (some ranges skipped), rate-limited, "
    "circuit-open (stopped: the circuit breaker around OpenSky opened), "
    "busy (another process was collecting), waiting (after a 429, or while the breaker "
    "cools down), failed (an error).",
    ["outcome"],
)
FLIGHTS_STORED = Counter(
    "flights_stored_total",
    "Flights written (inserted, or updated when OpenSky changed them) by collection cycles, "
    "counted when the cycle ends.",
)
OPENSKY_REQUESTS = Counter(
    "opensky_requests_total",
    "HTTP requests sent to OpenSky (each retry counts), by endpoint (arrival, departure, "
    "all, token) and outcome (ok, no_flights, rate_limited, unauthorized, client_error, "
    "server_error, timeout, connection_error, malformed).",
    ["endpoint", "outcome"],
)
OPENSKY_BREAKER_OPENINGS = Counter(
    "opensky_circuit_breaker_openings_total",
    "Times the circuit breaker around OpenSky opened: OPENSKY_BREAKER_FAILURES calls in a row "
    "failed (timeouts, connection errors, 5xx), or its trial call after a cool-down did.",
)
OPENSKY_CREDITS = Gauge(
    "opensky_credits_remaining",
    "Credits left today, as OpenSky's X-Rate-Limit-Remaining said on the latest answer.",
    multiprocess_mode="mostrecent",
)
OPENSKY_LAST_REQUEST_SECONDS = Gauge(
    "opensky_last_request_duration_seconds",
    "How long the latest request to OpenSky took, its answer downloaded and parsed (or "
    "until it failed), by endpoint.",
    ["endpoint"],
    multiprocess_mode="mostrecent",
)
LAST_CYCLE_SECONDS = Gauge(
    "collection_last_cycle_duration_seconds",
    "How long the latest collection cycle of this instance took, from its plan to its "
    "flights stored and its outcome recorded.",
    multiprocess_mode="mostrecent",
)


def request_outcome(endpoint: str, status: int) -> str:
    """Name the outcome of an OpenSky answer with HTTP status ``status``."""
    if status == 200:
        return "ok"
    if status == 404 and endpoint != "token":
        return "no_flights"  # OpenSky's "no flights in this interval"
    if status == 429:
        return "rate_limited"
    if status in (401, 403):
        return "unauthorized"
    return "server_error" if status >= 500 else "client_error"


def collection_state_gauges():
    """Return the gauges of collection's shared state (read from the database at each scrape).

    The ranges waiting for a retry, the circuit breaker around OpenSky,
    whether the last interest reconciliation refused to remove anything, and
    what the alerting rules compare: when a cycle last ended against the
    interval (collection stalled), the day's credits against the budget.
    """
    waiting, next_at = retries.waiting_count_and_next()
    state = db.session.get(CollectorState, 1)
    reconciliation = state.reconcile_outcome if state is not None else None
    return [
        *_schedule_and_budget_gauges(state),
        (
            "collection_retries_waiting",
            "Ranges whose fetch failed and that wait to be asked for again.",
            waiting,
        ),
        (
            "collection_next_retry_seconds",
            "Seconds until the next range waiting for a retry is due (0: due now, or none).",
            max(0.0, next_at - time.time()) if next_at is not None else 0.0,
        ),
        (
            "opensky_circuit_breaker_open",
            "1 while the circuit breaker around OpenSky is open (calls failed in a row, and no "
            "call has succeeded since), else 0.",
            1 if state is not None and state.breaker_state != "closed" else 0,
        ),
        (
            "opensky_circuit_breaker_failures",
            "OpenSky calls failed in a row, as the last cycle left the count.",
            state.breaker_failures if state is not None else 0,
        ),
        (
            "interest_reconciliation_refused",
            "1 when the last interest reconciliation removed nothing because the User Manager "
            "did not know too many users (it may have lost them), else 0.",
            1 if reconciliation == "refused" else 0,
        ),
    ]


def _schedule_and_budget_gauges(state: CollectorState | None) -> list[tuple[str, str, float]]:
    config = current_app.config
    gauges = [
        (
            "collection_interval_seconds",
            "The period of collection cycles (COLLECT_INTERVAL_MINUTES).",
            config["COLLECT_INTERVAL_MINUTES"] * 60,
        ),
    ]
    recorded = state.daily_credits if state is not None else None
    gauges.append(
        (
            "collection_daily_credits",
            "The credits collection may spend per UTC day: the worker's OPENSKY_DAILY_CREDITS "
            "as its last cycle had it (this process's until a cycle ran).",
            config["OPENSKY_DAILY_CREDITS"] if recorded is None else recorded,
        )
    )
    if state is None:
        return gauges
    gauges += [
        (
            "collection_credits_spent_today",
            "Credits spent on OpenSky requests since the UTC day began.",
            state.credits_spent_today(),
        ),
        (
            "collection_over_budget",
            "1 when today's credits ran out with ranges still due (they wait for tomorrow).",
            1 if state.over_budget_on == utc_now().date() else 0,
        ),
    ]
    if state.last_cycle_finished_at is not None:
        gauges.append(
            (
                "collection_last_cycle_end_timestamp_seconds",
                "When the latest collection cycle of any replica ended, in Unix seconds.",
                state.last_cycle_finished_at.timestamp(),
            )
        )
    return gauges


# Computed at every scrape of this service's /metrics (registered by the app factory).
SCRAPE_COLLECTORS = (
    DatabaseGauges("collection state", collection_state_gauges),
    *pipeline_collectors(PIPELINE),
)
