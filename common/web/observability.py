"""Per-request observability for the Flask apps: request id, one access log line, HTTP metrics.

``GET /metrics`` renders the metrics of all the service's processes, plus
the collectors a service registers with :func:`add_scrape_collector`, which
compute a value when scraped (the outbox backlog, for instance).
"""

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping

from flask import Flask, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.exc import SQLAlchemyError

from common.observability.metrics import HTTP_LATENCY, HTTP_REQUESTS, node_name, render_all
from common.observability.request_ids import (
    REQUEST_ID_HEADER,
    accept_or_generate,
    bind_request_id,
    current_request_id,
    unbind_request_id,
)
from common.web.auth import requires
from common.web.openapi import OPERATIONS_TAG, Reply, documented
from common.web.paths import loggable_path

access_log = logging.getLogger("access")
log = logging.getLogger(__name__)

# Metric labels must stay bounded: any other method a client invents is counted as OTHER.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def add_scrape_collector(app: Flask, collector) -> None:
    """Register a collector whose ``collect()`` runs (inside the app context) at every scrape."""
    app.extensions.setdefault("scrape_collectors", []).append(collector)


class DatabaseGauges:
    """Gauges read from the service's database when Prometheus scrapes.

    For facts of the shared database rather than of one process (an
    outbox's backlog, the ranges waiting for a retry): every replica reports
    the same value and no process keeps a gauge up to date. ``read()`` runs
    inside the scrape's app context and returns ``(name, help, value)``
    triples; when the database does not answer, the gauges are left out of
    that scrape (a warning says so) rather than failing ``/metrics``. With
    ``label``, a value may also be a mapping from that label's values to
    numbers: one sample each (the interests by condition, say).
    """

    def __init__(
        self,
        what: str,
        read: Callable[[], Iterable[tuple[str, str, float | Mapping[str, float]]]],
        *,
        label: str | None = None,
    ):
        self.what = what
        self.read = read
        self.label = label

    def describe(self):
        """Declare nothing up front: registering must not query the database."""
        return []

    def collect(self):
        """Yield the gauges, or nothing when the database does not answer."""
        session = current_app.extensions["sqlalchemy"].session
        try:
            samples = list(self.read())
            session.rollback()
        except SQLAlchemyError as error:
            with contextlib.suppress(SQLAlchemyError):
                session.rollback()
            log.warning("metrics: %s unknown, the database is unavailable: %s", self.what, error)
            return
        for name, documentation, value in samples:
            if not isinstance(value, Mapping):
                yield GaugeMetricFamily(name, documentation, value=value)
                continue
            gauge = GaugeMetricFamily(name, documentation, labels=[self.label])
            for label_value, number in value.items():
                gauge.add_metric([label_value], number)
            yield gauge


def install_request_observability(app: Flask) -> None:
    """Register the hooks that give every request an id, a log line and metrics; add /metrics."""

    @app.before_request
    def start_request():
        g.request_started = time.perf_counter()
        g.request_id_token = bind_request_id(
            accept_or_generate(request.headers.get(REQUEST_ID_HEADER))
        )

    @app.after_request
    def finish_request(response):
        request_id = current_request_id()
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        elapsed = time.perf_counter() - g.get("request_started", time.perf_counter())
        path = loggable_path()
        method = request.method if request.method in KNOWN_METHODS else "OTHER"
        route = request.url_rule.rule if request.url_rule else "unmatched"
        HTTP_REQUESTS.labels(method, route, str(response.status_code)).inc()
        HTTP_LATENCY.labels(method, route).observe(elapsed)
        access_log.info(
            "%s %s %s %.1fms",
            method,
            path,
            response.status_code,
            elapsed * 1000,
            extra={
                "method": method,
                "path": path,
                "status": response.status_code,
                "duration_ms": round(elapsed * 1000, 2),
            },
        )
        return response

    @app.teardown_request
    def forget_request_id(_error):
        token = g.pop("request_id_token", None)
        if token is not None:
            unbind_request_id(token)

    @app.get("/metrics")
    @requires("ops")
    @documented(
        tag=OPERATIONS_TAG,
        answers={
            200: Reply(
                "Prometheus text exposition format.", {"type": "string"}, media_type="text/plain"
            )
        },
    )
    def metrics():
        """Expose the metrics of every process of the service, in the Prometheus text format."""
        output = render_all(
            app.extensions.get("scrape_collectors", []),
            labels={"service": app.name, "node": node_name()},
        )
        return Response(output, mimetype=CONTENT_TYPE_LATEST)
