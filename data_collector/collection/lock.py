"""The collection lock: one cycle at a time across processes and replicas.

A cycle runs only while its process holds the advisory lock
``COLLECTION_LOCK_ID``, taken with ``pg_try_advisory_lock`` on a connection
of its own: opened for the cycle outside the connection pool (``NullPool``),
used for nothing else, unlocked and closed when the cycle ends. A
session-level lock is safe here because that connection is never shared or
reused: no pooled connection can carry the lock into someone else's work,
and if the process dies the server closes the connection and the lock goes
with it (TCP keepalives detect a vanished host). Unlike a transaction-scoped
lock it needs no transaction left open, idle, for the whole cycle, which an
``idle_in_transaction_session_timeout`` (common on managed PostgreSQL) would
silently kill, releasing the lock mid-cycle. Another process that finds the
lock taken skips its cycle: the one running covers every followed airport.
"""

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from flask import current_app
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

# Arbitrary constant shared by every replica; distinct from the migration lock.
COLLECTION_LOCK_ID = 7_404_002
# A database that does not answer fails the cycle in seconds instead of hanging the worker.
LOCK_CONNECT_TIMEOUT_SECONDS = 10


@functools.cache
def _lock_engine(url: str) -> Engine:
    return create_engine(
        url,
        poolclass=NullPool,
        # No transaction is left open on this connection (see the module docstring).
        isolation_level="AUTOCOMMIT",
        connect_args={
            "connect_timeout": LOCK_CONNECT_TIMEOUT_SECONDS,
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
        },
    )


@contextmanager
def cycle_lock() -> Iterator[bool]:
    """Hold the collection lock for the duration of the block; yield whether it was free."""
    engine = _lock_engine(current_app.config["SQLALCHEMY_DATABASE_URI"])
    with engine.connect() as connection:
        lock = {"id": COLLECTION_LOCK_ID}
        acquired = connection.execute(text("SELECT pg_try_advisory_lock(:id)"), lock).scalar()
        try:
            yield bool(acquired)
        finally:
            # Closing the connection would release it too; unlocking says if it was lost.
            if (
                acquired
                and not connection.execute(text("SELECT pg_advisory_unlock(:id)"), lock).scalar()
            ):
                log.error("the collection lock was lost during the cycle")
