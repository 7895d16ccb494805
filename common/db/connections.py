"""How the services open and use their pooled database connections.

:func:`engine_options` is the pool every service uses. Two round trips per
request that buy nothing under load are avoided here:

- SQLAlchemy's ``pool_pre_ping`` sends ``SELECT 1`` before *every* checkout.
  :func:`ping_idle_connections` pings only a connection that has sat in the
  pool for ``PING_AFTER_IDLE_SECONDS``: one used a moment ago is alive. After
  a database restart, an idle connection is still replaced before use; a
  connection in constant use fails its next statement instead, which the
  central handler answers with 503 (nothing is half-written: the statement
  never ran), and SQLAlchemy then replaces every connection of that pool.
- A request run inside a transaction costs ``BEGIN`` and ``ROLLBACK`` (or
  ``COMMIT``) around its statements. :func:`autocommit_statements` makes
  each of the request's statements its own transaction: right for reads
  (each statement sees one consistent snapshot) and for a write done in
  one statement, which PostgreSQL applies entirely or not at all. It flips
  psycopg2's ``autocommit`` attribute (client-side only) rather than
  SQLAlchemy's ``isolation_level`` option, whose reset when the connection
  returns to the pool costs a ``SET default_transaction_isolation`` round
  trip; the pool's checkin turns ``autocommit`` off again.

Every connection also carries its process's :class:`SessionLimits`, set in
the startup packet (no extra round trip): what a statement, a lock wait
and an idle transaction may cost before PostgreSQL ends them, and the
planner's price of a page read out of heap order (:data:`RANDOM_PAGE_COST`).
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from psycopg2.extensions import TRANSACTION_STATUS_IDLE
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DisconnectionError

# Long enough that a busy worker never pings; short enough that a connection idle across a
# database restart is tested before a request uses it.
PING_AFTER_IDLE_SECONDS = 2.0
# PostgreSQL's default random_page_cost (4) prices a page read out of heap order like a disk
# seek. The services' data is cached (or on SSD), where such a read costs about what one in
# order does; at 4 the planner reads a busy airport's newest flights through the time
# index, filtering out every other airport's rows, rather than through the airport's own.
RANDOM_PAGE_COST = 1.1


# How long a migration waits for a table lock before it gives up (and fails, to be run again).
# While a migration waits for a table's ACCESS EXCLUSIVE lock (behind a worker statement of
# up to DB_WORKER_TIMEOUT_MS, say), every request touching that table queues behind it; two
# seconds keeps that queue well inside the requests' own 5 s lock timeout, so a migration
# that cannot have its lock now costs clients a short delay, never an outage.
MIGRATION_LOCK_TIMEOUT_MS = 2000

# The launcher's roles, as the processes name themselves to the app factory.
SERVING_PROCESSES = ("web", "grpc")
WORKER_PROCESS = "worker"
MIGRATE_PROCESS = "migrate"
PROCESSES = (*SERVING_PROCESSES, WORKER_PROCESS, MIGRATE_PROCESS)


@dataclass(frozen=True)
class SessionLimits:
    """PostgreSQL's per-session limits, in milliseconds; ``None`` leaves the server's default."""

    statement_timeout_ms: int | None = None
    lock_timeout_ms: int | None = None
    idle_in_transaction_timeout_ms: int | None = None

    def options(self) -> str:
        """Return the ``-c name=value`` settings of the connection's startup packet."""
        settings = {
            "statement_timeout": self.statement_timeout_ms,
            "lock_timeout": self.lock_timeout_ms,
            "idle_in_transaction_session_timeout": self.idle_in_transaction_timeout_ms,
        }
        return " ".join(
            f"-c {name}={value}" for name, value in settings.items() if value is not None
        )


