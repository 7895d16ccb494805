"""The collector's side of the alerts pipeline: what it tells the Alert System, what it learns.

**What is compared.** An airport's *alert window* is the most recent whole
UTC day whose arrivals and departures are both settled in
``collected_days``: fetched to the day's end at least ``COLLECT_REFRESH_DAYS``
after it ended, so OpenSky's nightly batch has filled its arrivals and every
flight of the day has landed. A day partly collected, or not yet fetched
again after it ended, is never a window. The figure is that day's arrivals
(by ``last_seen``) plus departures (by ``first_seen``), as
``GET /flights/average`` counts them, read from ``flight_day_counts``.

**What is sent** (``to-alert-system``, through the outbox, in the caller's
transaction; the caller commits):

- :func:`publish_changed_figures`: in the transaction of a cycle that stored
  flights or marks, a ``flights`` event for each airport whose window or
  figure differs from the one last sent (``alert_windows``), listing the
  interests with a threshold (at most ``MAX_FOLLOWERS_PER_EVENT`` a message);
- :func:`publish_follower`: when ``POST`` or ``PUT /interests`` sets or
  changes an interest's thresholds, the last figure sent for its airport,
  with that interest alone (nothing while the airport has no window: the
  first one will list it);
- :func:`publish_removed`: the ids of interests deleted, in the deleting
  transaction.

Both kinds of ``flights`` event for one airport take the airport's advisory
lock before they read the followers or the figure, and stamp ``committed_at``
with the database's clock after it: of two events about one interest, the
one committed later is the later one, and it carries what the other
committed (a threshold changed while a cycle stores the airport's flights is
never evaluated against an older figure than the cycle's, nor the cycle's
figure against older thresholds).

**What comes back** (``to-data-collector``): :func:`handle_reports` stores
each interest's alert state (a newer version only) and the last email's
time, shown by ``GET /interests/{email}``.
"""

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from pydantic import ValidationError
from sqlalchemy import bindparam, func, or_, select, text
from sqlalchemy.dialects.postgresql import insert

from common.broker.consumer import DONE, Delivery, Outcome, Park
from common.broker.messages import (
    DATA_COLLECTOR_REPORT,
    MAX_FOLLOWERS_PER_EVENT,
    MAX_IDS_PER_EVENT,
    AlertState,
    FlightsEvent,
    Follower,
    RemovedEvent,
    Window,
    as_message,
)
from common.broker.outbox import enqueue
from common.broker.streams import TO_ALERT_SYSTEM
from common.timeutil import DAY, day_number, day_start, moment
from data_collector.models import OUTBOX, AlertWindow, UserInterest, db

log = logging.getLogger(__name__)

# The first key of the airports' advisory locks (the second is the code's hash): distinct
# from the collector's other locks, which use the one-key form.
AIRPORT_LOCK_CLASS = 7_404_004

# Every airport's most recent day settled in both directions, and its counts: one statement
# for all the airports a commit touched. A day is settled when it was fetched to its last
# second at least :refresh after that second (its mark's fetched_at is the oldest fetch).
ALERT_FIGURES = text(
    """
    WITH settled AS (
        SELECT airport_code, day
        FROM collected_days
        WHERE airport_code = ANY(:airports)
          AND fetched_until >= timezone('UTC', (day + 1)::timestamp) - interval '1 second'
          AND fetched_at >= timezone('UTC', (day + 1)::timestamp) - interval '1 second' + :refresh
        GROUP BY airport_code, day
        HAVING count(*) = 2
    ), latest AS (
        SELECT airport_code, max(day) AS day FROM settled GROUP BY airport_code
    )
    SELECT latest.airport_code AS airport, latest.day,
           coalesce(arrivals.flights, 0) AS arrivals,
           coalesce(departures.flights, 0) AS departures
    FROM latest
    LEFT JOIN flight_day_counts AS arrivals
      ON arrivals.airport_code = latest.airport_code
     AND arrivals.direction = 'arrival' AND arrivals.day = latest.day
    LEFT JOIN flight_day_counts AS departures
      ON departures.airport_code = latest.airport_code
     AND departures.direction = 'departure' AND departures.day = latest.day
    """
)
# Taken in the order of the array (a function scan yields its rows in order).
LOCK_AIRPORTS = text(
    "SELECT count(pg_advisory_xact_lock(:lock_class, hashtext(code))) "
    "FROM unnest(CAST(:airports AS text[])) AS code"
)


