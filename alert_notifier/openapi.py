"""The Alert Notifier's OpenAPI document (``/openapi.json``, ``/docs/``): the operators' operations.

It has no API of its own: it reads crossings from the broker and mails them.
"""

from datetime import datetime
from typing import Literal

from flask import Flask
from pydantic import BaseModel, ConfigDict

from common.broker.observability import PipelineFacts, operators_document

DESCRIPTION = """\
Sends one email per threshold crossing (and per SLA breach) over SMTP, never twice for a
redelivered crossing, and parks what the mail server refuses for good. Only the operators'
operations: liveness, readiness (with the mail server's reachability), metrics.
"""


class SmtpHealth(BaseModel):
    """The mail server, asked to greet us and answer NOOP within a short deadline."""

    model_config = ConfigDict(extra="forbid")

    address: str
    status: Literal["ok", "unavailable"]


class EmailsHealth(PipelineFacts):
    """The mail server, the emails of the last day, the consumers and the outbox."""

    smtp: SmtpHealth
    sent_last_day: int
    last_sent_at: datetime | None


def build_document(app: Flask) -> dict:
    """Return the OpenAPI document of the Alert Notifier app ``app``."""
    facts = ("emails", EmailsHealth)
    return operators_document(app, "Alert Notifier API", DESCRIPTION, facts=facts)