def session_limits(process: str, config) -> SessionLimits:
    """Return the limits of one of the launcher's processes, from the app's configuration.

    - ``web`` and ``grpc`` serve clients that wait: the ``DB_*`` serving limits.
    - ``worker`` runs bulk statements (pages of upserts, retention deletes) and may
      wait on OpenSky inside a transaction: ``DB_WORKER_TIMEOUT_MS`` bounds its
      statements and idle transactions; lock waits are bounded like serving ones,
      so a job stuck behind a migration gives up and runs again later.
    - ``migrate`` bounds only lock waits (:data:`MIGRATION_LOCK_TIMEOUT_MS`): DDL
      on a large table may rightly take long once it has its lock, but waiting
      for that lock queues every request on the table behind it. A migration
      that cannot have a lock fails (nothing applied) and is run again by the
      launcher's restart or the orchestrator. Replicas waiting for each other's
      migration on the advisory lock wait without this bound
      (:func:`common.db.migrations.upgrade_database`).

    The collector's cycle lock connection (``data_collector/collection/lock.py``) is
    opened outside this pool and gets none of these: it runs only
    ``pg_try_advisory_lock``/``unlock`` in autocommit, never inside a
    transaction, so there is nothing to bound, and an idle-in-transaction
    timeout could never end it.
    """
    if process in SERVING_PROCESSES:
        return SessionLimits(
            statement_timeout_ms=config["DB_STATEMENT_TIMEOUT_MS"],
            lock_timeout_ms=config["DB_LOCK_TIMEOUT_MS"],
            idle_in_transaction_timeout_ms=config["DB_IDLE_IN_TRANSACTION_TIMEOUT_MS"],
        )
    if process == WORKER_PROCESS:
        return SessionLimits(
            statement_timeout_ms=config["DB_WORKER_TIMEOUT_MS"],
            lock_timeout_ms=config["DB_LOCK_TIMEOUT_MS"],
            idle_in_transaction_timeout_ms=config["DB_WORKER_TIMEOUT_MS"],
        )
    if process == MIGRATE_PROCESS:
        return SessionLimits(lock_timeout_ms=MIGRATION_LOCK_TIMEOUT_MS)
    raise ValueError(f"unknown process {process!r}; one of {', '.join(PROCESSES)}")


def engine_options(*, pool_size: int, limits: SessionLimits | None = None) -> dict:
    """Return the SQLAlchemy engine options of a service process (``pool_size`` connections)."""
    limits = limits or SessionLimits()
    return {
        "pool_size": pool_size,
        "max_overflow": 5,
        # No pre-ping on every checkout: ping_idle_connections pings only idle connections.
        "pool_pre_ping": False,
        "pool_recycle": 1800,
        # Sessions in UTC, so timestamptz values come back in UTC; the planner's price of a
        # read out of order; then the process's limits. A database that does not answer
        # fails a request (503) instead of hanging it.
        "connect_args": {
            "options": (
                f"-c timezone=UTC -c random_page_cost={RANDOM_PAGE_COST} {limits.options()}"
            ).strip(),
            "connect_timeout": 5,
        },
        # Error messages would otherwise carry the statement's values (IBANs, tax codes)
        # into the logs.
        "hide_parameters": True,
    }


def ping_idle_connections(engine: Engine, idle_seconds: float = PING_AFTER_IDLE_SECONDS) -> None:
    """Ping a connection at checkout only when it was idle for ``idle_seconds`` (or never used)."""

    @event.listens_for(engine, "checkin")
    def remember_checkin(_dbapi_connection, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def ping_if_idle(dbapi_connection, record, _proxy):
        idle_since = record.info.get("idle_since")
        if idle_since is not None and time.monotonic() - idle_since < idle_seconds:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError(str(error)) from error
        if not alive:
            raise DisconnectionError("ping failed")


def restore_transactions_at_checkin(engine: Engine) -> None:
    """Give every connection back to the pool in transactional mode (see autocommit_statements)."""

    @event.listens_for(engine, "checkin")
    def transactional_again(dbapi_connection, _record):
        if dbapi_connection is not None and dbapi_connection.autocommit:
            dbapi_connection.autocommit = False


def install(app: Flask, db: SQLAlchemy) -> None:
    """Apply the idle-only ping and the checkin reset to the app's engine."""
    with app.app_context():
        ping_idle_connections(db.engine)
        restore_transactions_at_checkin(db.engine)


@contextmanager
def autocommit_connection(db: SQLAlchemy) -> Iterator[Connection]:
    """Lend a pooled connection, outside the ORM session, whose statements commit one by one.

    For a hot read that needs nothing of the session: its begin, bookkeeping
    and teardown cost more CPU than a one-row read. The switch is the same
    client-side attribute as :func:`autocommit_statements`', turned off again
    by the pool's checkin.
    """
    with db.engine.connect() as connection:
        connection.connection.dbapi_connection.autocommit = True
        yield connection


def autocommit_statements(db: SQLAlchemy) -> None:
    """Make each of this request's statements its own transaction (see the module doc).

    Only for requests whose every write is a single statement: several
    writes that must commit together need the ordinary transaction.

    Call it before the request's first statement; the connection goes back
    to the pool in its normal transactional mode. If the session has
    already opened a transaction (a caller that ran statements first, or a
    test holding its rows uncommitted), the statements simply join it.
    """
    connection = db.session.connection().connection.dbapi_connection
    if connection.info.transaction_status == TRANSACTION_STATUS_IDLE:
        connection.autocommit = True
