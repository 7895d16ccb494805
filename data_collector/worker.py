"""The Data Collector's background worker: OpenSky collection on a schedule, in its own process.

``python -m data_collector`` starts it beside gunicorn and the gRPC server
(role ``worker``); ``python -m data_collector.worker --once`` runs one cycle
in the foreground and prints what it did (ops and tests).

Two APScheduler jobs share one app context per run: the periodic cycle every
``COLLECT_INTERVAL_MINUTES`` (also once at start, so a restarted worker
catches up), and a poll every ``COLLECT_POLL_SECONDS`` that runs a cycle when
``POST /interests`` (from any web worker of any replica) asked for one.
Every replica runs this worker; the advisory lock in ``collection.py`` lets
only one cycle run at a time.
"""

import argparse
import dataclasses
import json
import logging
import signal
import sys
from datetime import UTC, datetime

from apscheduler.schedulers.blocking import BlockingScheduler

from common.logs import configure_logging
from data_collector import collection
from data_collector.app import create_app

log = logging.getLogger(__name__)


class Worker:
    """One worker process: the app, the OpenSky client (and its token cache), the jobs."""

    def __init__(self):
        self.app = create_app()
        self.client = collection.client_from_config(self.app.config)
        configure_logging(self.app.config["LOG_LEVEL"])
        if self.client.anonymous:
            log.warning(
                "OPENSKY_CLIENT_ID/OPENSKY_CLIENT_SECRET are empty or placeholders: "
                "collecting anonymously (400 credits a day)"
            )

    def cycle(self) -> collection.CycleResult:
        """Run one collection cycle now (skipped if another process is running one)."""
        with self.app.app_context():
            try:
                return collection.run_cycle(client=self.client)
            except Exception:
                log.exception("collection cycle failed")
                return collection.CycleResult("failed")

    def poll(self) -> None:
        """Run a cycle if one was asked for."""
        with self.app.app_context():
            try:
                pending = collection.collection_pending()
            except Exception as error:
                log.warning("cannot check for requested cycles: %s", error)
                return
        if pending:
            self.cycle()

    def run_forever(self) -> None:
        """Schedule the jobs and block until SIGTERM or SIGINT."""
        config = self.app.config
        scheduler = BlockingScheduler(
            timezone=UTC,
            # A late or overlapping run is merged into one; the lock does the rest.
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        scheduler.add_job(
            self.cycle,
            "interval",
            minutes=config["COLLECT_INTERVAL_MINUTES"],
            next_run_time=datetime.now(UTC),
            id="collect",
        )
        scheduler.add_job(
            self.poll, "interval", seconds=config["COLLECT_POLL_SECONDS"], id="requested"
        )

        def stop(signum, _frame):
            log.info("worker received %s, stopping", signal.Signals(signum).name)
            scheduler.shutdown(wait=False)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.info(
            "worker started: a cycle every %d minutes, requests polled every %.1fs",
            config["COLLECT_INTERVAL_MINUTES"],
            config["COLLECT_POLL_SECONDS"],
        )
        scheduler.start()


def main(argv: list[str] | None = None) -> int:
    """Command line: run the scheduler, or one cycle with ``--once``."""
    parser = argparse.ArgumentParser(prog="python -m data_collector.worker")
    parser.add_argument("--once", action="store_true", help="run one cycle now and exit")
    args = parser.parse_args(argv)
    worker = Worker()
    if args.once:
        result = worker.cycle()
        print(json.dumps(dataclasses.asdict(result)))
        return 0 if result.outcome in {"done", "busy", "waiting"} else 1
    worker.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
