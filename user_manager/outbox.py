"""Transactional outbox: gRPC calls to the Data Collector that must happen because of a commit.

Deleting a user must delete their interests in the Data Collector, even if
the collector is down at that moment. So the delete writes an outbox row in
its own transaction (``services.DELETE_USER``); right after the commit the
request delivers it itself (:func:`deliver_interest_deletion`), so normally
the interests are gone when ``DELETE`` answers; whatever fails is retried by
the relay (:class:`Relay`, run by ``user_manager.worker``) with exponential
backoff until the collector acknowledges it, across restarts of either
service, and at once when the collector answers again after an outage.
While a deletion is pending, a new account with that email must wait
(``services.CREATE_USER`` refuses it), or the late delivery would delete
the new account's interests; so an email has at most one pending deletion.

A row is locked (``FOR UPDATE``) while it is being delivered and deleted when
the peer acknowledges it, so no two processes deliver it at the same time;
the relay uses ``SKIP LOCKED`` so several replicas share the backlog. The
calls are idempotent (``DeleteUserInterests`` twice deletes nothing the
second time), which makes this at-least-once delivery safe.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError

from common.rpc.peers import InterestsPeer, PeerError
from user_manager.models import OutboxMessage, db

log = logging.getLogger(__name__)

DELETE_USER_INTERESTS = "DeleteUserInterests"
# First retry after one second, doubling up to OUTBOX_MAX_BACKOFF_SECONDS.
BACKOFF_BASE_SECONDS = 1.0
# last_error is for humans reading the table; a gRPC status line fits easily.
LAST_ERROR_MAX_LENGTH = 1000


class Result(Enum):
    """What one delivery attempt achieved."""

    DELIVERED = "delivered"
    PEER_UNAVAILABLE = "peer unavailable"
    FAILED = "failed"


@dataclass(frozen=True)
class Backlog:
    """Undelivered messages: how many, and how long the oldest has waited."""

    count: int
    oldest_seconds: float | None


def handoff() -> timedelta:
    """Return the delay before the relay may try a message its request is delivering."""
    return timedelta(seconds=current_app.config["OUTBOX_HANDOFF_SECONDS"])


def deliver_interest_deletion(*, email: str, peer: InterestsPeer) -> None:
    """Deliver the deletion of ``email``'s interests just committed; a failure is the relay's.

    ``FOR UPDATE`` (not ``SKIP LOCKED``): if the relay holds the row, wait for
    it, so that when this returns the message is either delivered or
    scheduled. Never raises: the change has committed, and the relay
    finishes the job.
    """
    try:
        messages = db.session.scalars(
            select(OutboxMessage)
            .where(
                OutboxMessage.method == DELETE_USER_INTERESTS,
                OutboxMessage.payload["email"].astext == email,
            )
            .with_for_update()
        ).all()
        for message in messages:
            _attempt(message, peer)
        db.session.commit()
    except SQLAlchemyError:
        log.exception("outbox: could not record the attempt to delete a user's interests")
        db.session.rollback()


class Relay:
    """The relay of one worker process: due messages at every run, all of them after an outage.

    Each failed message waits out its own backoff (1 s doubling up to
    ``OUTBOX_MAX_BACKOFF_SECONDS``), so a peer that is down for long is not
    hammered. But once it is back, the messages backed off during the outage
    would wait up to that ceiling more. So a relay whose last delivery found
    the peer unavailable asks the peer's health service at its next runs (one
    cheap call per run, instead of a delivery that would fail the same way),
    and as soon as the peer serves, makes every waiting message due and
    delivers it.
    """

    def __init__(self, *, peer: InterestsPeer, max_messages: int):
        self.peer = peer
        self.max_messages = max_messages
        self.peer_unavailable = False

    def run(self) -> int:
        """Deliver what is due (after an outage: everything waiting); return how many."""
        if self.peer_unavailable:
            if not self.peer.is_serving(timeout=self.peer.timeout):
                return 0
            resumed = make_waiting_due()
            if resumed:
                log.info("the Data Collector answers again: %d waiting call(s) due now", resumed)
            self.peer_unavailable = False
        delivered, result = _deliver_due(peer=self.peer, max_messages=self.max_messages)
        self.peer_unavailable = result is Result.PEER_UNAVAILABLE
        return delivered


def make_waiting_due() -> int:
    """Make every message that waits out a backoff due now; return how many.

    Fresh messages (no attempt yet) are left alone: their request is delivering them.
    """
    count = db.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.next_attempt_at > func.now(), OutboxMessage.attempts > 0)
        .values(next_attempt_at=func.now())
    ).rowcount
    db.session.commit()
    return count


def _deliver_due(*, peer: InterestsPeer, max_messages: int) -> tuple[int, Result | None]:
    """Deliver due messages one transaction each, oldest first.

    Return how many were delivered, and the result of the last attempt (None
    when nothing was due). Stops early when the peer is unavailable: the rest
    would fail the same way, and they keep their place for the next run.
    """
    delivered, result = 0, None
    for _ in range(max_messages):
        message = db.session.scalar(
            select(OutboxMessage)
            .where(OutboxMessage.next_attempt_at <= func.now())
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if message is None:
            db.session.commit()
            break
        result = _attempt(message, peer)
        db.session.commit()
        if result is Result.DELIVERED:
            delivered += 1
        elif result is Result.PEER_UNAVAILABLE:
            break
    if delivered:
        log.info("outbox relay delivered %d message(s)", delivered)
    return delivered, result


def backlog() -> Backlog:
    """Count undelivered messages and the age of the oldest."""
    count, oldest = db.session.execute(
        select(
            func.count(OutboxMessage.id),
            func.extract("epoch", func.now() - func.min(OutboxMessage.created_at)),
        )
    ).one()
    return Backlog(count=count, oldest_seconds=None if oldest is None else float(oldest))


def health_facts() -> dict:
    """Return the ``outbox`` part of ``/health``: undelivered calls and the oldest one's age."""
    current = backlog()
    oldest = current.oldest_seconds
    return {
        "backlog": current.count,
        "oldest_pending_seconds": None if oldest is None else round(oldest, 1),
    }


