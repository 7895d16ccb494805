"""Data Collector metrics beyond the shared HTTP and gRPC ones (common.observability.metrics).

Collection runs in the ``worker`` process, not in the web workers that serve
``/metrics``: prometheus_client's multiprocess mode writes the worker's
samples to the service's metrics directory, where every web worker reads
them. Counters add up across processes; the credits gauge uses
``mostrecent``, so ``/metrics`` shows the last balance OpenSky reported to
any process (also after that worker restarted), not a sum or a stale maximum.
The ranges waiting for a retry and the collection state are read from the
database at scrape time (:func:`retries_gauges`, :func:`collection_state_gauges`):
facts of the shared database, the same seen from every replica.
"""

import time

from flask import current_app
from prometheus_client import Counter, Gauge

from common.web.observability import DatabaseGauges
from data_collector import retries
from data_collector.models import CollectorState, db

COLLECTION_CYCLES = Counter(
    "collection_cycles_total",
    "Collection cycles by outcome: done, partial (some ranges skipped), rate-limited, "
    "busy (another process was collecting), waiting (after a 429), failed (an error).",
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


def retries_gauges():
    """Return the gauges of the ranges waiting for a retry (read at each scrape)."""
    waiting, next_at = retries.waiting_count_and_next()
    return [
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
    ]


def collection_state_gauges():
    """Return the gauges of the collection state every replica shares (read at each scrape).

    What the alerting rules compare: when a cycle last ended against the
    interval (collection stalled), and the day's credits against the budget.
    """
    config = current_app.config
    gauges = [
        (
            "collection_interval_seconds",
            "The period of collection cycles (COLLECT_INTERVAL_MINUTES).",
            config["COLLECT_INTERVAL_MINUTES"] * 60,
        ),
        (
            "collection_daily_credits",
            "The credits collection may spend per UTC day (OPENSKY_DAILY_CREDITS).",
            config["OPENSKY_DAILY_CREDITS"],
        ),
    ]
    state = db.session.get(CollectorState, 1)
    if state is None:
        return gauges
    facts = state.to_dict()
    gauges += [
        (
            "collection_credits_spent_today",
            "Credits spent on OpenSky requests since the UTC day began.",
            facts["credits_spent_today"],
        ),
        (
            "collection_over_budget",
            "1 when today's credits ran out with ranges still due (they wait for tomorrow).",
            1 if facts["over_budget_today"] else 0,
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
    DatabaseGauges("retries", retries_gauges),
    DatabaseGauges("collection state", collection_state_gauges),
)
