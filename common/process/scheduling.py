"""Periodic background jobs (APScheduler), each in the app's context: the ``worker`` role.

A service's ``worker`` role is a :class:`Jobs`, which the launcher starts on
a scheduler thread of its own process. Each job runs inside the app's context
(so it has the database session), is never run twice at the same time in
this process (``max_instances=1``), and runs once at start-up so that work
left over by a previous process is picked up at once. Several replicas may
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

from common.timeutil import utc_now

log = logging.getLogger(__name__)


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
        self.scheduler = BackgroundScheduler(timezone=UTC)
        for job in self.jobs:
            self.scheduler.add_job(
                _in_app_context(app, job),
                "interval",
                seconds=job.interval_seconds,
                id=job.name,
                name=job.name,
                next_run_time=utc_now(),
                max_instances=1,
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
