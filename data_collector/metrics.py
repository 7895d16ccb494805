"""Data Collector metrics beyond the shared HTTP and gRPC ones (common.observability.metrics).

Collection runs in the ``worker`` process, not in the web workers that serve
``/metrics``: prometheus_client's multiprocess mode writes the worker's
samples to the service's metrics directory, where every web worker reads
them. Counters add up across processes; the credits gauge uses
``mostrecent``, so ``/metrics`` shows the last balance OpenSky reported to
any process (also after that worker restarted), not a sum or a stale maximum.
The ranges waiting for a retry and the outcome of the last interest
reconciliation are read from the database at scrape time
(:class:`CollectionStateCollector`): facts of the shared database, the
same seen from every replica, whichever process wrote them.
"""

import contextlib
import logging
import time

from prometheus_client import Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.exc import SQLAlchemyError

from data_collector.collection import retries
from data_collector.models import CollectorState, db

log = logging.getLogger(__name__)

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


class CollectionStateCollector:
    """Read collection's shared state when Prometheus scrapes (inside the app context).

    The ranges waiting for a retry, and whether the last interest
    reconciliation refused to remove anything.
    """

    def describe(self):
        """Declare nothing up front: registering must not query the database."""
        return []

    def collect(self):
        """Yield the gauges, or nothing when the database does not answer."""
        now = time.time()
        try:
            waiting, next_at = retries.waiting_count_and_next()
            state = db.session.get(CollectorState, 1)
            reconciliation = state.reconcile_outcome if state is not None else None
            db.session.rollback()
        except SQLAlchemyError as error:
            with contextlib.suppress(SQLAlchemyError):
                db.session.rollback()
            log.warning("metrics: collection state unknown, the database is unavailable: %s", error)
            return
        yield GaugeMetricFamily(
            "collection_retries_waiting",
            "Ranges whose fetch failed and that wait to be asked for again.",
            value=waiting,
        )
        yield GaugeMetricFamily(
            "collection_next_retry_seconds",
            "Seconds until the next range waiting for a retry is due (0: due now, or none).",
            value=max(0.0, next_at - now) if next_at is not None else 0.0,
        )
        yield GaugeMetricFamily(
            "interest_reconciliation_refused",
            "1 when the last interest reconciliation removed nothing because the User Manager "
            "did not know too many users (it may have lost them), else 0.",
            value=1 if reconciliation == "refused" else 0,
        )
