"""The Alert System's OpenAPI document (``/openapi.json``, ``/docs/``): the operators' operations.

It has no API of its own: users set thresholds at the Data Collector.
"""

from flask import Flask
from pydantic import BaseModel, ConfigDict

from common.broker.observability import PipelineFacts, operators_document

DESCRIPTION = """\
Evaluates the Data Collector's events against every interest's thresholds and sends each
crossing (an airport over a user's upper threshold, or under the lower one) to the Alert
Notifier once. Only the operators' operations: liveness, readiness, metrics.
"""


class InterestsByCondition(BaseModel):
    """Interests evaluated so far, by where their airport stands now."""

    model_config = ConfigDict(extra="forbid")

    inside: int
    above: int
    below: int


class AlertsHealth(PipelineFacts):
    """The interests by condition, the consumer of ``to-alert-system`` and the outbox."""

    interests: InterestsByCondition


def build_document(app: Flask) -> dict:
    """Return the OpenAPI document of the Alert System app ``app``."""
    return operators_document(app, "Alert System API", DESCRIPTION, facts=("alerts", AlertsHealth))
