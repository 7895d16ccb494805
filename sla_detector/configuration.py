"""The configuration in force: from ``SLA_CONFIG_FILE`` at first, then from ``PUT /sla/config``.

It lives in the detector's database (``detector_state``), so every replica
checks the same metrics and a restart keeps what was set:

- with no configuration stored, or one that came from the file, the file's
  is adopted, also when the file changed since (an operator who edits the
  file and restarts gets the new one);
- one set through ``PUT /sla/config`` is kept across restarts whatever the
  file says (the log says that the file is ignored); putting the file's
  content back is how to return to it.

Every document is validated alike (:mod:`sla_detector.inputs`); ``PUT``
also asks Prometheus whether it accepts each query, and refuses a check
interval shorter than five scrapes.
"""

import json
import logging
import time

from flask import current_app

from common.timeutil import isoformat_utc, utc_now
from common.web.errors import ApiError
from sla_detector import prometheus
from sla_detector.config import check_interval_refusal, minimum_check_seconds
from sla_detector.inputs import SlaConfig
from sla_detector.models import DetectorState, db

log = logging.getLogger(__name__)

# A client that could not have its queries checked may try again this much later.
RETRY_AFTER_SECONDS = 10


def check_seconds(config: SlaConfig) -> int:
    """Return the configuration's T_check: its own, or ``SLA_CHECK_SECONDS``.

    Never under five scrapes: a stored T_check may predate a longer
    ``PROMETHEUS_SCRAPE_SECONDS``, and a check closer to the last would
    compare samples Prometheus has not refreshed.
    """
    scrape_seconds = current_app.config["PROMETHEUS_SCRAPE_SECONDS"]
    return max(given_check_seconds(config), minimum_check_seconds(scrape_seconds))


def given_check_seconds(config: SlaConfig) -> int:
    """Return the T_check ``config`` asks for: its own, or ``SLA_CHECK_SECONDS``."""
    return config.check_seconds or current_app.config["SLA_CHECK_SECONDS"]


def stored_state() -> DetectorState:
    """Return the detector's single state row."""
    return db.session.get(DetectorState, 1)


def current() -> SlaConfig:
    """Return the configuration in force (the file's until one is stored; else none)."""
    state = stored_state()
    if state is not None and state.document is not None:
        return SlaConfig.model_validate(state.document)
    return current_app.config["SLA_CONFIG"] or SlaConfig(metrics=[])


def adopt_file(*, warn: bool) -> None:
    """Store the file's configuration unless one set through the API is in force (commits).

    ``warn``: say in the log when the file is ignored (once per process is enough).
    """
    path = current_app.config["SLA_CONFIG_FILE"]
    if not path:
        return
    digest = current_app.config["SLA_CONFIG_DIGEST"]
    state = db.session.get(DetectorState, 1, with_for_update=True)
    if state.source == "api":
        if warn:
            # Louder when the file changed since: whoever edited it expects it to apply.
            level = logging.INFO if digest == state.file_digest else logging.WARNING
            log.log(
                level,
                "SLA configuration: keeping the one set by PUT /sla/config at %s; "
                "SLA_CONFIG_FILE %s is ignored (PUT its content to use it)",
                isoformat_utc(state.updated_at),
                path,
            )
        db.session.rollback()
        return
    if state.source == "file" and state.file_digest == digest:
        db.session.rollback()
        return
    state.document = current_app.config["SLA_CONFIG"].model_dump(mode="json")
    state.source, state.file_digest, state.updated_at = "file", digest, utc_now()
    db.session.commit()
    log.info("SLA configuration read from %s", path)


def replace(config: SlaConfig) -> SlaConfig:
    """Validate ``config`` further (T_check, each query with Prometheus), then store it (commits).

    Raise the 400 naming each refused part, or a 503 when Prometheus cannot
    be asked (nothing changes then).
    """
    app_config = current_app.config
    refusal = check_interval_refusal(
        given_check_seconds(config), app_config["PROMETHEUS_SCRAPE_SECONDS"], name="check_seconds"
    )
    if refusal:
        raise ApiError(400, "Invalid SLA configuration.", details={"check_seconds": refusal})
    refused = {}
    # The queries are checked one after the other within half the request's time, so a slow
    # Prometheus (or many slow queries) gets a 503 rather than a worker ended mid-request.
    deadline = time.monotonic() + app_config["REQUEST_TIMEOUT_SECONDS"] / 2
    for index, metric in enumerate(config.metrics):
        left = min(deadline - time.monotonic(), prometheus.QUERY_TIMEOUT_SECONDS)
        if left <= 0:
            raise ApiError(
                503,
                "Prometheus is too slow to check every query in time; nothing was changed.",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        try:
            prometheus.query(app_config["PROMETHEUS_URL"], metric.query, timeout=left)
        except prometheus.QueryRefusedError as error:
            refused[f"metrics.{index}.query"] = f"Prometheus refuses it: {error}"
        except prometheus.PrometheusUnavailableError as error:
            raise ApiError(
                503,
                f"Prometheus cannot check the queries ({error}); nothing was changed.",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            ) from None
    if refused:
        raise ApiError(400, "Invalid SLA configuration.", details=refused)
    # Stored as given: without its own T_check, it follows SLA_CHECK_SECONDS as set at the time.
    state = db.session.get(DetectorState, 1, with_for_update=True)
    state.document = config.model_dump(mode="json")
    state.source, state.updated_at = "api", utc_now()
    state.file_digest = app_config["SLA_CONFIG_DIGEST"]
    db.session.commit()
    log.info(
        "SLA configuration replaced through the API: %s",
        json.dumps([metric.name for metric in config.metrics]),
    )
    return config


def shown(config: SlaConfig) -> dict:
    """Return a configuration as ``GET /sla/config`` shows it (its T_check filled in)."""
    return config.model_copy(update={"check_seconds": check_seconds(config)}).model_dump(
        mode="json"
    )
