"""Periodic background jobs (APScheduler), each in the app's context: the ``worker`` role.

A service's ``worker`` role is a :class:`Jobs`, which the launcher starts on
a scheduler thread of its own process. Each job runs inside the app's context
(so it has the database session), is never run twice at the same time in
this process (``max_instances=1``), and runs once at start-up so that work
left over by a previous process is picked up at once. Each job has a
heartbeat (:mod:`common.process.heartbeat`) that the worker's probe reads. Several replicas may
run the same jobs: each job makes that safe itself (row locks with
``SKIP LOCKED`` or a transaction-scoped advisory lock). A job that fails is
logged and tried again at its next run; stopping lets a running job finish.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC

from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask

from common.process.heartbeat import STALL_SECONDS, Heartbeat
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
    """A function to call every ``interval_seconds``.

    ``stall_seconds``: how long one run may go without progress (its start,
    or a :func:`common.process.heartbeat.progress` call inside it) before the
    worker counts as stuck and its probe fails.
    """

    name: str
    function: Callable[[], object]
    interval_seconds: float
    stall_seconds: float = STALL_SECONDS


def _in_app_context(app: Flask, job: PeriodicJob) -> Callable[[], None]:
    """Wrap a job: run it in the app's context, log a failure, beat its heartbeat.

    During a run the job may go ``stall_seconds`` without progress; between
    runs, its interval more (the scheduler must start the next one in time).
    """
    heartbeat = Heartbeat(job.name, job.interval_seconds + job.stall_seconds)

    def run() -> None:
        heartbeat.beat(job.stall_seconds)
        with heartbeat.current(), app.app_context():
            try:
                job.function()
            except Exception:
                log.exception("job %s failed; it runs again in %ss", job.name, job.interval_seconds)
        heartbeat.beat(job.interval_seconds + job.stall_seconds)

    return run


class Jobs:
    """Periodic jobs on a scheduler thread of this process: started, then stopped.

    Each job runs once at start, then every ``interval_seconds``, never twice
    at once (``max_instances=1``); a run missed while the previous one was
    still going is skipped. Several replicas may run the same jobs: each job
    makes that safe itself.
    """

    def __init__(self, app: Flask, jobs: Sequence[PeriodicJob]):
        self.jobs = list(jobs)
        # APScheduler logs every run at INFO: with sub-second jobs that drowns the real events.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        self.scheduler = BackgroundScheduler(timezone=UTC, logger=scheduler_logger())
        for job in self.jobs:
            self.scheduler.add_job(
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

    def start(self) -> None:
        """Start the scheduler thread."""
        self.scheduler.start()
        log.info(
            "jobs running: %s",
            ", ".join(f"{job.name} every {job.interval_seconds}s" for job in self.jobs),
        )

    def stop(self) -> None:
        """Stop scheduling; let the runs in progress finish."""
        self.scheduler.shutdown(wait=True)
        log.info("jobs stopped")
