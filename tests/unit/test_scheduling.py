"""A job that outlasts its interval is skipped quietly; every other scheduler warning stays."""

import logging
import threading
import time
from datetime import UTC

from apscheduler.schedulers.background import BackgroundScheduler

from common.process.scheduling import scheduler_logger


def run_an_overlapping_job() -> None:
    """Run a job every 0.1 s that takes 1 s: APScheduler skips about nine of its runs."""
    done = threading.Event()
    scheduler = BackgroundScheduler(timezone=UTC, logger=scheduler_logger())
    scheduler.add_job(
        lambda: done.wait(1.0), "interval", seconds=0.1, max_instances=1, coalesce=True
    )
    scheduler.start()
    try:
        time.sleep(1.2)
    finally:
        done.set()
        scheduler.shutdown(wait=True)


def skips(records) -> list[logging.LogRecord]:
    return [r for r in records if "maximum number of running instances" in r.getMessage()]


def test_a_run_skipped_because_the_previous_one_is_still_going_is_debug_not_a_warning(caplog):
    caplog.set_level(logging.DEBUG, logger="apscheduler")
    run_an_overlapping_job()
    assert skips(caplog.records), "the job was skipped while running"
    assert {r.levelname for r in skips(caplog.records)} == {"DEBUG"}

    caplog.clear()
    caplog.set_level(logging.INFO, logger="apscheduler")
    run_an_overlapping_job()
    assert any(r.name == "apscheduler.scheduler" for r in caplog.records), "the scheduler logs"
    assert skips(caplog.records) == []


def test_misfires_and_other_warnings_keep_their_level(caplog):
    caplog.set_level(logging.INFO, logger="apscheduler")
    scheduler_logger().warning('Run time of job "%s" was missed by %s', "collect", "0:00:05")
    scheduler_logger().warning("something else went wrong")
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING"]
