"""What the SLA detector answers, as the API document shows it."""

from datetime import datetime
from typing import Literal

from pydantic import Field

from common.web.openapi import Answer
from sla_detector.inputs import MetricSla


class ConfigAnswer(Answer):
    """The configuration in force: the metrics watched and T_check."""

    metrics: list[MetricSla]
    check_seconds: int = Field(description="Seconds between two checks (T_check).")


class BreachAnswer(Answer):
    """A breach: what the event on `sla-breach` said, and when it ended (null: still open)."""

    breach_id: str
    metric: str
    query: str
    value: float = Field(description="The newest value out of range when it was raised.")
    violated: Literal["min", "max"]
    limit: float = Field(description="The limit violated.")
    below: int = Field(description="Kept samples below `min` when it was raised.")
    above: int = Field(description="Kept samples above `max` when it was raised.")
    at: datetime
    ended_at: datetime | None = Field(
        description="When every kept sample was back in range (null: still open)."
    )


class MetricBreaches(Answer):
    """One configured metric's breaches."""

    name: str
    breaches: int = Field(description="Breaches raised since `since`.")
    last: BreachAnswer | None


class BreachesAnswer(Answer):
    """The breaches of every configured metric since the detector first ran on its database."""

    since: datetime
    metrics: list[MetricBreaches]


class MetricCheck(Answer):
    """A metric's last check."""

    last_checked_at: datetime | None
    last_outcome: str | None = Field(
        description="`ok` (a sample was taken), `no data`, or why Prometheus gave none."
    )


class HealthFacts(Answer):
    """What `/health` shows of the detector under `sla`."""

    since: datetime
    last_check_at: datetime | None
    check_seconds: int
    configured_by: Literal["file", "api"] | None = Field(
        description="Where the configuration in force came from (null: none yet)."
    )
    metrics: dict[str, MetricCheck]
    open_breaches: int


class PrometheusHealth(Answer):
    """Prometheus, and what the last check got from it.

    `unavailable`: it does not answer now; `degraded`: it answers, but the last
    check got no sample of some metrics (`without_sample` says why for each).
    """

    address: str
    status: Literal["ok", "degraded", "unavailable"]
    without_sample: dict[str, str] | None = None


# The checks /health runs beside the database and the broker, by name.
HEALTH_CHECKS = {"prometheus": PrometheusHealth}
