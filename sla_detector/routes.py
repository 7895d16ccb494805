"""SLA detector REST API: the configuration, and the breaches (scope ``ops``)."""

from flask import Blueprint

from common.web.auth import requires
from common.web.inputs import json_object_body, parse_model
from common.web.openapi import Reply, documented
from sla_detector import configuration, services
from sla_detector.answers import BreachesAnswer, ConfigAnswer
from sla_detector.inputs import SlaConfig

bp = Blueprint("sla", __name__)
TAGS = {"sla": "The metrics watched, and their breaches."}

CONFIG_EXAMPLE = {
    "metrics": [
        {
            "name": "collection-credits",
            "query": "max(opensky_credits_remaining)",
            "min": 50,
            "max": 4000,
        }
    ],
    "check_seconds": 75,
}

PUT_ANSWERS = {
    200: Reply("Stored: the next check uses it.", ConfigAnswer, example=CONFIG_EXAMPLE),
    400: "A document that is not valid: an unknown or missing field, `min` above `max`, "
    "a repeated name, a query Prometheus refuses, or `check_seconds` below 5 x "
    "`PROMETHEUS_SCRAPE_SECONDS` (`details` names each).",
    503: "Prometheus does not answer, so the queries cannot be checked, or the database "
    "is unavailable: nothing changed; retry after `Retry-After` seconds.",
}


@bp.get("/sla/config")
@requires("ops")
@documented(
    tag="sla",
    answers={
        200: Reply("The configuration in force.", ConfigAnswer, example=CONFIG_EXAMPLE),
    },
)
def get_config():
    """Return the metrics watched and the check interval.

    Until a configuration is set with `PUT`, the one of `SLA_CONFIG_FILE`.
    """
    return configuration.shown(configuration.current())


@bp.put("/sla/config")
@requires("ops")
@documented(tag="sla", body=SlaConfig, answers=PUT_ANSWERS)
def put_config():
    """Replace the metrics watched (and the check interval).

    The same document as `SLA_CONFIG_FILE`, as JSON. Each query is checked with
    Prometheus first. Kept in the detector's database: a restart keeps it, whatever
    the file says.
    """
    stored = configuration.replace(parse_model(SlaConfig, json_object_body()))
    return configuration.shown(stored)


@bp.get("/sla/breaches")
@requires("ops")
@documented(
    tag="sla",
    answers={200: Reply("Each configured metric's breaches.", BreachesAnswer)},
)
def get_breaches():
    """Return each metric's breaches since the detector started: how many, and the last one."""
    return services.breaches()
