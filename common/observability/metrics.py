"""Prometheus metrics shared by both services, aggregated across all of a service's processes.

A service is several processes (gunicorn workers, the gRPC server, the
background worker), each with its own counters. prometheus_client's
multiprocess mode makes them one view: every process writes its samples
to files in ``PROMETHEUS_MULTIPROC_DIR`` (set by the launcher before any
child starts), and ``GET /metrics`` in any web worker reads them all.
Without that variable (unit tests) the ordinary in-process registry is used.

Service-specific collectors that compute a value when scraped (the outbox
backlog, for instance) are added per app, in ``common.web.observability``.
"""

import os

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from common.observability import MULTIPROC_DIR_VARIABLE

# Latency buckets from sub-millisecond (a cached read) to the request timeout.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered, by route template, method and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request, by route template and method.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
GRPC_CLIENT_CALLS = Counter(
    "grpc_client_calls_total",
    "gRPC calls made to the peer service, by method and outcome (OK or the status code name).",
    ["method", "outcome"],
)
GRPC_SERVER_CALLS = Counter(
    "grpc_server_calls_total",
    "gRPC calls served, by method and status code name.",
    ["method", "code"],
)
GRPC_SERVER_LATENCY = Histogram(
    "grpc_server_call_duration_seconds",
    "Time to serve a gRPC call, by method.",
    ["method"],
    buckets=LATENCY_BUCKETS,
)


def render_all(extra_collectors=()) -> bytes:
    """Render every metric of the service's processes, then ``extra_collectors``, as text."""
    if os.environ.get(MULTIPROC_DIR_VARIABLE):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    output = generate_latest(registry)
    scrape_only = CollectorRegistry()
    for collector in extra_collectors:
        scrape_only.register(collector)
    return output + generate_latest(scrape_only)
