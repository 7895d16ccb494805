"""Which airports each user follows, with what thresholds: add, change, remove, list, clean up.

Every change the Alert System must know of (thresholds set or changed, interests
deleted) is sent to it through the outbox in the changing transaction
(:mod:`data_collector.alerts`).
"""

import logging
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import Integer, bindparam, case, cast, delete, exists, func, literal, select
from sqlalchemy.dialects.postgresql import insert

from common.broker.messages import Follower
from common.db.batch import Batch
from common.emails import lookup_form
from common.rpc.peers import PeerError, UserDirectory
from common.timeutil import day_number, day_start, isoformat_utc, moment, utc_now
from common.web.errors import ApiError
from data_collector import alerts
from data_collector.collection.cycle_requests import ask_for_cycle
from data_collector.inputs import require_threshold_order
from data_collector.models import AlertWindow, CollectorState, UserInterest, db

log = logging.getLogger(__name__)

INTERESTS = UserInterest.__table__
# Reconciliation leaves interests younger than this alone: far longer than any
# POST /interests takes between its user check and its insert (at most the gRPC
# deadline plus the request timeout, about half a minute).
RECONCILE_GRACE = timedelta(minutes=10)
# Users per query; each costs one CheckUserExists call (a primary-key lookup).
RECONCILE_BATCH = 500
# A pass removes nothing when the User Manager does not know more than this share of the
# users it asks about. Real orphans come from a race (a user deleted between a
# POST /interests' check and its insert): a handful at most. A tenth of every user gone
# at once means the User Manager lost users (restored from an old backup, pointed at an
# empty database), and removing their interests would wipe what they follow.
RECONCILE_MAX_SHARE = 0.1
# ... though a pass may always remove this many users' interests, so a collector with
# only a few users can still lose a real orphan (one of four is a quarter).
RECONCILE_ALWAYS_ALLOWED = 3

# Arbitrary constant, distinct from the other advisory locks: held while an airport that
# nobody follows yet is added, so two new airports cannot both take the last place.
NEW_AIRPORT_LOCK_ID = 7_404_003

# POST /interests in one round trip (built once). First the user's lock, and the new-airport
# lock when the airport is new, so the counts read next stay true until the commit; then
# one statement: the verdict (already followed with these thresholds, with others, a limit
# reached, or ok), the interest when ok, and for a new interest a collection cycle asked
# for, so both happen or neither.
_high_value = cast(bindparam("high_value"), Integer)
_low_value = cast(bindparam("low_value"), Integer)
_followed = select(INTERESTS.c.id).where(
    INTERESTS.c.user_email == bindparam("user_email"),
    INTERESTS.c.airport_code == bindparam("airport_code"),
)
_followed_alike = _followed.where(
    INTERESTS.c.high_value.is_not_distinct_from(_high_value),
    INTERESTS.c.low_value.is_not_distinct_from(_low_value),
)
_user_interests = select(func.count()).where(INTERESTS.c.user_email == bindparam("user_email"))
_airport_known = select(INTERESTS.c.id).where(INTERESTS.c.airport_code == bindparam("airport_code"))
_airports = select(func.count(INTERESTS.c.airport_code.distinct()))
_verdict = select(
    case(
        (_followed_alike.exists(), literal("followed")),
        (_followed.exists(), literal("other thresholds")),
        (_user_interests.scalar_subquery() >= bindparam("max_per_user"), literal("user limit")),
        # An airport someone follows already costs nothing more; only a new one is counted
        # against the limit (CASE stops at the first true condition: no count for it).
        (_airport_known.exists(), literal("ok")),
        (_airports.scalar_subquery() >= bindparam("max_airports"), literal("airport limit")),
        else_=literal("ok"),
    ).label("verdict")
).cte("verdict")
_new_interest = (
    insert(INTERESTS)
    .from_select(
        ["user_email", "airport_code", "created_at", "high_value", "low_value"],
        select(
            bindparam("user_email"),
            bindparam("airport_code"),
            bindparam("created_at"),
            _high_value,
            _low_value,
        ).where(select(_verdict.c.verdict).scalar_subquery() == "ok"),
    )
    .on_conflict_do_nothing(constraint="uq_user_interests_user_airport")
    .returning(INTERESTS.c.id)
    .cte("new_interest")
)
_requested = ask_for_cycle(when=exists(select(_new_interest.c.id))).cte("requested")
ADD_INTEREST = Batch.of(
    "SELECT pg_advisory_xact_lock(hashtextextended(%(user_email)s, 0))",
    "SELECT pg_advisory_xact_lock(%(new_airport_lock)s) WHERE NOT EXISTS "
    "(SELECT FROM user_interests WHERE airport_code = %(airport_code)s)",
    statement=select(
        select(_new_interest.c.id).scalar_subquery().label("added"),
        select(_verdict.c.verdict).scalar_subquery().label("verdict"),
    ).add_cte(_requested),
)


