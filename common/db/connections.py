"""How both services open and use their pooled database connections.

:func:`engine_options` is the pool both services use. Two round trips per
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
"""

import time

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from psycopg2.extensions import TRANSACTION_STATUS_IDLE
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError

# Long enough that a busy worker never pings; short enough that a connection idle across a
# database restart is tested before a request uses it.
PING_AFTER_IDLE_SECONDS = 2.0


def engine_options(*, pool_size: int) -> dict:
    """Return the SQLAlchemy engine options of a service process (``pool_size`` connections)."""
    return {
        "pool_size": pool_size,
        "max_overflow": 5,
        # No pre-ping on every checkout: ping_idle_connections pings only idle connections.
        "pool_pre_ping": False,
        "pool_recycle": 1800,
        # Sessions in UTC, so timestamptz values come back in UTC.
        # A database that does not answer fails a request (503) instead of hanging it.
        "connect_args": {"options": "-c timezone=UTC", "connect_timeout": 5},
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