@dataclass(frozen=True)
class Figure:
    """An airport's flights over its alert window: the UTC day ``day``."""

    airport: str
    day: date
    arrivals: int
    departures: int

    def window(self) -> Window:
        """Return the window as messages carry it: the day's midnight to the next one."""
        start = day_start(day_number(self.day))
        return Window(start=moment(start), end=moment(start + DAY))


def alert_figures(airports: Iterable[str], *, refresh_days: int) -> dict[str, Figure]:
    """Return the figure over its alert window of each of ``airports`` that has a window."""
    wanted = sorted(set(airports))
    if not wanted:
        return {}
    rows = db.session.execute(
        ALERT_FIGURES, {"airports": wanted, "refresh": timedelta(days=refresh_days)}
    )
    return {row.airport: Figure(row.airport, row.day, row.arrivals, row.departures) for row in rows}


def lock_airports(airports: Iterable[str]) -> list[str]:
    """Take the airports' advisory locks until the transaction ends (in one order); return them."""
    ordered = sorted(set(airports))
    if ordered:
        db.session.execute(LOCK_AIRPORTS, {"lock_class": AIRPORT_LOCK_CLASS, "airports": ordered})
    return ordered


def database_now() -> datetime:
    """Return the database's clock now (not the transaction's start): ``committed_at``."""
    return db.session.scalar(select(func.clock_timestamp()))


def publish_changed_figures(airports: Iterable[str], *, refresh_days: int) -> int:
    """Send the figure of each of ``airports`` whose window or figure changed; return messages.

    Runs in the transaction that stored the flights or marks (the cycle's),
    after them: the figure sent is the one this transaction commits.
    """
    locked = lock_airports(airports)
    if not locked:
        return 0
    figures = alert_figures(locked, refresh_days=refresh_days)
    sent = {
        window.airport_code: window
        for window in db.session.scalars(
            select(AlertWindow).where(AlertWindow.airport_code.in_(list(figures)))
        )
    }
    changed = [figure for airport, figure in figures.items() if _differs(figure, sent.get(airport))]
    if not changed:
        return 0
    committed_at = database_now()
    rows = [
        {
            "airport_code": figure.airport,
            "day": figure.day,
            "arrivals": figure.arrivals,
            "departures": figure.departures,
            "committed_at": committed_at,
        }
        for figure in changed
    ]
    statement = insert(AlertWindow)
    db.session.execute(
        statement.on_conflict_do_update(
            index_elements=["airport_code"],
            set_={
                name: statement.excluded[name]
                for name in ("day", "arrivals", "departures", "committed_at")
            },
        ),
        rows,
    )
    followers = _followers([figure.airport for figure in changed])
    messages = [
        message
        for figure in changed
        for message in _flights_messages(figure, followers.get(figure.airport, []), committed_at)
    ]
    enqueue(db, OUTBOX, messages)
    return len(messages)


def _differs(figure: Figure, sent: AlertWindow | None) -> bool:
    if sent is None:
        return True
    return (figure.day, figure.arrivals, figure.departures) != (
        sent.day,
        sent.arrivals,
        sent.departures,
    )


def _followers(airports: list[str]) -> dict[str, list[Follower]]:
    """Return the interests in ``airports`` that have a threshold, by airport, by id.

    An interest without thresholds can never cross one: it is left out (a
    ``PUT`` that sets one sends it at once).
    """
    rows = db.session.execute(
        select(
            UserInterest.id,
            UserInterest.user_email,
            UserInterest.airport_code,
            UserInterest.high_value,
            UserInterest.low_value,
        )
        .where(
            UserInterest.airport_code.in_(airports),
            or_(UserInterest.high_value.is_not(None), UserInterest.low_value.is_not(None)),
        )
        .order_by(UserInterest.airport_code, UserInterest.id)
    )
    followers: dict[str, list[Follower]] = {}
    for row in rows:
        followers.setdefault(row.airport_code, []).append(
            Follower(
                interest_id=row.id,
                email=row.user_email,
                high_value=row.high_value,
                low_value=row.low_value,
            )
        )
    return followers


