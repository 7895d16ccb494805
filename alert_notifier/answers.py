"""What the Alert Notifier answers, as the API document shows it: only ``/health``'s facts."""

from datetime import datetime
from typing import Literal

from common.broker.observability import PipelineFacts
from common.web.openapi import Answer


class SmtpHealth(Answer):
    """The mail server, asked to greet us and answer NOOP within a short deadline."""

    address: str
    status: Literal["ok", "unavailable"]


class EmailsHealth(PipelineFacts):
    """The mail server, the emails of the last day, the consumers and the outbox."""

    smtp: SmtpHealth
    sent_last_day: int
    last_sent_at: datetime | None


# What /health shows under the service's key (common.web.health finds it by this name).
HealthFacts = EmailsHealth
