"""Database start-up shared by both services: wait for PostgreSQL, then migrate under a lock.

Containers start before their database accepts connections, and several
replicas may start at once: :func:`upgrade_database` retries until the
database answers, then applies the Alembic migrations while holding a
PostgreSQL advisory lock, so exactly one process migrates and the others
wait and find nothing left to do.
"""

import logging
import time
from pathlib import Path

from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

log = logging.getLogger(__name__)

# Arbitrary constant shared by every replica of every service that migrates.
MIGRATION_LOCK_ID = 7_404_001


def wait_for_database(engine: Engine, *, timeout: float) -> None:
    """Return once a connection succeeds; raise the last error after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return
        except OperationalError as error:
            if time.monotonic() >= deadline:
                raise
            reason = str(error.orig).strip().splitlines()[0] if error.orig else error
            log.warning("database not ready (%s); retrying in %.1fs", reason, delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def upgrade_database(app: Flask, engine: Engine, migrations: Path, *, timeout: float) -> None:
    """Bring the schema to the latest migration, one process at a time."""
    wait_for_database(engine, timeout=timeout)
    with app.app_context(), engine.connect() as lock_connection:
        lock_connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        try:
            upgrade(directory=str(migrations))
        finally:
            lock_connection.execute(
                text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID}
            )
            lock_connection.commit()
    log.info("database schema is up to date")
