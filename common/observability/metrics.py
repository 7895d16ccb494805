"""Prometheus metrics shared by the services, aggregated across all of a service's processes.

A service is several processes (gunicorn workers, the gRPC server, the
background worker), each with its own counters. prometheus_client's
multiprocess mode makes them one view: every process writes its samples
to files in ``PROMETHEUS_MULTIPROC_DIR`` (set by the launcher before any
child starts), and ``GET /metrics`` in any web worker reads them all.
Without that variable (unit tests) the ordinary in-process registry is used.

Service-specific collectors that compute a value when scraped (the outbox
backlog, for instance) are added per app, in ``common.web.observability``.

Every sample leaves with two more labels, added here once for every service:
``service`` (the package, ``user_manager``) and ``node`` (the machine it runs
on: the Kubernetes node, through the downward API's ``NODE_NAME``, else the
host name). Prometheus adds ``instance`` (the replica) itself. So no metric
declares ``service`` or ``node`` as a label of its own.
"""

import copy
import os
import socket
from collections.abc import Iterable, Mapping

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


# The labels every sample carries, added at rendering.
IDENTITY_LABELS = ("service", "node")
# Where the machine's name comes from: on Kubernetes, the downward API's spec.nodeName (the
# pod's own host name would be the pod's). Not a setting: the platform gives it.
NODE_NAME_VARIABLE = "NODE_NAME"


def node_name() -> str:
    """Return the machine this process runs on: ``NODE_NAME``, else the host name."""
    return os.environ.get(NODE_NAME_VARIABLE) or socket.gethostname()


class WithLabels:
    """A collector yielding the metric families of ``sources`` with ``labels`` on every sample."""

    def __init__(self, sources: Iterable, labels: Mapping[str, str]):
        self.sources = list(sources)
        self.labels = dict(labels)

    def collect(self):
        """Yield a labelled copy of each source's families (these labels win).

        Copies: some collectors (the platform's) hand out the same objects at every scrape.
        """
        for source in self.sources:
            for family in source.collect():
                labelled = copy.copy(family)
                labelled.samples = [
                    sample._replace(labels={**sample.labels, **self.labels})
                    for sample in family.samples
                ]
                yield labelled


def process_registry():
    """Return the registry of every process of the service (this process's without the dir)."""
    if os.environ.get(MULTIPROC_DIR_VARIABLE):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def render_all(extra_collectors=(), *, labels: Mapping[str, str] | None = None) -> bytes:
    """Render every metric of the service's processes, then ``extra_collectors``, as text.

    ``labels`` (the service and its node) are added to every sample.
    """
    scrape_only = CollectorRegistry()
    for collector in extra_collectors:
        scrape_only.register(collector)
    return generate_latest(WithLabels([process_registry(), scrape_only], labels or {}))