def _flights_messages(figure: Figure, followers: list[Follower], committed_at: datetime) -> list:
    """Return the ``flights`` event of ``figure`` for ``followers``, in parts (none: no message)."""
    parts = [
        followers[first : first + MAX_FOLLOWERS_PER_EVENT]
        for first in range(0, len(followers), MAX_FOLLOWERS_PER_EVENT)
    ]
    return [
        as_message(
            TO_ALERT_SYSTEM,
            FlightsEvent(
                kind="flights",
                airport=figure.airport,
                window=figure.window(),
                arrivals=figure.arrivals,
                departures=figure.departures,
                flights=figure.arrivals + figure.departures,
                followers=part,
                part=number,
                parts=len(parts),
                committed_at=committed_at,
            ),
        )
        for number, part in enumerate(parts, start=1)
    ]


def publish_follower(airport: str, follower: Follower) -> bool:
    """Send the airport's last figure with ``follower`` alone (its thresholds changed).

    Return whether a message was enqueued: not while the airport has no
    window yet (the event that brings the first one lists the interest).
    """
    lock_airports([airport])
    sent = db.session.scalar(select(AlertWindow).where(AlertWindow.airport_code == airport))
    if sent is None:
        return False
    figure = Figure(sent.airport_code, sent.day, sent.arrivals, sent.departures)
    enqueue(db, OUTBOX, _flights_messages(figure, [follower], database_now()))
    return True


def publish_removed(interest_ids: Iterable[int]) -> int:
    """Tell the Alert System that these interests are gone (no more evaluation, no email)."""
    ids = sorted(set(interest_ids))
    messages = [
        as_message(
            TO_ALERT_SYSTEM,
            RemovedEvent(kind="removed", interest_ids=ids[first : first + MAX_IDS_PER_EVENT]),
        )
        for first in range(0, len(ids), MAX_IDS_PER_EVENT)
    ]
    enqueue(db, OUTBOX, messages)
    return len(messages)


INTERESTS = UserInterest.__table__
# Only a newer state replaces the stored one: reports of one interest may arrive out of order.
APPLY_STATE = (
    INTERESTS.update()
    .where(
        INTERESTS.c.id == bindparam("interest_id"),
        or_(
            INTERESTS.c.alert_version.is_(None),
            INTERESTS.c.alert_version < bindparam("version"),
        ),
    )
    .values(
        alert_condition=bindparam("condition"),
        alert_since=bindparam("since"),
        alert_version=bindparam("version"),
    )
)
# The latest email wins, whatever order the receipts come in (GREATEST ignores a NULL).
APPLY_RECEIPT = (
    INTERESTS.update()
    .where(INTERESTS.c.id == bindparam("interest_id"))
    .values(last_email_at=func.greatest(INTERESTS.c.last_email_at, bindparam("sent_at")))
)


def handle_reports(deliveries: Sequence[Delivery]) -> list[Outcome]:
    """Apply a batch of ``to-data-collector`` reports in one transaction; one outcome each.

    An ``alert-state`` replaces the interest's state when its version is
    newer than the stored one; an ``emailed`` receipt moves ``last_email_at``
    forward. A report about an interest that no longer exists changes
    nothing and is acknowledged; one that is not a report is parked. The
    interests' rows are locked in id order first, so two replicas applying
    batches at once never deadlock. A database failure raises: the
    consumer delivers the whole batch again later, and applying it twice
    changes nothing more.
    """
    outcomes: list[Outcome] = []
    states, receipts = [], []
    for delivery in deliveries:
        try:
            report = DATA_COLLECTOR_REPORT.validate_python(delivery.payload)
        except ValidationError as error:
            reason = error.errors(include_url=False)[0]
            outcomes.append(Park(f"not a report: {reason['loc']} {reason['msg']}"))
            continue
        outcomes.append(DONE)
        if isinstance(report, AlertState):
            states.append(
                {
                    "interest_id": report.interest_id,
                    "condition": report.condition,
                    "since": report.since,
                    "version": report.version,
                }
            )
        else:
            receipts.append({"interest_id": report.interest_id, "sent_at": report.sent_at})
    ids = sorted({report["interest_id"] for report in (*states, *receipts)})
    if ids:
        db.session.execute(
            select(UserInterest.id)
            .where(UserInterest.id.in_(ids))
            .order_by(UserInterest.id)
            .with_for_update()
        ).all()
        # In version order, so the newest of several states of one interest is the one kept.
        if states:
            states.sort(key=lambda state: (state["interest_id"], state["version"]))
            db.session.execute(APPLY_STATE, states)
        if receipts:
            db.session.execute(APPLY_RECEIPT, receipts)
    db.session.commit()
    return outcomes
