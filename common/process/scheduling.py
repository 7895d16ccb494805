"""Run periodic background jobs in a dedicated worker process (APScheduler BlockingScheduler).

A service's ``worker`` role calls :func:`run_periodic_jobs` once. Each job
runs inside the app's context (so it has the database session), is never run
twice at the same time in this process (``max_instances=1``), and runs once
at start-up so that work left over by a previous process is picked up at
once. Several replicas may run the same jobs: each job makes that safe itself
(row locks with ``SKIP LOCKED`` or a transaction-scoped advisory lock). A job
that fails is logged and tried again at its next run; SIGTERM lets a running
job finish and then stops the process.
"""

import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC

from apscheduler.schedulers.blocking import BlockingScheduler
from flask import Flask

from common.observability.logs import configure_logging
from common.timeutil import utc_now

log = logging.getLogger(__name__)

# What APScheduler says when a run comes while the previous one is still going. With
# max_instances=1 that is the design (a collection cycle outlasts the poll interval),
# not a fault: it says so every poll interval, hundreds of times per long cycle.
EXPECTED_SKIP = "maximum number of running instances reached"


class ExpectedSkipFilter(logging.Filter):
    """Lower APScheduler's "maximum number of running instances reached" to DEBUG.

    Every other record keeps its level: a misfire ("was missed by"), a job
    that raised, the scheduler starting and stopping.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record; demote an expected skip, kept only where DEBUG is enabled."""
        if record.levelno <= logging.DEBUG or EXPECTED_SKIP not in str(record.msg):
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def scheduler_logger() -> logging.Logger:
    """Return APScheduler's scheduler logger, with the expected skips lowered to DEBUG."""
    logger = logging.getLogger("apscheduler.scheduler")
    if not any(isinstance(f, ExpectedSkipFilter) for f in logger.filters):
        logger.addFilter(ExpectedSkipFilter())
    return logger


@dataclass(frozen=True)
class PeriodicJob:
    """A function to call every ``interval_seconds``."""

    name: str
    function: Callable[[], object]
    interval_seconds: float


def _in_app_context(app: Flask, job: PeriodicJob) -> Callable[[], None]:
    def run() -> None:
        with app.app_context():
            try:
                job.function()
            except Exception:
                log.exception("job %s failed; it runs again in %ss", job.name, job.interval_seconds)

    return run


def run_periodic_jobs(app: Flask, jobs: Sequence[PeriodicJob]) -> None:
    """Run ``jobs`` until SIGTERM or SIGINT."""
    configure_logging(app.config["LOG_LEVEL"])
    # APScheduler logs every run at INFO: with sub-second jobs that drowns the real events.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    scheduler = BlockingScheduler(timezone=UTC, logger=scheduler_logger())
    for job in jobs:
        scheduler.add_job(
            _in_app_context(app, job),
            "interval",
            seconds=job.interval_seconds,
            id=job.name,
            name=job.name,
            next_run_time=utc_now(),
            max_instances=1,
            # A run missed while the previous one was still going is simply skipped
            # (ExpectedSkipFilter keeps that out of the warnings).
            coalesce=True,
            misfire_grace_time=None,
        )

    def request_stop(signum, _frame):
        log.info("worker received %s, stopping", signal.Signals(signum).name)
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    log.info(
        "worker running %s",
        ", ".join(f"{job.name} every {job.interval_seconds}s" for job in jobs),
    )
    scheduler.start()
    log.info("worker stopped")
