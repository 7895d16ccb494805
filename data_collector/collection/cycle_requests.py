"""Asking the worker for a collection cycle: a row in ``collection_requests``.

Apart from the cycle so that the web workers, which only ask, never import
the OpenSky client that only the worker uses. The cycle claims the rows
present when it starts and deletes exactly those when it ends.
"""

from datetime import timedelta

from sqlalchemy import (
    ColumnElement,
    Insert,
    Interval,
    bindparam,
    delete,
    exists,
    false,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert

from common.db.connections import autocommit_statements
from data_collector.models import CollectionRequest, CollectorState, db

REQUESTS = CollectionRequest.__table__
STATE = CollectorState.__table__


def ask_for_cycle(when: ColumnElement | None = None) -> Insert:
    """Build the INSERT that asks for a cycle (only if ``when`` holds, when given).

    Requests made before the next cycle starts coalesce into the one pending
    row (a partial unique index on the rows not yet taken).
    """
    pending = select(false())
    if when is not None:
        pending = pending.where(when)
    return (
        insert(REQUESTS)
        .from_select(["taken"], pending)
        .on_conflict_do_nothing(index_elements=["taken"], index_where=~REQUESTS.c.taken)
    )


REQUEST_COLLECTION = ask_for_cycle()


def request_collection() -> None:
    """Ask the worker for a cycle soon (in the caller's transaction).

    Calling this often costs nothing more than calling it once.
    """
    db.session.execute(REQUEST_COLLECTION)


def pending(*, or_else: ColumnElement) -> bool:
    """Tell whether a cycle was asked for, or ``or_else`` holds (one query for the poll)."""
    asked = exists(select(REQUESTS.c.id).where(~REQUESTS.c.taken))
    return bool(db.session.scalar(select(or_(asked, or_else))))


def claim() -> list[int]:
    """Take the requests a starting cycle answers; return their ids (for :func:`consume`)."""
    return db.session.scalars(update(REQUESTS).values(taken=True).returning(REQUESTS.c.id)).all()


def consume(taken: list[int]) -> None:
    """Delete the requests a cycle answered (not those made while it ran)."""
    db.session.execute(delete(REQUESTS).where(REQUESTS.c.id.in_(taken)))


# POST /collection/runs (built once): when the last cycle asked for, or started, is older
# than the interval, ask for one; either way say when that last one was.
_last = select(
    func.greatest(
        select(func.max(REQUESTS.c.requested_at)).scalar_subquery(),
        select(STATE.c.last_cycle_started_at).where(STATE.c.id == 1).scalar_subquery(),
    ).label("at")
).cte("last")
_asked = ask_for_cycle(
    when=or_(_last.c.at.is_(None), _last.c.at < func.now() - bindparam("interval", type_=Interval))
).cte("asked")
REQUEST_RUN = select(
    _last.c.at, func.extract("epoch", func.now() - _last.c.at).label("age")
).add_cte(_asked)


def request_run(*, min_interval: float) -> float | None:
    """Ask for a cycle unless one was asked for or started within ``min_interval`` seconds.

    Return None when asked, else the seconds to wait. One autocommitted
    statement: two callers at once ask for at most one cycle (the pending
    request coalesces).
    """
    autocommit_statements(db)
    row = (
        db.session.connection()
        .execute(REQUEST_RUN, {"interval": timedelta(seconds=min_interval)})
        .one()
    )
    db.session.commit()
    if row.at is None or row.age >= min_interval:
        return None
    return min_interval - float(row.age)
