"""What the Alert System answers, as the API document shows it: only ``/health``'s facts."""

from common.broker.observability import PipelineFacts
from common.web.openapi import Answer


class InterestsByCondition(Answer):
    """Interests evaluated so far, by where their airport stands now against their thresholds."""

    inside: int
    above: int
    below: int


class AlertsHealth(PipelineFacts):
    """The interests by condition, the consumer of ``to-alert-system`` and the outbox."""

    interests: InterestsByCondition


# What /health shows under the service's key (common.web.health finds it by this name).
HealthFacts = AlertsHealth
