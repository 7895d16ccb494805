"""Asking the worker for a collection cycle: a row in ``collection_requests``.

Apart from ``collection`` so that the web workers, which only ask, never
import the OpenSky client (requests, urllib3: ~5 MB per process) that only
the worker uses.
"""

from sqlalchemy import bindparam
from sqlalchemy.dialects.postgresql import insert

from data_collector.models import CollectionRequest, db

REQUEST_COLLECTION = insert(CollectionRequest).values(airport_code=bindparam("airport_code"))


def request_collection(*, airport_code: str | None = None) -> None:
    """Ask the worker for a cycle soon (in the caller's transaction)."""
    db.session.execute(REQUEST_COLLECTION, {"airport_code": airport_code})
