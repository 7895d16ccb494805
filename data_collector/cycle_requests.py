"""Asking the worker for a collection cycle: a row in ``collection_requests``.

Apart from ``collection`` so that the web workers, which only ask, never
import the OpenSky client that only the worker uses.
"""

from sqlalchemy import ColumnElement, Insert, false, select
from sqlalchemy.dialects.postgresql import insert

from data_collector.models import CollectionRequest, db

REQUESTS = CollectionRequest.__table__


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
