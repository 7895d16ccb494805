"""The Alert System's background work (role ``worker``): the consumer, the relay, the reaper.

The skeleton runs, on threads of the worker process: the consumer of
``to-alert-system`` (:func:`subscriptions`, handled by
:func:`alert_system.services.handle_events`), the outbox relay that publishes
what the handler enqueued, and the jobs (:func:`jobs`): the reaper of
removed interests. Every replica runs all three: the durable consumer gives
each message to one replica, the relay claims outbox rows with ``SKIP
LOCKED``, and the reaper's deletes are harmless when repeated.
"""

from flask import Flask

from alert_system import services
from alert_system.metrics import PIPELINE
from common.broker.consumer import Subscription
from common.process.scheduling import PeriodicJob


def subscriptions(app: Flask) -> list[Subscription]:
    """Return what this service consumes: the collector's events, evaluated in batches."""
    return [
        Subscription(consumed.subject, consumed.durable, services.handle_events)
        for consumed in PIPELINE.consumes
    ]


def jobs(app: Flask) -> list[PeriodicJob]:
    """Return the periodic jobs, each run in ``app``'s context."""
    days = app.config["REMOVED_INTEREST_RETENTION_DAYS"]
    return [
        PeriodicJob(
            "removed-interest-reaper",
            lambda: services.reap_removed_interests(older_than_days=days),
            app.config["REMOVED_INTEREST_REAPER_INTERVAL_SECONDS"],
        )
    ]