def add_interest(
    *,
    email: str,
    airport_code: str,
    high_value: int | None = None,
    low_value: int | None = None,
) -> bool:
    """Store the interest once; return whether it is new, or raise the 409 of a limit.

    A new interest also asks the worker for a collection cycle: the request
    answers at once, and the airport's flights start arriving within
    ``COLLECT_POLL_SECONDS`` plus the time OpenSky takes. A user follows at
    most ``MAX_INTERESTS_PER_USER`` airports, and all users together at most
    ``MAX_FOLLOWED_AIRPORTS`` different ones: each costs OpenSky credits.

    A new interest with a threshold is sent to the Alert System with the
    airport's last figure, if it has one, in the same transaction. An
    interest already followed with other thresholds is a 409: ``PUT`` changes
    them (a repeated ``POST`` with the same ones is the 200 of one already there).
    """
    config = current_app.config
    has_threshold = high_value is not None or low_value is not None
    row = ADD_INTEREST.run(
        db,
        {
            "user_email": email,
            "airport_code": airport_code,
            "created_at": utc_now(),
            "high_value": high_value,
            "low_value": low_value,
            "max_per_user": config["MAX_INTERESTS_PER_USER"],
            "max_airports": config["MAX_FOLLOWED_AIRPORTS"],
            "new_airport_lock": NEW_AIRPORT_LOCK_ID,
        },
        # Without a threshold the batch is its own transaction; with one, the event joins it.
        commit=not has_threshold,
    )
    if row.added is not None and has_threshold:
        alerts.publish_follower(
            airport_code,
            Follower(
                interest_id=row.added, email=email, high_value=high_value, low_value=low_value
            ),
        )
    # Sends nothing in autocommit; commits the batch's transaction otherwise.
    db.session.commit()
    if row.verdict == "other thresholds":
        raise ApiError(
            409,
            "This user already follows this airport, with other thresholds: change them with "
            "PUT /interests.",
            details={"thresholds": "already set; PUT /interests changes them"},
        )
    if row.verdict == "user limit":
        raise ApiError(
            409,
            f"This user already follows {config['MAX_INTERESTS_PER_USER']} airports, the most "
            "allowed (MAX_INTERESTS_PER_USER): stop following one first.",
            details={"limit": "MAX_INTERESTS_PER_USER"},
        )
    if row.verdict == "airport limit":
        raise ApiError(
            409,
            f"{config['MAX_FOLLOWED_AIRPORTS']} different airports are followed already, the "
            "most this collector takes (MAX_FOLLOWED_AIRPORTS).",
            details={"limit": "MAX_FOLLOWED_AIRPORTS"},
        )
    return row.added is not None


def change_thresholds(
    *, email: str, airport_code: str, changes: dict[str, int | None]
) -> UserInterest:
    """Apply ``changes`` to an interest's thresholds; return it, or raise the 404 or the 400.

    A threshold in ``changes`` replaces the stored one (None clears it); one
    not in it is kept. The result must keep the upper threshold above the
    lower one (a 400 naming both otherwise). When they changed, the interest
    is sent to the Alert System with the airport's last figure, in the same
    transaction, so the change counts at once.
    """
    interest = db.session.scalar(
        select(UserInterest)
        .where(UserInterest.user_email == email, UserInterest.airport_code == airport_code)
        .with_for_update()
    )
    if interest is None:
        db.session.rollback()
        raise ApiError(404, "Interest not found")
    wanted = {"high_value": interest.high_value, "low_value": interest.low_value, **changes}
    try:
        require_threshold_order(wanted["high_value"], wanted["low_value"])
    except ApiError:
        db.session.rollback()
        raise
    if (interest.high_value, interest.low_value) != (wanted["high_value"], wanted["low_value"]):
        interest.high_value, interest.low_value = wanted["high_value"], wanted["low_value"]
        db.session.flush()
        alerts.publish_follower(
            airport_code,
            Follower(
                interest_id=interest.id,
                email=interest.user_email,
                high_value=interest.high_value,
                low_value=interest.low_value,
            ),
        )
    db.session.commit()
    return interest


def remove_interest(*, email: str, airport_code: str) -> bool:
    """Delete one interest and tell the Alert System (one transaction); return if it existed."""
    deleted = db.session.scalars(
        delete(UserInterest)
        .where(UserInterest.user_email == email, UserInterest.airport_code == airport_code)
        .returning(UserInterest.id)
    ).all()
    alerts.publish_removed(deleted)
    db.session.commit()
    return bool(deleted)


def list_interests(*, email: str) -> list[UserInterest]:
    """Return the user's interests ordered by airport code."""
    query = (
        select(UserInterest)
        .where(UserInterest.user_email == email)
        .order_by(UserInterest.airport_code)
    )
    return list(db.session.scalars(query))


