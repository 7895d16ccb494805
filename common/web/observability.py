"""Per-request observability for the Flask apps: request id, one access log line, HTTP metrics.

``GET /metrics`` renders the metrics of all the service's processes, plus
the collectors a service registers with :func:`add_scrape_collector`, which
compute a value when scraped (the outbox backlog, for instance).
"""

import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.exc import SQLAlchemyError

from common.observability.metrics import HTTP_LATENCY, HTTP_REQUESTS, render_all
from common.observability.request_ids import (
    REQUEST_ID_HEADER,
    accept_or_generate,
    bind_request_id,
    current_request_id,
    unbind_request_id,
)
from common.web.auth import requires
from common.web.paths import loggable_path

access_log = logging.getLogger("access")
log = logging.getLogger(__name__)

# Metric labels must stay bounded: any other method a client invents is counted as OTHER.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class DatabaseCollector:
    """A collector of gauges read from the service's database each time Prometheus scrapes.

    For facts of the shared database (a backlog, the collection state): the
    same seen from every replica, and no process has to keep a gauge up to
    date. A subclass names its ``db``, says ``what`` it reads (for the log) and
    yields its metric families from :meth:`read`, run in a short transaction
    inside the request's app context. A database that does not answer costs
    those samples and a warning, never the whole scrape.
    """

    db: Any
    what = "database facts"

    def describe(self):
        """Declare nothing up front: registering must not query the database."""
        return []

    def collect(self):
        """Yield what :meth:`read` yields, or nothing when the database does not answer."""
        try:
            families = list(self.read())
            self.db.session.rollback()
        except SQLAlchemyError as error:
            with contextlib.suppress(SQLAlchemyError):
                self.db.session.rollback()
            log.warning("metrics: %s unknown, the database is unavailable: %s", self.what, error)
            return
        yield from families

    def read(self) -> Iterable:
        """Yield the metric families (subclasses)."""
        raise NotImplementedError


def add_scrape_collector(app: Flask, collector) -> None:
    """Register a collector whose ``collect()`` runs (inside the app context) at every scrape."""
    app.extensions.setdefault("scrape_collectors", []).append(collector)


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
    def metrics():
        """Expose the service's metrics in the Prometheus text format."""
        output = render_all(
            app.extensions.get("scrape_collectors", []),
            labels={"service": app.name, "node": app.config["NODE_NAME"]},
        )
        return Response(output, mimetype=CONTENT_TYPE_LATEST)
