"""Which airports each user follows: add, remove, list, and clean up after deleted users."""

import logging
from datetime import timedelta

from sqlalchemy import bindparam, delete, exists, select
from sqlalchemy.dialects.postgresql import insert

from common.db.connections import autocommit_statements
from common.emails import normalize_email
from common.rpc.peers import PeerError, UserDirectory
from common.timeutil import utc_now
from data_collector.cycle_requests import ask_for_cycle
from data_collector.models import UserInterest, db

log = logging.getLogger(__name__)

INTERESTS = UserInterest.__table__
# Reconciliation leaves interests younger than this alone: far longer than any
# POST /interests takes between its user check and its insert (at most the gRPC
# deadline plus the request timeout, about half a minute).
RECONCILE_GRACE = timedelta(minutes=10)
# Users per query; each costs one CheckUserExists call (a primary-key lookup).
RECONCILE_BATCH = 500

# POST /interests in one statement (built once): store the interest unless it exists, and
# for a new one ask the worker for a collection cycle, so both happen or neither.
_new_interest = (
    insert(INTERESTS)
    .values(
        user_email=bindparam("user_email"),
        airport_code=bindparam("airport_code"),
        created_at=bindparam("created_at"),
    )
    .on_conflict_do_nothing(constraint="uq_user_interests_user_airport")
    .returning(INTERESTS.c.id)
    .cte("new_interest")
)
_requested = ask_for_cycle(when=exists(select(_new_interest.c.id))).cte("requested")
ADD_INTEREST = select(exists(select(_new_interest.c.id)).label("added")).add_cte(_requested)


def add_interest(*, email: str, airport_code: str) -> bool:
    """Store the interest once; return whether it is new.

    A new interest also asks the worker for a collection cycle: the request
    answers at once, and the airport's flights start arriving within
    ``COLLECT_POLL_SECONDS`` plus the time OpenSky takes. One statement is
    atomic by itself, so it runs without BEGIN and COMMIT round trips.
    """
    autocommit_statements(db)
    added = (
        db.session.connection()
        .execute(
            ADD_INTEREST,
            {"user_email": email, "airport_code": airport_code, "created_at": utc_now()},
        )
        .scalar_one()
    )
    # Sends nothing in autocommit; commits if the statement joined an open transaction.
    db.session.commit()
    return added


def remove_interest(*, email: str, airport_code: str) -> bool:
    """Delete one interest; return whether it existed."""
    deleted = db.session.execute(
        delete(UserInterest)
        .where(UserInterest.user_email == email, UserInterest.airport_code == airport_code)
        .returning(UserInterest.id)
    ).first()
    db.session.commit()
    return deleted is not None


def list_interests(*, email: str) -> list[UserInterest]:
    """Return the user's interests ordered by airport code."""
    query = (
        select(UserInterest)
        .where(UserInterest.user_email == email)
        .order_by(UserInterest.airport_code)
    )
    return list(db.session.scalars(query))


def delete_user_interests(*, email: str) -> int:
    """Delete every interest of the user (idempotent); return how many went."""
    try:
        normalized = normalize_email(email)
    except ValueError:
        return 0
    result = db.session.execute(delete(UserInterest).where(UserInterest.user_email == normalized))
    db.session.commit()
    return result.rowcount


def reconcile_interests(*, directory: UserDirectory, batch: int = RECONCILE_BATCH) -> int:
    """Delete the interests of users the User Manager no longer knows; return how many went.

    ``POST /interests`` checks the user, then inserts: if the user is deleted
    in between (and ``DeleteUserInterests`` has already run), the interest is
    orphaned and would cost credits forever. Only interests older than
    ``RECONCILE_GRACE`` are looked at, so one being added right now is left
    alone. Users are read in batches, with no transaction open during the
    calls; the first call the User Manager cannot answer ends the run, so
    nothing is deleted on doubt.
    """
    cutoff = utc_now() - RECONCILE_GRACE
    old = UserInterest.created_at < cutoff
    removed, after = 0, ""
    while True:
        emails = db.session.scalars(
            select(UserInterest.user_email)
            .where(old, UserInterest.user_email > after)
            .group_by(UserInterest.user_email)
            .order_by(UserInterest.user_email)
            .limit(batch)
        ).all()
        db.session.commit()
        for email in emails:
            try:
                exists_now = directory.check_user_exists(email)
            except PeerError as error:
                log.warning(
                    "interest reconciliation stopped: the User Manager cannot answer: %s", error
                )
                return removed
            if exists_now:
                continue
            airports = db.session.scalars(
                delete(UserInterest)
                .where(UserInterest.user_email == email, old)
                .returning(UserInterest.airport_code)
            ).all()
            db.session.commit()
            if airports:
                log.warning(
                    "removed the interests of a user that no longer exists: %s",
                    ", ".join(sorted(airports)),
                )
                removed += len(airports)
        if len(emails) < batch:
            return removed
        after = emails[-1]
