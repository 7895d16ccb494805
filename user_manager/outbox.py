"""Transactional outbox: gRPC calls to the Data Collector that must happen because of a commit.

Deleting a user must delete their interests in the Data Collector, even if
the collector is down at that moment. So the delete writes an outbox row in
its own transaction (:func:`enqueue`); right after the commit the request
delivers its own row (:func:`deliver`), so normally the interests are gone
when ``DELETE`` answers; whatever fails is retried by the relay
(:func:`relay`, run by ``user_manager.worker``) with exponential backoff until
the collector acknowledges it, across restarts of either service.

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
from typing import Any

from flask import current_app
from sqlalchemy import Exists, exists, func, select
from sqlalchemy.exc import SQLAlchemyError

from common.grpc_client import GrpcPeer, PeerUnavailableError
from common.rpc import flight_tracker_pb2
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


def pending_delete_for(*, email: str) -> Exists:
    """Build the SQL condition "a ``DeleteUserInterests`` for this email is undelivered"."""
    return exists().where(
        OutboxMessage.method == DELETE_USER_INTERESTS,
        OutboxMessage.payload["email"].astext == email,
    )


def enqueue_delete_user_interests(*, email: str) -> int:
    """Record, in the current transaction, that the user's interests must go; return the row id."""
    handoff = timedelta(seconds=current_app.config["OUTBOX_HANDOFF_SECONDS"])
    message = OutboxMessage(
        method=DELETE_USER_INTERESTS,
        payload={"email": email},
        attempts=0,
        next_attempt_at=func.now() + handoff,
    )
    db.session.add(message)
    db.session.flush()
    return message.id


def deliver(*, message_ids: tuple[int, ...], peer: GrpcPeer) -> None:
    """Deliver the messages this request just committed; failures are left to the relay.

    ``FOR UPDATE`` (not ``SKIP LOCKED``): if the relay holds a row, wait for it,
    so that when this returns the message is either delivered or scheduled.
    Never raises: the change has committed, and the relay finishes the job.
    """
    for message_id in message_ids:
        try:
            message = db.session.scalar(
                select(OutboxMessage).where(OutboxMessage.id == message_id).with_for_update()
            )
            if message is not None:
                _attempt(message, peer)
            db.session.commit()
        except SQLAlchemyError:
            log.exception("outbox message %d: could not record the attempt", message_id)
            db.session.rollback()


def relay(*, peer: GrpcPeer, max_messages: int) -> int:
    """Deliver due messages one transaction each, oldest first; return how many were delivered.

    Stops early when the peer is unavailable: the rest would fail the same way,
    and they keep their place for the next run.
    """
    delivered = 0
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
    return delivered


def backlog() -> Backlog:
    """Count undelivered messages and the age of the oldest."""
    count, oldest = db.session.execute(
        select(
            func.count(OutboxMessage.id),
            func.extract("epoch", func.now() - func.min(OutboxMessage.created_at)),
        )
    ).one()
    return Backlog(count=count, oldest_seconds=None if oldest is None else float(oldest))


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


def _attempt(message: OutboxMessage, peer: GrpcPeer) -> Result:
    """Send one locked message; delete it when acknowledged, else schedule a retry."""
    import grpc  # loaded by the peer's first call anyway; not at import (module docstring)

    try:
        _send(message.method, message.payload, peer)
    except PeerUnavailableError as error:
        result, reason = Result.PEER_UNAVAILABLE, str(error)
    except grpc.RpcError as error:
        result, reason = Result.FAILED, f"{error.code()}: {error.details()}"
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


def _send(method: str, payload: dict[str, Any], peer: GrpcPeer) -> None:
    if method != DELETE_USER_INTERESTS:
        raise ValueError(f"unknown outbox method {method!r}")
    reply = peer.call(method, flight_tracker_pb2.UserRequest(email=payload["email"]))
    if not reply.success:
        raise RuntimeError("the Data Collector answered success=false")
