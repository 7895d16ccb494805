"""Schema migrations of both services: wait for PostgreSQL, migrate under a lock.

Containers start before their database accepts connections, and several
replicas may start at once: :func:`upgrade_database` retries until the
database answers, then applies the Alembic migrations while holding a
PostgreSQL advisory lock, so exactly one process migrates and the others
wait and find nothing left to do. :func:`run_migrations` is the Alembic
environment both services' ``migrations/env.py`` delegate to.
"""

import logging
import time
from pathlib import Path

from alembic import context
from flask import Flask, current_app
from flask_migrate import upgrade
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

log = logging.getLogger(__name__)
alembic_log = logging.getLogger("alembic.env")

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


def migrate_app(app: Flask, migrations: Path) -> None:
    """Bring the app's database to its latest migration (the launcher's ``migrate`` role)."""
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
    upgrade_database(app, engine, migrations, timeout=app.config["DB_CONNECT_TIMEOUT_SECONDS"])


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


def run_migrations() -> None:
    """Run the pending migrations online (offline SQL generation is not supported)."""
    if context.is_offline_mode():
        raise RuntimeError("offline migrations are not supported; run against a database")
    extension = current_app.extensions["migrate"]
    config = context.config

    def skip_empty_autogenerate(_context, _revision, directives):
        # `flask db migrate` with no model change should not write an empty revision.
        if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
            directives[:] = []
            alembic_log.info("No changes in schema detected.")

    arguments = dict(extension.configure_args)
    arguments.setdefault("process_revision_directives", skip_empty_autogenerate)
    arguments.setdefault("compare_type", True)
    with extension.db.engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=extension.db.metadata,
            **arguments,
        )
        with context.begin_transaction():
            context.run_migrations()
