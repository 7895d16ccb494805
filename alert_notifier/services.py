"""Alert Notifier logic: send each crossing's (or breach's) email once, and say it was sent.

The worker hands :func:`send_emails` each batch of ``to-notifier`` (and
``sla-breach``) messages. Sending one email is mostly waiting, on the
database and then on the mail server, so the batch is shared among
``SMTP_CONNECTIONS`` threads, each with its own connection to the mail
server (common.mail) and its own database session, whose waits overlap.
Each message, in its own transaction:

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
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from flask import current_app
from pydantic import ValidationError
from sqlalchemy import bindparam, func, select
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
from alert_notifier.models import SentEmail, db
from common.broker.consumer import DONE, Delivery, Outcome, Park, Retry
from common.broker.messages import NOTIFIER_MESSAGE, Crossing, Emailed, as_message
from common.broker.observability import PROBE_TIMEOUT_SECONDS, pipeline_facts
from common.broker.outbox import ENQUEUE_ONE, enqueue_params
from common.broker.streams import TO_DATA_COLLECTOR
from common.db.batch import Batch
from common.mail import PERMANENT, TEMPORARY, SendError, SmtpBatch, SmtpSender
from common.timeutil import isoformat_utc, utc_now

log = logging.getLogger(__name__)

# Each statement below is sent as it is written, in one round trip: an email costs three
# (its record, its confirmation, the commit) besides the mail server's.
RECORD = Batch.of(
    statement=insert(SentEmail)
    .values(
        crossing_id=bindparam("key"),
        kind=bindparam("kind"),
        recipient=bindparam("recipient"),
        sent_at=bindparam("sent_at"),
    )
    .on_conflict_do_nothing(index_elements=["crossing_id"])
    .returning(SentEmail.crossing_id)
)
_STAMP = (
    f"UPDATE {SentEmail.__tablename__} SET sent_at = %(sent_at)s "
    "WHERE crossing_id = %(key)s RETURNING crossing_id"
)
CONFIRM = Batch.of(_STAMP)
CONFIRM_WITH_RECEIPT = Batch.of(*ENQUEUE_ONE, _STAMP)


def send_emails(deliveries: Sequence[Delivery], *, sender: SmtpSender) -> list[Outcome]:
    """Send the batch's emails on ``SMTP_CONNECTIONS`` threads; return one outcome per message.

    Two deliveries of one crossing in a batch meet on its record, as two
    replicas would: the second waits for the first's outcome.
    """
    app = current_app._get_current_object()
    batch = _SharedBatch(deliveries)

    def send_share() -> None:
        with app.app_context(), sender.batch() as mail:
            for index, delivery in batch.pending():
                outcome = send_one(delivery, mail, email_from=app.config["ALERT_EMAIL_FROM"])
                batch.settle(index, outcome)

    threads = min(app.config["SMTP_CONNECTIONS"], len(deliveries))
    with ThreadPoolExecutor(threads, thread_name_prefix="email-sender") as pool:
        for share in [pool.submit(send_share) for _ in range(threads)]:
            share.result()  # a thread that raised fails the batch, which is delivered again
    return batch.outcomes


class _SharedBatch:
    """A batch the sender threads take messages from, one at a time, and settle."""

    def __init__(self, deliveries: Sequence[Delivery]):
        self.outcomes: list[Outcome] = [Retry("not handled")] * len(deliveries)
        self._next = enumerate(deliveries)
        self._server_down: Retry | None = None
        self._lock = threading.Lock()

    def pending(self) -> Iterator[tuple[int, Delivery]]:
        """Yield the messages still to send; once the server is down, settle them alike."""
        while True:
            with self._lock:
                index, delivery = next(self._next, (None, None))
                server_down = self._server_down
            if delivery is None:
                return
            if server_down is not None:
                self.outcomes[index] = server_down  # they would fail alike: they wait as long
                continue
            yield index, delivery

    def settle(self, index: int, outcome: Outcome) -> None:
        """Note a message's outcome; a failure not of its own holds up the rest."""
        self.outcomes[index] = outcome
        if isinstance(outcome, Retry) and not outcome.because_of_message:
            with self._lock:
                self._server_down = self._server_down or outcome


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
    params = {"key": key, "kind": kind, "recipient": recipient, "sent_at": utc_now()}
    return RECORD.run(db, params, commit=False) is not None


def _confirm(key: str, message, sent_at) -> None:
    """Stamp the record with the acceptance time; enqueue the collector's receipt."""
    if isinstance(message, Crossing):
        receipt = Emailed(interest_id=message.interest_id, crossing_id=key, sent_at=sent_at)
        params = enqueue_params(as_message(TO_DATA_COLLECTOR, receipt))
        CONFIRM_WITH_RECEIPT.run(db, {**params, "key": key, "sent_at": sent_at}, commit=False)
    else:
        CONFIRM.run(db, {"key": key, "sent_at": sent_at}, commit=False)


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