def log_backlog() -> None:
    """Warn when messages are waiting, so an outage of the peer shows in the logs."""
    current = backlog()
    db.session.commit()
    if current.count:
        log.warning(
            "outbox backlog: %d undelivered call(s) to the Data Collector, oldest %.0fs old",
            current.count,
            current.oldest_seconds or 0.0,
        )


def _attempt(message: OutboxMessage, peer: InterestsPeer) -> Result:
    """Send one locked message; delete it when acknowledged, else schedule a retry."""
    try:
        _send(message, peer)
    except PeerError as error:
        result = Result.PEER_UNAVAILABLE if error.unavailable else Result.FAILED
        reason = str(error)
    except Exception as error:
        log.exception("outbox message %d: unexpected error", message.id)
        result, reason = Result.FAILED, repr(error)
    else:
        db.session.delete(message)
        return Result.DELIVERED

    message.attempts += 1
    delay = min(
        BACKOFF_BASE_SECONDS * 2 ** min(message.attempts - 1, 30),
        current_app.config["OUTBOX_MAX_BACKOFF_SECONDS"],
    )
    message.next_attempt_at = func.now() + timedelta(seconds=delay)
    message.last_error = reason[:LAST_ERROR_MAX_LENGTH]
    log.warning(
        "outbox message %d (%s) attempt %d failed (%s); retrying in %.1fs",
        message.id,
        message.method,
        message.attempts,
        reason,
        delay,
    )
    return result


def _send(message: OutboxMessage, peer: InterestsPeer) -> None:
    if message.method != DELETE_USER_INTERESTS:
        raise ValueError(f"unknown outbox method {message.method!r}")
    peer.delete_user_interests(message.payload["email"])