def alert_windows(airports: list[str]) -> dict[str, AlertWindow]:
    """Return the figure over its alert window last sent for each of ``airports`` that has one."""
    if not airports:
        return {}
    query = select(AlertWindow).where(AlertWindow.airport_code.in_(airports))
    return {window.airport_code: window for window in db.session.scalars(query)}


def credit_waits() -> dict[str, str]:
    """Return the airports whose collection waits for the next UTC day's credits, and when.

    The last collection cycle left their requests for lack of today's
    credits (``OPENSKY_DAILY_CREDITS``); the count starts again at the next
    UTC midnight, and the worker collects them then.
    """
    state = db.session.get(CollectorState, 1)
    today = utc_now().date()
    if state is None or state.over_budget_on != today:
        return {}
    tomorrow = isoformat_utc(moment(day_start(day_number(today) + 1)))
    return dict.fromkeys(state.over_budget_airports or (), tomorrow)


def delete_user_interests(*, email: str) -> int:
    """Delete every interest of the user (idempotent) and tell the Alert System; return how many."""
    normalized = lookup_form(email)
    deleted = db.session.scalars(
        delete(UserInterest).where(UserInterest.user_email == normalized).returning(UserInterest.id)
    ).all()
    alerts.publish_removed(deleted)
    db.session.commit()
    return len(deleted)


@dataclass(frozen=True)
class Reconciliation:
    """What one reconciliation pass did (``/health`` shows the last one)."""

    outcome: str  # done, refused (more unknown users than allowed), stopped (no answer)
    removed: int  # interests removed
    unknown_users: int  # users the User Manager does not know, among those asked about
    users: int  # users with interests older than RECONCILE_GRACE


def reconcile_interests(
    *,
    directory: UserDirectory,
    batch: int = RECONCILE_BATCH,
    max_share: float = RECONCILE_MAX_SHARE,
) -> Reconciliation:
    """Delete the interests of users the User Manager no longer knows, unless too many.

    ``POST /interests`` checks the user, then inserts: if the user is deleted
    in between (and ``DeleteUserInterests`` has already run), the interest is
    orphaned and would cost credits forever. Only interests older than
    ``RECONCILE_GRACE`` are looked at, so one being added right now is left
    alone. Every user is asked about first, in batches, with no transaction
    open during the calls; the first call the User Manager cannot answer ends
    the pass (``stopped``), so nothing is deleted on doubt. If more than
    ``max_share`` of the users (and more than ``RECONCILE_ALWAYS_ALLOWED``)
    are unknown, nothing is deleted either (``refused``, logged as an error):
    the User Manager has more likely lost users than they all left.
    """
    cutoff = utc_now() - RECONCILE_GRACE
    old = UserInterest.created_at < cutoff
    users = db.session.scalar(select(func.count(UserInterest.user_email.distinct())).where(old))
    unknown, after = [], ""
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
                if not directory.check_user_exists(email):
                    unknown.append(email)
            except PeerError as error:
                log.warning(
                    "interest reconciliation stopped: the User Manager cannot answer: %s", error
                )
                return _recorded(Reconciliation("stopped", 0, len(unknown), users))
        if len(emails) < batch:
            break
        after = emails[-1]
    allowed = max(int(users * max_share), RECONCILE_ALWAYS_ALLOWED)
    if len(unknown) > allowed:
        log.error(
            "interest reconciliation refused: the User Manager does not know %d of the %d "
            "users who follow airports, more than the %d a pass may remove (%g of them, "
            "RECONCILE_MAX_SHARE). It has more likely lost users (restored from an old "
            "backup, or a new database) than they all left: nothing was removed. Once the "
            "User Manager is right, the next pass removes what is left; if the users are "
            "really gone, run python -m data_collector.worker --reconcile --max-share 1.",
            len(unknown),
            users,
            allowed,
            max_share,
        )
        return _recorded(Reconciliation("refused", 0, len(unknown), users))
    removed = 0
    for email in unknown:
        deleted = db.session.execute(
            delete(UserInterest)
            .where(UserInterest.user_email == email, old)
            .returning(UserInterest.id, UserInterest.airport_code)
        ).all()
        alerts.publish_removed(row.id for row in deleted)
        db.session.commit()
        airports = [row.airport_code for row in deleted]
        if airports:
            log.warning(
                "removed the interests of a user that no longer exists: %s",
                ", ".join(sorted(airports)),
            )
            removed += len(airports)
    return _recorded(Reconciliation("done", removed, len(unknown), users))


def _recorded(result: Reconciliation) -> Reconciliation:
    """Store the pass in ``collector_state`` for ``/health`` and ``/metrics``; return it."""
    state = db.session.get(CollectorState, 1)
    state.reconciled_at = utc_now()
    state.reconcile_outcome = result.outcome
    state.reconcile_removed = result.removed
    state.reconcile_unknown_users = result.unknown_users
    state.reconcile_users = result.users
    db.session.commit()
    return result
