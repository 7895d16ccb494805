"""Data Collector metrics beyond the shared HTTP and gRPC ones (common.observability.metrics).

Collection runs in the ``worker`` process, not in the web workers that serve
``/metrics``: prometheus_client's multiprocess mode writes the worker's
samples to the service's metrics directory, where every web worker reads
them. Counters add up across processes; the credits gauge uses
``mostrecent``, so ``/metrics`` shows the last balance OpenSky reported to
any process (also after that worker restarted), not a sum or a stale maximum.
"""

from prometheus_client import Counter, Gauge

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
