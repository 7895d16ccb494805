"""Asking the worker for a collection cycle: a row in ``collection_requests``.

Apart from ``collection`` so that the web workers, which only ask, never
import the OpenSky client (requests, urllib3: ~5 MB per process) that only
the worker uses.
"""

from sqlalchemy.dialects.postgresql import insert

from data_collector.models import CollectionRequest, db

# Requests made before the next cycle starts coalesce into the one pending row.
REQUEST_COLLECTION = (
    insert(CollectionRequest)
    .values(taken=False)
    .on_conflict_do_nothing(index_elements=["taken"], index_where=~CollectionRequest.taken)
)


def request_collection() -> None:
    """Ask the worker for a cycle soon (in the caller's transaction).

    Calling this often costs nothing more than calling it once.
    """
    db.session.execute(REQUEST_COLLECTION)
