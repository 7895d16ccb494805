"""Several statements in one round trip, which PostgreSQL runs as one transaction.

A message of several statements (the simple query protocol, which psycopg2
uses) runs as one implicit transaction when the connection is in autocommit:
all of it commits, or none of it. Each statement still takes a fresh
snapshot, so a statement that first waits for a lock then sees what the
lock's previous holder committed. That is what a write needs when it must
serialize on a lock and then read: lock, then read and write, one round trip
instead of BEGIN, the lock, the statement and COMMIT.
"""

from dataclasses import dataclass
from typing import Any

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Executable, Row
from sqlalchemy.dialects.postgresql import psycopg2 as postgresql_psycopg2

from common.db.connections import autocommit_statements

_DIALECT = postgresql_psycopg2.dialect()


@dataclass(frozen=True)
class Batch:
    """Statements sent together; the last one's result is the batch's."""

    sql: str
    defaults: dict[str, Any]

    @classmethod
    def of(cls, *prefix: str, statement: Executable | None = None) -> "Batch":
        """Build (once, at import) a batch: plain SQL ``prefix`` statements, then ``statement``.

        The plain statements name their parameters as ``%(name)s``; ``statement``,
        when given, is compiled once here.
        """
        if statement is None:
            return cls(";\n".join(prefix), {})
        compiled = statement.compile(dialect=_DIALECT)
        defaults = {name: value for name, value in compiled.params.items() if value is not None}
        return cls(";\n".join([*prefix, str(compiled)]), defaults)

    def run(self, db: SQLAlchemy, params: dict[str, Any], *, commit: bool = True) -> Row | None:
        """Send the batch in one round trip; return the last statement's first row (or None).

        ``commit``: in autocommit, so the batch is its own transaction, committed
        by the time it answers (inside a transaction the session already
        opened, it joins that one instead). Otherwise it runs in the session's
        transaction, which the caller commits or rolls back. Sent through
        SQLAlchemy, so a failure raises the same errors as any statement's.
        """
        if commit:
            autocommit_statements(db)
        result = db.session.connection().exec_driver_sql(self.sql, {**self.defaults, **params})
        return result.first()
