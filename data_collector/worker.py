"""The Data Collector's background worker: OpenSky collection on a schedule (role ``worker``).

``python -m data_collector`` runs its jobs (:func:`jobs`) on a scheduler
thread beside the gRPC server; ``python -m data_collector.worker --once`` runs
one cycle in the foreground and prints what it did (ops and tests).

Three jobs (common.process.scheduling): the periodic cycle every
``COLLECT_INTERVAL_MINUTES`` (also once at start, so a restarted worker
catches up); a poll every ``COLLECT_POLL_SECONDS`` that runs a cycle when
``POST /interests`` (from any web worker of any replica) asked for one or
when a failed range's retry is due (``data_collector.collection.retries``); and,
every ``INTEREST_RECONCILE_MINUTES``, the removal of interests whose user the
User Manager no longer knows (``--reconcile`` runs it once).
Every replica runs this worker; the advisory lock in ``collection/lock.py`` lets
only one cycle run at a time, and a periodic cycle is skipped when any
replica started one within the period.

Beside the jobs, the skeleton runs the outbox relay (what cycles and
requests enqueued for ``to-alert-system``) and the consumer of
``to-data-collector`` (:func:`subscriptions`: the alert states and email
receipts, :func:`data_collector.alerts.handle_reports`).
"""

import argparse
import dataclasses
import json
import logging
import sys
import time

from flask import Flask

from common.broker.consumer import Subscription
from common.process.scheduling import PeriodicJob
from data_collector import alerts, interests, services
from data_collector.app import create_app
from data_collector.collection import cycle as collection
from data_collector.collection.opensky import OpenSkyClient
from data_collector.config import Settings
from data_collector.metrics import COLLECTION_CYCLES, FLIGHTS_STORED, LAST_CYCLE_SECONDS, PIPELINE

log = logging.getLogger(__name__)


def collect(client: OpenSkyClient, *, periodic: bool = False) -> collection.CycleResult:
    """Run one collection cycle now (skipped if another process is running one)."""
    started = time.monotonic()
    try:
        result = collection.run_cycle(client=client, periodic=periodic)
    except Exception:
        log.exception("collection cycle failed")
        result = collection.CycleResult("failed")
    if result.outcome != "busy":
        LAST_CYCLE_SECONDS.set(time.monotonic() - started)
    FLIGHTS_STORED.inc(result.flights)
    COLLECTION_CYCLES.labels(result.outcome).inc()
    return result


def collect_if_requested(client: OpenSkyClient) -> None:
    """Run a cycle if one was asked for or a retry is due, and OpenSky may be asked now."""
    if collection.collection_pending():
        collect(client)


def reconcile_interests(
    max_share: float = interests.RECONCILE_MAX_SHARE,
) -> interests.Reconciliation:
    """Remove the interests of users the User Manager no longer knows (orphans of a race)."""
    result = interests.reconcile_interests(directory=services.user_manager(), max_share=max_share)
    if result.removed:
        log.warning("interest reconciliation removed %d orphaned interests", result.removed)
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line: run one job now, ``--once`` (a cycle) or ``--reconcile``."""
    parser = argparse.ArgumentParser(prog="python -m data_collector.worker")
    once = parser.add_mutually_exclusive_group(required=True)
    once.add_argument("--once", action="store_true", help="run one cycle now and exit")
    once.add_argument(
        "--reconcile", action="store_true", help="reconcile interests with users now and exit"
    )
    parser.add_argument(
        "--max-share",
        type=float,
        default=interests.RECONCILE_MAX_SHARE,
        help="with --reconcile: remove nothing if the User Manager does not know more than "
        "this share of the users (default %(default)s; 1 removes whatever it does not know)",
    )
    args = parser.parse_args(argv)
    app = create_app(process="worker")
    if args.reconcile:
        with app.app_context():
            result = reconcile_interests(max_share=args.max_share)
        print(json.dumps(dataclasses.asdict(result)))
        return 0
    for warning in Settings().startup_warnings():
        log.warning(warning)
    with app.app_context():
        result = collect(collection.client_from_config(app.config))
    print(json.dumps(dataclasses.asdict(result)))
    return 0 if result.outcome in {"done", "busy", "waiting"} else 1


def jobs(app: Flask) -> list[PeriodicJob]:
    """Return the jobs, each run in ``app``'s context (the launcher starts and stops them)."""
    # One client per process: it caches the OAuth2 token between cycles.
    client = collection.client_from_config(app.config)
    cycle_seconds = app.config["COLLECT_INTERVAL_MINUTES"] * 60
    poll_seconds = app.config["COLLECT_POLL_SECONDS"]
    reconcile_seconds = app.config["INTEREST_RECONCILE_MINUTES"] * 60
    return [
        PeriodicJob("collect", lambda: collect(client, periodic=True), cycle_seconds),
        PeriodicJob("requested", lambda: collect_if_requested(client), poll_seconds),
        PeriodicJob("reconcile-interests", reconcile_interests, reconcile_seconds),
    ]


def subscriptions(app: Flask) -> list[Subscription]:
    """Return what this service consumes: the alert services' reports, applied in batches."""
    return [
        Subscription(consumed.subject, consumed.durable, alerts.handle_reports)
        for consumed in PIPELINE.consumes
    ]


if __name__ == "__main__":
    sys.exit(main())
