"""The Alert Notifier's background work (role ``worker``): the consumers and the outbox relay.

The skeleton runs, on threads of the worker process: a consumer of
``to-notifier`` and one of ``sla-breach`` (:func:`subscriptions`, handled by
:func:`alert_notifier.services.send_emails`), and the outbox relay that
publishes the receipts the handler enqueued. Every replica runs them: the
durable consumers give each message to one replica.
"""

import functools

from flask import Flask

from alert_notifier import services
from alert_notifier.metrics import PIPELINE
from common.broker.consumer import Subscription
from common.mail import SmtpSender


def subscriptions(app: Flask) -> list[Subscription]:
    """Return what this service consumes: crossings and SLA breaches, mailed in batches."""
    handle = functools.partial(services.send_emails, sender=SmtpSender(app.config["SMTP_SERVER"]))
    return [
        Subscription(consumed.subject, consumed.durable, handle) for consumed in PIPELINE.consumes
    ]
