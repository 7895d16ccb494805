"""The Data Collector's background worker: OpenSky collection on a schedule, in its own process.

``python -m data_collector`` starts it beside gunicorn and the gRPC server
(role ``worker``); ``python -m data_collector.worker --once`` runs one cycle
in the foreground and prints what it did (ops and tests).

Two jobs (common.scheduling): the periodic cycle every
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
import sys

from common.scheduling import PeriodicJob, run_periodic_jobs
from data_collector import collection
from data_collector.app import create_app
from data_collector.config import Config, startup_warnings
from data_collector.opensky import OpenSkyClient

log = logging.getLogger(__name__)


def collect(client: OpenSkyClient) -> collection.CycleResult:
    """Run one collection cycle now (skipped if another process is running one)."""
    try:
        return collection.run_cycle(client=client)
    except Exception:
        log.exception("collection cycle failed")
        return collection.CycleResult("failed")


def collect_if_requested(client: OpenSkyClient) -> None:
    """Run a cycle if one was asked for (a new interest) and OpenSky may be asked now."""
    if collection.collection_pending():
        collect(client)


def main(argv: list[str] | None = None) -> int:
    """Command line: run the scheduler, or one cycle with ``--once``."""
    parser = argparse.ArgumentParser(prog="python -m data_collector.worker")
    parser.add_argument("--once", action="store_true", help="run one cycle now and exit")
    args = parser.parse_args(argv)
    app = create_app(migrations=False)
    # One client per process: it caches the OAuth2 token between cycles.
    client = collection.client_from_config(app.config)
    if args.once:
        for warning in startup_warnings(Config()):
            log.warning(warning)
        with app.app_context():
            result = collect(client)
        print(json.dumps(dataclasses.asdict(result)))
        return 0 if result.outcome in {"done", "busy", "waiting"} else 1
    cycle_seconds = app.config["COLLECT_INTERVAL_MINUTES"] * 60
    poll_seconds = app.config["COLLECT_POLL_SECONDS"]
    run_periodic_jobs(
        app,
        [
            PeriodicJob("collect", lambda: collect(client), cycle_seconds),
            PeriodicJob("requested", lambda: collect_if_requested(client), poll_seconds),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
