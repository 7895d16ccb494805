"""SLA detector business logic: its health, and the breaches as GET /sla/breaches shows them.

The configuration is in :mod:`sla_detector.configuration`, the checks in
:mod:`sla_detector.checks`.
"""

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from common.timeutil import isoformat_utc
from sla_detector import configuration, prometheus
from sla_detector.models import OUTCOME_OK, Breach, DetectorState, MetricState, db

log = logging.getLogger(__name__)


def health_facts() -> dict[str, Any]:
    """Return the ``sla`` part of ``/health``: the configuration's source, the checks."""
    state = db.session.get(DetectorState, 1)
    checked = db.session.scalars(select(MetricState).order_by(MetricState.name)).all()
    return {
        "since": isoformat_utc(state.since),
        "last_check_at": isoformat_utc(state.last_check_at),
        "check_seconds": configuration.check_seconds(configuration.current()),
        "configured_by": state.source,
        "metrics": {
            metric.name: {
                "last_checked_at": isoformat_utc(metric.last_checked_at),
                "last_outcome": metric.last_outcome,
            }
            for metric in checked
        },
        "open_breaches": sum(
            (metric.open_min_breach is not None) + (metric.open_max_breach is not None)
            for metric in checked
        ),
    }


def health_checks() -> dict[str, Callable[[], dict[str, Any]]]:
    """Return what ``/health`` checks beside the database and the broker: Prometheus."""
    return {"prometheus": prometheus_health}


def prometheus_health() -> dict[str, Any]:
    """Ask Prometheus whether it is ready; say which metrics the last check could not sample."""
    address = current_app.config["PROMETHEUS_URL"]
    if not prometheus.is_ready(address):
        return {"address": address, "status": "unavailable"}
    try:
        blind = dict(
            db.session.execute(
                select(MetricState.name, MetricState.last_outcome).where(
                    MetricState.last_outcome != OUTCOME_OK
                )
            ).all()
        )
        db.session.rollback()
    except SQLAlchemyError:
        with contextlib.suppress(SQLAlchemyError):
            db.session.rollback()
        return {"address": address, "status": "ok"}  # the database's own check says the rest
    if blind:
        return {"address": address, "status": "degraded", "without_sample": blind}
    return {"address": address, "status": "ok"}


def breaches() -> dict[str, Any]:
    """Return each configured metric's breaches since the detector first ran: count and last."""
    names = [metric.name for metric in configuration.current().metrics]
    counts = dict(
        db.session.execute(
            select(Breach.metric, func.count())
            .where(Breach.metric.in_(names))
            .group_by(Breach.metric)
        ).all()
    )
    last = {
        breach.metric: breach
        for breach in db.session.scalars(
            select(Breach)
            .where(Breach.metric.in_(names))
            .order_by(Breach.metric, Breach.at.desc())
            .distinct(Breach.metric)
        )
    }
    since = db.session.get(DetectorState, 1).since
    return {
        "since": isoformat_utc(since),
        "metrics": [
            {
                "name": name,
                "breaches": counts.get(name, 0),
                "last": last[name].to_dict() if name in last else None,
            }
            for name in names
        ],
    }
