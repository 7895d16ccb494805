"""Alert Notifier logic: send each crossing's (or breach's) email once, and say it was sent.

The worker hands :func:`send_emails` each batch of ``to-notifier`` (and
``sla-breach``) messages, with one connection to the mail server for the
batch (common.mail). Each message, in its own transaction:

1. records the email in ``sent_emails`` under the crossing's id; a record
   already there means it was sent (a redelivery): nothing more to do. A
   replica sending the same crossing at this moment holds the record, and
   this one waits for its outcome;
2. hands the email to the mail server;
3. enqueues the ``emailed`` receipt for the collector (crossings only);
4. commits; the consumer acknowledges the message afterwards.

A failure rolls the record back, so the email is tried again: after a
delay when the mail server is down or answers 4xx (all of the batch's
remaining emails, when it is down), and never again when it refuses this
email with a 5xx (parked in the dead-letter stream, shown by ``/health``).
An email is sent twice only if the process dies, or the database fails,
between the mail server's acceptance and the commit: a few milliseconds.
"""

import logging
from collections.abc import Sequence
from datetime import timedelta

from flask import current_app
from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError

from alert_notifier.emails import breach_email, crossing_email
from alert_notifier.metrics import (
    EMAIL_LATENCY,
    EMAILS_ALREADY_SENT,
    EMAILS_FAILED,
    EMAILS_SENT,
    PIPELINE,
)
from alert_notifier.models import OUTBOX, SentEmail, db
from common.broker.consumer import DONE, Delivery, Outcome, Park, Retry
from common.broker.messages import NOTIFIER_MESSAGE, Crossing, Emailed, as_message
from common.broker.observability import PROBE_TIMEOUT_SECONDS, pipeline_facts
from common.broker.outbox import enqueue
from common.broker.streams import TO_DATA_COLLECTOR
from common.mail import PERMANENT, TEMPORARY, SendError, SmtpBatch, SmtpSender
from common.timeutil import isoformat_utc, utc_now

log = logging.getLogger(__name__)


def send_emails(deliveries: Sequence[Delivery], *, sender: SmtpSender) -> list[Outcome]:
    """Send the batch's emails over one connection; return one outcome per message."""
    email_from = current_app.config["ALERT_EMAIL_FROM"]
    outcomes: list[Outcome] = []
    server_down: Retry | None = None
    with sender.batch() as mail:
        for delivery in deliveries:
            if server_down is not None:
                outcomes.append(server_down)
                continue
            outcome = send_one(delivery, mail, email_from=email_from)
            if isinstance(outcome, Retry) and not outcome.because_of_message:
                server_down = outcome  # the rest would fail alike: they wait as long
            outcomes.append(outcome)
    return outcomes


def send_one(delivery: Delivery, mail: SmtpBatch, *, email_from: str) -> Outcome:
    """Send one message's email unless it was sent already; return what became of it."""
    try:
        message = NOTIFIER_MESSAGE.validate_python(delivery.payload)
    except ValidationError as error:
        reason = error.errors(include_url=False)[0]
        return Park(f"not a notifier message: {reason['loc']} {reason['msg']}")
    try:
        if isinstance(message, Crossing):
            key, recipient = message.crossing_id, message.email
            email = crossing_email(message, sender=email_from)
        else:
            key, recipient = message.breach_id, message.to
            email = breach_email(message, sender=email_from)
    except ValueError as error:
        # A header the mail library refuses (a line break in it): the message can never be
        # sent, and raising would hold up the rest of its batch at every delivery.
        return Park(f"its email cannot be written: {error}")
    try:
        if not _record(key, message.kind, recipient):
            db.session.rollback()
            EMAILS_ALREADY_SENT.labels(message.kind).inc()
            return DONE
        mail.send(email)
    except SendError as failure:
        db.session.rollback()
        EMAILS_FAILED.labels(message.kind, failure.kind).inc()
        log.warning("email %s not sent (%s): %s", key, failure.kind, failure)
        if failure.kind == PERMANENT:
            return Park(failure.reason)
        return Retry(failure.reason, because_of_message=failure.kind == TEMPORARY)
    except SQLAlchemyError as error:
        db.session.rollback()
        return Retry(f"the database failed: {error}")
    sent_at = utc_now()
    try:
        _confirm(key, message, sent_at)
        db.session.commit()
    except SQLAlchemyError as error:
        db.session.rollback()
        # The only way to a second email: the server has this one, our record is gone.
        log.error("email %s sent but not recorded (%s); it may be sent again", key, error)
        return Retry(f"the database failed after sending: {error}")
    EMAILS_SENT.labels(message.kind).inc()
    if isinstance(message, Crossing) and message.committed_at is not None:
        EMAIL_LATENCY.observe((sent_at - message.committed_at).total_seconds())
    return DONE


def _record(key: str, kind: str, recipient: str) -> bool:
    """Insert the email's record; return False when it exists (the email was sent)."""
    inserted = db.session.execute(
        insert(SentEmail)
        .values(crossing_id=key, kind=kind, recipient=recipient, sent_at=utc_now())
        .on_conflict_do_nothing(index_elements=["crossing_id"])
        .returning(SentEmail.crossing_id)
    ).first()
    return inserted is not None


def _confirm(key: str, message, sent_at) -> None:
    """Stamp the record with the acceptance time; enqueue the collector's receipt."""
    db.session.execute(
        update(SentEmail).where(SentEmail.crossing_id == key).values(sent_at=sent_at)
    )
    if isinstance(message, Crossing):
        receipt = Emailed(interest_id=message.interest_id, crossing_id=key, sent_at=sent_at)
        enqueue(db, OUTBOX, [as_message(TO_DATA_COLLECTOR, receipt)])


def health_facts() -> dict:
    """Return the ``emails`` part of ``/health``: the mail server, what was sent, the pipeline."""
    server = current_app.config["SMTP_SERVER"]
    reachable = SmtpSender(server).is_reachable(timeout=PROBE_TIMEOUT_SECONDS)
    day_ago = utc_now() - timedelta(days=1)
    sent_last_day = db.session.scalar(select(func.count()).where(SentEmail.sent_at > day_ago))
    last_sent_at = db.session.scalar(select(func.max(SentEmail.sent_at)))
    return {
        "smtp": {"address": server.address, "status": "ok" if reachable else "unavailable"},
        "sent_last_day": sent_last_day,
        "last_sent_at": isoformat_utc(last_sent_at),
        **pipeline_facts(PIPELINE),
    }
